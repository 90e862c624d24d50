import type { Client } from "./client.js";
import { newClientId } from "./ids.js";
import { Emitter } from "./emitter.js";
import { RingcastError } from "./errors.js";
import type {
  Acks,
  AdminBan,
  AdminKick,
  Attachment,
  ChatDeleted,
  ChatEdited,
  ChatMessage,
  ChatReaction,
  ChatReceipt,
  ChatRedacted,
  ChatSendRequest,
  ChatTypingUser,
  ChatUploadProgress,
  MemberJoined,
  MemberLeft,
  RequestJoinPending,
  RoomJoinAck,
  RoomUpdate,
} from "./protocol.js";

/** The room's history was lost, or could not be recovered after a reconnect. */
export interface ResetEvent {
  room: string;
  /** The room's epoch from now on. */
  epoch: string;
  /** The room's seq from now on; messages continue after it. */
  seq: number;
  /** `owner_lost` / `store_lost` (the server's `room.reset`), or `not_recovered` (a rejoin answered `recovered:false`). */
  reason: "owner_lost" | "store_lost" | "not_recovered";
}

export interface RoomEvents {
  /** Each successful join, the first and every one after a reconnect (`recovered` tells whether `since` recovered the gap). */
  joined: RoomJoinAck;
  /** `chat.message`, in seq order, each once (replayed ones after a reconnect have `recovered: true`). */
  message: ChatMessage;
  edit: ChatEdited;
  delete: ChatDeleted;
  redact: ChatRedacted;
  reaction: ChatReaction;
  /** `chat.typing.user` */
  typing: ChatTypingUser;
  receipt: ChatReceipt;
  upload: ChatUploadProgress;
  "member.joined": MemberJoined;
  "member.left": MemberLeft;
  /** Messages may be missing: fetch `history()` of the new epoch if they matter. */
  reset: ResetEvent;
  /** A moderator removed this user from the room (`admin.kick`). */
  kick: AdminKick;
  /** A moderator banned this user from the room (`admin.ban`). */
  ban: AdminBan;
  /** A `group:` room joined or left because the user's groups changed (`room.update`). */
  update: RoomUpdate;
  /** Someone asks to join this `private:` room (to moderators in it). */
  "join.pending": RequestJoinPending;
  /** Joining again after a reconnect failed for good (for example a ban). */
  error: RingcastError;
}

export interface SendOptions {
  attachments?: Attachment[];
  /** The id of the message this one answers (a thread). */
  reply_to?: string;
  /** Application data sent with the message. ringcast v1 neither stores nor relays it. */
  meta?: Record<string, unknown>;
  /** The idempotency key; a fresh one by default (a retried send keeps its key). */
  client_id?: string;
}

