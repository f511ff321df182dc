/**
 * One backend address of an upstream, with its shared in-flight counter and
 * the availability flags the balancers consult on every pick.
 *
 * @module
 */

import type { EndpointConfig } from "../config/types.ts";

/** A backend address of an upstream, as seen by the load balancers. */
export class Endpoint {
  /** "host:port" as written in the config (IPv6 as "[::1]:8080"). */
  readonly address: string;
  /** Host part of {@linkcode address}. */
  readonly hostname: string;
  /** Port part of {@linkcode address}. */
  readonly port: number;
  /** Relative share of traffic for the weighted balancers; always > 0. */
  readonly weight: number;
  /** False while health checks or outlier detection consider the endpoint down. */
  healthy = true;
  /** True while an admin drains the endpoint: it gets no new requests. */
  draining = false;

  readonly #counters: Int32Array;
  readonly #slot: number;

  /**
   * @param cfg the endpoint's configuration.
   * @param counters shared in-flight counters (possibly over a SharedArrayBuffer
   *   shared by all worker isolates, hence Atomics).
   * @param slot this endpoint's index in `counters`.
   */
  constructor(cfg: EndpointConfig, counters: Int32Array, slot: number) {
    // Validation should have caught these; a bad weight would silently break the
    // weighted balancers' arithmetic, so fail loudly instead.
    if (!(cfg.weight > 0) || !Number.isFinite(cfg.weight)) {
      throw new RangeError(`endpoint ${cfg.address}: weight must be a positive number, got ${cfg.weight}`);
    }
    if (!Number.isInteger(slot) || slot < 0 || slot >= counters.length) {
      throw new RangeError(`endpoint ${cfg.address}: counter slot ${slot} out of range`);
    }
    this.address = cfg.address;
    this.hostname = cfg.hostname;
    this.port = cfg.port;
    this.weight = cfg.weight;
    this.#counters = counters;
    this.#slot = slot;
  }

  /** Requests currently in flight to this endpoint, summed over all isolates. */
  get inFlight(): number {
    // A plain read: aligned Int32Array reads of shared memory are tear-free and
    // a balancer needs no ordering, while Atomics.load costs ~6ns per endpoint
    // per pick (least_conn reads every endpoint).
    return this.#counters[this.#slot];
  }

  /** Counts a request as started; pair every call with {@linkcode end}. */
  begin(): void {
    Atomics.add(this.#counters, this.#slot, 1);
  }

  /** Counts a request as finished (response done, failed or aborted). */
  end(): void {
    Atomics.sub(this.#counters, this.#slot, 1);
  }

  /** Whether the endpoint may receive new requests: healthy and not draining. */
  get available(): boolean {
    return this.healthy && !this.draining;
  }
}
