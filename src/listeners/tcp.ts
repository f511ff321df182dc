/**
 * The `tcp` listener: byte streams proxied to an upstream, as Envoy's
 * tcp_proxy. Per connection:
 *
 * 1. With `sni_routes`, the TLS ClientHello is read (never terminated:
 *    passthrough) and its server name picks the upstream; a connection whose
 *    name matches no route goes to `upstream`, or is closed without one.
 *    Without `sni_routes` nothing is read first (server-speaks-first
 *    protocols work).
 * 2. The network filters (`plugins`, wasm/network.ts) see the new connection.
 * 3. The upstream's bulkhead admits the connection (it holds a slot for its
 *    whole life, as Envoy's max_connections: a connection is what a byte
 *    stream has to count), waiting in its queue as requests do; refused, it
 *    is closed at once. An endpoint is chosen by the upstream's load
 *    balancer (endpoints that health checks or outlier detection marked down
 *    are skipped, an open circuit breaker sends it to another endpoint, all
 *    open closes it); a connect failure counts towards outlier detection and
 *    the breaker, and tries another endpoint when the upstream's
 *    `retry.max_retries` allows, bounded by its `connect_timeout` per attempt.
 * 4. Bytes are copied both ways with backpressure (one read in flight per
 *    direction, each written before the next read); an end of stream from
 *    one side half-closes the other; the connection ends when both
 *    directions ended, on an error, after `idle_timeout` without a byte, or
 *    when a filter closes it.
 *
 * The upstream objects come from the snapshot current at accept time: a
 * reload applies to new connections, established ones keep theirs.
 *
 * @module
 */
import type { ListenerConfig } from "../config/types.ts";
import { connectionClosed, connectionOpened } from "../net/memory_return.ts";
import { readOpOf } from "../net/read_op.ts";
import { MAX_CLIENT_HELLO, peekClientHello } from "../net/tls_client_hello.ts";
import { logger } from "../observability/logger.ts";
import type { Counter, Registry } from "../observability/metrics.ts";
import type { Bulkhead } from "../upstream/bulkhead.ts";
import { ADMITTED, DENIED } from "../upstream/circuit_breaker.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { admit, judge } from "../upstream/resilience.ts";
import type { Upstream } from "../upstream/upstream.ts";
import {
  checkNetworkFilters,
  type Direction,
  DOWNSTREAM,
  MAX_HELD,
  NetworkSession,
  PeerType,
  UPSTREAM,
} from "../wasm/network.ts";
import type { PluginManager } from "../wasm/plugin.ts";
import type { ProxyObserver } from "../proxy/forward.ts";
import type { ConnectionHooks } from "./http1.ts";

const EMPTY = new Uint8Array(0);
/** Read size per direction. */
const CHUNK = 64 * 1024;
const log = logger.child({ component: "tcp" });

/** What a tcp listener reads of the current snapshot (gateway/snapshot.ts satisfies it). */
export interface TcpRouting {
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly plugins: Pick<PluginManager, "get">;
}

/** The listener's `sni_routes`, compiled: exact names, then the longest matching `*.` suffix. */
export class SniTable {
  private exact = new Map<string, string>();
  /** [".suffix", upstream], longest first. */
  private wild: [string, string][] = [];

  constructor(routes: readonly { server_names: readonly string[]; upstream: string }[]) {
    for (const r of routes) {
      for (const raw of r.server_names) {
        const n = raw.toLowerCase().replace(/\.$/, "");
        if (n.startsWith("*.")) this.wild.push([n.slice(1), r.upstream]);
        else if (!this.exact.has(n)) this.exact.set(n, r.upstream);
      }
    }
    this.wild.sort((a, b) => b[0].length - a[0].length);
  }

  get size(): number {
    return this.exact.size + this.wild.length;
  }

  /** The upstream for server name `sni` (lower case), undefined when no route names it. */
  pick(sni: string): string | undefined {
    const e = this.exact.get(sni);
    if (e !== undefined) return e;
    for (const [suffix, up] of this.wild) if (sni.length > suffix.length && sni.endsWith(suffix)) return up;
    return undefined;
  }
}

/** loom_tcp_* metrics of one registry. */
interface TcpMetrics {
  connections: Counter;
  bytes: Counter;
}

const metricsOf = new WeakMap<Registry, TcpMetrics>();

