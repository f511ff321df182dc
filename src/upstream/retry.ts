/**
 * Retry policy of a route to an upstream, compiled once per snapshot, and the
 * per-upstream retry budget.
 *
 * A retry happens only when nothing of the response reached the client, for
 * connect failures, resets, timeouts and `retryable_codes`; for idempotent
 * methods unless the route (or upstream) sets `retry_non_idempotent`; with a
 * request body only when it fits `max_body_size` (it is then kept in memory
 * and resent), except that a connect failure, which sent nothing, may always
 * be retried. Backoff is exponential with full jitter: before retry k the
 * proxy waits a uniform random time in [0, min(backoff_max, backoff_base·2^(k-1))].
 * The budget keeps concurrent retries at most `budget` × the upstream's active
 * requests (and at least {@linkcode MIN_RETRY_CONCURRENCY}), so retries cannot
 * storm a sick backend.
 *
 * @module
 */

import type { RetryConfig } from "../config/types.ts";

/** Retries always allowed in flight at once, whatever the budget says (Envoy's min_retry_concurrency). */
export const MIN_RETRY_CONCURRENCY = 3;

/** Active requests and retries of one upstream in this isolate; kept across reloads. */
export class RetryBudget {
  /** Requests in flight through the resilient path. */
  active = 0;
  /** Retries in flight. */
  retrying = 0;

  /** Whether one more retry fits the budget `ratio`. */
  allows(ratio: number): boolean {
    return this.retrying < Math.max(MIN_RETRY_CONCURRENCY, ratio * this.active);
  }
}

/** A route's compiled retry settings. */
export interface RetryPolicy {
  readonly maxRetries: number;
  readonly backoffBase: number;
  readonly backoffMax: number;
  /** Statuses that trigger a retry (the response is discarded unread). */
  readonly codes: ReadonlySet<number>;
  /** Per-attempt timeout, or undefined for the route's. */
  readonly perTryTimeout: number | undefined;
  readonly nonIdempotent: boolean;
  /** Largest request body kept for replay (bytes). */
  readonly maxBody: number;
  /** Share of active requests that may be retries. */
  readonly budget: number;
}

/** Compiles the upstream's retry block with the route's opt-in; null when retries are off. */
export function compileRetry(cfg: RetryConfig | undefined, routeNonIdempotent?: boolean): RetryPolicy | null {
  if (cfg === undefined || cfg.max_retries <= 0) return null;
  return {
    maxRetries: cfg.max_retries,
    backoffBase: cfg.backoff_base,
    backoffMax: Math.max(cfg.backoff_base, cfg.backoff_max),
    codes: new Set(cfg.retryable_codes),
    perTryTimeout: cfg.per_try_timeout,
    nonIdempotent: routeNonIdempotent ?? cfg.retry_non_idempotent,
    maxBody: cfg.max_body_size,
    budget: cfg.budget,
  };
}

/** Full-jitter backoff before retry number `retry` (1-based), in ms. */
export function backoff(p: RetryPolicy, retry: number, rand: () => number = Math.random): number {
  const cap = Math.min(p.backoffMax, p.backoffBase * 2 ** (retry - 1));
  return rand() * cap;
}
