import { Emitter } from "./emitter.js";
import { RingcastError } from "./errors.js";
import type {
  Acks,
  Attachment,
  ClientRequests,
  Connected,
  DeviceOffline,
  DeviceOnline,
  DmMessage,
  DmSendAck,
  PresenceUpdate,
  RequestType,
  ServerFrame,
} from "./protocol.js";
import { newClientId } from "./ids.js";
import { Room } from "./room.js";

/** What the client needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** A token (JWT). Without `getToken`, a rejected or expired token stops the client. */
  token?: string;
  /** Called for the first token (when `token` is not given), before the token expires
   * (`auth.refresh`), and after the server refused or expired the token (4001, 4003). */
  getToken?: () => string | Promise<string>;
  /** The WebSocket implementation; default `globalThis.WebSocket` (pass the `ws` package on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its `ack` or `error`; default 10000 ms. */
  requestTimeoutMs?: number;
  /** How long opening a connection may take until `connected`; default 10000 ms. */
  connectTimeoutMs?: number;
  /** Reconnect automatically (default true). */
  reconnect?: boolean;
  /** Backoff of reconnects: full jitter over `min(maxMs, initialMs * 2^attempt)`; default 250 ms .. 10000 ms. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Most requests kept while disconnected (sends, DMs, reads); default 1000. */
  maxQueue?: number;
  /** Refresh the token this long before it expires (at most half its remaining life); default 30000 ms. */
  refreshMarginMs?: number;
  /** How long after the ping interval a silent connection is given before it is declared dead; default 5000 ms. */
  livenessGraceMs?: number;
  /** How often a safe-to-repeat request answered `unavailable` is tried again (after 0.4, 0.8, 1.6, 2, 2 s ...); default 5. */
  retryUnavailable?: number;
}

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export interface ConnectedEvent extends Connected {
  /** True from the second connection on. */
  reconnected: boolean;
  /** The URL the client is connected to. */
  url: string;
}

export interface DisconnectedEvent {
  code: number;
  reason: string;
  /** False after `close()`, or when the token was refused without `getToken`. */
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  attempt: number;
  delayMs: number;
  /** The close code that caused it. */
  code: number;
  /** The next URL tried. */
  url: string;
}

export interface ClientEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  /** A server `error` without a request, a failed token refresh, a frame that is not JSON. */
  error: RingcastError;
  /** `dm.message` (to this user, or from its other connections). */
  dm: DmMessage;
  /** `presence.update` of a subscribed user. */
  presence: PresenceUpdate;
  "device.online": DeviceOnline;
  "device.offline": DeviceOffline;
  /** Every frame the server sends, as parsed (before the client handles it). */
  frame: ServerFrame;
}

export interface DmOptions {
  attachments?: Attachment[];
  /** The idempotency key; a fresh one by default. */
  client_id?: string;
}

/** Requests that can be repeated after a lost connection without a second effect. */
const REPEATABLE = new Set<string>([
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
  "presence.unsubscribe",
]);

interface Pending {
  opId: string;
  type: string;
  data: unknown;
  /** Creation order: queued and re-sent requests go out in it. */
  order: number;
  attempts: number;
  timer?: ReturnType<typeof setTimeout>;
  resolve: (value: any) => void;
  reject: (err: RingcastError) => void;
}

/**
 * A connection to ringcast that keeps itself alive: requests are promises, rooms are joined
 * again with recovery after a reconnect, and sends made while disconnected are queued.
 */
export class Client extends Emitter<ClientEvents> {
  /** The URLs tried in turn (a reconnect moves to the next one). */
  readonly urls: string[];
  /** The `connected` data of the current connection. */
  info?: Connected;
  state: ConnectionState = "idle";
  readonly presence: {
    set: (status: "online" | "away" | "busy", message?: string) => Promise<Acks["presence.set"]>;
    subscribe: (users: string[]) => Promise<Acks["presence.subscribe"]>;
    unsubscribe: (users: string[]) => Promise<Acks["presence.unsubscribe"]>;
    query: (users: string[]) => Promise<Acks["presence.query"]>;
  };