function tcpMetrics(r: Registry | null): TcpMetrics | null {
  if (r === null) return null;
  let m = metricsOf.get(r);
  if (m === undefined) {
    m = {
      connections: r.counter(
        "loom_tcp_connections_total",
        "Connections of tcp listeners by outcome: proxied (upstream connected), no_route, " +
          "no_endpoint, connect_failed, overflow (the upstream's bulkhead was full), circuit_open " +
          "(every endpoint's circuit breaker open), closed (by a filter or before the upstream was chosen).",
        ["listener", "upstream", "result"],
      ),
      bytes: r.counter(
        "loom_tcp_bytes_total",
        "Bytes tcp listeners forwarded, by direction: upstream (client to upstream) or downstream.",
        ["listener", "direction"],
      ),
    };
    metricsOf.set(r, m);
  }
  return m;
}

/** A `tcp` listener. */
export class TcpListener {
  readonly addr: Deno.NetAddr;
  /** `sni_routes` compiled; replaced with `cfg` by update. */
  sni: SniTable;
  readonly metrics: TcpMetrics | null;
  private conns = new Set<TcpConnection>();
  private closing = false;
  private emptied: (() => void)[] = [];

  constructor(
    private listener: Deno.Listener,
    public cfg: ListenerConfig,
    readonly routing: () => TcpRouting,
    readonly hooks: ConnectionHooks = {},
    registry: Registry | null = null,
    /** Told about circuit breaker state changes (the gateway's metrics). */
    readonly observer: Pick<ProxyObserver, "circuitState"> | null = null,
  ) {
    this.addr = listener.addr as Deno.NetAddr;
    this.sni = new SniTable(cfg.sni_routes ?? []);
    this.metrics = tcpMetrics(registry);
    checkNetworkFilters(routing().plugins, cfg.plugins ?? [], cfg.name);
    void this.acceptLoop();
  }

  get connections(): number {
    return this.conns.size;
  }

  /**
   * Reload: new settings (upstreams, SNI routes, filters, timeouts) for the
   * connections accepted from now on, on the same socket; established ones
   * keep theirs. False when the socket itself changes (address).
   */
  update(cfg: ListenerConfig): boolean {
    if (cfg.protocol !== "tcp" || cfg.address !== this.cfg.address || this.closing) return false;
    this.cfg = cfg;
    this.sni = new SniTable(cfg.sni_routes ?? []);
    checkNetworkFilters(this.routing().plugins, cfg.plugins ?? [], cfg.name);
    return true;
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.listener.accept();
      } catch (e) {
        if (this.closing || e instanceof Deno.errors.BadResource) return;
        await new Promise((r) => setTimeout(r, 50)); // EMFILE and friends: back off, do not spin
        continue;
      }
      if (this.cfg.max_connections > 0 && this.conns.size >= this.cfg.max_connections) {
        this.hooks.refused?.(this.cfg.name);
        conn.close();
        continue;
      }
      const c = new TcpConnection(conn as Deno.TcpConn, this);
      this.conns.add(c);
      this.hooks.opened?.(this.cfg.name);
      connectionOpened();
      c.run().catch((e) => log.error("tcp connection failed", { listener: this.cfg.name, error: String(e) }))
        .finally(() => {
          this.conns.delete(c);
          this.hooks.closed?.(this.cfg.name);
          connectionClosed();
          if (this.conns.size === 0) { for (const w of this.emptied.splice(0)) w(); }
        });
    }
  }

  /** Stops accepting; established connections go on (a byte stream has no request to finish). */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    try {
      this.listener.close();
    } catch { /* already closed */ }
  }

  /** Resolves when every connection has ended. */
  drained(): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve();
    return new Promise((r) => this.emptied.push(r));
  }

  /** Closes every connection at once. */
  closeAll(): void {
    this.close();
    for (const c of this.conns) c.close("listener closed");
  }
}

/** One proxied connection. */
class TcpConnection {
  private up: Deno.TcpConn | null = null;
  private session: NetworkSession | null = null;
  private closed = false;
  /** A side's read ended (end of stream or error) before Loom closed it: that peer closed. */
  private ended: [boolean, boolean] = [false, false];
  private last = performance.now();
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private upstreamName = "";
  /** The listener's settings when this connection came (a reload applies to later ones). */
  private readonly cfg: ListenerConfig;
  private readonly sni: SniTable;

