/**
 * Stable slots for the endpoints' in-flight counters in one shared Int32Array.
 *
 * The main thread owns the assignment: it reserves a slot per
 * `"upstream|host:port"` key and posts {@linkcode CounterSlots.snapshot} to the
 * workers, whose {@linkcode CounterSlots.attach} views the same memory. A key
 * keeps its slot across config reloads, so in-flight counts survive them.
 *
 * @module
 */

import type { UpstreamConfig } from "../config/types.ts";

/** Default number of counters: 256 KiB of shared memory. */
export const DEFAULT_COUNTER_CAPACITY = 65536;

/** What the main thread posts to workers (structured-clonable; the buffer is shared, not copied). */
export interface CounterSlotsSnapshot {
  buffer: SharedArrayBuffer | ArrayBuffer;
  /** `[key, slot]` pairs (pairs rather than an object so no key can collide with Object.prototype). */
  slots: [string, number][];
}

/** Options of the {@linkcode CounterSlots} constructor. */
export interface CounterSlotsOptions {
  /** Number of counters (fixed: shared memory cannot grow in place). Default {@linkcode DEFAULT_COUNTER_CAPACITY}. */
  capacity?: number;
  /** Back the counters with a SharedArrayBuffer (default true) or a plain ArrayBuffer. */
  shared?: boolean;
  /** View this snapshot's memory and slots instead, read-only (worker side). */
  snapshot?: CounterSlotsSnapshot;
}

/** The counter key of an endpoint of an upstream. */
export function counterKey(upstream: string, address: string): string {
  return `${upstream}|${address}`;
}

/** Assigns stable indices of a shared Int32Array to endpoint keys. */
export class CounterSlots {
  /** The counters, indexed by slot; `Endpoint` updates them with Atomics. */
  readonly counters: Int32Array;
  readonly #slots = new Map<string, number>();
  // Attached copies must not allocate: a slot chosen by a worker could collide
  // with one the main thread hands out for another key.
  readonly #owner: boolean;

  /**
   * Creates an owning allocator over new shared memory, or (with `snapshot`) a
   * read-only view of one posted by the main thread; see {@linkcode CounterSlotsOptions}.
   */
  constructor(options: CounterSlotsOptions = {}) {
    const { snapshot } = options;
    if (snapshot) {
      this.counters = new Int32Array(snapshot.buffer);
      for (const [key, slot] of snapshot.slots) {
        if (!Number.isInteger(slot) || slot < 0 || slot >= this.counters.length) {
          throw new RangeError(`CounterSlots: slot ${slot} of "${key}" out of range`);
        }
        this.#slots.set(key, slot);
      }
      this.#owner = false;
      return;
    }
    const capacity = options.capacity ?? DEFAULT_COUNTER_CAPACITY;
    if (!Number.isInteger(capacity) || capacity <= 0) {
      throw new RangeError(`CounterSlots: capacity must be a positive integer, got ${capacity}`);
    }
    const bytes = capacity * Int32Array.BYTES_PER_ELEMENT;
    this.counters = new Int32Array(
      options.shared === false ? new ArrayBuffer(bytes) : new SharedArrayBuffer(bytes),
    );
    this.#owner = true;
  }

  /** An owning allocator over plain (unshared) memory, for single-isolate use and tests. */
  static local(capacity: number = DEFAULT_COUNTER_CAPACITY): CounterSlots {
    return new CounterSlots({ capacity, shared: false });
  }

  /**
   * A read-only view of a snapshot posted by the main thread (in a worker):
   * same memory, same slots; {@linkcode slot} throws for keys the snapshot lacks.
   */
  static attach(snapshot: CounterSlotsSnapshot): CounterSlots {
    return new CounterSlots({ snapshot });
  }

  /** Number of keys with a slot. */
  get size(): number {
    return this.#slots.size;
  }

  /** Capacity of the counter array. */
  get capacity(): number {
    return this.counters.length;
  }

  /** The slot of `key`, or undefined if it has none. */
  get(key: string): number | undefined {
    return this.#slots.get(key);
  }

  /**
   * The slot of `key`, assigning the next free one on first use.
   * @throws Error when the array is full, or on an attached (worker) copy for an unknown key.
   */
  slot(key: string): number {
    const found = this.#slots.get(key);
    if (found !== undefined) return found;
    if (!this.#owner) {
      throw new Error(
        `CounterSlots: no counter slot for "${key}"; slots are assigned by the main thread, ` +
          `which must reserve them before posting its snapshot()`,
      );
    }
    // Slots are never freed (a late end() from a request that outlived a reload
    // would corrupt a reused slot), so the next free slot is the count.
    const slot = this.#slots.size;
    if (slot >= this.counters.length) {
      throw new Error(
        `CounterSlots: all ${this.counters.length} in-flight counter slots are used; ` +
          `cannot add "${key}" (too many distinct upstream endpoints since start)`,
      );
    }
    this.#slots.set(key, slot);
    return slot;
  }

  /** Reserves slots for every endpoint of `upstreams` (main thread, before posting a snapshot). */
  reserve(upstreams: readonly UpstreamConfig[]): void {
    for (const u of upstreams) {
      for (const e of u.endpoints) this.slot(counterKey(u.name, e.address));
    }
  }

  /** The buffer and assignment map, to post to workers. */
  snapshot(): CounterSlotsSnapshot {
    return { buffer: this.counters.buffer as SharedArrayBuffer | ArrayBuffer, slots: [...this.#slots] };
  }
}