  private readonly opts: Required<Omit<ClientOptions, "token" | "getToken" | "WebSocket" | "backoff">> & {
    initialMs: number;
    maxMs: number;
  };
  private readonly WS: WebSocketConstructor;
  private readonly getToken?: () => string | Promise<string>;
  private token?: string;
  private ws?: WebSocketLike;
  /** Incremented for each socket; events of an older socket are ignored. */
  private generation = 0;
  private urlIndex = 0;
  private attempt = 0;
  private connectedAt = 0;
  private everConnected = false;
  /** True once the rooms are joined again after `connected`: requests go out directly. */
  private ready = false;
  private order = 0;
  private opCounter = 0;
  private pending = new Map<string, Pending>();
  private queue: Pending[] = [];
  private rooms = new Map<string, Room>();
  private presenceSubs = new Set<string>();
  /** The last manual status set, set again after each reconnect. */
  private presenceStatus?: ClientRequests["presence.set"];
  private reconnectAfterMs?: number;
  private lastFrameAt = 0;
  private skewMs = 0;
  private timers: Partial<Record<"reconnect" | "connect" | "liveness" | "refresh", ReturnType<typeof setTimeout>>> = {};
  private waiters: { resolve: (info: ConnectedEvent) => void; reject: (err: RingcastError) => void }[] = [];

  constructor(url: string | string[], options: ClientOptions = {}) {
    super();
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new TypeError("ringcast: at least one URL is needed");
    if (!options.token && !options.getToken) throw new TypeError("ringcast: token or getToken is needed");
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError("ringcast: no global WebSocket: pass options.WebSocket (for example the ws package)");
    this.WS = WS;
    this.token = options.token;
    this.getToken = options.getToken;
    this.opts = {
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      reconnect: options.reconnect ?? true,
      initialMs: options.backoff?.initialMs ?? 250,
      maxMs: options.backoff?.maxMs ?? 10_000,
      maxQueue: options.maxQueue ?? 1000,
      refreshMarginMs: options.refreshMarginMs ?? 30_000,
      livenessGraceMs: options.livenessGraceMs ?? 5000,
      retryUnavailable: options.retryUnavailable ?? 5,
    };
    this.presence = {
      set: (status, message) => {
        const data: ClientRequests["presence.set"] = message === undefined ? { status } : { status, message };
        this.presenceStatus = status === "online" && message === undefined ? undefined : data;
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
      query: (users) => this.request("presence.query", { users }),
    };
  }

  /** Connects (if not connected yet); resolves on `connected`, rejects when the client stops. */
  connect(): Promise<ConnectedEvent> {
    if (this.state === "connected" && this.info) {
      return Promise.resolve({ ...this.info, reconnected: this.everConnected, url: this.url });
    }
    const promise = new Promise<ConnectedEvent>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.state === "idle" || this.state === "closed") {
      this.state = "connecting";
      void this.open();
    }
    return promise;
  }

