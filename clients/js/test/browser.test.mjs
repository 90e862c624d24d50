// The demo page (/demo, served by ringcast with the SDK bundle) in headless Chromium: two
// pages, two users on different nodes of a 3-node cluster, chatting both ways with typing,
// presence, edits, reactions, deletes and DMs; one page's node is drained and the page
// recovers; the room's owner is killed (memory mode) and both pages show the reset.
// Screenshots and the first paint go to the test's output directory. Then Chromium's own
// WebSocket against a node with --compression on: it offers permessage-deflate, the node
// accepts, and compressed messages flow both ways.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { chromium } from "playwright-core";
import { Cluster, Node, repoRoot, token } from "./harness.mjs";

const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const outDir = process.env.RINGCAST_TEST_OUTPUT ?? join(repoRoot, "clients", "js", "test-output", "browser");

let cluster;
let context;
let profile;
after(async () => {
  await context?.close();
  await cluster?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("two users chat through the demo page on two nodes; a page recovers after its node is drained", async () => {
  mkdirSync(outDir, { recursive: true });
  cluster = await Cluster.start(["d1", "d2", "d3"], ["--demo", "true"]);
  const [d1, d2, d3] = cluster.nodes;
  profile = mkdtempSync(join(tmpdir(), "ringcast-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1100, height: 640 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const open = async (node, sub, servers) => {
    const page = await context.newPage();
    page.on("pageerror", (err) => console.error(`${sub} page error: ${err.message}`));
    const fragment = new URLSearchParams({ token: token(sub), servers: servers.map((n) => n.url).join(","), room: "lobby" });
    await page.goto(`${node.http}/demo#${fragment}`);
    return page;
  };
  const alice = await open(d1, "alice", [d1, d2, d3]);
  const bob = await open(d2, "bob", [d2, d3, d1]);
  const connected = (page) => page.locator('#conn[data-state="connected"]').waitFor();
  await Promise.all([connected(alice), connected(bob)]);
  assert.equal(await alice.locator("#node").textContent(), "node d1");
  assert.equal(await bob.locator("#node").textContent(), "node d2");

  // The first paint of the page (Chromium's performance entries).
  const paints = await alice.evaluate(() =>
    Object.fromEntries(performance.getEntriesByType("paint").map((entry) => [entry.name, Math.round(entry.startTime)])),
  );
  const nav = await alice.evaluate(() => {
    const [entry] = performance.getEntriesByType("navigation");
    return { domContentLoaded: Math.round(entry.domContentLoadedEventEnd), load: Math.round(entry.loadEventEnd) };
  });
  writeFileSync(join(outDir, "paint.json"), JSON.stringify({ ...paints, ...nav }, null, 2));
  console.log(`demo page: ${JSON.stringify({ ...paints, ...nav })} (ms after navigation start)`);
  assert.ok(paints["first-contentful-paint"] > 0, "the page painted");

  // Presence: each sees the other in the room.
  const member = (page, user, status) => page.locator(`#members li[data-user="${user}"][data-status="${status}"]`);
  await member(alice, "bob", "online").waitFor();
  await member(bob, "alice", "online").waitFor();

  // Typing, then the message, both ways.
  await alice.locator("#text").pressSequentially("hello bob", { delay: 10 });
  await bob.locator("#typing", { hasText: "Alice is typing" }).waitFor();
  await alice.locator("#text").press("Enter");
  const message = (page, text) => page.locator("#messages li", { hasText: text });
  await message(bob, "hello bob").waitFor();
  await bob.locator("#typing").filter({ hasText: /^$/ }).waitFor();
  await bob.locator("#text").fill("hi alice");
  await bob.locator("#send").click();
  await message(alice, "hi alice").waitFor();

  // Presence status, edit, reaction, delete.
  await bob.locator("#presence").selectOption("away");
  await member(alice, "bob", "away").waitFor();
  const mine = message(alice, "hello bob");
  await mine.hover();
  await mine.locator("button.edit").click();
  await alice.locator(".edit-input").fill("hello bob, edited");
  await alice.locator(".edit-input").press("Enter");
  await bob.locator("#messages li", { hasText: "hello bob, edited" }).filter({ hasText: "(edited)" }).waitFor();
  const theirs = message(bob, "hello bob, edited");
  await theirs.hover();
  await theirs.locator("button.react").click();
  await alice.locator("#messages li .reactions button", { hasText: "👍 1" }).waitFor();
  await message(alice, "hi alice").waitFor();

  // A direct message.
  await bob.locator("#dm-to").fill("alice");
  await bob.locator("#dm-text").fill("psst");
  await bob.locator("#dm-send").click();
  await alice.locator("#dms li", { hasText: "bob → alice: psst" }).waitFor();

  // Drain alice's node: the page reconnects elsewhere and recovers the room.
  await alice.screenshot({ path: join(outDir, "alice-before-drain.png") });
  d1.signal("SIGTERM");
  await bob.locator("#text").fill("while you were away");
  await bob.locator("#send").click();
  await connected(alice);
  await alice.locator("#reconnects", { hasText: "1" }).waitFor();
  await alice.locator("#recoveries", { hasText: "1" }).waitFor();
  assert.notEqual(await alice.locator("#node").textContent(), "node d1");
  await message(alice, "while you were away").waitFor();
  await alice.locator("#text").fill("back again");
  await alice.locator("#text").press("Enter");
  await message(bob, "back again").waitFor();

  // Alice deletes her first message; bob sees the tombstone.
  const edited = message(alice, "hello bob, edited");
  await edited.hover();
  await edited.locator("button.delete").click();
  await bob.locator("#messages li.deleted", { hasText: "message deleted" }).waitFor();
  // Alice's page shows it once her delete is acknowledged (which may come after bob's event).
  await alice.locator("#messages li.deleted", { hasText: "message deleted" }).waitFor();
  assert.equal(await alice.locator("#resets").textContent(), "0");
  // Each message once on each page.
  const texts = async (page) => (await page.locator("#messages li .text").allTextContents()).filter((t) => t !== "message deleted");
  assert.deepEqual(await texts(alice), ["hi alice", "while you were away", "back again"]);
  assert.deepEqual(await texts(bob), ["hi alice", "while you were away", "back again"]);

  // Memory mode: the room's owner dies with its history; both pages show the reset and go on.
  const owner = cluster.node(await cluster.ownerOf("lobby", d2));
  await owner.kill();
  const alive = cluster.nodes.filter((n) => n !== d1 && n !== owner);
  await cluster.settled(1, alive);
  await connected(alice);
  await connected(bob);
  await bob.locator("#text").fill("after the reset");
  await bob.locator("#send").click();
  for (const page of [alice, bob]) {
    await page.locator("#resets", { hasText: "1" }).waitFor();
    await page.locator("#messages li.notice", { hasText: "history lost" }).waitFor();
  }
  await message(alice, "after the reset").waitFor();

  for (const [name, page] of [["alice", alice], ["bob", bob]]) {
    const path = join(outDir, `${name}.png`);
    await page.screenshot({ path });
    assert.ok(statSync(path).size > 1000, `${path} written`);
  }
  console.log(`screenshots in ${outDir}`);
});

/** Two WebSockets of the page: each joins `room`, then a long message goes each way. */
async function chatInPage(page, url, tokens, room) {
  return page.evaluate(
    async ({ url, tokens, room }) => {
      const open = (token) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`${url}?token=${token}`);
          const frames = [];
          let waiting = null;
          ws.onmessage = (event) => {
            frames.push(JSON.parse(event.data));
            waiting?.();
          };
          ws.next = async (predicate) => {
            for (;;) {
              const index = frames.findIndex(predicate);
              if (index >= 0) return frames.splice(index, 1)[0];
              await new Promise((wake, fail) => {
                waiting = wake;
                setTimeout(() => fail(new Error("no frame within 5 s")), 5000);
              });
            }
          };
          ws.onopen = () => resolve(ws);
          ws.onerror = () => reject(new Error("websocket error"));
        });
      const [a, b] = await Promise.all(tokens.map(open));
      for (const ws of [a, b]) {
        await ws.next((frame) => frame.type === "connected");
        ws.send(JSON.stringify({ type: "room.join", op_id: "j", data: { room } }));
        await ws.next((frame) => frame.type === "ack" && frame.op_id === "j");
      }
      const received = [];
      for (const [from, to] of [
        [a, b],
        [b, a],
      ]) {
        const text = "compress me please ".repeat(120) + received.length;
        from.send(JSON.stringify({ type: "chat.send", op_id: "s", data: { room, text } }));
        const message = await to.next((frame) => frame.type === "chat.message");
        received.push(message.data.text === text);
      }
      const extensions = [a.extensions, b.extensions];
      a.close();
      b.close();
      return { extensions, received };
    },
    { url, tokens, room },
  );
}

test("Chromium negotiates permessage-deflate when the node has compression on, and messages flow", async () => {
  const on = await Node.start(["--compression", "on"], { id: "deflate-on" });
  const off = await Node.start([], { id: "deflate-off" });
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  try {
    const page = await browser.newPage();
    await page.goto(`${on.http}/health`);
    const compressed = await chatInPage(page, on.url, [token("alice"), token("bob")], "deflate");
    assert.deepEqual(compressed.received, [true, true]);
    for (const extensions of compressed.extensions) {
      assert.equal(extensions, "permessage-deflate; server_no_context_takeover");
    }
    const metrics = (await on.get("/metrics")).body;
    const value = (name) => Number(metrics.match(new RegExp(`^${name} (\\d+)`, "m"))?.[1] ?? 0);
    assert.ok(value("ringcast_frames_inflated_total") >= 2, "the node inflated Chromium's compressed messages");
    assert.ok(value("ringcast_frames_compressed_total") >= 2, "the node compressed the deliveries");
    const plain = await chatInPage(page, off.url, [token("alice"), token("bob")], "plain");
    assert.deepEqual(plain, { extensions: ["", ""], received: [true, true] });
  } finally {
    await browser.close();
    await on.kill();
    await off.kill();
  }
});
