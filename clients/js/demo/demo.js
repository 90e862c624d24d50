// The ringcast demo chat, built on the SDK only (served by ringcast at /demo with the SDK
// bundle; no build step). Settings come from the URL fragment, which never reaches a server:
// #token=JWT&servers=ws://a/v1/ws,ws://b/v1/ws&room=lobby
import { Client } from "/demo/ringcast-client.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const ownServer = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
const servers = (params.get("servers") || ownServer).split(",").filter(Boolean);

const view = { client: null, me: null, rooms: new Map(), current: null, reconnects: 0, recoveries: 0, resets: 0 };
window.ringcastDemo = view;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function setCounter(id, value) {
  $(id).textContent = String(value);
}

function setState(state, detail = "") {
  $("conn").dataset.state = state;
  $("state").textContent = detail ? `${state} (${detail})` : state;
}

// ---- connection ---------------------------------------------------------------------------

function start(token) {
  $("login").hidden = true;
  $("app").hidden = false;
  const client = new Client(servers, { token });
  view.client = client;
  client.on("connected", (info) => {
    view.me = info.user_id;
    if (info.reconnected) setCounter("reconnects", ++view.reconnects);
    setState("connected");
    $("node").textContent = `node ${info.node_id}`;
    $("me").textContent = `you are ${info.user_id}`;
  });
  client.on("reconnecting", (event) => setState("reconnecting", `attempt ${event.attempt}, close ${event.code}`));
  client.on("disconnected", (event) => {
    if (!event.willReconnect) setState("closed", `close ${event.code}`);
  });
  client.on("error", (err) => console.warn("ringcast:", err.code, err.message));
  client.on("dm", (dm) => addDm(`${dm.from} → ${dm.to}`, dm.text, dm.offline));
  client.on("presence", (update) => {
    for (const room of view.rooms.values()) {
      const member = room.members.get(update.user_id);
      if (member) {
        member.status = update.status;
        member.message = update.message;
      }
    }
    renderMembers();
  });
  setState("connecting");
  client.connect().catch((err) => setState("closed", err.message));
  openRoom(params.get("room") || "lobby");
}

// ---- rooms --------------------------------------------------------------------------------

function openRoom(name) {
  let state = view.rooms.get(name);
  if (!state) {
    const room = view.client.room(name);
    // `era` counts resets: seqs start over in a new epoch, so messages sort by (era, seq).
    state = { name, room, messages: new Map(), order: [], typing: new Map(), members: new Map(), loaded: false, era: 0 };
    view.rooms.set(name, state);
    wireRoom(state);
    room.join().catch((err) => notice(state, `cannot join: ${err.message}`));
  }
  view.current = name;
  renderRooms();
  renderMessages();
  renderMembers();
  renderTyping();
}

function wireRoom(state) {
  const { room } = state;
  room.on("joined", async (ack) => {
    if (ack.recovered) setCounter("recoveries", ++view.recoveries);
    if (!state.loaded) {
      state.loaded = true;
      await loadHistory(state);
    }
    await loadMembers(state);
  });
  room.on("message", (message) => {
    addMessage(state, message);
    setTyping(state, message.from.user_id, false);
  });
  room.on("edit", (edit) => updateMessage(state, edit.id, (m) => Object.assign(m, { text: edit.text, version: edit.version })));
  room.on("delete", (del) => updateMessage(state, del.id, (m) => Object.assign(m, { deleted: true, text: "" })));
  room.on("redact", (red) => updateMessage(state, red.id, (m) => Object.assign(m, { redacted: true, text: "" })));
  room.on("reaction", (r) => updateMessage(state, r.id, (m) => (m.reactions = { ...m.reactions, [r.emoji]: r.count })));
  room.on("typing", (t) => setTyping(state, t.user_id, t.typing));
  room.on("member.joined", (m) => {
    state.members.set(m.user_id, { name: m.name, status: "online", message: null });
    view.client.presence.subscribe([m.user_id]).catch(() => {});
    if (view.current === state.name) renderMembers();
  });
  room.on("member.left", (m) => {
    state.members.delete(m.user_id);
    if (view.current === state.name) renderMembers();
  });
  room.on("reset", async (reset) => {
    setCounter("resets", ++view.resets);
    state.era += 1;
    notice(state, `history lost (${reset.reason}): earlier messages may be missing`, -1);
    await loadHistory(state);
  });
  room.on("kick", () => notice(state, "you were removed from the room"));
  room.on("ban", (ban) => notice(state, `you were banned${ban.until ? ` until ${ban.until}` : ""}`));
}

