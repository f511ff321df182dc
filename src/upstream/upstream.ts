/**
 * An upstream: a named set of endpoints, the balancer that chooses among
 * them, one connection pool per endpoint and the resilience state the
 * forwarding paths share. Knows nothing of routes. See README.md for the
 * narrower views other layers take of it.
 *
 * @module
 */

import type { LoadBalancerKind, UpstreamConfig } from "../config/types.ts";
import { CircuitBreaker, STATE_NAMES } from "./circuit_breaker.ts";
import { counterKey, type CounterSlots, FLAG_UNHEALTHY } from "./counters.ts";
import { Endpoint, inPanic } from "./endpoint.ts";
import { ConnectionPool } from "./pool.ts";
import { buildResilience, type Resilience } from "./resilience.ts";
import { type Balancer, createBalancer, type SelectInput } from "./selection.ts";
import { loadUpstreamTls } from "./tls.ts";

/** One endpoint in {@linkcode UpstreamInfo}. */
export interface EndpointInfo {
  address: string;
  weight: number;
  in_flight: number;
  healthy: boolean;
  draining: boolean;
  /** Ejected by outlier detection (until the ejection ends). */
  ejected?: boolean;
  /** Circuit breaker state ("closed" when the upstream has none). */
  circuit?: "closed" | "open" | "half_open";
}

/** An upstream's state as shown by `GET /upstreams`. */
export interface UpstreamInfo {
  name: string;
  load_balancer: LoadBalancerKind;
  /** Too few healthy endpoints: unhealthy ones get traffic too. */
  panic?: boolean;
  endpoints: EndpointInfo[];
}

/** A named group of endpoints behind one load balancer, with a connection pool per endpoint. */
export class Upstream {
  /** The upstream's name, as routes refer to it. */
  readonly name: string;
  /** The configuration it was built from. */
  readonly config: UpstreamConfig;
  /** Endpoints in config order. */
  readonly endpoints: readonly Endpoint[];
  /** Bulkhead, retry budget, outlier settings; null when the upstream has none (the plain path). */
  readonly resilience: Resilience | null;
  readonly #balancer: Balancer;
  readonly #pools = new Map<Endpoint, ConnectionPool>();

  /**
   * @param cfg the upstream's configuration.
   * @param counters in-flight counter slots; an endpoint keeps its slot (and
   *   count) across reloads because the key is `"name|address"`.
   * @param rand uniform [0, 1) source for the random balancers (tests pass a seeded one).
   * @param previous the same upstream in the previous snapshot: endpoints kept
   *   across the reload keep their circuit breakers and warm connection pools
   *   (health lives in shared memory); the bulkhead and retry budget carry over.
   *   Throws when a file of the upstream's `tls` block is unreadable.
   */
  constructor(cfg: UpstreamConfig, counters: CounterSlots, rand?: () => number, previous?: Upstream) {
    this.name = cfg.name;
    this.config = cfg;
    const endpoints = cfg.endpoints.map((e) => {
      const slot = counters.slot(counterKey(cfg.name, e.address));
      return new Endpoint(e, counters.counters, slot, counters.health);
    });
    this.endpoints = endpoints;
    // The panic rule only matters when something marks endpoints down.
    const watched = cfg.health_check?.enabled === true || cfg.outlier_detection?.enabled === true;
    const group = watched && cfg.panic_threshold > 0
      ? { endpoints, panicThreshold: cfg.panic_threshold }
      : null;
    const cb = cfg.circuit_breaker?.enabled === true ? cfg.circuit_breaker : undefined;
    for (const ep of endpoints) {
      ep.group = group;
      if (cb !== undefined) {
        const kept = previous?.endpoints.find((p) => p.address === ep.address)?.breaker;
        ep.breaker = kept ?? new CircuitBreaker(cb);
        ep.breaker.cfg = cb;
      }
    }
    this.#balancer = createBalancer(cfg, endpoints, rand);
    this.resilience = buildResilience(cfg, endpoints, previous?.resilience);
    // Read per snapshot, so a reload picks up renewed upstream CA/client certificates.
    const tls = loadUpstreamTls(cfg.tls, cfg.protocol);
    for (const ep of endpoints) {
      // An endpoint kept across a reload keeps its warm connections.
      let pool = previous?.poolAt(ep.address);
      if (pool !== undefined) {
        pool.cfg = cfg.pool;
        pool.tls = tls;
      } else pool = new ConnectionPool(ep.hostname, ep.port, cfg.pool, tls);
      this.#pools.set(ep, pool);
    }
  }

  /**
   * Chooses the endpoint for a request (per request: allocates nothing).
   * @param exclude the endpoint a retry just tried, avoided unless it is the only one available.
   * @returns null when no endpoint is available (answer 503).
   */
  select(input: SelectInput, exclude?: Endpoint): Endpoint | null {
    return this.#balancer.pick(input, exclude);
  }

  /** The connection pool of one of this upstream's endpoints. */
  pool(ep: Endpoint): ConnectionPool {
    return this.#pools.get(ep)!;
  }

  private poolAt(address: string): ConnectionPool | undefined {
    for (const [ep, p] of this.#pools) if (ep.address === address) return p;
    return undefined;
  }

  /** The pools of this upstream that `next` (its successor after a reload, if any) does not reuse. */
  poolsDroppedBy(next: Upstream | undefined): ConnectionPool[] {
    const out: ConnectionPool[] = [];
    for (const [ep, p] of this.#pools) if (next?.poolAt(ep.address) !== p) out.push(p);
    return out;
  }

  /** Data for `GET /upstreams`. */
  describe(): UpstreamInfo {
    return {
      name: this.name,
      load_balancer: this.config.load_balancer,
      panic: this.endpoints[0]?.group != null && inPanic(this.endpoints[0].group),
      endpoints: this.endpoints.map((e) => ({
        address: e.address,
        weight: e.weight,
        in_flight: e.inFlight,
        healthy: (e.cells.flags[e.cell] & FLAG_UNHEALTHY) === 0,
        draining: e.draining,
        ejected: e.ejected,
        circuit: STATE_NAMES[e.breaker?.state ?? 0],
      })),
    };
  }
}
