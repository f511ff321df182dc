/**
 * The local store of a rate limit: a fixed-size, open-addressed hash table in
 * one block of shared memory, used by every isolate of the process at once
 * (see {@link ../../core/shared_memory.ts}), and the two algorithms run on its
 * slots. Layout and locking are described in `index.ts`.
 *
 * Nothing here allocates: a decision writes its figures into {@linkcode last}.
 *
 * @module
 */

/** Bytes per slot: lock, two hash words and one int32 field, then two float64 fields. */
export const SLOT_BYTES = 32;
/** Slots looked at for one key (linear probing): the table is never scanned further. */
const PROBES = 16;
/** Added before flooring a token count: float error must not lose a whole token. */
const EPS = 1e-6;

/** Token bucket as GCRA (state: the theoretical arrival time) or sliding window counter. */
export type Algorithm = "token_bucket" | "sliding_window";

/** A limit's parameters, in ms. */
export interface LimitParams {
  algorithm: Algorithm;
  /** token_bucket: ms per token (emission interval); sliding_window: the window. */
  interval: number;
  /** token_bucket: the burst (bucket size); sliding_window: requests per window. */
  capacity: number;
}

/** The figures of the last decision (one object per process: read them right after the call). */
export const last = {
  /** Tokens granted (0: refused). */
  granted: 0,
  /** What is left after this decision. */
  remaining: 0,
  /** ms until a refused request could pass (0 when granted). */
  retryMs: 0,
  /** ms until the quota is whole again (token bucket) or the window ends (sliding window). */
  resetMs: 0,
};

/** Clock shared by the isolates of a process (performance.now() starts anew in each isolate). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Token bucket as GCRA over `tat`, the theoretical arrival time: takes up to
 * `n` tokens (at least one, else none) and returns the new `tat`. Figures go to {@linkcode last}.
 */
export function gcra(tat: number, now: number, p: LimitParams, n: number): number {
  const T = p.interval;
  const tau = p.capacity * T;
  if (tat < now) tat = now;
  const avail = Math.floor((now + tau - tat) / T + EPS);
  if (avail < 1) {
    last.granted = 0;
    last.remaining = 0;
    last.retryMs = tat + T - tau - now;
    last.resetMs = tat - now;
    return tat;
  }
  const k = n < avail ? n : avail;
  tat += k * T;
  last.granted = k;
  last.remaining = Math.floor((now + tau - tat) / T + EPS);
  last.retryMs = 0;
  last.resetMs = tat - now;
  return tat;
}

/** Sliding-window state (kept by the caller): window start (ms), requests in it and in the one before. */
export interface WindowState {
  start: number;
  cur: number;
  prev: number;
}

/**
 * Sliding window counter: the count is the current window's plus the previous
 * window's weighted by how much of it still overlaps the sliding window. Takes
 * up to `n` (at least one, else none); updates `s`. Figures go to {@linkcode last}.
 */
export function slidingWindow(s: WindowState, now: number, p: LimitParams, n: number): void {
  const W = p.interval;
  const L = p.capacity;
  const start = Math.floor(now / W) * W;
  if (s.start !== start) {
    s.prev = s.start === start - W ? s.cur : 0;
    s.cur = 0;
    s.start = start;
  }
  const elapsed = now - start;
  const est = s.prev * (W - elapsed) / W + s.cur;
  const avail = Math.floor(L - est + EPS);
  last.resetMs = W - elapsed;
  if (avail < 1) {
    last.granted = 0;
    last.remaining = 0;
    // When will est + 1 <= L? In this window if the current count leaves room, else in the next one.
    if (s.cur + 1 <= L) {
      last.retryMs = s.prev > 0 ? Math.max(0, W * (1 - (L - 1 - s.cur) / s.prev) - elapsed) : 0;
    } else {
      last.retryMs = W - elapsed + Math.max(0, W * (1 - (L - 1) / s.cur));
    }
    return;
  }
  const k = n < avail ? n : avail;
  s.cur += k;
  last.granted = k;
  last.remaining = Math.max(0, Math.floor(L - est - k + EPS));
  last.retryMs = 0;
}

// The key hash of the last hashKey() call (two words, so no object per call).
let hashA = 0;
let hashB = 0;

/** 64-bit hash of `key` (cyrb53 style, both halves kept) into hashA/hashB; never (0, 0). */
function hashKey(key: string): void {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  hashA = h1 | 0;
  hashB = (h2 | 0) === 0 && hashA === 0 ? 1 : h2 | 0;
}

/** Slots a table of `maxKeys` keys gets (a power of two, at least 16). */
export function tableSlots(maxKeys: number): number {
  let n = 16;
  while (n < maxKeys) n *= 2;
  return n;
}

/** Bytes of shared memory for a table of `maxKeys` keys. */
export function tableBytes(maxKeys: number): number {
  return tableSlots(maxKeys) * SLOT_BYTES;
}

