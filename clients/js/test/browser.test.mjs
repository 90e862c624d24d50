// The demo page (/demo, served by ringcast with the SDK bundle) in headless Chromium: two
// pages, two users on different nodes of a 3-node cluster, chatting both ways with typing,
// presence, edits, reactions, deletes and DMs; one page's node is drained and the page
// recovers; the room's owner is killed (memory mode) and both pages show the reset.
// Screenshots and the first paint go to the test's output directory.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { chromium } from "playwright-core";
import { Cluster, repoRoot, token } from "./harness.mjs";

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
