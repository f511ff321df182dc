/**
 * Bulkhead: at most `max_concurrent` requests of an upstream in flight, up to
 * `queue_size` more waiting at most `timeout` for a slot; beyond that the
 * proxy answers 503 at once.
 *
 * Per isolate: with `workers: N` the limit applies in each worker (a queue
 * cannot wait on slots freed in another isolate without cross-isolate
 * wake-ups). The object is kept across reloads while the upstream exists, so
 * requests in flight on the old snapshot still count against the new limit.
 *
 * @module
 */

import type { BulkheadConfig } from "../config/types.ts";

interface Waiter {
  resolve(granted: boolean): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** One upstream's concurrency limit (per isolate). */
export class Bulkhead {
  /** Requests holding a slot. */
  active = 0;
  /** Limits; replaced on reload. */
  cfg: BulkheadConfig;
  readonly #queue: Waiter[] = [];

  /** @param cfg the upstream's bulkhead block. */
  constructor(cfg: BulkheadConfig) {
    this.cfg = cfg;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Takes a slot if one is free (synchronous: the common case costs no promise). */
  tryEnter(): boolean {
    if (this.active < this.cfg.max_concurrent) {
      this.active++;
      return true;
    }
    return false;
  }

  /** Waits in the queue for a slot: true once granted, false when the queue is full or the wait timed out. */
  wait(): Promise<boolean> {
    if (this.#queue.length >= this.cfg.queue_size) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: Waiter = { resolve, timer: undefined };
      if (this.cfg.timeout > 0) {
        w.timer = setTimeout(() => {
          const i = this.#queue.indexOf(w);
          if (i !== -1) this.#queue.splice(i, 1);
          resolve(false);
        }, this.cfg.timeout);
      }
      this.#queue.push(w);
    });
  }

  /** Frees a slot, handing it straight to the oldest waiter if any. */
  leave(): void {
    const w = this.#queue.shift();
    if (w === undefined) {
      this.active--;
      return;
    }
    clearTimeout(w.timer);
    w.resolve(true);
  }
}
