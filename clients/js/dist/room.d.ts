import type { Client } from "./client.js";
import { Emitter } from "./emitter.js";
import { RingcastError } from "./errors.js";
import type { Acks, AdminBan, AdminKick, Attachment, ChatDeleted, ChatEdited, ChatMessage, ChatReaction, ChatReceipt, ChatRedacted, ChatTypingUser, ChatUploadProgress, MemberJoined, MemberLeft, RequestJoinPending, RoomJoinAck, RoomUpdate } from "./protocol.js";
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
/** One room of a {@link Client}: obtained with `client.room(name)`. */
export declare class Room extends Emitter<RoomEvents> {
    private readonly client;
    readonly name: string;
    /** The epoch of the last join or reset; `undefined` before the first join. */
    epoch?: string;
    /** The last seq seen (messages, own sends, join acks). */
    seq: number;
    /** True when the room should be joined (again after every reconnect). */
    wanted: boolean;
    /** True while the current connection is in the room. */
    joined: boolean;
    private joining;
    private waiters;
    constructor(client: Client, name: string);
    /**
     * Joins the room and resolves with the ack `{room, status, seq, epoch, recovered?}`. The room
     * is joined again after every reconnect, with `since` = the last seq seen, until `leave()`.
     */
    join(): Promise<RoomJoinAck>;
    /** Leaves the room; it is not joined again on reconnect. */
    leave(): Promise<Acks["room.leave"]>;
    /** Sends a message; resolves with the ack `{room, id, seq, ts}`. Sent once even if retried. */
    send(text: string, options?: SendOptions): Promise<Acks["chat.send"]>;
    /** Stored messages, newest last: `{room, messages}`. */
    history(options?: {
        before_seq?: number;
        limit?: number;
    }): Promise<Acks["room.history"]>;
    members(): Promise<Acks["room.members"]>;
    edit(id: string, text: string): Promise<Acks["chat.edit"]>;
    versions(id: string): Promise<Acks["chat.versions"]>;
    delete(id: string, mode?: "soft" | "hard"): Promise<Acks["chat.delete"]>;
    redact(id: string, reason?: string): Promise<Acks["chat.redact"]>;
    react(id: string, emoji: string, add?: boolean): Promise<Acks["chat.react"]>;
    typing(typing?: boolean): Promise<Acks["chat.typing"]>;
    read(seq: number): Promise<Acks["chat.read"]>;
    /** @internal Joins (again) on the connection `generation`, with `since` when the room has a position. */
    rejoin(generation: number): Promise<void>;
    /** @internal True while a join is on its way. */
    get isJoining(): boolean;
    /** @internal The client stopped: joins waiting for a connection fail with its reason. */
    stopped(err: RingcastError): void;
    /** @internal The socket closed: the room is not joined until the next connection's rejoin. */
    disconnected(): void;
    private onJoined;
    /** @internal A server frame about this room. */
    onEvent(type: string, data: any): void;
}
