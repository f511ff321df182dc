/**
 * One gateway instance: the listeners and the gateway core of one isolate
 * (the main one, or a worker). It owns its snapshot, metrics registry and
 * access log; reload swaps the snapshot.
 */
import type { ListenerConfig, LoomConfig } from "../config/types.ts";
import { Gateway } from "../gateway/gateway.ts";
import { buildSnapshot, loadSnapshotCode, retireSnapshot } from "../gateway/snapshot.ts";
import { Http1Listener } from "../listeners/http1.ts";
import type { H2Listener } from "../listeners/h2.ts";
import type { H3Listener } from "../listeners/h3.ts";
import type { TcpListener } from "../listeners/tcp.ts";
import { needsNodeTls } from "../listeners/tls.ts";
import { GatewayMetrics } from "../observability/gateway_metrics.ts";
import { createAccessLog } from "../observability/access_log.ts";
import { type RecentError, RecentErrors } from "../observability/recent_errors.ts";
import { logger } from "../observability/logger.ts";
import type { MetricsSnapshot } from "../observability/metrics.ts";
import { CounterSlots, type CounterSlotsSnapshot } from "../upstream/counters.ts";
import type { UpstreamInfo } from "../upstream/upstream.ts";
import { VERSION } from "../version.ts";
import type { PluginInfo } from "../wasm/mod.ts";
import type { SplicingInfo, TunnelSplicing } from "../ebpf/tunnels.ts";

/** A listener of any engine. */
interface RunningListener {
  readonly cfg: ListenerConfig;
  readonly addr: Deno.NetAddr;
  close(): void;
  drained(): Promise<void>;
  closeAll(): void;
  reloadTls?(cfg: ListenerConfig): void;
  /** Takes changed settings in place (true), keeping its socket; false = reopen it (tcp listeners). */
  update?(cfg: ListenerConfig): boolean;
  /** TCP TLS listeners: the Alt-Svc value advertising HTTP/3, or null. */
  setAltSvc?(value: string | null): void;
  /** Set when the socket binds asynchronously (node:tls): resolves once it accepts, rejects when it cannot. */
  readonly listening?: Promise<void>;
}

/**
 * The Alt-Svc value a TLS listener on `port` advertises: the HTTP/3 listener on
 * the same port number if there is one (the usual 443/tcp + 443/udp), else the
 * first HTTP/3 listener; null without any. Browsers only switch for https origins.
 */
export function altSvcFor(port: number, h3Ports: readonly number[]): string | null {
  if (h3Ports.length === 0) return null;
  const p = h3Ports.includes(port) ? port : h3Ports[0];
  return `h3=":${p}"; ma=86400`;
}

/** What a reload did to an instance's listeners. */
export interface ReloadReport {
  /** Bound addresses by listener name, after the reload. */
  addresses: Record<string, Deno.NetAddr>;
  /** Listeners that could not be opened (the rest of the reload applied). */
  errors: string[];
}

/** Options for starting an instance. */
export interface InstanceOptions {
  config: LoomConfig;
  counters: CounterSlotsSnapshot;
  /** Several isolates share the ports (SO_REUSEPORT). */
  reusePort: boolean;
}

/**
 * Listener engines beyond HTTP/1.1 and eBPF splicing, loaded by {@link loadCode}
 * for a config that has them: a plain HTTP/1.1 gateway never compiles them.
 */
const code: {
  H2Listener?: typeof H2Listener;
  H3Listener?: typeof H3Listener;
  TcpListener?: typeof TcpListener;
  TunnelSplicing?: typeof TunnelSplicing;
} = {};

function loaded<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`${what} is not loaded (loadCode runs before the instance uses it)`);
  }
  return value;
}

const wantsSplicing = (config: LoomConfig) => config.ebpf?.enabled === true && config.ebpf.splice_tunnels;

/** Loads the code `config` needs (snapshot, listeners, eBPF), before start or a reload applies it. */
async function loadCode(config: LoomConfig): Promise<void> {
  await loadSnapshotCode(config);
  for (const l of config.listeners) {
    const h2 = l.protocol === "h2c" || l.protocol === "grpc" || l.protocol === "grpcs" ||
      (l.protocol === "https" && needsNodeTls(l.tls!));
    if (h2) code.H2Listener ??= (await import("../listeners/h2.ts")).H2Listener;
    if (l.protocol === "http3") code.H3Listener ??= (await import("../listeners/h3.ts")).H3Listener;
    if (l.protocol === "tcp") code.TcpListener ??= (await import("../listeners/tcp.ts")).TcpListener;
  }
  if (wantsSplicing(config)) code.TunnelSplicing ??= (await import("../ebpf/tunnels.ts")).TunnelSplicing;
}

/** GET /ebpf of an instance whose configs never turned splicing on. */
const NO_SPLICING: SplicingInfo = {
  configured: false,
  unavailable: "",
  current: null,
  retiring: 0,
  spliced: 0,
  skipped: {},
  bytes: 0,
};