/**
 * One limit's key table over `buffer` (shared: every isolate's table over the
 * same buffer sees the same counts). Slot `s`: i32[8s] lock, i32[8s+1..2]
 * key hash, i32[8s+3] sliding window's current count; f64[4s+2] GCRA's TAT or
 * the window start; f64[4s+3] the previous window's count.
 */
export class LocalTable {
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #mask: number;
  readonly #probes: number;
  readonly #win: WindowState = { start: 0, cur: 0, prev: 0 };
  /** Keys that pushed out a live entry because all their probe slots were taken (this isolate). */
  evictions = 0;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer) {
    const slots = buffer.byteLength / SLOT_BYTES;
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0) {
      throw new RangeError(`rate_limit table: ${buffer.byteLength} bytes is not a power-of-two slot count`);
    }
    this.#i32 = new Int32Array(buffer);
    this.#f64 = new Float64Array(buffer);
    this.#mask = slots - 1;
    this.#probes = Math.min(PROBES, slots);
  }

  /** When slot `s`'s state means nothing any more (a full bucket, or two windows ago). */
  #expiry(s: number, p: LimitParams): number {
    const a = this.#f64[4 * s + 2];
    return p.algorithm === "token_bucket" ? a : a + 2 * p.interval;
  }

  /** Finds or claims the slot of the last hashed key and returns it locked. */
  #lockSlot(now: number, p: LimitParams): number {
    const i32 = this.#i32;
    const a = hashA;
    const b = hashB;
    for (;;) {
      const base = a & this.#mask;
      let free = -1;
      let oldest = -1;
      let oldestAt = Infinity;
      for (let i = 0; i < this.#probes; i++) {
        const s = (base + i) & this.#mask;
        const h1 = Atomics.load(i32, 8 * s + 1);
        const h2 = Atomics.load(i32, 8 * s + 2);
        if (h1 === a && h2 === b) {
          lock(i32, 8 * s);
          if (i32[8 * s + 1] === a && i32[8 * s + 2] === b) return s;
          unlock(i32, 8 * s); // taken over meanwhile: look again
          free = -2;
          break;
        }
        if (h1 === 0 && h2 === 0) {
          // Slots are never emptied, so the key is not further on.
          if (free === -1) free = s;
          break;
        }
        const exp = this.#expiry(s, p);
        if (free === -1 && exp <= now) free = s;
        if (exp < oldestAt) {
          oldestAt = exp;
          oldest = s;
        }
      }
      if (free === -2) continue;
      const s = free >= 0 ? free : oldest;
      lock(i32, 8 * s);
      const h1 = i32[8 * s + 1];
      const h2 = i32[8 * s + 2];
      if (h1 === a && h2 === b) return s; // another isolate claimed it for this key
      const empty = h1 === 0 && h2 === 0;
      if (free >= 0 ? empty || this.#expiry(s, p) <= now : this.#expiry(s, p) <= oldestAt) {
        if (free < 0 && this.#expiry(s, p) > now) this.evictions++;
        i32[8 * s + 3] = 0;
        this.#f64[4 * s + 2] = p.algorithm === "token_bucket" ? 0 : -Infinity;
        this.#f64[4 * s + 3] = 0;
        Atomics.store(i32, 8 * s + 1, a);
        Atomics.store(i32, 8 * s + 2, b);
        return s;
      }
      unlock(i32, 8 * s); // changed meanwhile: look again
    }
  }

  /**
   * Takes up to `n` units for `key` (one request: 1); negative `n` gives
   * `-n` back (a request another limit refused). Figures go to {@linkcode last}.
   */
  take(key: string, p: LimitParams, n = 1, now = nowMs()): void {
    hashKey(key);
    const s = this.#lockSlot(now, p);
    const f64 = this.#f64;
    if (p.algorithm === "token_bucket") {
      if (n < 0) {
        f64[4 * s + 2] = Math.max(now, f64[4 * s + 2] + n * p.interval);
        last.granted = 0;
      } else f64[4 * s + 2] = gcra(f64[4 * s + 2], now, p, n);
    } else {
      const w = this.#win;
      w.start = f64[4 * s + 2];
      w.cur = this.#i32[8 * s + 3];
      w.prev = f64[4 * s + 3];
      if (n < 0) {
        if (w.start === Math.floor(now / p.interval) * p.interval) w.cur = Math.max(0, w.cur + n);
        last.granted = 0;
      } else slidingWindow(w, now, p, n);
      f64[4 * s + 2] = w.start;
      this.#i32[8 * s + 3] = w.cur;
      f64[4 * s + 3] = w.prev;
    }
    unlock(this.#i32, 8 * s);
  }
}

/** Spins until the lock word at `i` is ours (critical sections are a few float operations). */
function lock(i32: Int32Array, i: number): void {
  while (Atomics.compareExchange(i32, i, 0, 1) !== 0) { /* spin */ }
}

function unlock(i32: Int32Array, i: number): void {
  Atomics.store(i32, i, 0);
}
