// Real ringcast processes for the SDK and browser tests: single nodes and clusters on
// 127.0.0.1 ports, a Redis of their own, tokens. Every process is stopped by its pid.
import { execFileSync, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { Client } from "../dist/index.js";
import { sign } from "./jwt.mjs";
import { CheckedWebSocket, violations } from "./schema.mjs";

export const SECRET = "sdk-test-secret-0123456789abcdef";
export const CLUSTER_SECRET = "sdk-cluster-secret";
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The ringcast binary: $RINGCAST_BIN, or target/debug/ringcast (built when missing). */
export function binary() {
  if (process.env.RINGCAST_BIN) return process.env.RINGCAST_BIN;
  const path = join(repoRoot, "target", "debug", "ringcast");
  if (!existsSync(path)) {
    execFileSync("cargo", ["build", "-p", "ringcast", "--bin", "ringcast"], { cwd: repoRoot, stdio: "inherit" });
  }
  return path;
}

export const token = (sub, options = {}) => sign(SECRET, sub, { name: sub[0].toUpperCase() + sub.slice(1), ...options });
export const adminToken = () => sign(SECRET, "root", { roles: ["admin"] });
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it is truthy or `ms` passed; returns the last value. */
export async function eventually(probe, ms = 15000, what = "condition") {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const handedOut = new Set();

/** A port free for TCP and UDP, below the ephemeral range (like tests/common/cluster.rs). */
export async function freePort() {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    const tcp = await new Promise((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (!tcp) continue;
    const udp = await new Promise((resolve) => {
      const socket = createSocket("udp4");
      socket.once("error", () => resolve(false));
      socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
    });
    if (!udp) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("no free port in 20000-32000");
}

/** Every process a test started, stopped at exit whatever happens. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
});

/** A `ringcast serve` process. */
export class Node {
  static async start(args = [], { id = "sdk-node" } = {}) {
    const all = ["serve", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--node-id", id];
    all.push("--rate-per-second", "10000", "--rate-burst", "10000", ...args);
    const env = { ...process.env, RINGCAST_LOG: process.env.RINGCAST_LOG ?? "warn" };
    delete env.RINGCAST_CONFIG;
    const child = spawn(binary(), all, { stdio: ["ignore", "pipe", "pipe"], env });
    running.add(child);
    const node = new Node(child, id, all);
    child.stderr.on("data", (chunk) => {
      node.stderr += chunk;
      if (node.stderr.length > 20000) node.stderr = node.stderr.slice(-10000);
    });
    node.addr = await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`ringcast ${id} did not start: ${node.stderr}`)), 15000);
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const match = out.match(/ringcast listening on (\S+)/);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once("exit", (code) => reject(new Error(`ringcast ${id} exited ${code}: ${node.stderr}`)));
    });
    node.stdout = "";
    child.stdout.on("data", (chunk) => (node.stdout += chunk));
    return node;
  }

  constructor(child, id, args) {
    this.child = child;
    this.id = id;
    this.args = args;
    this.stderr = "";
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited.then(() => running.delete(child));
  }

  get pid() {
    return this.child.pid;
  }

  get url() {
    return `ws://${this.addr}/v1/ws`;
  }

  get http() {
    return `http://${this.addr}`;
  }

  signal(name) {
    process.kill(this.pid, name);
  }

  /** SIGSTOP, and wait until every thread of the process is stopped (state T in /proc). */
  async freeze() {
    this.signal("SIGSTOP");
    const stopped = () =>
      readdirSync(`/proc/${this.pid}/task`).every((task) => {
        const stat = readFileSync(`/proc/${this.pid}/task/${task}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
      });
    await eventually(stopped, 5000, `${this.id} stopped`);
  }

  /** SIGTERM (a drain in a cluster) and wait for the exit. */
  async drain() {
    this.signal("SIGTERM");
    return this.exited;
  }

  async kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.signal("SIGKILL");
    return this.exited;
  }

  async get(path, headers = {}) {
    const response = await fetch(this.http + path, { headers });
    return { status: response.status, body: await response.text() };
  }

  async admin(path) {
    const response = await this.get(path, { authorization: `Bearer ${adminToken()}` });
    return { status: response.status, json: response.status === 200 ? JSON.parse(response.body) : response.body };
  }
}

/** A redis-server of the test's own on a loopback port, data in a temporary directory. */
export class Redis {
  static async start() {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "ringcast-sdk-redis-"));
    const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir], {
      stdio: "ignore",
    });
    running.add(child);
    const redis = new Redis(child, port, dir);
    await eventually(() => redis.ping(), 10000, `redis-server on ${port}`);
    return redis;
  }

  constructor(child, port, dir) {
    this.child = child;
    this.port = port;
    this.dir = dir;
    this.exited = new Promise((resolve) => child.once("exit", resolve));
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/`;
  }

  ping() {
    return new Promise((resolve) => {
      import("node:net").then(({ connect }) => {
        const socket = connect(this.port, "127.0.0.1");
        socket.once("error", () => resolve(false));
        socket.once("data", (data) => {
          socket.destroy();
          resolve(String(data).startsWith("+PONG"));
        });
        socket.write("PING\r\n");
      });
    });
  }

  async stop() {
    process.kill(this.child.pid, "SIGKILL");
    await this.exited;
    running.delete(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `ids.length` nodes seeded with each other, waited for until each is ready with the full ring. */
export class Cluster {
  static async start(ids = ["n1", "n2", "n3"], extra = []) {
    const ports = [];
    for (const _ of ids) ports.push(await freePort());
    const seeds = ports.map((port) => `127.0.0.1:${port}`).join(",");
    const nodes = await Promise.all(
      ids.map((id, i) =>
        Node.start(
          [
            "--cluster-listen", `127.0.0.1:${ports[i]}`,
            "--cluster-secret", CLUSTER_SECRET,
            "--seeds", seeds,
            "--drain-timeout-secs", "10",
            ...extra,
          ],
          { id },
        ),
      ),
    );
    const cluster = new Cluster(nodes);
    await cluster.settled(ids.length);
    return cluster;
  }

  constructor(nodes) {
    this.nodes = nodes;
  }

  node(id) {
    return this.nodes.find((node) => node.id === id);
  }

  /** Waits until every running node is ready with a ring of `expected` members. */
  async settled(expected, nodes = this.nodes) {
    for (const node of nodes) {
      await eventually(
        async () => {
          const ready = await node.get("/ready").catch(() => ({ status: 0 }));
          if (ready.status !== 200) return false;
          const view = await node.admin("/v1/cluster");
          return view.status === 200 && view.json.ring?.length === expected;
        },
        20000,
        `${node.id} ready with a ring of ${expected}`,
      );
    }
  }

  /** The node that owns `room` (it must have a member), as `GET /v1/rooms/{room}` tells. */
  async ownerOf(room, via = this.nodes[0]) {
    const answer = await via.admin(`/v1/rooms/${encodeURIComponent(room)}`);
    if (answer.status !== 200) throw new Error(`GET /v1/rooms/${room}: ${answer.status} ${answer.json}`);
    return answer.json.owner;
  }

  async stop() {
    await Promise.all(this.nodes.map((node) => node.kill()));
  }
}

/**
 * An SDK client of user `sub`, every frame recorded. Its WebSocket (the ws package) checks every
 * frame both ways against docs/protocol.schema.json; see {@link assertConformance}.
 */
export function client(urls, sub, options = {}) {
  const c = new Client(urls, { token: token(sub), WebSocket: CheckedWebSocket, ...options });
  c.frames = [];
  c.on("frame", (frame) => c.frames.push(frame));
  return c;
}

/** Fails when a frame of the checked clients disagreed with the protocol's schema. */
export function assertConformance(assert) {
  assert.deepEqual(violations, [], "frames that disagree with docs/protocol.schema.json");
}

/** Collects a room's events of `kind` into an array. */
export function collect(emitter, kind) {
  const items = [];
  emitter.on(kind, (item) => items.push(item));
  return items;
}
