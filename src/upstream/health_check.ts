/**
 * Active health checks. Probes run once per endpoint in the main isolate,
 * whatever the worker count, and publish their verdict as the
 * `FLAG_UNHEALTHY` bit of the shared {@linkcode HealthCells}, which every
 * worker's balancers read on each pick.
 *
 * Kinds: `http` (request `method path` with `Host`, healthy when the status is
 * in `expected_status` and the body contains `body_contains`), `tcp` (connect
 * only) and `grpc` (`grpc.health.v1.Health/Check` for `service`, healthy only
 * on OK + SERVING; over TLS when the upstream has a `tls` block or is
 * `protocol: h2`, else h2c). Each endpoint is probed every
 * `interval` plus a random jitter (spreads probes of many endpoints), with
 * `timeout`; `unhealthy_threshold` consecutive failures mark it down,
 * `healthy_threshold` consecutive successes up again. Endpoints start healthy.
 *
 * @module
 */

import type {
  EndpointConfig,
  HealthCheckConfig,
  LoomConfig,
  UpstreamConfig,
  UpstreamTlsConfig,
} from "../config/types.ts";
import { grpcHealthCheck } from "../grpc/health.ts";
import { logger } from "../observability/logger.ts";
import { counterKey, type CounterSlots, FLAG_UNHEALTHY } from "./counters.ts";
import { Endpoint } from "./endpoint.ts";
import { h2PoolFor } from "./h2_pool.ts";
import { ConnectionPool } from "./pool.ts";
import { loadUpstreamTls } from "./tls.ts";

const log = logger.child({ component: "health_check" });
const MAX_PROBE_RESPONSE = 64 * 1024;

/** Called when an endpoint's verdict changes. */
export type HealthListener = (upstream: string, endpoint: string, healthy: boolean) => void;

/** One endpoint's probe loop. */
class Probe {
  cfg: HealthCheckConfig;
  /** TLS of gRPC probes (from the upstream's `tls`/`protocol`); undefined = h2c. */
  tls: UpstreamTlsConfig | undefined;
  successes = 0;
  failures = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    readonly upstream: string,
    readonly ep: Endpoint,
    cfg: HealthCheckConfig,
    tls: UpstreamTlsConfig | undefined,
    readonly onChange: HealthListener | null,
  ) {
    this.cfg = cfg;
    this.tls = tls;
  }

  start(): void {
    // First probe soon (with jitter) so a dead endpoint is found quickly after start.
    this.#schedule(Math.random() * this.#jitter());
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #jitter(): number {
    return this.cfg.jitter ?? this.cfg.interval / 10;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), ms);
  }

  async #run(): Promise<void> {
    const ok = await probe(this.ep, this.cfg, this.tls).catch(() => false);
    if (this.#stopped) return;
    this.record(ok);
    this.#schedule(this.cfg.interval + Math.random() * this.#jitter());
  }

  /** Applies one probe result to the thresholds. */
  record(ok: boolean): void {
    const ep = this.ep;
    if (ok) {
      this.failures = 0;
      this.successes++;
      if (!ep.healthy && this.successes >= this.cfg.healthy_threshold) this.#set(true);
    } else {
      this.successes = 0;
      this.failures++;
      if (ep.healthy && this.failures >= this.cfg.unhealthy_threshold) this.#set(false);
    }
  }

  #set(healthy: boolean): void {
    // Only the active-check bit: an outlier ejection is independent.
    const wasDown = (this.ep.cells.flags[this.ep.cell] & FLAG_UNHEALTHY) !== 0;
    if (wasDown === !healthy) return;
    this.ep.healthy = healthy;
    log.info(healthy ? "endpoint healthy" : "endpoint unhealthy", {
      upstream: this.upstream,
      endpoint: this.ep.address,
    });
    this.onChange?.(this.upstream, this.ep.address, healthy);
  }
}

/**
 * Runs the probes of every upstream with a `health_check` block (main
 * isolate). {@linkcode update} on reload keeps the probes (and their
 * counts) of endpoints present in both configs.
 */
export class HealthMonitor {
  readonly #probes = new Map<string, Probe>();
  /** Endpoint keys of the current config. */
  #known = new Set<string>();
  #stopped = false;

  /**
   * @param slots the shared slots (the main isolate's owning allocator).
   * @param onChange told about verdict changes (metrics).
   */
  constructor(readonly slots: CounterSlots, readonly onChange: HealthListener | null = null) {}

