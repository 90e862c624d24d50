import { Emitter } from "./emitter.js";
import { RingcastError } from "./errors.js";
import type { Acks, Attachment, ClientRequests, Connected, DeviceOffline, DeviceOnline, DmMessage, DmSendAck, PresenceUpdate, RequestType, ServerFrame } from "./protocol.js";
import { Room } from "./room.js";
/** What the client needs of a WebSocket: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
    }) => void) | null;
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
    backoff?: {
        initialMs?: number;
        maxMs?: number;
    };
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
/**
 * A connection to ringcast that keeps itself alive: requests are promises, rooms are joined
 * again with recovery after a reconnect, and sends made while disconnected are queued.
 */
export declare class Client extends Emitter<ClientEvents> {
    /** The URLs tried in turn (a reconnect moves to the next one). */
    readonly urls: string[];
    /** The `connected` data of the current connection. */
    info?: Connected;
    state: ConnectionState;
    readonly presence: {
        set: (status: "online" | "away" | "busy", message?: string) => Promise<Acks["presence.set"]>;
        subscribe: (users: string[]) => Promise<Acks["presence.subscribe"]>;
        unsubscribe: (users: string[]) => Promise<Acks["presence.unsubscribe"]>;
        query: (users: string[]) => Promise<Acks["presence.query"]>;
    };
    private readonly opts;
    private readonly WS;
    private readonly getToken?;
    private token?;
    private ws?;
    /** Incremented for each socket; events of an older socket are ignored. */
    private generation;
    private urlIndex;
    private attempt;
    private connectedAt;
    private everConnected;
    /** True once the rooms are joined again after `connected`: requests go out directly. */
    private ready;
    private order;
    private opCounter;
    private pending;
    private queue;
    private rooms;
    private presenceSubs;
    /** The last manual status set, set again after each reconnect. */
    private presenceStatus?;
    private reconnectAfterMs?;
    private lastFrameAt;
    private skewMs;
    private timers;
    private waiters;
    constructor(url: string | string[], options?: ClientOptions);
    /** Connects (if not connected yet); resolves on `connected`, rejects when the client stops. */
    connect(): Promise<ConnectedEvent>;
    /** The room `name` (the same object on every call); join it with `room.join()`. */
    room(name: string): Room;
    /** Sends a direct message; resolves with its ack `{id, ts}`. */
    dm(to: string, text: string, options?: DmOptions): Promise<DmSendAck>;
    /** Stops the client: closes the connection (1000) and rejects whatever waits. */
    close(): void;
    /** The URL of the current (or next) connection. */
    get url(): string;
    /**
     * Sends any request and resolves with its ack's data (rejects with a {@link RingcastError}).
     * While disconnected the request waits in the queue (bounded by `maxQueue`).
     */
    request<T extends RequestType>(type: T, data: ClientRequests[T]): Promise<Acks[T & keyof Acks]>;
    /** @internal Whether requests go out now (connected and rooms rejoined). */
    get isReady(): boolean;
    private open;
    private write;
    private transmit;
    private onText;
    private settle;
    private resend;
    private onConnected;
    /** Joins the rooms again (with `since`), sets the status and subscribes presence again, then sends what waited. */
    private resume;
    /** @internal A request that does not wait behind the queue (the rejoins of `resume`). */
    requestNow<T extends RequestType>(type: T, data: ClientRequests[T]): Promise<Acks[T & keyof Acks]>;
    private transmitInternal;
    /** @internal The generation of the current socket. */
    get currentGeneration(): number;
    /** Liveness: a connection silent for the ping interval gets a `presence.ping`; silent for the grace after that, it is dead. */
    private watchLiveness;
    /** With `getToken`: `auth.refresh` before the token expires. */
    private scheduleRefresh;
    /** The current socket is gone (closed by the server, or declared dead): clean up and decide. */
    private lost;
    private scheduleReconnect;
    private stop;
    private detach;
    private clearTimers;
}