async function loadHistory(state) {
  const page = await state.room.history({ limit: 50 }).catch(() => null);
  if (!page) return;
  for (const message of page.messages) addMessage(state, message);
}

async function loadMembers(state) {
  const answer = await state.room.members().catch(() => null);
  if (!answer) return;
  state.members = new Map(answer.members.map((m) => [m.user_id, { name: m.name, status: m.status, message: null }]));
  const others = answer.members.map((m) => m.user_id).filter((id) => id !== view.me);
  if (others.length) await view.client.presence.subscribe(others).catch(() => {});
  if (view.current === state.name) renderMembers();
}

const ERA = 1e12;

function addMessage(state, message) {
  const known = state.messages.get(message.id);
  if (!known) state.order.push(message.id);
  state.messages.set(message.id, { sortKey: state.era * ERA + message.seq, ...known, ...message });
  state.order.sort((a, b) => state.messages.get(a).sortKey - state.messages.get(b).sortKey);
  if (view.current === state.name) renderMessages();
}

function updateMessage(state, id, change) {
  const message = state.messages.get(id);
  if (!message) return;
  change(message);
  if (view.current === state.name) renderMessages();
}

/** A line of the client's own in the room: after the last message, or `at` in the current era. */
function notice(state, text, at = state.room.seq + 0.5) {
  const id = `notice-${Date.now()}-${Math.random()}`;
  state.messages.set(id, { id, notice: true, text, sortKey: state.era * ERA + at });
  state.order.push(id);
  if (view.current === state.name) renderMessages();
}

function setTyping(state, user, typing) {
  clearTimeout(state.typing.get(user));
  if (typing) {
    // The server ends a typing:true after 6 s; this is a fallback if its end is missed.
    state.typing.set(user, setTimeout(() => setTyping(state, user, false), 8000));
  } else {
    state.typing.delete(user);
  }
  if (view.current === state.name) renderTyping();
}

// ---- rendering ----------------------------------------------------------------------------

function renderRooms() {
  $("rooms").replaceChildren(
    ...[...view.rooms.keys()].map((name) =>
      el("li", { textContent: name, "data-room": name, "aria-current": String(name === view.current), onclick: () => openRoom(name) }),
    ),
  );
  $("room-title").textContent = view.current ? `# ${view.current}` : "no room";
}

