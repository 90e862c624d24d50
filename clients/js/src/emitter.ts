/** A small typed event emitter; a handler that throws is reported without breaking the client. */
export class Emitter<Events extends object> {
  private handlers = new Map<keyof Events, Set<(value: never) => void>>();

  /** Adds a handler; returns a function that removes it. */
  on<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler as (value: never) => void);
    return () => this.off(event, handler);
  }

  /** Like `on`, removed after its first call. */
  once<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): () => void {
    const off = this.on(event, (value) => {
      off();
      handler(value);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, handler: (value: Events[K]) => void): void {
    this.handlers.get(event)?.delete(handler as (value: never) => void);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        (handler as (value: Events[K]) => void)(value);
      } catch (err) {
        // Reported like an uncaught error, after the client's own state is consistent.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}