  /** The room `name` (the same object on every call); join it with `room.join()`. */
  room(name: string): Room {
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room(this, name);
      this.rooms.set(name, room);
    }
    return room;
  }

  /** Sends a direct message; resolves with its ack `{id, ts}`. */
  dm(to: string, text: string, options: DmOptions = {}): Promise<DmSendAck> {
    const data: ClientRequests["dm.send"] = { to, text, client_id: options.client_id ?? newClientId() };
    if (options.attachments) data.attachments = options.attachments;
    return this.request("dm.send", data);
  }

  /** Stops the client: closes the connection (1000) and rejects whatever waits. */
  close(): void {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.stop(new RingcastError("closed", "client closed"));
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {
        // Already closing.
      }
    }
    this.emit("disconnected", { code: 1000, reason: "client closed", willReconnect: false });
  }

  /** The URL of the current (or next) connection. */
  get url(): string {
    return this.urls[this.urlIndex % this.urls.length]!;
  }

  /**
   * Sends any request and resolves with its ack's data (rejects with a {@link RingcastError}).
   * While disconnected the request waits in the queue (bounded by `maxQueue`).
   */
  request<T extends RequestType>(type: T, data: ClientRequests[T]): Promise<Acks[T & keyof Acks]> {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") {
        reject(new RingcastError("closed", "client closed", type));
        return;
      }
      const pending: Pending = {
        opId: `c${++this.opCounter}`,
        type,
        data,
        order: ++this.order,
        attempts: 0,
        resolve,
        reject,
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
  get isReady(): boolean {
    return this.ready;
  }

  private async open(): Promise<void> {
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
    let ws: WebSocketLike;
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
      // A close event follows.
    };
    // The ws package shows the server's pings: they prove the connection alive.
    const emitter = ws as unknown as { on?: (event: string, handler: () => void) => void };
    if (typeof emitter.on === "function") {
      emitter.on("ping", () => {
        if (generation === this.generation) this.lastFrameAt = Date.now();
      });
    }
  }

  private write(frame: object): boolean {
    try {
      this.ws?.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  private transmit(pending: Pending): void {
    pending.attempts += 1;
    this.pending.set(pending.opId, pending);
    const frame = pending.data === undefined || pending.data === null
      ? { type: pending.type, op_id: pending.opId }
      : { type: pending.type, op_id: pending.opId, data: pending.data };
    pending.timer = setTimeout(() => {
      if (this.pending.get(pending.opId) !== pending) return;
      this.pending.delete(pending.opId);
      pending.reject(
        new RingcastError("timeout", `no answer within ${this.opts.requestTimeoutMs} ms`, pending.type),
      );
    }, this.opts.requestTimeoutMs);
    this.write(frame);
  }

  private onText(raw: unknown): void {
    this.lastFrameAt = Date.now();
    let frame: ServerFrame;
    try {
      frame = JSON.parse(typeof raw === "string" ? raw : String(raw));
    } catch {
      this.emit("error", new RingcastError("invalid_message", "the server sent a frame that is not JSON"));
      return;
    }
    this.emit("frame", frame);
    const data = (frame.data ?? {}) as any;
    if (frame.op_id !== undefined) {
      this.settle(frame, data);
      return;
    }
    switch (frame.type) {
      case "connected":
        this.onConnected(data as Connected);
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

  private settle(frame: ServerFrame, data: any): void {
    const opId = frame.op_id!;
    if (opId.startsWith("auth") || opId.startsWith("live")) return;
    const pending = this.pending.get(opId);
    if (!pending) return; // Answered after its timeout.
    this.pending.delete(opId);
    clearTimeout(pending.timer);
    if (frame.type !== "error") {
      pending.resolve(data);
      return;
    }
    if (data.code === "unavailable" && REPEATABLE.has(pending.type) && pending.attempts <= this.opts.retryUnavailable) {
      // The owner of the room was unreachable (a failover in progress): the same request,
      // with the same client_id, once more after a pause.
      setTimeout(() => this.resend(pending), Math.min(2000, 200 * 2 ** pending.attempts));
      return;
    }
    pending.reject(new RingcastError(data.code, data.message ?? data.code, pending.type));
  }

  private resend(pending: Pending): void {
    if (this.state === "closed") {
      pending.reject(new RingcastError("closed", "client closed", pending.type));
    } else if (this.ready) {
      this.transmit(pending);
    } else {
      this.queue.push(pending);
    }
  }

  private onConnected(info: Connected): void {
    clearTimeout(this.timers.connect);
    const reconnected = this.everConnected;
    this.info = info;
    this.state = "connected";
    this.everConnected = true;
    this.connectedAt = Date.now();
    this.reconnectAfterMs = undefined;
    const serverTime = Date.parse(info.server_time);
    this.skewMs = Number.isFinite(serverTime) ? serverTime - Date.now() : 0;
    this.watchLiveness(this.generation);
    this.scheduleRefresh(this.generation);
    const event: ConnectedEvent = { ...info, reconnected, url: this.url };
    this.emit("connected", event);
    for (const waiter of this.waiters.splice(0)) waiter.resolve(event);
    void this.resume(this.generation);
  }

  /** Joins the rooms again (with `since`), sets the status and subscribes presence again, then sends what waited. */
  private async resume(generation: number): Promise<void> {
    // Rooms joined meanwhile (join() during the rejoins) are joined in the next round.
    for (;;) {
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
  requestNow<T extends RequestType>(type: T, data: ClientRequests[T]): Promise<Acks[T & keyof Acks]> {
    return new Promise((resolve, reject) => {
      const pending: Pending = { opId: `c${++this.opCounter}`, type, data, order: ++this.order, attempts: 0, resolve, reject };
      if (this.state !== "connected") {
        reject(new RingcastError("disconnected", "not connected", type));
        return;
      }
      this.transmit(pending);
    });
  }

  private transmitInternal<T extends RequestType>(type: T, data: ClientRequests[T]): void {
    this.requestNow(type, data).catch((err: RingcastError) => this.emit("error", err));
  }

  /** @internal The generation of the current socket. */
  get currentGeneration(): number {
    return this.generation;
  }

  /** Liveness: a connection silent for the ping interval gets a `presence.ping`; silent for the grace after that, it is dead. */
  private watchLiveness(generation: number): void {
    const interval = this.info?.ping_interval_ms ?? 25_000;
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
  private scheduleRefresh(generation: number): void {
    clearTimeout(this.timers.refresh);
    if (!this.getToken || !this.token) return;
    const exp = tokenExpiry(this.token);
    if (exp === undefined) return;
    const left = exp * 1000 - (Date.now() + this.skewMs);
    const delay = Math.max(0, left - Math.min(this.opts.refreshMarginMs, left / 2));
    this.timers.refresh = setTimeout(async () => {
      if (generation !== this.generation || this.state !== "connected") return;
      try {
        const token = await this.getToken!();
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
  private lost(code: number, reason: string): void {
    const ws = this.ws;
    if (ws) {
      this.detach(ws);
      try {
        const terminate = (ws as unknown as { terminate?: () => void }).terminate;
        if (typeof terminate === "function") terminate.call(ws);
        else ws.close(1000);
      } catch {
        // Already closed.
      }
    }
    this.ws = undefined;
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
      const err = authFailed
        ? new RingcastError("unauthorized", code === 4003 ? "token expired" : `token refused: ${reason || code}`)
        : new RingcastError("disconnected", `connection closed (${code})`);
      if (authFailed) this.emit("error", err);
      this.stop(err);
      return;
    }
    if (authFailed) this.token = undefined;
    this.scheduleReconnect(code, reason);
  }

  private scheduleReconnect(code: number, reason: string): void {
    // The backoff starts over after a connection that lasted; failures in a row make it grow.
    if (this.connectedAt && Date.now() - this.connectedAt > 10_000) this.attempt = 0;
    this.connectedAt = 0;
    if (code === 1008 || code === 4008 || code === 4009) this.attempt = Math.max(this.attempt, 3);
    let delay: number;
    if (this.reconnectAfterMs !== undefined) {
      delay = this.reconnectAfterMs;
    } else {
      const cap = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt);
      delay = Math.floor(Math.random() * cap);
    }
    this.reconnectAfterMs = undefined;
    this.attempt += 1;
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.state = "reconnecting";
    this.emit("reconnecting", { attempt: this.attempt, delayMs: delay, code, url: this.url });
    void reason;
    this.timers.reconnect = setTimeout(() => {
      if (this.state === "reconnecting") void this.open();
    }, delay);
  }

  private stop(err: RingcastError): void {
    this.state = "closed";
    this.ready = false;
    this.generation += 1;
    this.ws = undefined;
    this.clearTimers();
    for (const pending of [...this.pending.values(), ...this.queue.splice(0)]) {
      clearTimeout(pending.timer);
      pending.reject(new RingcastError(err.code, err.message, pending.type));
    }
    this.pending.clear();
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
    for (const room of this.rooms.values()) room.stopped(err);
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    // Kept: the ws package throws an error event that has no listener.
    ws.onerror = () => {};
  }

  private clearTimers(): void {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    this.timers = {};
  }
}

/** The `exp` claim of a JWT, without checking it (the server does). */
function tokenExpiry(token: string): number | undefined {
  try {
    const part = token.split(".")[1];
    if (!part) return undefined;
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : undefined;
  } catch {
    return undefined;
  }
}