function renderMessages() {
  const state = view.rooms.get(view.current);
  if (!state) return;
  const list = $("messages");
  list.replaceChildren(...state.order.map((id) => renderMessage(state, state.messages.get(id))));
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

function renderMessage(state, m) {
  if (m.notice) return el("li", { className: "notice", textContent: m.text });
  const mine = m.from.user_id === view.me;
  const gone = m.deleted || m.redacted;
  const text = el("span", { className: "text", textContent: gone ? (m.redacted ? "message redacted" : "message deleted") : m.text });
  const reactions = el(
    "span",
    { className: "reactions" },
    ...Object.entries(gone ? {} : m.reactions ?? {})
      .filter(([, count]) => count > 0)
      .map(([emoji, count]) => el("button", { textContent: `${emoji} ${count}`, onclick: () => state.room.react(m.id, emoji).catch(() => {}) })),
  );
  const tools = el("span", { className: "tools" });
  if (!gone) {
    tools.append(el("button", { className: "react", textContent: "👍", title: "react", onclick: () => state.room.react(m.id, "👍").catch(() => {}) }));
    if (mine) {
      tools.append(el("button", { className: "edit", textContent: "edit", onclick: () => startEdit(state, m, text) }));
      tools.append(el("button", { className: "delete", textContent: "delete", onclick: () => state.room.delete(m.id).then(() => updateMessage(state, m.id, (x) => (x.deleted = true))).catch(() => {}) }));
    }
  }
  const edited = m.version > 1 && !gone ? " (edited)" : "";
  const time = m.ts ? new Date(m.ts).toLocaleTimeString() : "";
  return el(
    "li",
    { "data-id": m.id, "data-seq": String(m.seq), className: gone ? "deleted" : "" },
    el("span", { className: "from", textContent: m.from.name || m.from.user_id }),
    text,
    el("span", { className: "meta", textContent: `${time}${edited}` }),
    reactions,
    tools,
  );
}

function startEdit(state, m, span) {
  const input = el("input", { className: "edit-input", type: "text", value: m.text });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") renderMessages();
    if (event.key !== "Enter") return;
    const text = input.value.trim();
    if (!text) return;
    state.room
      .edit(m.id, text)
      .then((ack) => updateMessage(state, m.id, (x) => Object.assign(x, { text, version: ack.version })))
      .catch((err) => notice(state, `edit failed: ${err.message}`));
  });
  span.replaceWith(input);
  input.focus();
}

function renderMembers() {
  const state = view.rooms.get(view.current);
  if (!state) return;
  $("members").replaceChildren(
    ...[...state.members.entries()].map(([id, member]) => {
      const detail = member.status === "online" ? "" : ` (${member.status}${member.message ? `: ${member.message}` : ""})`;
      return el("li", { "data-user": id, "data-status": member.status, textContent: `${member.name}${id === view.me ? " (you)" : ""}${detail}` });
    }),
  );
}

function renderTyping() {
  const state = view.rooms.get(view.current);
  const users = state ? [...state.typing.keys()].filter((id) => id !== view.me) : [];
  const names = users.map((id) => state.members.get(id)?.name ?? id);
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

function addDm(who, text, offline) {
  $("dms").append(el("li", { textContent: `${who}: ${text}${offline ? " (while offline)" : ""}` }));
}

// ---- input --------------------------------------------------------------------------------

let typingSentAt = 0;
let typingTimer;
$("text").addEventListener("input", () => {
  const state = view.rooms.get(view.current);
  if (!state) return;
  if (Date.now() - typingSentAt > 3000) {
    typingSentAt = Date.now();
    state.room.typing(true).catch(() => {});
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    typingSentAt = 0;
    state.room.typing(false).catch(() => {});
  }, 4000);
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const state = view.rooms.get(view.current);
  const text = $("text").value.trim();
  if (!state || !text) return;
  $("text").value = "";
  clearTimeout(typingTimer);
  if (typingSentAt) state.room.typing(false).catch(() => {});
  typingSentAt = 0;
  state.room
    .send(text)
    .then((ack) =>
      addMessage(state, { ...ack, from: { user_id: view.me, name: state.members.get(view.me)?.name ?? view.me }, text, attachments: [], reply_to: null, thread_root: null }),
    )
    .catch((err) => notice(state, `not sent: ${err.message}`));
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("join-room").value.trim();
  if (name) openRoom(name);
  $("join-room").value = "";
});

$("dm-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const to = $("dm-to").value.trim();
  const text = $("dm-text").value.trim();
  if (!to || !text) return;
  $("dm-text").value = "";
  view.client
    .dm(to, text)
    .then(() => addDm(`you → ${to}`, text, false))
    .catch((err) => addDm(`not sent to ${to}`, err.message, false));
});

$("presence").addEventListener("change", (event) => view.client?.presence.set(event.target.value).catch(() => {}));

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("login-token").value.trim();
  sessionStorage.setItem("ringcast-token", token);
  start(token);
});

const token = params.get("token") || sessionStorage.getItem("ringcast-token");
if (token) start(token);
else $("login").hidden = false;
