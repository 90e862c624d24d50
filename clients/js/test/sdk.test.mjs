// The SDK against one real ringcast node: requests, events, errors, the queue, token refresh,
// timeouts and liveness.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { Client, RingcastError } from "../dist/index.js";
import { assertConformance, client, collect, eventually, Node, sleep, token } from "./harness.mjs";


after(() => assertConformance(assert));

describe("one node", () => {
  let node;
  const clients = [];
  const make = (sub, options) => {
    const c = client(node.url, sub, options);
    clients.push(c);
    return c;
  };

  before(async () => {
    node = await Node.start(["--presence-grace-ms", "200"]);
  });
  after(async () => {
    for (const c of clients) c.close();
    await node.kill();
  });

  test("chat both ways: messages, edits, deletes, reactions, typing, members, history", async () => {
    const alice = make("alice");
    const bob = make("bob");
    const connected = await alice.connect();
    assert.equal(connected.user_id, "alice");
    assert.equal(connected.reconnected, false);
    await bob.connect();
    const a = alice.room("lobby");
    const b = bob.room("lobby");
    assert.equal(alice.room("lobby"), a, "room() returns the same object");
    const joinedA = await a.join();
    assert.equal(joinedA.status, "joined");
    assert.equal(typeof joinedA.epoch, "string");
    const memberJoined = collect(a, "member.joined");
    await b.join();
    const messages = collect(b, "message");
    const edits = collect(b, "edit");
    const deletes = collect(b, "delete");
    const reactions = collect(a, "reaction");
    const typing = collect(a, "typing");
    const left = collect(a, "member.left");

    const ack = await a.send("hello", {
      attachments: [{ url: "https://cdn.example/a.png", name: "a.png", size: 3, mime: "image/png" }],
    });
    assert.equal(ack.seq, joinedA.seq + 1);
    const reply = await b.send("hi alice", { reply_to: ack.id });
    await eventually(() => messages.length === 1, 5000, "bob gets alice's message");
    assert.equal(messages[0].text, "hello");
    assert.equal(messages[0].from.user_id, "alice");
    assert.equal(messages[0].attachments[0].name, "a.png");
    assert.equal(memberJoined[0].user_id, "bob");

    await a.edit(ack.id, "hello, fixed");
    await b.react(ack.id, "👍");
    await b.typing(true);
    await eventually(() => edits.length === 1 && reactions.length === 1 && typing.length === 1, 5000, "events");
    assert.equal(edits[0].text, "hello, fixed");
    assert.equal(reactions[0].count, 1);
    assert.deepEqual([typing[0].user_id, typing[0].typing], ["bob", true]);

    const page = await a.history({ limit: 50 });
    assert.deepEqual(page.messages.map((m) => m.text), ["hello, fixed", "hi alice"]);
    assert.equal(page.messages[1].reply_to, ack.id);
    assert.deepEqual(page.messages[0].reactions, { "👍": 1 });
    const members = await a.members();
    assert.deepEqual(members.members.map((m) => m.user_id), ["alice", "bob"]);

    await a.delete(ack.id);
    await eventually(() => deletes.length === 1, 5000, "delete event");
    assert.equal(deletes[0].id, ack.id);
    await b.leave();
    await eventually(() => left.length === 1, 5000, "member.left");
    assert.equal(reply.seq, ack.seq + 1);
  });

  test("errors carry the protocol code; a retried client_id is applied once", async () => {
    // Deliberately bad requests: this client's frames are not checked against the schema.
    const carol = make("carol", { WebSocket });
    const dave = make("dave");
    await carol.connect();
    await dave.connect();
    await assert.rejects(carol.room("closed-room").send("x"), (err) => {
      assert.ok(err instanceof RingcastError);
      assert.equal(err.code, "forbidden");
      assert.equal(err.requestType, "chat.send");
      return true;
    });
    await assert.rejects(carol.request("room.history", { room: "bad room!" }), { code: "invalid_message" });
    const room = carol.room("idem");
    await room.join();
    const seen = collect(dave.room("idem"), "message");
    await dave.room("idem").join();
    const first = await room.send("once", { client_id: "fixed-key-1" });
    const again = await room.send("once", { client_id: "fixed-key-1" });
    assert.deepEqual(again, first, "the retry gets the first ack");
    await room.send("after");
    await eventually(() => seen.length === 2, 5000, "two messages");
    assert.deepEqual(seen.map((m) => m.text), ["once", "after"]);
  });

  test("direct messages and presence", async () => {
    const erin = make("erin");
    const frank = make("frank");
    await erin.connect();
    await frank.connect();
    const dms = collect(frank, "dm");
    const updates = collect(erin, "presence");
    await erin.presence.subscribe(["frank"]);
    const ack = await erin.dm("frank", "psst");
    await eventually(() => dms.length === 1, 5000, "dm");
    assert.equal(dms[0].id, ack.id);
    assert.equal(dms[0].from, "erin");
    const set = await frank.presence.set("away", "lunch");
    assert.equal(set.status, "away");
    await eventually(() => updates.some((u) => u.user_id === "frank" && u.status === "away"), 5000, "presence.update");
    const query = await erin.presence.query(["frank", "nobody"]);
    assert.deepEqual(query.users.map((u) => u.status), ["away", "offline"]);
  });

  test("requests made before connecting wait in a bounded queue and go out in order", async () => {
    const gina = make("gina", { maxQueue: 3 });
    const watcher = make("hank");
    await watcher.connect();
    const seen = collect(watcher.room("queued"), "message");
    await watcher.room("queued").join();
    const room = gina.room("queued");
    const joined = room.join();
    const sends = ["one", "two", "three"].map((text) => room.send(text));
    await assert.rejects(room.send("four"), { code: "queue_full" });
    await gina.connect();
    await joined;
    const acks = await Promise.all(sends);
    assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3]);
    await eventually(() => seen.length === 3, 5000, "three messages");
    assert.deepEqual(seen.map((m) => m.text), ["one", "two", "three"]);
  });

  test("a short-lived token is refreshed with auth.refresh before it expires", async () => {
    let calls = 0;
    const ivy = make("ivy", {
      token: token("ivy", { ttlSecs: 3 }),
      getToken: () => {
        calls += 1;
        return token("ivy", { ttlSecs: 3 });
      },
      refreshMarginMs: 1500,
    });
    const disconnects = collect(ivy, "disconnected");
    const first = await ivy.connect();
    await sleep(7000);
    assert.ok(calls >= 2, `getToken called ${calls} times`);
    assert.equal(disconnects.length, 0, "the connection was never closed (no 4003)");
    const refreshes = ivy.frames.filter((f) => f.type === "ack" && f.data?.expires_at);
    assert.ok(refreshes.length >= 2, "auth.refresh was acknowledged");
    assert.equal(ivy.info.conn_id, first.conn_id);
    await ivy.room("still").join();
  });

  test("an expired token: getToken gives a fresh one; without getToken the client stops", async () => {
    let calls = 0;
    const jack = make("jack", {
      token: token("jack", { ttlSecs: -60 }),
      getToken: () => {
        calls += 1;
        return token("jack");
      },
    });
    const disconnects = collect(jack, "disconnected");
    const connected = await jack.connect();
    assert.equal(connected.user_id, "jack");
    assert.equal(calls, 1);
    assert.equal(disconnects[0].code, 4001);

    const kate = new Client(node.url, { token: token("kate", { ttlSecs: -60 }), WebSocket });
    clients.push(kate);
    const errors = collect(kate, "error");
    await assert.rejects(kate.connect(), { code: "unauthorized" });
    assert.equal(kate.state, "closed");
    assert.equal(errors[0].code, "unauthorized");
    await assert.rejects(kate.room("x").join(), { code: "closed" });
  });
});