  constructor(readonly down: Deno.TcpConn, readonly owner: TcpListener) {
    this.cfg = owner.cfg;
    this.sni = owner.sni;
  }

  async run(): Promise<void> {
    const cfg = this.cfg;
    let ep: Endpoint | null = null;
    let slot: Bulkhead | null = null;
    try {
      this.armIdle();
      let first: Uint8Array = EMPTY;
      let sni: string | null = null;
      if (this.sni.size > 0) {
        const hello = await this.readHello();
        if (hello === null) return this.count("closed");
        first = hello.bytes;
        sni = hello.sni;
      }
      const name = (sni !== null ? this.sni.pick(sni) : undefined) ?? cfg.upstream;
      if (name === undefined) return this.count("no_route");
      this.upstreamName = name;
      const routing = this.owner.routing();
      const upstream = routing.upstreams.get(name);
      if (upstream === undefined) return this.count("no_route");
      const session = await NetworkSession.start(routing.plugins, cfg.plugins ?? [], {
        source: this.down.remoteAddr,
        destination: this.down.localAddr,
        sni,
      }, {
        write: (dir, data, eos) => this.write(dir, data, eos),
        close: (why) => this.close(why),
      }, cfg.name);
      this.session = session;
      if (this.closed) return this.count("closed");
      // The bulkhead after the filters, as Envoy's tcp_proxy (the last filter) checks its limit.
      const bh = upstream.resilience?.bulkhead ?? null;
      if (bh !== null) {
        if (!bh.tryEnter() && !(await bh.wait())) return this.count("overflow");
        slot = bh;
        if (this.closed) return this.count("closed");
      }
      const connected = await this.connect(upstream);
      if (connected === null || this.closed) return;
      ep = connected;
      ep.begin();
      if (session !== null) session.upstreamAddress = ep.address;
      this.count("proxied");
      if (first.length > 0) await this.forward(DOWNSTREAM, first);
      await Promise.all([this.pump(DOWNSTREAM), this.pump(UPSTREAM)]);
    } finally {
      clearTimeout(this.idleTimer);
      this.close("");
      ep?.end();
      slot?.leave();
      const peer = (d: Direction) => this.ended[d] ? PeerType.REMOTE : PeerType.LOCAL;
      await this.session?.finish(peer(DOWNSTREAM), this.up !== null ? peer(UPSTREAM) : null);
    }
  }

  private count(result: string): void {
    this.owner.metrics?.connections.labels(this.cfg.name, this.upstreamName, result).inc();
  }

