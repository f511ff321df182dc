/**
 * An upstream: a named set of endpoints and the balancer that chooses among
 * them. Knows nothing of routes or connections (the proxy layer keeps pools
 * keyed by {@linkcode Endpoint}).
 *
 * @module
 */

import type { LoadBalancerKind, UpstreamConfig } from "../config/types.ts";
import { counterKey, type CounterSlots } from "./counters.ts";
import { Endpoint } from "./endpoint.ts";
import { type Balancer, createBalancer, type SelectInput } from "./selection.ts";

/** One endpoint in {@linkcode UpstreamInfo}. */
export interface EndpointInfo {
  address: string;
  weight: number;
  in_flight: number;
  healthy: boolean;
  draining: boolean;
}

/** An upstream's state as shown by `GET /upstreams`. */
export interface UpstreamInfo {
  name: string;
  load_balancer: LoadBalancerKind;
  endpoints: EndpointInfo[];
}

/** A named group of endpoints behind one load balancer. */
export class Upstream {
  /** The upstream's name, as routes refer to it. */
  readonly name: string;
  /** The configuration it was built from. */
  readonly config: UpstreamConfig;
  /** Endpoints in config order. */
  readonly endpoints: readonly Endpoint[];
  readonly #balancer: Balancer;

  /**
   * @param cfg the upstream's configuration.
   * @param counters in-flight counter slots; an endpoint keeps its slot (and
   *   count) across reloads because the key is `"name|address"`.
   * @param rand uniform [0, 1) source for the random balancers (tests pass a seeded one).
   */
  constructor(cfg: UpstreamConfig, counters: CounterSlots, rand?: () => number) {
    this.name = cfg.name;
    this.config = cfg;
    const endpoints = cfg.endpoints.map((e) =>
      new Endpoint(e, counters.counters, counters.slot(counterKey(cfg.name, e.address)))
    );
    this.endpoints = endpoints;
    this.#balancer = createBalancer(cfg, endpoints, rand);
  }

  /**
   * Chooses the endpoint for a request (per request: allocates nothing).
   * @param exclude the endpoint a retry just tried, avoided unless it is the only one available.
   * @returns null when no endpoint is available (answer 503).
   */
  select(input: SelectInput, exclude?: Endpoint): Endpoint | null {
    return this.#balancer.pick(input, exclude);
  }

  /** Data for `GET /upstreams`. */
  describe(): UpstreamInfo {
    return {
      name: this.name,
      load_balancer: this.config.load_balancer,
      endpoints: this.endpoints.map((e) => ({
        address: e.address,
        weight: e.weight,
        in_flight: e.inFlight,
        healthy: e.healthy,
        draining: e.draining,
      })),
    };
  }
}
