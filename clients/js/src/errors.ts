import type { ErrorCode } from "./protocol.js";

/**
 * The codes a request can fail with: the server's error codes (docs/protocol.md), and the
 * client's own: `timeout` (no answer within `requestTimeoutMs`), `disconnected` (the
 * connection was lost before the answer of a request that is not safe to repeat), `closed`
 * (`client.close()`), `queue_full` (more than `maxQueue` requests waiting for a connection).
 */
export type ClientErrorCode = ErrorCode | "timeout" | "disconnected" | "closed" | "queue_full";

/** The error a request's promise is rejected with, and what the `error` event carries. */
export class RingcastError extends Error {
  /** The protocol's error code, or one of the client's (see {@link ClientErrorCode}). */
  readonly code: ClientErrorCode;
  /** The request type that failed, when the error answers a request. */
  readonly requestType?: string;

  constructor(code: ClientErrorCode, message: string, requestType?: string) {
    super(requestType ? `${requestType}: ${message}` : message);
    this.name = "RingcastError";
    this.code = code;
    this.requestType = requestType;
  }
}