  /** Starts, keeps or stops probes to match `config`. */
  update(config: LoomConfig): void {
    if (this.#stopped) return;
    const wanted = new Set<string>();
    const known = new Set<string>();
    for (const u of config.upstreams) {
      const hc = u.health_check?.enabled === true ? u.health_check : undefined;
      for (const e of u.endpoints) {
        const key = counterKey(u.name, e.address);
        known.add(key);
        const ep = this.#endpoint(key, e);
        if (hc === undefined) {
          // Checks removed: no stale verdict may keep the endpoint out.
          if (!ep.healthy) ep.healthy = true;
          continue;
        }
        wanted.add(key);
        const p = this.#probes.get(key);
        if (p !== undefined) {
          p.cfg = hc;
          p.tls = probeTls(u);
          continue;
        }
        const probe = new Probe(u.name, ep, hc, probeTls(u), this.onChange);
        this.#probes.set(key, probe);
        this.onChange?.(u.name, e.address, ep.healthy);
        probe.start();
      }
    }
    for (const [key, p] of this.#probes) {
      if (!wanted.has(key)) {
        p.stop();
        this.#probes.delete(key);
      }
    }
    // An endpoint that left the config forgets its health, ejection and drain
    // state, so re-adding it later starts clean.
    const cells = this.slots.health;
    for (const key of this.#known) {
      if (known.has(key)) continue;
      const slot = this.slots.get(key);
      if (slot === undefined) continue;
      Atomics.store(cells.flags, slot, 0);
      Atomics.store(cells.fails, slot, 0);
      Atomics.store(cells.ejections, slot, 0);
    }
    this.#known = known;
  }

  /** Stops every probe. */
  stop(): void {
    this.#stopped = true;
    for (const p of this.#probes.values()) p.stop();
    this.#probes.clear();
  }

  #endpoint(key: string, e: EndpointConfig): Endpoint {
    const slot = this.slots.slot(key);
    return new Endpoint(e, this.slots.counters, slot, this.slots.health);
  }
}

/**
 * The TLS settings gRPC probes of `u` use: its `tls` block, or default
 * verification for `protocol: h2` without one (as the proxy's sessions do).
 */
function probeTls(u: UpstreamConfig): UpstreamTlsConfig | undefined {
  return u.tls ?? (u.protocol === "h2" ? { insecure_skip_verify: false } : undefined);
}

/**
 * One probe of `ep`; resolves true when healthy. Never rejects on network errors.
 * @param tls for `grpc` probes: h2 over TLS with these settings (undefined = h2c).
 */
export async function probe(
  ep: { hostname: string; port: number; address: string },
  hc: HealthCheckConfig,
  tls?: UpstreamTlsConfig,
): Promise<boolean> {
  // Its own HTTP/2 client, session and timeout (never the proxy's sessions).
  if (hc.type === "grpc") return await grpcProbe(ep, hc.service ?? "", hc.timeout, tls);
  let conn: Deno.TcpConn | null = null;
  let timedOut = false;
  let expired!: (e: Error) => void;
  const expiry = new Promise<never>((_, reject) => expired = reject);
  expiry.catch(() => {});
  // One timer bounds the whole probe: connect, write and read.
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch { /* closed */ }
    expired(new Error("health check timed out"));
  }, hc.timeout);
  try {
    const connecting = Deno.connect({ hostname: ep.hostname, port: ep.port, transport: "tcp" });
    try {
      conn = await Promise.race([connecting, expiry]);
    } catch (e) {
      connecting.then((c) => c.close(), () => {});
      throw e;
    }
    if (timedOut) return false;
    if (hc.type === "tcp") return true;
    const host = hc.host ?? ep.address;
    const req = `${hc.method} ${hc.path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: loom-health-check\r\n` +
      `Accept: */*\r\nConnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(req));
    const buf = new Uint8Array(MAX_PROBE_RESPONSE);
    let n = 0;
    let status = 0;
    let bodyStart = -1;
    let want = -1;
    while (n < buf.length) {
      const r = await conn.read(buf.subarray(n));
      if (r === null) break;
      n += r;
      if (bodyStart === -1) {
        const text = latin1(buf.subarray(0, n));
        const end = text.indexOf("\r\n\r\n");
        if (end === -1) continue;
        bodyStart = end + 4;
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
        status = m ? Number(m[1]) : 0;
        if (hc.body_contains === undefined) break;
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
        if (cl !== null) want = bodyStart + Number(cl[1]);
      }
      if (want !== -1 && n >= want) break;
    }
    if (!hc.expected_status.some(([lo, hi]) => status >= lo && status <= hi)) return false;
    if (hc.body_contains !== undefined) {
      if (bodyStart === -1) return false;
      return new TextDecoder().decode(buf.subarray(bodyStart, n)).includes(hc.body_contains);
    }
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

/**
 * A gRPC health check of one endpoint (`grpc.health.v1.Health/Check` for
 * `service`): true only on OK + SERVING within `timeout` ms, connecting
 * included. h2 over TLS with `tls`, else h2c.
 */
export async function grpcProbe(
  ep: { hostname: string; port: number; address: string },
  service: string,
  timeout: number,
  tls?: UpstreamTlsConfig,
): Promise<boolean> {
  const deadline = Date.now() + timeout;
  // A throwaway pool: health checks must not share (or be blocked by) the proxy's sessions.
  const pool = new ConnectionPool(
    ep.hostname,
    ep.port,
    { max_idle: 0, idle_timeout: 1000, max_connections: 0 },
    loadUpstreamTls(tls),
  );
  try {
    const { conn, done } = await h2PoolFor(pool).acquire(timeout);
    try {
      const scheme = pool.tls !== null ? "https" : "http";
      return await grpcHealthCheck(conn, { authority: ep.address, scheme, service, deadline });
    } finally {
      done();
    }
  } catch {
    return false;
  } finally {
    pool.close();
  }
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 8192)));
  }
  return s;
}
