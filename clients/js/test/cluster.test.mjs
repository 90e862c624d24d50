// The SDK against a real 3-node cluster: the node a client is connected to is drained, another
// is SIGKILLed, while both clients send and receive. Over Redis nothing acknowledged is lost
// or repeated; in memory the lost history is announced as the room's `reset`.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { assertConformance, client, Cluster, collect, eventually, Redis, sleep } from "./harness.mjs";

/** Room names whose owner (on the full ring) is each of `owners`, found by joining probes. */
async function roomsOwnedBy(cluster, owners, prefix) {
  const via = cluster.nodes[1];
  const probe = client(via.url, "probe");
  await probe.connect();
  const found = {};
  for (let k = 0; Object.keys(found).length < owners.length && k < 200; k++) {
    const name = `${prefix}-${k}`;
    await probe.room(name).join();
    const owner = await cluster.ownerOf(name, via);
    if (owners.includes(owner) && !found[owner]) found[owner] = name;
    await probe.room(name).leave();
  }
  probe.close();
  assert.equal(Object.keys(found).length, owners.length, `rooms owned by ${owners}`);
  return found;
}

/** Sends `${tag}-${i}` round-robin over `rooms` until `stop()` is true; records acks and failures. */
function sendLoop(c, rooms, tag, state) {
  const acked = Object.fromEntries(rooms.map((room) => [room, []]));
  const failed = [];
  const done = (async () => {
    for (let i = 0; !state.stop; i++) {
      const room = rooms[i % rooms.length];
      const text = `${tag}-${i}`;
      try {
        const ack = await c.room(room).send(text);
        acked[room].push({ text, seq: ack.seq, id: ack.id });
      } catch (err) {
        failed.push(`${text}: ${err.code} ${err.message}`);
      }
      await sleep(15);
    }
  })();
  return { acked, failed, done };
}

/** Every acknowledged message of `sender` reached `receiver` exactly once, in order. */
function assertExactlyOnceInOrder(received, acked, what) {
  for (const [room, list] of Object.entries(acked)) {
    const got = received[room];
    const ids = got.map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, `${what} ${room}: a message arrived twice`);
    const ackedTexts = new Set(list.map((a) => a.text));
    const gotAcked = got.filter((m) => ackedTexts.has(m.text)).map((m) => m.text);
    assert.deepEqual(gotAcked, list.map((a) => a.text), `${what} ${room}: acknowledged messages in order, each once`);
  }
}

function record(c, rooms, fromUser) {
  const received = {};
  for (const room of rooms) {
    received[room] = [];
    c.room(room).on("message", (m) => {
      if (m.from.user_id === fromUser) received[room].push(m);
    });
  }
  return received;
}


after(() => assertConformance(assert));

