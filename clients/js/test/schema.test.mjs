// docs/protocol.schema.json against the server: every request type of the schema is sent to a
// real 3-node cluster, and every reply and event the server sends is checked against the
// schema; every type of the schema must be seen (client, ack and server), and no frame may
// have a type the schema lacks. The examples of docs/protocol.md are checked too.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import WebSocket from "ws";
import { adminToken, Cluster, eventually, repoRoot, token } from "./harness.mjs";
import { CheckedWebSocket, checkRequest, checkServerFrame, schema, seen, violations } from "./schema.mjs";

/** A raw connection whose frames are checked; `req` resolves with the answer frame. */
async function connect(node, sub, { roles, inBand = false } = {}) {
  const url = inBand ? node.url : `${node.url}?token=${token(sub, { roles })}`;
  const ws = new CheckedWebSocket(url);
  ws.frames = [];
  ws.taken = new Set();
  let next = 0;
  ws.addEventListener("message", (event) => ws.frames.push(JSON.parse(String(event.data))));
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve);
    ws.addEventListener("error", reject);
  });
  ws.req = async (type, data) => {
    const op_id = `s${++next}`;
    ws.send(JSON.stringify(data === undefined ? { type, op_id } : { type, op_id, data }));
    return ws.wait((f) => f.op_id === op_id, `the answer to ${type}`);
  };
  ws.ok = async (type, data) => {
    const answer = await ws.req(type, data);
    assert.notEqual(answer.type, "error", `${type}: ${JSON.stringify(answer.data)}`);
    return answer.data;
  };
  /** The first frame (not taken before) matching `pred`. */
  ws.wait = (pred, what) =>
    eventually(
      () => {
        const index = ws.frames.findIndex((f, i) => !ws.taken.has(i) && pred(f));
        if (index < 0) return false;
        ws.taken.add(index);
        return ws.frames[index];
      },
      8000,
      `${sub}: ${what}`,
    );
  ws.event = (type, what = type) => ws.wait((f) => f.type === type && f.op_id === undefined, what);
  if (!inBand) await ws.event("connected");
  return ws;
}

async function post(node, path, body) {
  const response = await fetch(node.http + path, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken()}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, `POST ${path}: ${await response.text()}`);
}

let cluster;
after(async () => cluster?.stop());