  /** Reads until the ClientHello is whole (or is not one), within read_header_timeout; null = gone. */
  private async readHello(): Promise<{ bytes: Uint8Array; sni: string | null } | null> {
    const buf = new Uint8Array(MAX_CLIENT_HELLO + 64);
    let n = 0;
    const timeout = this.cfg.read_header_timeout;
    const timer = timeout > 0 ? setTimeout(() => this.close("no ClientHello in time"), timeout) : undefined;
    try {
      for (;;) {
        let got: number | null;
        try {
          got = await this.down.read(buf.subarray(n));
        } catch {
          got = null;
        }
        if (got === null || this.closed) return null;
        n += got;
        this.last = performance.now();
        const peek = peekClientHello(buf.subarray(0, n));
        if (peek.done) return { bytes: buf.slice(0, n), sni: peek.sni };
        if (n === buf.length) return { bytes: buf.slice(0, n), sni: null };
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Connects to an endpoint of `upstream`, trying others on failure as its retry policy allows. */
  private async connect(upstream: Upstream): Promise<Endpoint | null> {
    const attempts = 1 + Math.max(0, upstream.config.retry?.max_retries ?? 0);
    const clientIp = this.down.remoteAddr.hostname;
    const input = { header: () => undefined, clientIp };
    let tried: Endpoint | undefined;
    const rs = upstream.resilience;
    for (let i = 0; i < attempts; i++) {
      let ep = upstream.select(input, tried);
      let token = ADMITTED;
      if (rs?.breakers === true) {
        // An open circuit sends the connection to another endpoint, if any admits it (as HTTP requests).
        let denied = false;
        for (let k = 0; ep !== null; k++) {
          token = admit(upstream.name, ep, Date.now(), this.owner.observer);
          if (token !== DENIED) break;
          denied = true;
          ep = k + 1 < rs.endpoints.length ? upstream.select(input, ep) : null;
        }
        if (ep === null && denied) {
          this.count("circuit_open");
          return null;
        }
      }
      if (ep === null) {
        this.count("no_endpoint");
        return null;
      }
      try {
        this.up = await dial(ep, upstream.config.connect_timeout);
        judge(upstream.name, rs, ep, token, true, Date.now(), this.owner.observer);
        if (this.closed) this.up.close();
        return ep;
      } catch (e) {
        // A refused or timed-out connect counts towards the endpoint's ejection and its breaker (as HTTP's do).
        judge(upstream.name, rs, ep, token, false, Date.now(), this.owner.observer);
        log.debug("tcp upstream connect failed", {
          listener: this.cfg.name,
          upstream: upstream.name,
          endpoint: ep.address,
          error: String(e),
        });
        tried = ep;
        if (this.closed) return null;
      }
    }
    this.count("connect_failed");
    return null;
  }

  /** Copies one direction: reads the source, hands the bytes to the filters (or writes them on). */
  private async pump(dir: Direction): Promise<void> {
    const src = dir === DOWNSTREAM ? this.down : this.up!;
    const buf = new Uint8Array(CHUNK);
    const session = this.session;
    const read = readOpOf(src); // not Conn.read's wrapper: src/net/read_op.ts
    for (;;) {
      let n: number | null;
      try {
        n = await read(buf);
        if (n === 0) n = null; // EOF from the op
      } catch {
        n = null;
        // A reset: the whole connection ends (nothing more can be said either way).
        if (!this.closed) {
          this.ended[dir] = true;
          this.close("");
        }
      }
      if (this.closed) return;
      if (n === null) {
        this.ended[dir] = true;
        await this.forward(dir, EMPTY, true);
        if (this.ended[DOWNSTREAM] && this.ended[UPSTREAM] && session === null) this.close("");
        return;
      }
      this.last = performance.now();
      // The next read reuses buf once the bytes were written (a filter that holds them copies them).
      await this.forward(dir, buf.subarray(0, n));
      while (session !== null && !this.closed && session.held(dir) > MAX_HELD) await session.progress();
    }
  }

  private forward(dir: Direction, data: Uint8Array, eos = false): Promise<void> {
    return this.session !== null ? this.session.data(dir, data, eos) : this.write(dir, data, eos);
  }

  /** Writes towards the upstream (DOWNSTREAM bytes) or the client (UPSTREAM bytes); eos half-closes. */
  private async write(dir: Direction, data: Uint8Array, eos: boolean): Promise<void> {
    const dst = dir === DOWNSTREAM ? this.up : this.down;
    if (dst === null || this.closed) return;
    try {
      let off = 0;
      while (off < data.length) off += await dst.write(data.subarray(off));
      if (data.length > 0) {
        this.last = performance.now();
        this.owner.metrics?.bytes.labels(this.cfg.name, dir === DOWNSTREAM ? "upstream" : "downstream")
          .inc(data.length);
      }
      if (eos) {
        await dst.closeWrite();
        // Both ends said all they had: done (with filters, once their end of stream went through).
        if (this.ended[DOWNSTREAM] && this.ended[UPSTREAM]) this.close("");
      }
    } catch {
      this.close("");
    }
  }

  /** Closes both sides once; `why` (when not "") goes to the debug log. */
  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    if (why !== "") log.debug("tcp connection closed", { listener: this.cfg.name, reason: why });
    for (const c of [this.down, this.up]) {
      try {
        c?.close();
      } catch { /* closed */ }
    }
    this.session?.close(why || "connection closed");
  }

  /** Closes the connection after idle_timeout without a byte either way. */
  private armIdle(): void {
    const idle = this.cfg.idle_timeout;
    if (idle <= 0) return;
    const check = () => {
      const left = this.last + idle - performance.now();
      if (left <= 0) this.close("idle timeout");
      else this.idleTimer = setTimeout(check, left + 1);
    };
    this.idleTimer = setTimeout(check, idle);
  }
}

/** A TCP connection to `ep` within `timeoutMs` (0 = the system's own timeout). */
async function dial(ep: Endpoint, timeoutMs: number): Promise<Deno.TcpConn> {
  const p = Deno.connect({ hostname: ep.hostname, port: ep.port });
  if (!(timeoutMs > 0)) return await p;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`connect timeout after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    p.then((c) => c.close(), () => {}); // a late connection is not leaked
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