describe("a 3-node cluster over Redis", () => {
  let cluster;
  let redis;
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  test("drain of the sender's node, then SIGKILL of another: every acked message once, in order", async () => {
    redis = await Redis.start();
    cluster = await Cluster.start(["n1", "n2", "n3"], ["--redis-url", redis.url]);
    const [n1, n2, n3] = cluster.nodes;
    // One room moves with the drain of n1, the other fails over when n3 is killed.
    const owned = await roomsOwnedBy(cluster, ["n1", "n3"], "fo");
    const rooms = [owned.n1, owned.n3];
    const sender = client([n1.url, n2.url, n3.url], "sam");
    const receiver = client([n2.url, n3.url, n1.url], "rita");
    const senderConnects = collect(sender, "connected");
    const senderDrops = collect(sender, "disconnected");
    const senderRetries = collect(sender, "reconnecting");
    const resets = [...collect(sender, "error"), ...collect(receiver, "error")];
    assert.equal((await sender.connect()).node_id, "n1");
    assert.equal((await receiver.connect()).node_id, "n2");
    const atReceiver = record(receiver, rooms, "sam");
    const atSender = record(sender, rooms, "rita");
    const roomResets = [];
    for (const room of rooms) {
      await sender.room(room).join();
      await receiver.room(room).join();
      for (const c of [sender, receiver]) c.room(room).on("reset", (r) => roomResets.push(r));
    }

    const state = { stop: false };
    const fromSam = sendLoop(sender, rooms, "sam", state);
    const fromRita = sendLoop(receiver, rooms, "rita", state);
    await sleep(500);
    n1.signal("SIGTERM");
    await eventually(() => senderConnects.length === 2, 20000, "the sender reconnects after the drain");
    assert.equal(senderDrops[0].code, 1012, "a drain closes with 1012");
    const told = sender.frames.find((f) => f.type === "reconnect");
    assert.equal(told?.data.reason, "drain");
    assert.equal(senderRetries[0].delayMs, told.data.after_ms, "the reconnect waits the after_ms the server gave");
    assert.equal(senderRetries[0].url, n2.url, "to the next node");
    assert.notEqual(senderConnects[1].node_id, "n1");
    await n1.exited;
    await sleep(500);
    await n3.kill();
    await cluster.settled(1, [n2]);
    await sleep(1500);
    state.stop = true;
    await Promise.all([fromSam.done, fromRita.done]);

    const total = (acked) => Object.values(acked).reduce((sum, list) => sum + list.length, 0);
    assert.ok(total(fromSam.acked) > 20 && total(fromRita.acked) > 20, "both kept sending");
    await eventually(
      () =>
        rooms.every(
          (room) =>
            atReceiver[room].length >= fromSam.acked[room].length && atSender[room].length >= fromRita.acked[room].length,
        ),
      15000,
      "every acknowledged message arrives",
    );
    await sleep(300);
    assertExactlyOnceInOrder(atReceiver, fromSam.acked, "rita got from sam");
    assertExactlyOnceInOrder(atSender, fromRita.acked, "sam got from rita");
    assert.deepEqual(roomResets, [], "over Redis a failover keeps the history: no reset");
    assert.deepEqual(resets, []);
    console.log(
      `acked: sam ${total(fromSam.acked)}, rita ${total(fromRita.acked)}; failed: ${[...fromSam.failed, ...fromRita.failed].join("; ") || "none"}`,
    );
    sender.close();
    receiver.close();
  });
});

describe("a 3-node cluster in memory", () => {
  let cluster;
  after(async () => {
    await cluster?.stop();
  });

  test("SIGKILL of a room's owner raises the room's reset, then messages continue", async () => {
    cluster = await Cluster.start(["m1", "m2", "m3"]);
    const [m1, m2, m3] = cluster.nodes;
    const { m3: room } = await roomsOwnedBy(cluster, ["m3"], "mem");
    const reader = client([m1.url, m2.url], "rosa");
    const writer = client([m2.url, m1.url], "walt");
    // On the owner itself: it reconnects elsewhere, and its rejoin cannot recover.
    const onOwner = client([m3.url, m1.url], "olga", { backoff: { maxMs: 500 } });
    await reader.connect();
    await writer.connect();
    assert.equal((await onOwner.connect()).node_id, "m3");
    await reader.room(room).join();
    await writer.room(room).join();
    await onOwner.room(room).join();
    const ownerResets = collect(onOwner.room(room), "reset");
    const messages = collect(reader.room(room), "message");
    const resets = collect(reader.room(room), "reset");
    const writerResets = collect(writer.room(room), "reset");
    for (const text of ["a", "b", "c"]) await writer.room(room).send(text);
    await eventually(() => messages.length === 3, 5000, "three messages before the kill");
    await m3.kill();
    await cluster.settled(2, [m1, m2]);
    const ack = await writer.room(room).send("after the kill");
    await eventually(() => resets.length === 1 && messages.length === 4, 10000, "reset, then the new message");
    assert.equal(resets[0].reason, "owner_lost");
    assert.equal(resets[0].room, room);
    assert.notEqual(resets[0].epoch, undefined);
    assert.equal(messages[3].text, "after the kill");
    assert.equal(messages[3].seq, ack.seq);
    assert.equal(messages[3].seq, resets[0].seq + 1, "the new epoch continues after the reset's seq");
    assert.equal(writerResets.length, 1);
    await eventually(() => ownerResets.length === 1, 15000, "the owner's client rejoins elsewhere");
    assert.equal(ownerResets[0].reason, "not_recovered", "its since (the old epoch) cannot be recovered");
    assert.equal(onOwner.room(room).epoch, resets[0].epoch, "it is on the new epoch");
    reader.close();
    writer.close();
    onOwner.close();
  });
});