const EVENTS: Record<string, keyof RoomEvents> = {
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
  "request.join.pending": "join.pending",
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One room of a {@link Client}: obtained with `client.room(name)`. */
export class Room extends Emitter<RoomEvents> {
  /** The epoch of the last join or reset; `undefined` before the first join. */
  epoch?: string;
  /** The last seq seen (messages, own sends, join acks). */
  seq = 0;
  /** True when the room should be joined (again after every reconnect). */
  wanted = false;
  /** True while the current connection is in the room. */
  joined = false;
  private joining = false;
  private waiters: { resolve: (ack: RoomJoinAck) => void; reject: (err: RingcastError) => void }[] = [];

  constructor(
    private readonly client: Client,
    readonly name: string,
  ) {
    super();
  }

  /**
   * Joins the room and resolves with the ack `{room, status, seq, epoch, recovered?}`. The room
   * is joined again after every reconnect, with `since` = the last seq seen, until `leave()`.
   */
  join(): Promise<RoomJoinAck> {
    if (this.client.state === "closed") {
      return Promise.reject(new RingcastError("closed", "client closed", "room.join"));
    }
    this.wanted = true;
    const promise = new Promise<RoomJoinAck>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.client.isReady && !this.joining) void this.rejoin(this.client.currentGeneration);
    return promise;
  }

  /** Leaves the room; it is not joined again on reconnect. */
  async leave(): Promise<Acks["room.leave"]> {
    this.wanted = false;
    this.joined = false;
    this.epoch = undefined;
    this.seq = 0;
    return this.client.request("room.leave", { room: this.name });
  }

  /** Sends a message; resolves with the ack `{room, id, seq, ts}`. Sent once even if retried. */
  async send(text: string, options: SendOptions = {}): Promise<Acks["chat.send"]> {
    const data: ChatSendRequest = { room: this.name, text, client_id: options.client_id ?? newClientId() };
    if (options.attachments) data.attachments = options.attachments;
    if (options.reply_to) data.reply_to = options.reply_to;
    if (options.meta) data.meta = options.meta;
    const ack = await this.client.request("chat.send", data);
    if (this.epoch !== undefined && ack.seq > this.seq) this.seq = ack.seq;
    return ack;
  }

  /** Stored messages, newest last: `{room, messages}`. */
  history(options: { before_seq?: number; limit?: number } = {}): Promise<Acks["room.history"]> {
    return this.client.request("room.history", { room: this.name, ...options });
  }

  members(): Promise<Acks["room.members"]> {
    return this.client.request("room.members", { room: this.name });
  }

  edit(id: string, text: string): Promise<Acks["chat.edit"]> {
    return this.client.request("chat.edit", { room: this.name, id, text });
  }

  versions(id: string): Promise<Acks["chat.versions"]> {
    return this.client.request("chat.versions", { room: this.name, id });
  }

  delete(id: string, mode: "soft" | "hard" = "soft"): Promise<Acks["chat.delete"]> {
    return this.client.request("chat.delete", { room: this.name, id, mode });
  }

  redact(id: string, reason?: string): Promise<Acks["chat.redact"]> {
    return this.client.request("chat.redact", reason ? { room: this.name, id, reason } : { room: this.name, id });
  }

  react(id: string, emoji: string, add = true): Promise<Acks["chat.react"]> {
    return this.client.request("chat.react", { room: this.name, id, emoji, add });
  }

  typing(typing = true): Promise<Acks["chat.typing"]> {
    return this.client.request("chat.typing", { room: this.name, typing });
  }

  read(seq: number): Promise<Acks["chat.read"]> {
    return this.client.request("chat.read", { room: this.name, seq });
  }

  /** @internal Joins (again) on the connection `generation`, with `since` when the room has a position. */
  async rejoin(generation: number): Promise<void> {
    if (this.joining) return;
    this.joining = true;
    try {
      for (let attempt = 0; ; attempt++) {
        const since = this.epoch !== undefined ? { seq: this.seq, epoch: this.epoch } : undefined;
        try {
          const ack = await this.client.requestNow("room.join", since ? { room: this.name, since } : { room: this.name });
          if (generation !== this.client.currentGeneration) return;
          this.onJoined(ack);
          for (const waiter of this.waiters.splice(0)) waiter.resolve(ack);
          return;
        } catch (err) {
          // The connection went away: the next connection joins again, the waiters wait.
          if (generation !== this.client.currentGeneration) return;
          const error = err as RingcastError;
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
  get isJoining(): boolean {
    return this.joining;
  }

  /** @internal The client stopped: joins waiting for a connection fail with its reason. */
  stopped(err: RingcastError): void {
    this.joined = false;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new RingcastError(err.code, err.message, "room.join"));
  }

  /** @internal The socket closed: the room is not joined until the next connection's rejoin. */
  disconnected(): void {
    this.joined = false;
  }

  private onJoined(ack: RoomJoinAck): void {
    this.joined = true;
    const known = this.epoch !== undefined;
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
  onEvent(type: string, data: any): void {
    if (type === "chat.message") {
      const message = data as ChatMessage;
      // A message already seen (a replay overlapping what arrived live) is delivered once.
      if (this.epoch !== undefined && message.seq <= this.seq) return;
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
}
