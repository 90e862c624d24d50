/** 1-128 chars of [A-Za-z0-9_.:@-] */
export type RoomName = string;
/** the `sub` of a token */
export type UserId = string;
/** RFC 3339 UTC with milliseconds */
export type Timestamp = string;
export type ErrorCode = "invalid_message" | "unknown_type" | "unauthorized" | "forbidden" | "not_found" | "rate_limited" | "too_large" | "conflict" | "unsupported" | "unavailable" | "internal";
export type PresenceStatus = "online" | "away" | "busy" | "offline";
export interface Attachment {
    url: string;
    name: string;
    size: number;
    mime: string;
}
export interface Since {
    seq: number;
    epoch: string;
}
export interface Sender {
    user_id: UserId;
    name: string;
}
export interface Member {
    user_id: UserId;
    name: string;
    status: PresenceStatus;
    connections: number;
}
export interface UserPresence {
    user_id: UserId;
    status: PresenceStatus;
    message: string | null;
    devices: number;
}
export interface Version {
    version: number;
    text: string;
    edited_at: Timestamp;
}
/** A stored room message: `chat.message`, and the items of `room.history` (which add edits, deletes and reactions). */
export interface ChatMessage {
    room: RoomName;
    id: string;
    seq: number;
    ts: Timestamp;
    from: Sender;
    text: string;
    attachments: Attachment[];
    reply_to: string | null;
    thread_root: string | null;
    version?: number;
    edited_at?: Timestamp;
    deleted?: boolean;
    redacted?: boolean;
    redact_reason?: string | null;
    reactions?: {
        [key: string]: number;
    };
    /** replayed by a join with `since` */
    recovered?: boolean;
    /** the sender's `meta` (a JSON object of at most 4 KiB), relayed and stored as sent */
    meta?: {
        [key: string]: unknown;
    };
}
/** `chat.reaction`, and the ack of `chat.react` */
export interface ChatReaction {
    room: RoomName;
    id: string;
    emoji: string;
    user_id: UserId;
    add: boolean;
    count: number;
}
/** `chat.deleted`, and the ack of `chat.delete` */
export interface ChatDeleted {
    room: RoomName;
    id: string;
    mode: "soft" | "hard";
    by: UserId;
}
/** `chat.redacted`, and the ack of `chat.redact` */
export interface ChatRedacted {
    room: RoomName;
    id: string;
    reason: string | null;
    by: UserId;
}
export interface AuthRequest {
    token: string;
}
export interface AuthRefreshRequest {
    token: string;
}
export interface RoomJoinRequest {
    room: RoomName;
    since?: Since;
}
export interface RoomLeaveRequest {
    room: RoomName;
}
export interface RoomMembersRequest {
    room: RoomName;
}
export interface RoomHistoryRequest {
    room: RoomName;
    before_seq?: number;
    limit?: number;
}
export interface ChatSendRequest {
    room: RoomName;
    text?: string;
    attachments?: Attachment[];
    reply_to?: string | null;
    client_id?: string;
    /** application data; ringcast v1 ignores it (unknown fields are ignored) */
    meta?: {
        [key: string]: unknown;
    };
}
export interface ChatEditRequest {
    room: RoomName;
    id: string;
    text: string;
}
export interface ChatVersionsRequest {
    room: RoomName;
    id: string;
}
export interface ChatDeleteRequest {
    room: RoomName;
    id: string;
    mode?: "soft" | "hard";
}
export interface ChatRedactRequest {
    room: RoomName;
    id: string;
    reason?: string;
}
export interface ChatReactRequest {
    room: RoomName;
    id: string;
    emoji: string;
    add: boolean;
}
export interface ChatTypingRequest {
    room: RoomName;
    typing: boolean;
}
export interface ChatReadRequest {
    room: RoomName;
    seq: number;
}
export interface ChatDeliveredRequest {
    room: RoomName;
    seq: number;
}
export interface ChatUploadRequest {
    room: RoomName;
    upload_id: string;
    name: string;
    size: number;
    sent: number;
}
export interface DmSendRequest {
    to: UserId;
    text?: string;
    attachments?: Attachment[];
    client_id?: string;
    /** application data; ringcast v1 ignores it (unknown fields are ignored) */
    meta?: {
        [key: string]: unknown;
    };
}
export type PresencePingRequest = Record<string, never> | null;
export interface PresenceSetRequest {
    status: "online" | "away" | "busy";
    message?: string;
}
export interface PresenceSubscribeRequest {
    users: UserId[];
}
export interface PresenceUnsubscribeRequest {
    users: UserId[];
}
export interface PresenceQueryRequest {
    users: UserId[];
}
export interface RoomRequestJoinRequest {
    room: RoomName;
}
export interface RoomApproveRequest {
    room: RoomName;
    user_id: UserId;
}
export interface RoomDenyRequest {
    room: RoomName;
    user_id: UserId;
}
export interface RoomKickRequest {
    room: RoomName;
    user_id: UserId;
}
export interface RoomBanRequest {
    room: RoomName;
    user_id: UserId;
    seconds?: number;
}
export interface CallOfferRequest {
    to: UserId;
    call_id: string;
    sdp: string;
    kind?: "audio" | "video" | "screen";
}
export interface CallAnswerRequest {
    to: UserId;
    call_id: string;
    sdp: string;
}
export interface CallIceRequest {
    to: UserId;
    call_id: string;
    candidate: string | {
        [key: string]: unknown;
    };
}
export interface CallHangupRequest {
    to: UserId;
    call_id: string;
}
/** The `data` of every client request, by `type`. */
export interface ClientRequests {
    "auth": AuthRequest;
    "auth.refresh": AuthRefreshRequest;
    "room.join": RoomJoinRequest;
    "room.leave": RoomLeaveRequest;
    "room.members": RoomMembersRequest;
    "room.history": RoomHistoryRequest;
    "chat.send": ChatSendRequest;
    "chat.edit": ChatEditRequest;
    "chat.versions": ChatVersionsRequest;
    "chat.delete": ChatDeleteRequest;
    "chat.redact": ChatRedactRequest;
    "chat.react": ChatReactRequest;
    "chat.typing": ChatTypingRequest;
    "chat.read": ChatReadRequest;
    "chat.delivered": ChatDeliveredRequest;
    "chat.upload": ChatUploadRequest;
    "dm.send": DmSendRequest;
    "presence.ping": PresencePingRequest;
    "presence.set": PresenceSetRequest;
    "presence.subscribe": PresenceSubscribeRequest;
    "presence.unsubscribe": PresenceUnsubscribeRequest;
    "presence.query": PresenceQueryRequest;
    "room.request_join": RoomRequestJoinRequest;
    "room.approve": RoomApproveRequest;
    "room.deny": RoomDenyRequest;
    "room.kick": RoomKickRequest;
    "room.ban": RoomBanRequest;
    "call.offer": CallOfferRequest;
    "call.answer": CallAnswerRequest;
    "call.ice": CallIceRequest;
    "call.hangup": CallHangupRequest;
}
export type AuthAck = Record<string, never>;
export interface AuthRefreshAck {
    expires_at: number;
}
export interface RoomJoinAck {
    room: RoomName;
    status: "joined";
    seq: number;
    epoch: string;
    recovered?: boolean;
}
export interface RoomLeaveAck {
    room: RoomName;
    status: "left";
}
export interface RoomMembersAck {
    room: RoomName;
    members: Member[];
}
export interface RoomHistoryAck {
    room: RoomName;
    messages: ChatMessage[];
}
export interface ChatSendAck {
    room: RoomName;
    id: string;
    seq: number;
    ts: Timestamp;
    /** the room's epoch the seq belongs to */
    epoch: string;
}
export interface ChatEditAck {
    room: RoomName;
    id: string;
    version: number;
    edited_at: Timestamp;
}
export interface ChatVersionsAck {
    room: RoomName;
    id: string;
    versions: Version[];
}
export interface ChatTypingAck {
    room: RoomName;
}
export interface ChatReadAck {
    room: RoomName;
}
export interface ChatDeliveredAck {
    room: RoomName;
}
export interface ChatUploadAck {
    room: RoomName;
}
export interface DmSendAck {
    id: string;
    ts: Timestamp;
}
export interface PresencePong {
    timestamp: Timestamp;
}
export interface PresenceSetAck {
    user_id: UserId;
    status: PresenceStatus;
    message: string | null;
    devices: number;
}
export interface PresenceSubscribeAck {
    users: UserId[];
}
export interface PresenceUnsubscribeAck {
    users: UserId[];
}
export interface PresenceQueryAck {
    users: UserPresence[];
}
export interface RoomRequestJoinAck {
    room: RoomName;
    status: "pending";
}
export interface RoomApproveAck {
    room: RoomName;
    user_id: UserId;
    status: "approved";
}
export interface RoomDenyAck {
    room: RoomName;
    user_id: UserId;
    status: "denied";
}
export interface RoomKickAck {
    room: RoomName;
    user_id: UserId;
}
export interface RoomBanAck {
    room: RoomName;
    user_id: UserId;
    until?: Timestamp;
}
export interface CallOfferAck {
    to: UserId;
    call_id: string;
}
export interface CallAnswerAck {
    to: UserId;
    call_id: string;
}
export interface CallIceAck {
    to: UserId;
    call_id: string;
}
export interface CallHangupAck {
    to: UserId;
    call_id: string;
}
/** The `data` of the `ack` answering each request type. */
export interface Acks {
    "auth": AuthAck;
    "auth.refresh": AuthRefreshAck;
    "room.join": RoomJoinAck;
    "room.leave": RoomLeaveAck;
    "room.members": RoomMembersAck;
    "room.history": RoomHistoryAck;
    "chat.send": ChatSendAck;
    "chat.edit": ChatEditAck;
    "chat.versions": ChatVersionsAck;
    "chat.delete": ChatDeleted;
    "chat.redact": ChatRedacted;
    "chat.react": ChatReaction;
    "chat.typing": ChatTypingAck;
    "chat.read": ChatReadAck;
    "chat.delivered": ChatDeliveredAck;
    "chat.upload": ChatUploadAck;
    "dm.send": DmSendAck;
    "presence.ping": PresencePong;
    "presence.set": PresenceSetAck;
    "presence.subscribe": PresenceSubscribeAck;
    "presence.unsubscribe": PresenceUnsubscribeAck;
    "presence.query": PresenceQueryAck;
    "room.request_join": RoomRequestJoinAck;
    "room.approve": RoomApproveAck;
    "room.deny": RoomDenyAck;
    "room.kick": RoomKickAck;
    "room.ban": RoomBanAck;
    "call.offer": CallOfferAck;
    "call.answer": CallAnswerAck;
    "call.ice": CallIceAck;
    "call.hangup": CallHangupAck;
}
export interface Connected {
    conn_id: string;
    node_id: string;
    user_id: UserId;
    tenant: string;
    ping_interval_ms: number;
    server_time: Timestamp;
}
/** the reply to a request with an op_id; its data is `ack` of the request's type */
export type AckData = {
    [key: string]: unknown;
};
export interface ErrorData {
    code: ErrorCode;
    message: string;
}
export interface ChatEdited {
    room: RoomName;
    id: string;
    text: string;
    version: number;
    edited_at: Timestamp;
    by: UserId;
}
export interface ChatTypingUser {
    room: RoomName;
    user_id: UserId;
    typing: boolean;
}
export interface ChatReceipt {
    room: RoomName;
    user_id: UserId;
    seq: number;
    kind: "read" | "delivered";
}
export interface ChatUploadProgress {
    room: RoomName;
    upload_id: string;
    user_id: UserId;
    name: string;
    size: number;
    sent: number;
}
export interface MemberJoined {
    room: RoomName;
    user_id: UserId;
    name: string;
}
export interface MemberLeft {
    room: RoomName;
    user_id: UserId;
}
export interface RoomReset {
    room: RoomName;
    epoch: string;
    seq: number;
    reason: "owner_lost" | "store_lost";
}
export interface RoomUpdate {
    room: RoomName;
    status: "joined" | "left";
    reason: "groups";
}
export interface DmMessage {
    id: string;
    from: UserId;
    name: string;
    to: UserId;
    text: string;
    attachments: Attachment[];
    ts: Timestamp;
    offline?: boolean;
    /** the sender's `meta` (a JSON object of at most 4 KiB), relayed and stored as sent */
    meta?: {
        [key: string]: unknown;
    };
}
export interface PresenceUpdate {
    user_id: UserId;
    status: PresenceStatus;
    message: string | null;
    devices: number;
    ts: Timestamp;
}
export interface PresencePongEvent {
    timestamp: Timestamp;
}
export interface DeviceOnline {
    user_id: UserId;
    conn_id: string;
}
export interface DeviceOffline {
    user_id: UserId;
    conn_id: string;
}
export interface RequestJoinPending {
    room: RoomName;
    user_id: UserId;
    name: string;
}
export interface RequestJoinApproved {
    room: RoomName;
    by: UserId;
}
export interface RequestJoinDenied {
    room: RoomName;
    by: UserId;
}
export interface AdminKick {
    room: RoomName;
    by: UserId;
}
export interface AdminBan {
    room: RoomName;
    by: UserId;
    until?: Timestamp;
}
export interface CallIncoming {
    from: UserId;
    call_id: string;
    sdp: string;
    kind: "audio" | "video" | "screen";
}
export interface CallAnswer {
    from: UserId;
    call_id: string;
    sdp: string;
}
export interface CallIce {
    from: UserId;
    call_id: string;
    candidate: string | {
        [key: string]: unknown;
    };
}
export interface CallEnded {
    call_id: string;
    by: UserId;
}
export interface Reconnect {
    reason: "drain" | "no_quorum" | "stalled";
    after_ms: number;
}
/** an admin broadcast (`POST /v1/broadcast`): any object */
export type SystemNotice = {
    [key: string]: unknown;
};
/** The `data` of every server frame, by `type`. */
export interface ServerEvents {
    "connected": Connected;
    "ack": AckData;
    "error": ErrorData;
    "chat.message": ChatMessage;
    "chat.edited": ChatEdited;
    "chat.deleted": ChatDeleted;
    "chat.redacted": ChatRedacted;
    "chat.reaction": ChatReaction;
    "chat.typing.user": ChatTypingUser;
    "chat.receipt": ChatReceipt;
    "chat.upload.progress": ChatUploadProgress;
    "member.joined": MemberJoined;
    "member.left": MemberLeft;
    "room.reset": RoomReset;
    "room.update": RoomUpdate;
    "dm.message": DmMessage;
    "presence.update": PresenceUpdate;
    "presence.pong": PresencePongEvent;
    "device.online": DeviceOnline;
    "device.offline": DeviceOffline;
    "request.join.pending": RequestJoinPending;
    "request.join.approved": RequestJoinApproved;
    "request.join.denied": RequestJoinDenied;
    "admin.kick": AdminKick;
    "admin.ban": AdminBan;
    "call.incoming": CallIncoming;
    "call.answer": CallAnswer;
    "call.ice": CallIce;
    "call.ended": CallEnded;
    "reconnect": Reconnect;
    "system.notice": SystemNotice;
}
export type RequestType = keyof ClientRequests;
export type ServerEventType = keyof ServerEvents;
/** A server frame: the envelope of docs/protocol.md. */
export interface ServerFrame<T extends string = string> {
    type: T;
    op_id?: string;
    data?: T extends ServerEventType ? ServerEvents[T] : unknown;
    ts?: string;
}
