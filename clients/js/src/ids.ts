let counter = 0;
const session = Math.random().toString(36).slice(2, 10);

/** A fresh idempotency key (`client_id`): unique per page or process and call. */
export function newClientId(): string {
  return `${session}-${Date.now().toString(36)}-${(++counter).toString(36)}`;
}
