/**
 * Free lists of equal-size byte buffers, so that connections take their
 * large read and write buffers on demand and give them back when they go idle
 * (issue 18 item 5: an idle keep-alive connection held 30-150 KiB of buffers).
 *
 * Why pools rather than fresh arrays: allocating an ArrayBuffer costs about a
 * microsecond in Deno, and 16-64 KiB arrays churned per request make V8 run
 * collections for their external memory. Why bounded: a burst of busy
 * connections must not pin its buffers for ever; beyond `max` a returned
 * buffer is left to the collector.
 *
 * A buffer may be given back only when nothing uses it any more: no read or
 * write in flight on it, no view of it handed to someone who may still look.
 * A pooled buffer holds another connection's old bytes, so owners only ever
 * read what they wrote into it.
 *
 * @module
 */

/** A bounded free list of buffers of one size. */
export class BufferPool {
  private readonly free: Uint8Array[] = [];

  /**
   * @param size bytes per buffer
   * @param max buffers kept at most
   */
  constructor(readonly size: number, readonly max: number) {}

  /** A buffer of `size` bytes (old contents: write before reading). */
  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.size);
  }

  /** Gives back a buffer nothing uses any more; one of another size (a grown one) is left to the collector. */
  give(b: Uint8Array): void {
    if (b.length === this.size && b.byteOffset === 0 && this.free.length < this.max) this.free.push(b);
  }

  /** Buffers waiting in the pool. */
  get idle(): number {
    return this.free.length;
  }
}

/**
 * 16 KiB buffers: HTTP/1.1 connections' read buffers (bodies, large heads) and
 * write buffers (response heads and coalesced bodies), and HTTP/2 frame
 * output.
 */
export const pool16k: BufferPool = new BufferPool(16 * 1024, 128);

/** 64 KiB buffers: HTTP/2 connections' read buffers while frames stream in. */
export const pool64k: BufferPool = new BufferPool(64 * 1024, 32);
