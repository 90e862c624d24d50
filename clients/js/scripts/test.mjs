// Runs the test files one after the other (each starts its own ringcast processes; the
// machine's CPUs go to one cluster at a time), each with Node's test runner. Arguments
// select files; default every test/*.test.mjs. Exits non-zero when any file fails.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync(join(root, "test"))
      .filter((name) => name.endsWith(".test.mjs"))
      .sort()
      .map((name) => join("test", name));
const failed = [];
for (const file of files) {
  console.log(`# ${file}`);
  const run = spawnSync(process.execPath, ["--test", file], { cwd: root, stdio: "inherit" });
  if (run.status !== 0) failed.push(file);
}
if (failed.length) {
  console.error(`failed: ${failed.join(", ")}`);
  process.exit(1);
}
console.log(`all ${files.length} test files passed`);
