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
import { SharedRegions } from "../core/shared_memory.ts";

/** Default number of counters: 256 KiB of shared memory. */
export const DEFAULT_COUNTER_CAPACITY = 65536;

/** What the main thread posts to workers (structured-clonable; the buffer is shared, not copied). */
export interface CounterSlotsSnapshot {
  buffer: SharedArrayBuffer | ArrayBuffer;
  /** `[key, slot]` pairs (pairs rather than an object so no key can collide with Object.prototype). */
  slots: [string, number][];
  /** Health cells (same slots); absent in snapshots of older callers, then local cells are made. */
  health?: SharedArrayBuffer | ArrayBuffer;
  /** Middleware state shared by the isolates (rate-limit tables): see {@linkcode CounterSlots.regions}. */
  regions?: [string, SharedArrayBuffer][];
}

/**
 * Per-endpoint health state shared by every isolate, indexed by the same slot
 * as the in-flight counters. Shared: the flags (active-check verdict, outlier
 * ejection, admin drain), the outlier detector's consecutive-failure count,
 * its ejection count and the time the current ejection ends. Probes run once,
 * in the main isolate, and write `flags`; workers read them on every pick and
 * update the outlier cells with Atomics. Circuit breakers, bulkheads and
 * retry budgets are per isolate (see their files).
 */
export class HealthCells {
  /** Bit set of {@linkcode FLAG_UNHEALTHY}, {@linkcode FLAG_EJECTED}, {@linkcode FLAG_DRAINING}. */
  readonly flags: Int32Array;
  /** Consecutive passive failures (outlier detection). */
  readonly fails: Int32Array;
  /** Times the endpoint was ejected (the ejection time grows with it). */
  readonly ejections: Int32Array;
  /** Date.now() at which the current ejection ends (plain writes: a torn read only shifts a deadline). */
  readonly until: Float64Array;
  /** The memory, to post to workers. */
  readonly buffer: SharedArrayBuffer | ArrayBuffer;

  /** Views `buffer` (made by {@linkcode HealthCells.allocate}). */
  constructor(buffer: SharedArrayBuffer | ArrayBuffer) {
    const cap = buffer.byteLength / 20;
    this.buffer = buffer;
    this.flags = new Int32Array(buffer, 0, cap);
    this.fails = new Int32Array(buffer, 4 * cap, cap);
    this.ejections = new Int32Array(buffer, 8 * cap, cap);
    this.until = new Float64Array(buffer, 12 * cap, cap);
  }

  /** New zeroed cells for `capacity` slots (capacity must be even so the Float64 view is aligned). */
  static allocate(capacity: number, shared = true): HealthCells {
    const cap = capacity + (capacity & 1);
    return new HealthCells(shared ? new SharedArrayBuffer(20 * cap) : new ArrayBuffer(20 * cap));
  }
}

/** Flag: active health checks consider the endpoint down. */
export const FLAG_UNHEALTHY = 1;
/** Flag: ejected by outlier detection until `HealthCells.until`. */
export const FLAG_EJECTED = 2;
/** Flag: drained by an admin (no new requests). */
export const FLAG_DRAINING = 4;

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
  /** Shared health state, same slots. */
  readonly health: HealthCells;
  /**
   * Named blocks of shared memory for middleware (a rate limit's key table),
   * reserved by the main thread for the config it posts and travelling with
   * these counters to every isolate.
   */
  readonly regions: SharedRegions;
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
      this.health = snapshot.health !== undefined
        ? new HealthCells(snapshot.health)
        : HealthCells.allocate(this.counters.length, false);
      this.regions = new SharedRegions({ regions: snapshot.regions ?? [] });
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
    this.health = HealthCells.allocate(capacity, options.shared !== false);
    this.regions = new SharedRegions();
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
    return {
      buffer: this.counters.buffer as SharedArrayBuffer | ArrayBuffer,
      slots: [...this.#slots],
      health: this.health.buffer,
      regions: this.regions.snapshot().regions,
    };
  }
}
