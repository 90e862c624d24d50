/** A fresh idempotency key (`client_id`): unique per page or process and call. */
export declare function newClientId(): string;
