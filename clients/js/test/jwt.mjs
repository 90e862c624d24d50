// HS256 tokens for the tests, signed like `ringcast token` does (node:crypto, no library).
import { createHmac } from "node:crypto";

const b64url = (value) => Buffer.from(value).toString("base64url");

/** A signed token for `sub`; `ttlSecs` may be negative (already expired). */
export function sign(secret, sub, { ttlSecs = 3600, name, roles, groups, tenant } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, exp: now + ttlSecs, iat: now };
  if (name) claims.name = name;
  if (roles) claims.roles = roles;
  if (groups) claims.groups = groups;
  if (tenant) claims.tenant = tenant;
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const mac = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${mac}`;
}