/** The gateway of one isolate. */
export class GatewayInstance {
  readonly gateway: Gateway;
  readonly metrics: GatewayMetrics;
  /** eBPF splice_tunnels of this isolate (null until a config turns it on). */
  private splicing: TunnelSplicing | null = null;
  private listeners: RunningListener[] = [];
  private counters: CounterSlots;
  private readonly reusePort: boolean;
  /** Listeners closed by a reload that still drain their connections. */
  private retiring = new Set<RunningListener>();

  private constructor(opts: InstanceOptions) {
    this.reusePort = opts.reusePort;
    this.counters = CounterSlots.attach(opts.counters);
    this.metrics = new GatewayMetrics(VERSION);
    const snapshot = buildSnapshot(opts.config, this.counters, undefined, this.metrics);
    this.gateway = new Gateway(
      snapshot,
      this.metrics,
      createAccessLog(opts.config.access_log),
      new RecentErrors(),
    );
    this.configureSplicing(opts.config);
  }

  /** Turns eBPF tunnel splicing on or off as `config` says (its code loaded by loadCode). */
  private configureSplicing(config: LoomConfig): void {
    if (this.splicing === null && wantsSplicing(config)) {
      this.splicing = new (loaded(code.TunnelSplicing, "eBPF splicing"))(this.metrics.registry);
      this.gateway.splicer = this.splicing;
    }
    this.splicing?.configure(config.ebpf);
  }

  /** Builds the instance and opens its listeners; throws (closing what opened) on failure. */
  static async start(opts: InstanceOptions): Promise<GatewayInstance> {
    await loadCode(opts.config);
    const inst = new GatewayInstance(opts);
    try {
      for (const l of opts.config.listeners) {
        const running = inst.open(l, opts.reusePort);
        if (running !== null) inst.listeners.push(running);
      }
      // Ready means accepting: nobody is told the address before every socket takes connections.
      await Promise.all(inst.listeners.map((l) => l.listening));
    } catch (e) {
      for (const l of inst.listeners) l.closeAll();
      throw e;
    }
    inst.advertiseHttp3();
    return inst;
  }

  /** Bound addresses by listener name (port 0 resolves here). */
  addresses(): Record<string, Deno.NetAddr> {
    return Object.fromEntries(this.listeners.map((l) => [l.cfg.name, l.addr]));
  }

