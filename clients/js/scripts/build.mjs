// Builds the SDK: src/protocol.ts from docs/protocol.schema.json, the declarations (tsc), the
// ESM bundle dist/index.js and the minified dist/ringcast-client.min.js that the ringcast
// binary embeds for /demo (esbuild). `--check` builds into a temporary directory and fails
// when a committed file differs (CI runs it: the binary's bundle must be the SDK's source).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";
import { generate } from "./gen-types.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "ringcast-client-")) : join(root, "dist");
const types = generate();
const typesPath = join(root, "src", "protocol.ts");
const differs = [];

if (check) {
  if (readFileSync(typesPath, "utf8") !== types) differs.push("src/protocol.ts");
} else {
  writeFileSync(typesPath, types);
  rmSync(out, { recursive: true, force: true });
}
mkdirSync(out, { recursive: true });

execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", root, "--outDir", out], {
  stdio: "inherit",
});
const common = { entryPoints: [join(root, "src", "index.ts")], bundle: true, format: "esm", target: "es2020", legalComments: "none", logLevel: "warning" };
await esbuild.build({ ...common, outfile: join(out, "index.js") });
await esbuild.build({ ...common, outfile: join(out, "ringcast-client.min.js"), minify: true });

const min = readFileSync(join(out, "ringcast-client.min.js"));
console.log(`ringcast-client.min.js: ${min.length} bytes minified, ${gzipSync(min, { level: 9 }).length} bytes gzip`);

if (check) {
  const committed = join(root, "dist");
  const built = readdirSync(out).sort();
  const have = existsSync(committed) ? readdirSync(committed).sort() : [];
  for (const name of new Set([...built, ...have])) {
    const a = existsSync(join(out, name)) ? readFileSync(join(out, name), "utf8") : null;
    const b = existsSync(join(committed, name)) ? readFileSync(join(committed, name), "utf8") : null;
    if (a !== b) differs.push(`dist/${name}`);
  }
  rmSync(out, { recursive: true, force: true });
  if (differs.length) {
    console.error(`out of date (run npm run build in clients/js and commit): ${differs.join(", ")}`);
    process.exit(1);
  }
  console.log("dist/ and src/protocol.ts match the sources");
}
