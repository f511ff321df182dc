/**
 * One backend address of an upstream, with its shared in-flight counter and
 * the availability flags the balancers consult on every pick.
 *
 * @module
 */

import type { EndpointConfig } from "../config/types.ts";
import type { CircuitBreaker } from "./circuit_breaker.ts";
import { FLAG_DRAINING, FLAG_EJECTED, FLAG_UNHEALTHY, HealthCells } from "./counters.ts";

/** The endpoints of one upstream, for the panic rule (too few healthy: use all). */
export interface HealthGroup {
  readonly endpoints: readonly Endpoint[];
  /** Percent (0-100) of healthy endpoints below which unhealthy ones are used anyway; 0 = never. */
  readonly panicThreshold: number;
}

const DOWN = FLAG_UNHEALTHY | FLAG_EJECTED;

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
  /** Shared health state (flags, outlier cells); index {@linkcode cell}. */
  readonly cells: HealthCells;
  /** This endpoint's index in {@linkcode cells}. */
  readonly cell: number;
  /** Set by the upstream when it has a panic threshold. */
  group: HealthGroup | null = null;
  /** This isolate's circuit breaker for the endpoint (kept across reloads), or null. */
  breaker: CircuitBreaker | null = null;

  readonly #counters: Int32Array;
  readonly #slot: number;
  readonly #flags: Int32Array;

  /**
   * @param cfg the endpoint's configuration.
   * @param counters shared in-flight counters (possibly over a SharedArrayBuffer
   *   shared by all worker isolates, hence Atomics).
   * @param slot this endpoint's index in `counters`.
   * @param cells shared health cells indexed by `slot`; private cells when absent (unit tests).
   */
  constructor(cfg: EndpointConfig, counters: Int32Array, slot: number, cells?: HealthCells) {
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
    if (cells !== undefined && slot < cells.flags.length) {
      this.cells = cells;
      this.cell = slot;
    } else {
      this.cells = HealthCells.allocate(2, false);
      this.cell = 0;
    }
    this.#flags = this.cells.flags;
  }

  /** False while active health checks or outlier detection consider the endpoint down. */
  get healthy(): boolean {
    return (this.#flags[this.cell] & DOWN) === 0;
  }

  /** Sets the active-health verdict (the main isolate's prober; tests). */
  set healthy(v: boolean) {
    if (v) Atomics.and(this.#flags, this.cell, ~FLAG_UNHEALTHY);
    else Atomics.or(this.#flags, this.cell, FLAG_UNHEALTHY);
  }

  /** True while an admin drains the endpoint: it gets no new requests. */
  get draining(): boolean {
    return (this.#flags[this.cell] & FLAG_DRAINING) !== 0;
  }

  set draining(v: boolean) {
    if (v) Atomics.or(this.#flags, this.cell, FLAG_DRAINING);
    else Atomics.and(this.#flags, this.cell, ~FLAG_DRAINING);
  }

  /** Whether outlier detection has ejected the endpoint (and the ejection has not ended). */
  get ejected(): boolean {
    return (this.#flags[this.cell] & FLAG_EJECTED) !== 0 && !this.#ejectionOver();
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

  /**
   * Whether the endpoint may receive new requests: healthy and not draining,
   * or down while its upstream is in panic (too few healthy endpoints).
   */
  get available(): boolean {
    // One plain read of shared memory on the hot path; everything else only
    // when some flag is set.
    const f = this.#flags[this.cell];
    return f === 0 || this.#availableSlow(f);
  }

  #availableSlow(f: number): boolean {
    if ((f & FLAG_DRAINING) !== 0) return false;
    if ((f & FLAG_EJECTED) !== 0 && this.#ejectionOver()) {
      // Lazy readmission: whichever isolate sees the ejection over clears it.
      Atomics.and(this.#flags, this.cell, ~FLAG_EJECTED);
      f &= ~FLAG_EJECTED;
      if (f === 0) return true;
    }
    const g = this.group;
    return g !== null && inPanic(g);
  }

  #ejectionOver(): boolean {
    return Date.now() >= this.cells.until[this.cell];
  }
}

/** Whether fewer than the panic threshold's share of `g`'s endpoints are healthy. */
export function inPanic(g: HealthGroup): boolean {
  if (g.panicThreshold <= 0) return false;
  let healthy = 0;
  const eps = g.endpoints;
  for (let i = 0; i < eps.length; i++) {
    const e = eps[i];
    const f = e.cells.flags[e.cell];
    if ((f & DOWN) === 0 || ((f & FLAG_UNHEALTHY) === 0 && !e.ejected)) healthy++;
  }
  return healthy * 100 < g.panicThreshold * eps.length;
}
