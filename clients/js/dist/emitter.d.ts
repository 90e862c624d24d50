/** A small typed event emitter; a handler that throws is reported without breaking the client. */
export declare class Emitter<Events extends object> {
    private handlers;
    /** Adds a handler; returns a function that removes it. */
    on<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): () => void;
    /** Like `on`, removed after its first call. */
    once<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): () => void;
    off<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): void;
    protected emit<K extends keyof Events>(event: K, value: Events[K]): void;
}