test("a client needs a token (or getToken) and a WebSocket; the errors say so", () => {
  assert.throws(() => new Client("ws://127.0.0.1:1/v1/ws", { WebSocket }), /token or getToken is needed/);
  assert.throws(() => new Client([], { token: "t", WebSocket }), /at least one URL/);
  if (!globalThis.WebSocket) {
    assert.throws(() => new Client("ws://127.0.0.1:1/v1/ws", { token: "t" }), /pass options.WebSocket/);
  }
});

describe("close codes", () => {
  test("an admin disconnect (1008) is followed by a reconnect after backoff, the room joined again", async () => {
    const node = await Node.start(["--admin-key", "sdk-admin-key"]);
    const mia = client(node.url, "mia", { backoff: { initialMs: 100, maxMs: 2000 } });
    // Another member keeps the room (and its history) while mia is away.
    const ned = client(node.url, "ned");
    try {
      await ned.connect();
      await ned.room("policy").join();
      const first = await mia.connect();
      const room = mia.room("policy");
      await room.join();
      await room.send("before");
      await mia.presence.set("busy", "in a meeting");
      const drops = collect(mia, "disconnected");
      const retries = collect(mia, "reconnecting");
      const joins = collect(room, "joined");
      const response = await fetch(`${node.http}/v1/connections/${first.conn_id}`, {
        method: "DELETE",
        headers: { authorization: "Bearer sdk-admin-key" },
      });
      assert.equal(response.status, 200);
      await eventually(() => joins.length === 1, 10000, "rejoined after the reconnect");
      assert.deepEqual([drops[0].code, drops[0].willReconnect], [1008, true]);
      assert.equal(retries[0].code, 1008);
      assert.ok(retries[0].delayMs < 800, "policy closes wait at least the fourth backoff step, at most its cap");
      assert.equal(joins[0].recovered, true, "the rejoin used since and recovered");
      assert.notEqual(mia.info.conn_id, first.conn_id);
      const statuses = () => mia.frames.filter((f) => f.type === "ack" && f.data?.status === "busy");
      await eventually(() => statuses().length === 2, 5000, "the manual status set again after the reconnect");
      assert.equal((await room.send("after")).seq, 2);
    } finally {
      mia.close();
      ned.close();
      await node.kill();
    }
  });
});

describe("a node that stops answering", () => {
  test("requests time out with a clear error; the dead connection is noticed and replaced", async () => {
    const node = await Node.start(["--ping-interval-secs", "1"]);
    const liam = client(node.url, "liam", { requestTimeoutMs: 1500, livenessGraceMs: 1000, connectTimeoutMs: 3000, backoff: { maxMs: 500 } });
    try {
      await liam.connect();
      const room = liam.room("frozen");
      await room.join();
      const disconnects = collect(liam, "disconnected");
      const connects = collect(liam, "connected");
      await node.freeze();
      const started = Date.now();
      await assert.rejects(room.send("into the void"), (err) => {
        assert.equal(err.code, "timeout");
        assert.equal(err.message, "chat.send: no answer within 1500 ms");
        return true;
      });
      // Silent for the ping interval (1 s), then the grace (1 s) after an app-level ping.
      await eventually(() => disconnects.length > 0, 6000, "liveness notices the silence");
      assert.ok(Date.now() - started < 6000);
      assert.match(disconnects[0].reason, /no answer from the server/);
      assert.equal(disconnects[0].willReconnect, true);
      const queued = room.send("after the thaw");
      node.signal("SIGCONT");
      await eventually(() => connects.length > 0, 15000, "reconnected after SIGCONT");
      const ack = await queued;
      assert.equal(ack.room, "frozen");
    } finally {
      liam.close();
      node.signal("SIGCONT");
      await node.kill();
    }
  });
});
