// src/emitter.ts
var Emitter = class {
  constructor() {
    this.handlers = /* @__PURE__ */ new Map();
  }
  /** Adds a handler; returns a function that removes it. */
  on(event, handler) {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => this.off(event, handler);
  }
  /** Like `on`, removed after its first call. */
  once(event, handler) {
    const off = this.on(event, (value) => {
      off();
      handler(value);
    });
    return off;
  }
  off(event, handler) {
    this.handlers.get(event)?.delete(handler);
  }
  emit(event, value) {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        handler(value);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
};

// src/errors.ts
var RingcastError = class extends Error {
  constructor(code, message, requestType) {
    super(requestType ? `${requestType}: ${message}` : message);
    this.name = "RingcastError";
    this.code = code;
    this.requestType = requestType;
  }
};

// src/ids.ts
var counter = 0;
var session = Math.random().toString(36).slice(2, 10);
function newClientId() {
  return `${session}-${Date.now().toString(36)}-${(++counter).toString(36)}`;
}

// src/room.ts
var EVENTS = {
  "chat.edited": "edit",
  "chat.deleted": "delete",
  "chat.redacted": "redact",
  "chat.reaction": "reaction",
  "chat.typing.user": "typing",
  "chat.receipt": "receipt",
  "chat.upload.progress": "upload",
  "member.joined": "member.joined",
  "member.left": "member.left",
  "admin.kick": "kick",
  "admin.ban": "ban",
  "room.update": "update",
  "request.join.pending": "join.pending"
};
var sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
var Room = class extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    /** The last seq seen (messages, own sends, join acks). */
    this.seq = 0;
    /** True when the room should be joined (again after every reconnect). */
    this.wanted = false;
    /** True while the current connection is in the room. */
    this.joined = false;
    this.joining = false;
    this.waiters = [];
  }
  /**
   * Joins the room and resolves with the ack `{room, status, seq, epoch, recovered?}`. The room
   * is joined again after every reconnect, with `since` = the last seq seen, until `leave()`.
   */
  join() {
    if (this.client.state === "closed") {
      return Promise.reject(new RingcastError("closed", "client closed", "room.join"));
    }
    this.wanted = true;
    const promise = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.client.isReady && !this.joining) void this.rejoin(this.client.currentGeneration);
    return promise;
  }
  /** Leaves the room; it is not joined again on reconnect. */
  async leave() {
    this.wanted = false;
    this.joined = false;
    this.epoch = void 0;
    this.seq = 0;
    return this.client.request("room.leave", { room: this.name });
  }
  /** Sends a message; resolves with the ack `{room, id, seq, ts}`. Sent once even if retried. */
  async send(text, options = {}) {
    const data = { room: this.name, text, client_id: options.client_id ?? newClientId() };
    if (options.attachments) data.attachments = options.attachments;
    if (options.reply_to) data.reply_to = options.reply_to;
    if (options.meta) data.meta = options.meta;
    const ack = await this.client.request("chat.send", data);
    if (this.epoch !== void 0 && ack.seq > this.seq) this.seq = ack.seq;
    return ack;
  }
  /** Stored messages, newest last: `{room, messages}`. */
  history(options = {}) {
    return this.client.request("room.history", { room: this.name, ...options });
  }
  members() {
    return this.client.request("room.members", { room: this.name });
  }
  edit(id, text) {
    return this.client.request("chat.edit", { room: this.name, id, text });
  }
  versions(id) {
    return this.client.request("chat.versions", { room: this.name, id });
  }
  delete(id, mode = "soft") {
    return this.client.request("chat.delete", { room: this.name, id, mode });
  }
  redact(id, reason) {
    return this.client.request("chat.redact", reason ? { room: this.name, id, reason } : { room: this.name, id });
  }
  react(id, emoji, add = true) {
    return this.client.request("chat.react", { room: this.name, id, emoji, add });
  }
  typing(typing = true) {
    return this.client.request("chat.typing", { room: this.name, typing });
  }
  read(seq) {
    return this.client.request("chat.read", { room: this.name, seq });
  }
  /** @internal Joins (again) on the connection `generation`, with `since` when the room has a position. */
  async rejoin(generation) {
    if (this.joining) return;
    this.joining = true;
    try {
      for (let attempt = 0; ; attempt++) {
        const since = this.epoch !== void 0 ? { seq: this.seq, epoch: this.epoch } : void 0;
        try {
          const ack = await this.client.requestNow("room.join", since ? { room: this.name, since } : { room: this.name });
          if (generation !== this.client.currentGeneration) return;
          this.onJoined(ack);
          for (const waiter of this.waiters.splice(0)) waiter.resolve(ack);
          return;
        } catch (err) {
          if (generation !== this.client.currentGeneration) return;
          const error = err;
          if ((error.code === "unavailable" || error.code === "timeout") && attempt < 5) {
            await sleep(250 * 2 ** attempt);
            if (generation !== this.client.currentGeneration) return;
            continue;
          }
          this.wanted = false;
          const waiters = this.waiters.splice(0);
          for (const waiter of waiters) waiter.reject(error);
          if (waiters.length === 0) this.emit("error", error);
          return;
        }
      }
    } finally {
      this.joining = false;
    }
  }
  /** @internal True while a join is on its way. */
  get isJoining() {
    return this.joining;
  }
  /** @internal The client stopped: joins waiting for a connection fail with its reason. */
  stopped(err) {
    this.joined = false;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new RingcastError(err.code, err.message, "room.join"));
  }
  /** @internal The socket closed: the room is not joined until the next connection's rejoin. */
  disconnected() {
    this.joined = false;
  }
  onJoined(ack) {
    this.joined = true;
    const known = this.epoch !== void 0;
    if (known && (ack.recovered === false || ack.epoch !== this.epoch)) {
      this.epoch = ack.epoch;
      this.seq = ack.seq;
      this.emit("reset", { room: this.name, epoch: ack.epoch, seq: ack.seq, reason: "not_recovered" });
    } else {
      this.epoch = ack.epoch;
      this.seq = known ? Math.max(this.seq, ack.seq) : ack.seq;
    }
    this.emit("joined", ack);
  }
  /** @internal A server frame about this room. */
  onEvent(type, data) {
    if (type === "chat.message") {
      const message = data;
      if (this.epoch !== void 0 && message.seq <= this.seq) return;
      this.seq = message.seq;
      this.emit("message", message);
      return;
    }
    if (type === "room.reset") {
      this.epoch = data.epoch;
      this.seq = data.seq;
      this.emit("reset", { room: this.name, epoch: data.epoch, seq: data.seq, reason: data.reason });
      return;
    }
    if (type === "admin.kick" || type === "admin.ban") {
      this.wanted = false;
      this.joined = false;
    }
    const event = EVENTS[type];
    if (event) this.emit(event, data);
  }
};