test("every message type of the schema, sent to and answered by a real cluster", async () => {
  cluster = await Cluster.start(["p1", "p2", "p3"]);
  const [p1, p2, p3] = cluster.nodes;
  const alice = await connect(p1, "alice", { roles: ["moderator"] });
  const bob = await connect(p2, "bob");

  // Rooms and messages.
  await alice.ok("room.join", { room: "lobby" });
  const joined = await bob.ok("room.join", { room: "lobby" });
  await alice.event("member.joined");
  const attachments = [{ url: "https://cdn.example/a.png", name: "a.png", size: 3, mime: "image/png" }];
  const sent = await alice.ok("chat.send", { room: "lobby", text: "hi", attachments, client_id: "k1", meta: { x: 1 } });
  await bob.event("chat.message");
  await bob.ok("chat.send", { room: "lobby", text: "re", reply_to: sent.id });
  await alice.event("chat.message");
  const id = sent.id;
  await alice.ok("chat.edit", { room: "lobby", id, text: "hi!" });
  await bob.event("chat.edited");
  await alice.ok("chat.versions", { room: "lobby", id });
  await bob.ok("chat.react", { room: "lobby", id, emoji: "👍", add: true });
  await alice.event("chat.reaction");
  await bob.ok("chat.typing", { room: "lobby", typing: true });
  await alice.event("chat.typing.user");
  await bob.ok("chat.read", { room: "lobby", seq: 1 });
  await bob.ok("chat.delivered", { room: "lobby", seq: 1 });
  await alice.event("chat.receipt");
  await bob.ok("chat.upload", { room: "lobby", upload_id: "u1", name: "f.bin", size: 10, sent: 5 });
  await alice.event("chat.upload.progress");
  await alice.ok("room.members", { room: "lobby" });
  await alice.ok("room.history", { room: "lobby", limit: 10 });
  await alice.ok("chat.redact", { room: "lobby", id, reason: "spam" });
  await bob.event("chat.redacted");
  await alice.ok("chat.delete", { room: "lobby", id, mode: "soft" });
  await bob.event("chat.deleted");
  const history = await alice.ok("room.history", { room: "lobby", before_seq: joined.seq + 10 });
  assert.equal(history.messages[0].deleted, true);

  // Direct messages, presence, tokens.
  await alice.ok("dm.send", { to: "bob", text: "psst", client_id: "d1", attachments });
  await bob.event("dm.message");
  await alice.ok("presence.set", { status: "away", message: "lunch" });
  await bob.ok("presence.subscribe", { users: ["alice"] });
  await bob.event("presence.update");
  await bob.ok("presence.query", { users: ["alice", "nobody"] });
  await bob.ok("presence.unsubscribe", { users: ["alice"] });
  const pong = await bob.req("presence.ping");
  assert.equal(pong.type, "presence.pong");
  await bob.ok("auth.refresh", { token: token("bob") });
  const late = await connect(p3, "carol", { inBand: true });
  await late.ok("auth", { token: token("carol") });
  assert.equal(late.frames[0].type, "connected");

  // Calls.
  await alice.ok("call.offer", { to: "bob", call_id: "k1", sdp: "v=0", kind: "video" });
  await bob.event("call.incoming");
  await bob.ok("call.answer", { to: "alice", call_id: "k1", sdp: "v=0" });
  await alice.event("call.answer");
  await alice.ok("call.ice", { to: "bob", call_id: "k1", candidate: { candidate: "candidate:1", sdpMid: "0" } });
  await bob.event("call.ice");
  await alice.ok("call.hangup", { to: "bob", call_id: "k1" });
  await bob.event("call.ended");

  // Moderation.
  await alice.ok("room.join", { room: "private:club" });
  await bob.ok("room.request_join", { room: "private:club" });
  await alice.event("request.join.pending");
  await alice.ok("room.approve", { room: "private:club", user_id: "bob" });
  await bob.event("request.join.approved");
  await alice.ok("room.kick", { room: "private:club", user_id: "bob" });
  await bob.event("admin.kick");
  await bob.ok("room.request_join", { room: "private:club" });
  await alice.ok("room.deny", { room: "private:club", user_id: "bob" });
  await bob.event("request.join.denied");
  await alice.ok("room.ban", { room: "lobby", user_id: "bob", seconds: 60 });
  await bob.event("admin.ban");
  await alice.event("member.left");
  await alice.ok("room.leave", { room: "private:club" });
  // A type the schema lacks, sent past the check on purpose: the server refuses it.
  alice.opTypes.set("bad-1", "no.such.type");
  WebSocket.prototype.send.call(alice, JSON.stringify({ type: "no.such.type", op_id: "bad-1", data: {} }));
  const unknown = await alice.wait((f) => f.op_id === "bad-1", "the error of an unknown type");
  assert.deepEqual([unknown.type, unknown.data.code], ["error", "unknown_type"]);

  // A second device, groups changed by the admin API, a broadcast.
  const second = await connect(p3, "alice");
  await alice.event("device.online");
  second.close();
  await alice.event("device.offline");
  await post(p1, "/v1/users/bob/groups", { groups: ["eng"] });
  await bob.event("room.update");
  await post(p1, "/v1/broadcast", { type: "system.notice", data: { text: "maintenance at noon" } });
  await bob.event("system.notice");

  // room.reset: the owner of a room dies with its history (no Redis).
  let room;
  for (let k = 0; !room; k++) {
    await alice.ok("room.join", { room: `r-${k}` });
    if ((await cluster.ownerOf(`r-${k}`, p1)) === "p3") room = `r-${k}`;
  }
  await bob.ok("room.join", { room });
  await alice.ok("chat.send", { room, text: "before" });
  await bob.event("chat.message");
  await p3.kill();
  await cluster.settled(2, [p1, p2]);
  await alice.ok("chat.send", { room, text: "after" });
  await bob.event("room.reset");
  // reconnect: a drained node sends its clients elsewhere.
  p1.signal("SIGTERM");
  await alice.event("reconnect");
  bob.close();

  assert.deepEqual(violations, [], "frames that disagree with the schema");
  const missing = (section) => Object.keys(schema[section]).filter((type) => !seen[section].has(type));
  assert.deepEqual(missing("client"), [], "request types of the schema never sent");
  assert.deepEqual(missing("ack"), [], "ack types of the schema never answered");
  assert.deepEqual(missing("server"), [], "server types of the schema never seen");
});

test("the examples of docs/protocol.md agree with the schema", () => {
  const text = readFileSync(join(repoRoot, "docs", "protocol.md"), "utf8");
  const before = violations.length;
  let checked = 0;
  const opTypes = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith('{"type":') || line.includes("...")) continue;
    const frame = JSON.parse(line);
    // A request has no ts and is not a reply; `call.answer`/`call.ice` are both: data tells.
    const isReply = frame.type === "ack" || frame.type === "error" || frame.type === "presence.pong";
    const isRequest = !isReply && frame.ts === undefined && Object.hasOwn(schema.client, frame.type);
    if (isRequest) checkRequest(frame, opTypes);
    // A reply whose request is not shown (or elided) is checked as a frame only.
    else checkServerFrame(opTypes.has(frame.op_id) ? frame : { ...frame, op_id: undefined }, opTypes);
    checked += 1;
  }
  assert.ok(checked > 40, `only ${checked} examples found`);
  assert.deepEqual(violations.slice(before), [], "docs/protocol.md examples that disagree with the schema");
});
