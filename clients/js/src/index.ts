export { Client, type ClientEvents, type ClientOptions, type ConnectedEvent, type ConnectionState } from "./client.js";
export type { DisconnectedEvent, DmOptions, ReconnectingEvent, WebSocketConstructor, WebSocketLike } from "./client.js";
export { RingcastError, type ClientErrorCode } from "./errors.js";
export { newClientId } from "./ids.js";
export { Room, type ResetEvent, type RoomEvents, type SendOptions } from "./room.js";
export type * from "./protocol.js";
