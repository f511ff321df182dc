/**
 * The per-request resilience state of an upstream, compiled once per snapshot:
 * bulkhead, retry budget, outlier detection settings, whether endpoints have
 * circuit breakers. Null for an upstream with none of those blocks, so its
 * requests take the plain forwarding path and pay nothing for them (active
 * health checks need nothing per request: balancers read the shared flags).
 * The same state serves the HTTP/1.1 and the HTTP/2 / gRPC forwarding paths
 * (src/proxy/resilient.ts), so a bulkhead counts requests of both.
 *
 * @module
 */

import type { OutlierDetectionConfig, UpstreamConfig } from "../config/types.ts";
import { Bulkhead } from "./bulkhead.ts";
import type { Endpoint } from "./endpoint.ts";
import { outlierFailure, outlierSuccess } from "./outlier.ts";
import { RetryBudget } from "./retry.ts";

/** What the resilient forwarding path needs of an upstream. */
export interface Resilience {
  /** Concurrency limit (per isolate), or null. */
  readonly bulkhead: Bulkhead | null;
  /** Active requests and retries (per isolate), kept across reloads. */
  readonly budget: RetryBudget;
  /** Passive health settings, or null. */
  readonly outlier: OutlierDetectionConfig | null;
  /** The upstream's endpoints (the ejection budget counts them). */
  readonly endpoints: readonly Endpoint[];
  /** Whether endpoints carry circuit breakers. */
  readonly breakers: boolean;
  /** Whether the upstream has a retry block (routes compile their own policy). */
  readonly retries: boolean;
}

/**
 * Compiles the resilience state of the upstream `c` with `endpoints`, reusing
 * the bulkhead and budget of `previous` (the same upstream before a reload) so
 * in-flight requests keep counting. Null when the upstream has no resilience block.
 */
export function buildResilience(
  c: UpstreamConfig,
  endpoints: readonly Endpoint[],
  previous: Resilience | null | undefined,
): Resilience | null {
  const bh = c.bulkhead?.enabled === true ? c.bulkhead : undefined;
  const od = c.outlier_detection?.enabled === true ? c.outlier_detection : undefined;
  const cb = c.circuit_breaker?.enabled === true;
  const retries = c.retry !== undefined && c.retry.max_retries > 0;
  if (bh === undefined && od === undefined && !cb && !retries) return null;
  let bulkhead: Bulkhead | null = null;
  if (bh !== undefined) {
    bulkhead = previous?.bulkhead ?? new Bulkhead(bh);
    bulkhead.cfg = bh;
  }
  return {
    bulkhead,
    budget: previous?.budget ?? new RetryBudget(),
    outlier: od ?? null,
    endpoints,
    breakers: cb,
    retries,
  };
}

/** Told when an endpoint's circuit breaker changes state (the gateway's metrics). */
export interface CircuitObserver {
  circuitState?(upstream: string, endpoint: string, state: number): void;
}

/**
 * Asks `ep`'s circuit breaker (it has one) to admit one more exchange of
 * `upstream`: a token for {@link judge}, or DENIED while its circuit is open.
 * A state change is told to `obs`.
 */
export function admit(upstream: string, ep: Endpoint, now: number, obs: CircuitObserver | null): number {
  const b = ep.breaker!;
  const before = b.state;
  const token = b.admit(now);
  if (b.state !== before) obs?.circuitState?.(upstream, ep.address, b.state);
  return token;
}

/**
 * The outcome of an exchange with `ep` that its breaker admitted with
 * `token`: to the breaker, if any (a state change told to `obs`), then to
 * outlier detection, if `rs` has it. HTTP requests and tcp connections alike.
 */
export function judge(
  upstream: string,
  rs: Resilience | null,
  ep: Endpoint,
  token: number,
  ok: boolean,
  now: number,
  obs: CircuitObserver | null,
): void {
  const b = ep.breaker;
  if (b !== null) {
    const before = b.state;
    b.record(token, ok, now);
    if (b.state !== before) obs?.circuitState?.(upstream, ep.address, b.state);
  }
  if (rs !== null && rs.outlier !== null) {
    if (ok) outlierSuccess(ep, rs.outlier, now);
    else outlierFailure(ep, rs.outlier, rs.endpoints, now);
  }
}