  private open(l: ListenerConfig, reusePort: boolean): RunningListener | null {
    const hooks = {
      opened: (name: string) => this.metrics.connectionOpened(name, l.protocol),
      closed: (name: string) => this.metrics.connectionClosed(name, l.protocol),
      protocolError: (name: string, code: string) => this.metrics.http2ProtocolError(name, code),
      acceptFailed: (name: string) => this.metrics.listenerAcceptFailed(name),
      refused: (name: string) => this.metrics.connectionRefused(name),
    };
    const hostname = l.hostname || "0.0.0.0";
    switch (l.protocol) {
      case "http": {
        const opts: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port: l.port };
        if (reusePort) opts.reusePort = true;
        return new Http1Listener(Deno.listen(opts), l, this.gateway, hooks);
      }
      case "https": {
        const tls = l.tls!;
        // h2 via ALPN, SNI certificates and client certificates need node:tls (see listeners/h2.ts);
        // plain HTTP/1.1 over TLS stays on Deno.listenTls.
        if (needsNodeTls(tls)) {
          return new (loaded(code.H2Listener, "HTTP/2"))(l, this.gateway, hooks, reusePort);
        }
        return Http1Listener.openTls(l, this.gateway, hooks, reusePort);
      }
      case "h2c":
      case "grpc":
      case "grpcs":
        return new (loaded(code.H2Listener, "HTTP/2"))(l, this.gateway, hooks, reusePort);
      case "tcp": {
        const opts: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port: l.port };
        if (reusePort) opts.reusePort = true;
        // The snapshot current at accept time: a reload applies to new connections only.
        return new (loaded(code.TcpListener, "the tcp listener"))(
          Deno.listen(opts),
          l,
          () => this.gateway.snapshot,
          hooks,
          this.metrics.registry,
          this.metrics,
        );
      }
      case "http3":
        try {
          // A listener changed by a reload keeps draining on its UDP socket: the new one takes it over.
          const H3 = loaded(code.H3Listener, "HTTP/3");
          const prev = [...this.retiring].find((r): r is H3Listener => r instanceof H3 && r.canHandOver(l));
          return new H3(l, this.gateway, hooks, prev);
        } catch (e) {
          // QUIC endpoints cannot share a UDP port (no SO_REUSEPORT): with workers, the first one serves it.
          if (reusePort && e instanceof Deno.errors.AddrInUse) return null;
          throw e;
        }
      default:
        logger.warn("listener protocol not available yet; listener skipped", {
          listener: l.name,
          protocol: l.protocol,
        });
        return null;
    }
  }

  /**
   * Swaps in a new snapshot (requests in flight finish on the old one) and
   * opens/closes the listeners the new config adds/removes. A changed listener
   * (same name, other settings) is closed and reopened; untouched listeners and
   * their connections are not disturbed. Closed listeners stop accepting at
   * once and let their connections finish, up to `drain_timeout`.
   */
  async reload(config: LoomConfig, counters: CounterSlotsSnapshot): Promise<ReloadReport> {
    await loadCode(config);
    this.counters = CounterSlots.attach(counters);
    const old = this.gateway.snapshot;
    const next = buildSnapshot(config, this.counters, old, this.metrics);
    this.gateway.snapshot = next;
    retireSnapshot(old, next);
    this.configureSplicing(config);
    return { errors: await this.reloadListeners(config), addresses: this.addresses() };
  }

  private async reloadListeners(config: LoomConfig): Promise<string[]> {
    const wanted = new Map(config.listeners.map((l) => [l.name, l]));
    const kept: RunningListener[] = [];
    for (const l of this.listeners) {
      const w = wanted.get(l.cfg.name);
      if (w !== undefined && JSON.stringify(w) === JSON.stringify(l.cfg)) {
        kept.push(l);
        // Same settings, maybe renewed files: TLS listeners re-read their certificates in place.
        l.reloadTls?.(w);
      } else if (w !== undefined && l.update?.(w)) kept.push(l);
      else this.retire(l, config.drain_timeout);
    }
    const errors: string[] = [];
    const have = new Set(kept.map((l) => l.cfg.name));
    for (const l of config.listeners) {
      if (have.has(l.name)) continue;
      try {
        const running = this.open(l, this.reusePort);
        if (running !== null) {
          try {
            await running.listening;
          } catch (e) {
            running.closeAll();
            throw e;
          }
          kept.push(running);
          logger.info("listener opened by reload", { listener: l.name, address: l.address });
        }
      } catch (e) {
        errors.push(`listener ${l.name} (${l.address}): ${String(e)}`);
      }
    }
    this.listeners = kept;
    this.advertiseHttp3();
    return errors;
  }

  /** Points every TLS TCP listener's Alt-Svc at the running HTTP/3 listeners (after start and each reload). */
  private advertiseHttp3(): void {
    const h3 = this.listeners.filter((l) => l.cfg.protocol === "http3").map((l) => l.addr.port);
    for (const l of this.listeners) {
      if (l.cfg.protocol === "https" || l.cfg.protocol === "grpcs") l.setAltSvc?.(altSvcFor(l.addr.port, h3));
    }
  }

  /** Stops accepting on `l`; its connections finish (up to `drainMs`) in the background. */
  private retire(l: RunningListener, drainMs: number): void {
    l.close();
    logger.info("listener closed by reload", { listener: l.cfg.name, address: l.cfg.address });
    this.retiring.add(l);
    let timer: ReturnType<typeof setTimeout> | undefined;
    Promise.race([l.drained(), new Promise((r) => timer = setTimeout(r, drainMs))]).then(() => {
      clearTimeout(timer);
      l.closeAll();
      this.retiring.delete(l);
    });
  }

  metricsSnapshot(): MetricsSnapshot {
    this.splicing?.refreshMetrics();
    return this.metrics.registry.snapshot();
  }

  /** This isolate's tunnel splicing (GET /ebpf, merged over workers by the supervisor). */
  ebpf(): SplicingInfo {
    return this.splicing?.info() ?? NO_SPLICING;
  }

  upstreams(): UpstreamInfo[] {
    return [...this.gateway.snapshot.upstreams.values()].map((u) => u.describe());
  }

  /** This isolate's Proxy-Wasm plugins (GET /plugins, merged over workers by the supervisor). */
  plugins(): PluginInfo[] {
    return this.gateway.snapshot.plugins.describe();
  }

  /** This isolate's last failed requests, newest first (the dashboard, merged by the supervisor). */
  recentErrors(): RecentError[] {
    return this.gateway.recentErrors?.list() ?? [];
  }

  /** Drops cached responses of this isolate's caches (Redis ones only when `shared`). */
  async purgeCache(what: { key?: string; prefix?: string }, shared: boolean): Promise<number> {
    // Loaded here when no config used a cache (then there is none to purge): an admin call, not a request.
    return (await import("../middleware/cache/index.ts")).purgeCaches(what, shared);
  }

  /** Stops accepting, lets busy connections finish up to `drainMs`, then closes everything. */
  async shutdown(drainMs: number): Promise<void> {
    this.listeners.push(...this.retiring);
    this.retiring.clear();
    for (const l of this.listeners) l.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.listeners.map((l) => l.drained())),
      new Promise((r) => timer = setTimeout(r, drainMs)),
    ]);
    clearTimeout(timer);
    for (const l of this.listeners) l.closeAll();
    this.splicing?.close();
    await this.gateway.accessLog?.close();
  }
}