// src/client.ts
var REPEATABLE = /* @__PURE__ */ new Set([
  "chat.send",
  "dm.send",
  "chat.react",
  "chat.delete",
  "chat.read",
  "chat.delivered",
  "chat.versions",
  "room.history",
  "room.members",
  "room.leave",
  "presence.set",
  "presence.query",
  "presence.subscribe",
  "presence.unsubscribe"
]);
var Client = class extends Emitter {
  constructor(url, options = {}) {
    super();
    this.state = "idle";
    /** Incremented for each socket; events of an older socket are ignored. */
    this.generation = 0;
    this.urlIndex = 0;
    this.attempt = 0;
    this.connectedAt = 0;
    this.everConnected = false;
    /** True once the rooms are joined again after `connected`: requests go out directly. */
    this.ready = false;
    this.order = 0;
    this.opCounter = 0;
    this.pending = /* @__PURE__ */ new Map();
    this.queue = [];
    this.rooms = /* @__PURE__ */ new Map();
    this.presenceSubs = /* @__PURE__ */ new Set();
    this.lastFrameAt = 0;
    this.skewMs = 0;
    this.timers = {};
    this.waiters = [];
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new TypeError("ringcast: at least one URL is needed");
    if (!options.token && !options.getToken) throw new TypeError("ringcast: token or getToken is needed");
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (!WS) throw new TypeError("ringcast: no global WebSocket: pass options.WebSocket (for example the ws package)");
    this.WS = WS;
    this.token = options.token;
    this.getToken = options.getToken;
    this.opts = {
      requestTimeoutMs: options.requestTimeoutMs ?? 1e4,
      connectTimeoutMs: options.connectTimeoutMs ?? 1e4,
      reconnect: options.reconnect ?? true,
      initialMs: options.backoff?.initialMs ?? 250,
      maxMs: options.backoff?.maxMs ?? 1e4,
      maxQueue: options.maxQueue ?? 1e3,
      refreshMarginMs: options.refreshMarginMs ?? 3e4,
      livenessGraceMs: options.livenessGraceMs ?? 5e3,
      retryUnavailable: options.retryUnavailable ?? 5
    };
    this.presence = {
      set: (status, message) => {
        const data = message === void 0 ? { status } : { status, message };
        this.presenceStatus = status === "online" && message === void 0 ? void 0 : data;
        return this.request("presence.set", data);
      },
      subscribe: (users) => {
        users.forEach((user) => this.presenceSubs.add(user));
        return this.request("presence.subscribe", { users });
      },
      unsubscribe: (users) => {
        users.forEach((user) => this.presenceSubs.delete(user));
        return this.request("presence.unsubscribe", { users });
      },
      query: (users) => this.request("presence.query", { users })
    };
  }
  /** Connects (if not connected yet); resolves on `connected`, rejects when the client stops. */
  connect() {
    if (this.state === "connected" && this.info) {
      return Promise.resolve({ ...this.info, reconnected: this.everConnected, url: this.url });
    }
    const promise = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.state === "idle" || this.state === "closed") {
      this.state = "connecting";
      void this.open();
    }
    return promise;
  }
  /** The room `name` (the same object on every call); join it with `room.join()`. */
  room(name) {
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room(this, name);
      this.rooms.set(name, room);
    }
    return room;
  }
  /** Sends a direct message; resolves with its ack `{id, ts}`. */
  dm(to, text, options = {}) {
    const data = { to, text, client_id: options.client_id ?? newClientId() };
    if (options.attachments) data.attachments = options.attachments;
    return this.request("dm.send", data);
  }
  /** Stops the client: closes the connection (1000) and rejects whatever waits. */
  close() {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.stop(new RingcastError("closed", "client closed"));
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1e3, "client closed");
      } catch {
      }
    }
    this.emit("disconnected", { code: 1e3, reason: "client closed", willReconnect: false });
  }
  /** The URL of the current (or next) connection. */
  get url() {
    return this.urls[this.urlIndex % this.urls.length];
  }
  /**
   * Sends any request and resolves with its ack's data (rejects with a {@link RingcastError}).
   * While disconnected the request waits in the queue (bounded by `maxQueue`).
   */
  request(type, data) {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") {
        reject(new RingcastError("closed", "client closed", type));
        return;
      }
      const pending = {
        opId: `c${++this.opCounter}`,
        type,
        data,
        order: ++this.order,
        attempts: 0,
        resolve,
        reject
      };
      if (this.ready) {
        this.transmit(pending);
      } else if (this.queue.length >= this.opts.maxQueue) {
        reject(new RingcastError("queue_full", `more than ${this.opts.maxQueue} requests wait for a connection`, type));
      } else {
        this.queue.push(pending);
      }
    });
  }
  /** @internal Whether requests go out now (connected and rooms rejoined). */
  get isReady() {
    return this.ready;
  }
  async open() {
    const generation = ++this.generation;
    this.ready = false;
    if (!this.token && this.getToken) {
      try {
        this.token = await this.getToken();
      } catch (err) {
        if (generation !== this.generation) return;
        this.emit("error", new RingcastError("unauthorized", `getToken failed: ${String(err)}`));
        this.scheduleReconnect(4001, "getToken failed");
        return;
      }
      if (generation !== this.generation) return;
    }
    const url = this.url;
    let ws;
    try {
      ws = new this.WS(url);
    } catch (err) {
      this.emit("error", new RingcastError("unavailable", `cannot open ${url}: ${String(err)}`));
      this.scheduleReconnect(1006, "cannot open");
      return;
    }
    this.ws = ws;
    this.lastFrameAt = Date.now();
    this.timers.connect = setTimeout(() => {
      if (generation === this.generation) this.lost(1006, `no connected within ${this.opts.connectTimeoutMs} ms`);
    }, this.opts.connectTimeoutMs);
    ws.onopen = () => {
      if (generation !== this.generation) return;
      this.write({ type: "auth", op_id: `auth${generation}`, data: { token: this.token } });
    };
    ws.onmessage = (event) => {
      if (generation === this.generation) this.onText(event.data);
    };
    ws.onclose = (event) => {
      if (generation === this.generation) this.lost(event.code, event.reason);
    };
    ws.onerror = () => {
    };
    const emitter = ws;
    if (typeof emitter.on === "function") {
      emitter.on("ping", () => {
        if (generation === this.generation) this.lastFrameAt = Date.now();
      });
    }
  }
  write(frame) {
    try {
      this.ws?.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }
  transmit(pending) {
    pending.attempts += 1;
    this.pending.set(pending.opId, pending);
    const frame = pending.data === void 0 || pending.data === null ? { type: pending.type, op_id: pending.opId } : { type: pending.type, op_id: pending.opId, data: pending.data };
    pending.timer = setTimeout(() => {
      if (this.pending.get(pending.opId) !== pending) return;
      this.pending.delete(pending.opId);
      pending.reject(
        new RingcastError("timeout", `no answer within ${this.opts.requestTimeoutMs} ms`, pending.type)
      );
    }, this.opts.requestTimeoutMs);
    this.write(frame);
  }
  onText(raw) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(typeof raw === "string" ? raw : String(raw));
    } catch {
      this.emit("error", new RingcastError("invalid_message", "the server sent a frame that is not JSON"));
      return;
    }
    this.emit("frame", frame);
    const data = frame.data ?? {};
    if (frame.op_id !== void 0) {
      this.settle(frame, data);
      return;
    }
    switch (frame.type) {
      case "connected":
        this.onConnected(data);
        return;
      case "error":
        this.emit("error", new RingcastError(data.code, data.message));
        return;
      case "reconnect":
        this.reconnectAfterMs = data.after_ms;
        return;
      case "dm.message":
        this.emit("dm", data);
        return;
      case "presence.update":
        this.emit("presence", data);
        return;
      case "device.online":
      case "device.offline":
        this.emit(frame.type, data);
        return;
    }
    if (typeof data.room === "string") this.rooms.get(data.room)?.onEvent(frame.type, data);
  }
  settle(frame, data) {
    const opId = frame.op_id;
    if (opId.startsWith("auth") || opId.startsWith("live")) return;
    const pending = this.pending.get(opId);
    if (!pending) return;
    this.pending.delete(opId);
    clearTimeout(pending.timer);
    if (frame.type !== "error") {
      pending.resolve(data);
      return;
    }
    if (data.code === "unavailable" && REPEATABLE.has(pending.type) && pending.attempts <= this.opts.retryUnavailable) {
      setTimeout(() => this.resend(pending), Math.min(2e3, 200 * 2 ** pending.attempts));
      return;
    }
    pending.reject(new RingcastError(data.code, data.message ?? data.code, pending.type));
  }
  resend(pending) {
    if (this.state === "closed") {
      pending.reject(new RingcastError("closed", "client closed", pending.type));
    } else if (this.ready) {
      this.transmit(pending);
    } else {
      this.queue.push(pending);
    }
  }
  onConnected(info) {
    clearTimeout(this.timers.connect);
    const reconnected = this.everConnected;
    this.info = info;
    this.state = "connected";
    this.everConnected = true;
    this.connectedAt = Date.now();
    this.reconnectAfterMs = void 0;
    const serverTime = Date.parse(info.server_time);
    this.skewMs = Number.isFinite(serverTime) ? serverTime - Date.now() : 0;
    this.watchLiveness(this.generation);
    this.scheduleRefresh(this.generation);
    const event = { ...info, reconnected, url: this.url };
    this.emit("connected", event);
    for (const waiter of this.waiters.splice(0)) waiter.resolve(event);
    void this.resume(this.generation);
  }
  /** Joins the rooms again (with `since`), sets the status and subscribes presence again, then sends what waited. */
  async resume(generation) {
    for (; ; ) {
      const rooms = [...this.rooms.values()].filter((room) => room.wanted && !room.joined && !room.isJoining);
      if (rooms.length === 0) break;
      await Promise.all(rooms.map((room) => room.rejoin(generation)));
      if (generation !== this.generation || this.state !== "connected") return;
    }
    if (this.presenceStatus) this.transmitInternal("presence.set", this.presenceStatus);
    if (this.presenceSubs.size > 0) {
      const users = [...this.presenceSubs];
      for (let i = 0; i < users.length; i += 100) {
        this.transmitInternal("presence.subscribe", { users: users.slice(i, i + 100) });
      }
    }
    this.ready = true;
    const waiting = this.queue.splice(0).sort((a, b) => a.order - b.order);
    for (const pending of waiting) this.transmit(pending);
  }
  /** @internal A request that does not wait behind the queue (the rejoins of `resume`). */
  requestNow(type, data) {
    return new Promise((resolve, reject) => {
      const pending = { opId: `c${++this.opCounter}`, type, data, order: ++this.order, attempts: 0, resolve, reject };
      if (this.state !== "connected") {
        reject(new RingcastError("disconnected", "not connected", type));
        return;
      }
      this.transmit(pending);
    });
  }
  transmitInternal(type, data) {
    this.requestNow(type, data).catch((err) => this.emit("error", err));
  }
  /** @internal The generation of the current socket. */
  get currentGeneration() {
    return this.generation;
  }
  /** Liveness: a connection silent for the ping interval gets a `presence.ping`; silent for the grace after that, it is dead. */
  watchLiveness(generation) {
    const interval = this.info?.ping_interval_ms ?? 25e3;
    const check = () => {
      if (generation !== this.generation || this.state !== "connected") return;
      const silentFor = Date.now() - this.lastFrameAt;
      if (silentFor < interval) {
        this.timers.liveness = setTimeout(check, interval - silentFor);
        return;
      }
      const pingedAt = Date.now();
      this.write({ type: "presence.ping", op_id: `live${generation}` });
      this.timers.liveness = setTimeout(() => {
        if (generation !== this.generation || this.state !== "connected") return;
        if (this.lastFrameAt >= pingedAt) {
          check();
        } else {
          this.lost(1006, `no answer from the server within ${interval + this.opts.livenessGraceMs} ms`);
        }
      }, this.opts.livenessGraceMs);
    };
    this.timers.liveness = setTimeout(check, interval);
  }
  /** With `getToken`: `auth.refresh` before the token expires. */
  scheduleRefresh(generation) {
    clearTimeout(this.timers.refresh);
    if (!this.getToken || !this.token) return;
    const exp = tokenExpiry(this.token);
    if (exp === void 0) return;
    const left = exp * 1e3 - (Date.now() + this.skewMs);
    const delay = Math.max(0, left - Math.min(this.opts.refreshMarginMs, left / 2));
    this.timers.refresh = setTimeout(async () => {
      if (generation !== this.generation || this.state !== "connected") return;
      try {
        const token = await this.getToken();
        if (generation !== this.generation) return;
        await this.requestNow("auth.refresh", { token });
        this.token = token;
      } catch (err) {
        this.emit("error", err instanceof RingcastError ? err : new RingcastError("unauthorized", `getToken failed: ${String(err)}`));
      }
      if (generation === this.generation) this.scheduleRefresh(generation);
    }, delay);
  }
  /** The current socket is gone (closed by the server, or declared dead): clean up and decide. */
  lost(code, reason) {
    const ws = this.ws;
    if (ws) {
      this.detach(ws);
      try {
        const terminate = ws.terminate;
        if (typeof terminate === "function") terminate.call(ws);
        else ws.close(1e3);
      } catch {
      }
    }
    this.ws = void 0;
    this.generation += 1;
    this.ready = false;
    this.clearTimers();
    for (const room of this.rooms.values()) room.disconnected();
    const inFlight = [...this.pending.values()];
    this.pending.clear();
    for (const pending of inFlight) {
      clearTimeout(pending.timer);
      if (REPEATABLE.has(pending.type)) {
        this.queue.push(pending);
      } else if (pending.type !== "room.join") {
        pending.reject(new RingcastError("disconnected", `connection lost before the answer (${code})`, pending.type));
      } else {
        pending.reject(new RingcastError("disconnected", "connection lost: the room is joined again on reconnect", pending.type));
      }
    }
    const authFailed = code === 4001 || code === 4003;
    const willReconnect = this.opts.reconnect && (!authFailed || !!this.getToken);
    this.emit("disconnected", { code, reason, willReconnect });
    if (!willReconnect) {
      const err = authFailed ? new RingcastError("unauthorized", code === 4003 ? "token expired" : `token refused: ${reason || code}`) : new RingcastError("disconnected", `connection closed (${code})`);
      if (authFailed) this.emit("error", err);
      this.stop(err);
      return;
    }
    if (authFailed) this.token = void 0;
    this.scheduleReconnect(code, reason);
  }
  scheduleReconnect(code, reason) {
    if (this.connectedAt && Date.now() - this.connectedAt > 1e4) this.attempt = 0;
    this.connectedAt = 0;
    if (code === 1008 || code === 4008 || code === 4009) this.attempt = Math.max(this.attempt, 3);
    let delay;
    if (this.reconnectAfterMs !== void 0) {
      delay = this.reconnectAfterMs;
    } else {
      const cap = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt);
      delay = Math.floor(Math.random() * cap);
    }
    this.reconnectAfterMs = void 0;
    this.attempt += 1;
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.state = "reconnecting";
    this.emit("reconnecting", { attempt: this.attempt, delayMs: delay, code, url: this.url });
    void reason;
    this.timers.reconnect = setTimeout(() => {
      if (this.state === "reconnecting") void this.open();
    }, delay);
  }
  stop(err) {
    this.state = "closed";
    this.ready = false;
    this.generation += 1;
    this.ws = void 0;
    this.clearTimers();
    for (const pending of [...this.pending.values(), ...this.queue.splice(0)]) {
      clearTimeout(pending.timer);
      pending.reject(new RingcastError(err.code, err.message, pending.type));
    }
    this.pending.clear();
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
    for (const room of this.rooms.values()) room.stopped(err);
  }
  detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = () => {
    };
  }
  clearTimers() {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    this.timers = {};
  }
};
function tokenExpiry(token) {
  try {
    const part = token.split(".")[1];
    if (!part) return void 0;
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : void 0;
  } catch {
    return void 0;
  }
}
export {
  Client,
  RingcastError,
  Room,
  newClientId
};
