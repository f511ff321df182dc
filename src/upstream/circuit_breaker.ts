/**
 * Circuit breaker per endpoint (Hystrix-style state machine):
 *
 *   closed ──(failure_threshold consecutive failures, or failure_ratio over the
 *             rolling window once min_requests were seen)──► open
 *   open ──(timeout elapsed)──► half-open: at most half_open_max probes at once
 *   half-open ──(success_threshold successes)──► closed;  any failure ──► open
 *
 * Failures are 5xx answers and connect errors, resets and timeouts. An open
 * circuit fails fast (the proxy answers 503 with Retry-After).
 *
 * State is per isolate: each worker trips on what it sees (a breaker reacts
 * within a few requests, so sharing buys little and would put atomics on every
 * response). The breaker object is kept across reloads for endpoints present
 * in both configs.
 *
 * @module
 */

import type { CircuitBreakerConfig } from "../config/types.ts";

/** Breaker states, also the value of `loom_circuit_breaker_state`. */
export const CLOSED = 0;
/** Open: requests fail fast. */
export const OPEN = 1;
/** Half-open: a bounded number of probe requests decide. */
export const HALF_OPEN = 2;

/** State names as `GET /upstreams` shows them. */
export const STATE_NAMES = ["closed", "open", "half_open"] as const;

/** What {@linkcode CircuitBreaker.admit} returns. */
export const DENIED = 0;
/** Admitted while closed. */
export const ADMITTED = 1;
/** Admitted as a half-open probe. */
export const PROBE = 2;

const BUCKETS = 10;

/** One endpoint's breaker (per isolate). */
export class CircuitBreaker {
  /** {@linkcode CLOSED}, {@linkcode OPEN} or {@linkcode HALF_OPEN}. */
  state = CLOSED;
  /** Called on every state change (metrics). */
  onChange: ((state: number) => void) | null = null;
  cfg: CircuitBreakerConfig;
  #consecutive = 0;
  #openedAt = 0;
  #probes = 0;
  #probeSuccesses = 0;
  readonly #ok = new Int32Array(BUCKETS);
  readonly #bad = new Int32Array(BUCKETS);
  readonly #bucketId = new Float64Array(BUCKETS).fill(-1);

  /** @param cfg the upstream's circuit_breaker block. */
  constructor(cfg: CircuitBreakerConfig) {
    this.cfg = cfg;
  }

  /**
   * Whether a request may go to the endpoint now.
   * @returns {@linkcode DENIED}, {@linkcode ADMITTED} or {@linkcode PROBE}; pass it to {@linkcode record}.
   */
  admit(now: number): number {
    if (this.state === CLOSED) return ADMITTED;
    if (this.state === OPEN) {
      if (now - this.#openedAt < this.cfg.timeout) return DENIED;
      this.#set(HALF_OPEN);
      this.#probes = 0;
      this.#probeSuccesses = 0;
    }
    if (this.#probes >= this.cfg.half_open_max) return DENIED;
    this.#probes++;
    return PROBE;
  }

  /** Seconds until the circuit may half-open (for Retry-After; at least 1). */
  retryAfter(now: number): number {
    return Math.max(1, Math.ceil((this.#openedAt + this.cfg.timeout - now) / 1000));
  }

  /** Gives back an admission that produced no verdict (the client went away). */
  cancel(token: number): void {
    if (token === PROBE && this.#probes > 0) this.#probes--;
  }

  /** Records the outcome of a request admitted with `token`. */
  record(token: number, ok: boolean, now: number): void {
    if (token === PROBE) {
      if (this.#probes > 0) this.#probes--;
      if (this.state !== HALF_OPEN) return;
      if (!ok) return this.#open(now);
      if (++this.#probeSuccesses >= this.cfg.success_threshold) this.#close();
      return;
    }
    if (token !== ADMITTED || this.state !== CLOSED) return;
    const cfg = this.cfg;
    const ratio = cfg.failure_ratio;
    if (ok) {
      this.#consecutive = 0;
      if (ratio !== undefined) this.#count(now, true);
      return;
    }
    if (++this.#consecutive >= cfg.failure_threshold) return this.#open(now);
    if (ratio !== undefined) {
      this.#count(now, false);
      let ok = 0;
      let bad = 0;
      const current = Math.floor(now / this.#bucketMs());
      for (let i = 0; i < BUCKETS; i++) {
        if (this.#bucketId[i] > current - BUCKETS) {
          ok += this.#ok[i];
          bad += this.#bad[i];
        }
      }
      const total = ok + bad;
      if (total >= (cfg.min_requests ?? 0) && total > 0 && bad / total >= ratio) this.#open(now);
    }
  }

  #bucketMs(): number {
    return Math.max(1, (this.cfg.window ?? 10_000) / BUCKETS);
  }

  #count(now: number, ok: boolean): void {
    const id = Math.floor(now / this.#bucketMs());
    const i = id % BUCKETS;
    if (this.#bucketId[i] !== id) {
      this.#bucketId[i] = id;
      this.#ok[i] = 0;
      this.#bad[i] = 0;
    }
    if (ok) this.#ok[i]++;
    else this.#bad[i]++;
  }

  #open(now: number): void {
    this.#openedAt = now;
    this.#probes = 0;
    this.#set(OPEN);
  }

  #close(): void {
    this.#consecutive = 0;
    this.#ok.fill(0);
    this.#bad.fill(0);
    this.#bucketId.fill(-1);
    this.#set(CLOSED);
  }

  #set(state: number): void {
    if (this.state === state) return;
    this.state = state;
    this.onChange?.(state);
  }
}
