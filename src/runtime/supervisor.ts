/**
 * The supervisor runs in the main isolate: it loads and validates config,
 * starts the gateway instances (in this isolate for `workers: 1`, else one
 * Worker each sharing the ports with SO_REUSEPORT), the admin API and the demo
 * service, and drives reloads (file watch, SIGHUP, POST /reload) and shutdown.
 *
 * State per worker: listeners, snapshot (router, upstreams, pools), circuit
 * breakers, bulkheads, retry budgets, metrics registry, access-log buffer.
 * Shared: the config (sent whole on each reload), and per endpoint in
 * SharedArrayBuffers: in-flight counters (least_conn, /upstreams) and health
 * cells (active-check verdict, outlier ejection, admin drain). Health probes
 * run here, once, not per worker. Metrics are merged on scrape.
 */
import { basename, dirname, resolve } from "node:path";
import type { LoomConfig } from "../config/types.ts";
import { type ConfigError, formatErrors, formatWarnings } from "../config/mod.ts";
import { loadWholeConfig } from "./config_load.ts";
import { GatewayApiSource } from "../k8s/source.ts";
import { counterKey, CounterSlots } from "../upstream/counters.ts";
import { sharedRegionsFor } from "../gateway/snapshot.ts";
import { Endpoint } from "../upstream/endpoint.ts";
import type { HealthMonitor } from "../upstream/health_check.ts";
import { GatewayMetrics } from "../observability/gateway_metrics.ts";
import { mergeSnapshots, type MetricsSnapshot, renderMerged } from "../observability/metrics.ts";
import { ProcessMetrics, RuntimeMetrics } from "../observability/process_metrics.ts";
import { OtlpMetricsExporter } from "../observability/otlp_metrics.ts";
import type { DashboardState } from "../admin/dashboard.ts";
import { cumulative, DashboardHistory } from "./dashboard.ts";
import { logger } from "../observability/logger.ts";
import { prepareTracing, retireExporters } from "./tracing_load.ts";
import type { AdminBackend, GatewayInfo, ReloadResult, RouteInfo, UpstreamInfo } from "../admin/types.ts";
import { type AdminServer, startAdminServer } from "../admin/server.ts";
import { startEcho } from "../demo/echo.ts";
import { type InstanceHandle, LocalHandle, WorkerHandle } from "./handles.ts";
import { VERSION } from "../version.ts";
import type { PluginInfo } from "../wasm/mod.ts";
import { countCompilations } from "../wasm/compile.ts";
import type { EbpfManager, EbpfStatus, RedirectTargets } from "../ebpf/mod.ts";
import type { SplicingInfo } from "../ebpf/tunnels.ts";

/** Options of `Supervisor.start`. */
export interface SupervisorOptions {
  configPath: string;
  logLevel?: string;
  /** Watch the config file and reload on change (default true; `reload.watch: false` in the config also turns it off). */
  watch?: boolean;
  /** Install SIGHUP/SIGTERM/SIGINT handlers (default false; the CLI turns them on). */
  signals?: boolean;
}

/** Thrown when the initial config is invalid. */
export class ConfigInvalidError extends Error {}

/** The main-isolate controller of a running Loom. */
export class Supervisor implements AdminBackend {
  private handles: InstanceHandle[] = [];
  private admin: AdminServer | null = null;
  private echo: Deno.HttpServer | null = null;
  private watcher: Deno.FsWatcher | null = null;
  private isReady = false;
  private stopping: Promise<void> | null = null;
  /** The reload running now, and the one queued behind it (every request meanwhile joins that one). */
  private running: Promise<ReloadResult> | null = null;
  private queued: Promise<ReloadResult> | null = null;
  /** What asked for the next reload ("file", "SIGHUP", "admin"), for its log line. */
  private triggers = new Set<string>();
  /** A file change or SIGHUP waiting out the debounce window. */
  private debounceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Digest of the config and its files in effect; null = unknown (the next reload applies what it reads). */
  private appliedHash: string | null = null;
  /** The last rejection (digest or error text): the same rejection again is answered but not logged again. */
  private rejected: string | null = null;
  private readonly counters = new CounterSlots();
  /** Reload counts and health verdicts live here (the main isolate); request metrics come from instances. */
  private readonly ownMetrics = new GatewayMetrics(VERSION);
  /** eBPF socket_redirect (process-wide; tunnel splicing is per instance); loaded by the first config with `ebpf`. */
  private ebpfManager: EbpfManager | null = null;
  /** Active health checks; loaded by the first config that has some (then kept: it clears old verdicts). */
  private health: HealthMonitor | null = null;
  private readonly startedAt = new Date().toISOString();
  /** process_* (the whole process) and this isolate's heap and event-loop series. */
  private readonly processMetrics = new ProcessMetrics(this.ownMetrics.registry);
  private readonly runtimeMetrics = new RuntimeMetrics(this.ownMetrics.registry);
  /** The dashboard's samples and reload history, and the timer taking the samples. */
  private readonly history = new DashboardHistory();
  private sampler: ReturnType<typeof setInterval> | undefined;
  /** OTLP metrics export (metrics.opentelemetry), and the settings it runs with. */
  private otlp: OtlpMetricsExporter | null = null;
  private otlpKey = "";
  private signalHandlers: [Deno.Signal, () => void][] = [];
  /** YAML paths of the current config's `${VAR}` values (redacted by GET /config). */
  private envPaths: readonly string[] = [];
  /** The Gateway API source (listeners, routes, upstreams from Kubernetes resources; idle without `gateway_api`). */
  gatewayApi!: GatewayApiSource;

  private constructor(private cfg: LoomConfig, readonly opts: SupervisorOptions) {}

  /** Loads the config and starts everything; throws ConfigInvalidError with all errors. */
  static async start(opts: SupervisorOptions): Promise<Supervisor> {
    let sup: Supervisor | null = null;
    const gatewayApi = new GatewayApiSource((trigger) => sup?.requestReload(trigger));
    const { result: res, hash } = await loadWholeConfig(opts.configPath, gatewayApi);
    if (!res.ok || res.runErrors.length > 0) gatewayApi.close();
    if (!res.ok) throw new ConfigInvalidError(formatErrors(res.errors, opts.configPath));
    // E.g. an admin API beyond loopback without auth: loadable (and reloadable), but not startable.
    if (res.runErrors.length > 0) throw new ConfigInvalidError(formatErrors(res.runErrors, opts.configPath));
    warnConfig(res.warnings, opts.configPath);
    const s = new Supervisor(res.config, opts);
    s.gatewayApi = gatewayApi;
    sup = s;
    s.envPaths = res.envPaths;
    s.appliedHash = hash;
    try {
      await s.boot();
    } catch (e) {
      await s.shutdown(0);
      throw e;
    }
    void gatewayApi.publish();
    return s;
  }

  private async boot(): Promise<void> {
    const cfg = this.cfg;
    // Plugin modules are compiled in this isolate (the config check); workers get them from here.
    countCompilations(this.ownMetrics.registry);
    if (cfg.demo.echo) this.echo = startEcho(cfg.demo.echo.hostname || "127.0.0.1", cfg.demo.echo.port);
    this.counters.reserve(cfg.upstreams);
    this.counters.regions.reserve(await sharedRegionsFor(cfg));
    const n = Math.max(1, cfg.workers);
    const instOpts = { config: cfg, counters: this.counters.snapshot(), reusePort: n > 1 };
    // Tracing's exporter is ready before the first request (workers prepare their own).
    if (n === 1) await prepareTracing(cfg.tracing);
    if (n === 1) this.handles.push(await LocalHandle.start(instOpts));
    else {
      for (let i = 0; i < n; i++) {
        this.handles.push(await WorkerHandle.start(instOpts, this.opts.logLevel ?? "info", i));
      }
    }
    await this.applyOptional(cfg);
    if (cfg.admin.enabled) this.admin = startAdminServer(this, cfg.admin);
    this.startDashboard();
    this.syncOtlp(cfg);
    this.syncWatch();
    if (this.opts.signals) this.installSignals();
    this.isReady = true;
    logger.info("loom started", {
      version: VERSION,
      workers: n,
      listeners: Object.fromEntries(
        Object.entries(this.handles[0].addresses()).map(([k, a]) => [k, `${a.hostname}:${a.port}`]),
      ),
    });
  }

  /** Listener addresses of the first instance (tests use them). */
  addresses(): Record<string, Deno.NetAddr> {
    return this.handles[0]?.addresses() ?? {};
  }

  get adminAddr(): Deno.NetAddr | null {
    return this.admin?.addr ?? null;
  }

  /** Starts or stops the config file watch as the options and the config's `reload.watch` say. */
  private syncWatch(): void {
    const want = this.opts.watch !== false && (this.cfg.reload?.watch ?? true) && this.stopping === null;
    if (want && this.watcher === null) this.watch();
    else if (!want && this.watcher !== null) {
      this.watcher.close();
      this.watcher = null;
    }
  }

  private watch(): void {
    const path = this.opts.configPath;
    // Watch the directory, not the file: editors and config managers save by
    // renaming a new file over the old one, and a watch on the file's inode
    // would miss every later change.
    const abs = resolve(path);
    const name = basename(abs);
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(dirname(abs), { recursive: false });
    } catch (e) {
      logger.warn("cannot watch config file", { path, error: String(e) });
      return;
    }
    this.watcher = watcher;
    (async () => {
      try {
        for await (const ev of watcher) {
          if (ev.kind === "access" || !ev.paths.some((p) => basename(p) === name)) continue;
          // Editors write in several steps: debounced.
          this.requestReload("file");
        }
      } catch { /* watcher closed */ }
    })();
  }

  /**
   * A file change or SIGHUP: one reload after the debounce window
   * (`reload.debounce`), for every request within it.
   */
  private requestReload(trigger: string): void {
    if (this.stopping !== null) return;
    this.triggers.add(trigger);
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.reload(trigger), this.cfg.reload?.debounce ?? 100);
  }

  private installSignals(): void {
    const on = (sig: Deno.Signal, f: () => void) => {
      Deno.addSignalListener(sig, f);
      this.signalHandlers.push([sig, f]);
    };
    on("SIGHUP", () => this.requestReload("SIGHUP"));
    let signalled = false;
    const stop = () => {
      if (signalled) {
        logger.warn("second signal: exiting now");
        Deno.exit(1);
      }
      signalled = true;
      logger.info("shutting down", { drain_timeout_ms: this.cfg.drain_timeout });
      this.shutdown(this.cfg.drain_timeout).then(() => Deno.exit(0));
    };
    on("SIGTERM", stop);
    on("SIGINT", stop);
  }

  // --- AdminBackend -------------------------------------------------------

  ready(): boolean {
    return this.isReady;
  }

  routes(): RouteInfo[] {
    return this.cfg.routes.map((r) => ({
      id: r.id,
      host: r.host,
      path: r.path,
      methods: r.methods,
      upstream: r.upstream,
      priority: r.priority,
      plugins: r.plugins,
      strip_prefix: r.strip_prefix,
      rewrite: r.rewrite,
      redirect: r.redirect,
    }));
  }

  async upstreams(): Promise<UpstreamInfo[]> {
    // In-flight counts and health are shared memory, so any instance reports
    // them; circuit breakers are per worker: show the worst state.
    const all = await Promise.all(this.handles.map((h) => h.upstreams()));
    const out = all[0];
    const rank = { closed: 0, half_open: 1, open: 2 } as const;
    for (const other of all.slice(1)) {
      for (const [i, u] of out.entries()) {
        for (const [j, e] of u.endpoints.entries()) {
          const c = other[i]?.endpoints[j]?.circuit;
          if (c !== undefined && rank[c] > rank[e.circuit ?? "closed"]) e.circuit = c;
        }
      }
    }
    return out;
  }

  /** Proxy-Wasm plugins of every worker, merged (VMs and errors summed). */
  async plugins(): Promise<PluginInfo[]> {
    const lists = await Promise.all(this.handles.map((h) => h.plugins()));
    // Without plugins the Wasm host is never loaded (the dashboard asks every few seconds).
    if (lists.every((l) => l.length === 0)) return [];
    return (await import("../wasm/mod.ts")).mergePluginInfo(lists);
  }

  /**
   * Drains (no new requests) or re-enables an endpoint on every worker at once
   * (a flag in shared memory; it survives reloads while the endpoint exists).
   * @returns false when the upstream or endpoint is unknown.
   */
  setEndpointDraining(upstream: string, endpoint: string, draining: boolean): boolean {
    const u = this.cfg.upstreams.find((x) => x.name === upstream);
    const e = u?.endpoints.find((x) => x.address === endpoint);
    if (u === undefined || e === undefined) return false;
    const slot = this.counters.slot(counterKey(u.name, e.address));
    new Endpoint(e, this.counters.counters, slot, this.counters.health).draining = draining;
    logger.info(draining ? "endpoint drained" : "endpoint enabled", { upstream, endpoint });
    return true;
  }

  /** Purges the caches of every worker; a Redis store once (by the first worker). */
  async purgeCache(what: { key?: string; prefix?: string }): Promise<number> {
    const counts = await Promise.all(this.handles.map((h, i) => h.purgeCache(what, i === 0)));
    return counts.reduce((a, b) => a + b, 0);
  }

  config(): LoomConfig {
    return this.cfg;
  }

  configEnvPaths(): readonly string[] {
    return this.envPaths;
  }

  /**
   * Re-reads, checks and applies the config file. Serialised and coalesced:
   * a request while a reload runs joins the one queued behind it (which reads
   * the file again), and a pending debounced request is served by this one.
   * Never rejects.
   */
  reload(trigger = "admin"): Promise<ReloadResult> {
    clearTimeout(this.debounceTimer);
    this.triggers.add(trigger);
    if (this.queued !== null) return this.queued;
    const start = (): Promise<ReloadResult> => {
      this.queued = null;
      const triggers = [...this.triggers].join(", ");
      this.triggers.clear();
      // A throw (e.g. from the loader) must neither poison later reloads nor become an unhandled
      // rejection (watcher / SIGHUP callers).
      const p = this.doReload(triggers).catch((e): ReloadResult => {
        this.appliedHash = null;
        this.ownMetrics.reload(false);
        logger.error("config reload failed", { error: String(e), trigger: triggers });
        return { ok: false, errors: [String(e)] };
      });
      this.running = p;
      p.then((r) => {
        if (this.running === p) this.running = null;
        this.history.reload({
          time: new Date().toISOString(),
          trigger: triggers,
          ok: r.ok,
          errors: r.ok ? [] : r.errors,
        });
      });
      return p;
    };
    if (this.running === null) return start();
    this.queued = this.running.then(start);
    return this.queued;
  }

  private async doReload(trigger: string): Promise<ReloadResult> {
    const { result: res, hash } = await loadWholeConfig(this.opts.configPath, this.gatewayApi);
    if (hash !== null && hash === this.appliedHash) {
      // E.g. a file write and a SIGHUP for the same change: the first applied it.
      this.rejected = null;
      // Gateway API status may change without the config (a route that attaches nowhere).
      void this.gatewayApi.publish();
      logger.debug("config unchanged; reload skipped", { trigger });
      return { ok: true };
    }
    if (!res.ok) {
      const errors = formatErrors(res.errors, this.opts.configPath).split("\n");
      const key = hash ?? errors.join("\n");
      if (key !== this.rejected) {
        this.rejected = key;
        this.ownMetrics.reload(false);
        logger.error("config reload rejected; keeping the current config", { errors, trigger });
      } else logger.debug("config still rejected; keeping the current config", { trigger });
      return { ok: false, errors };
    }
    this.rejected = null;
    const next = res.config;
    warnConfig(res.warnings, this.opts.configPath);
    const changed = restartOnly(this.cfg, next);
    if (changed.length > 0) {
      logger.warn("config changes that need a restart were not applied", { fields: changed });
    }
    let listenerErrors: string[];
    try {
      this.counters.reserve(next.upstreams);
      this.counters.regions.reserve(await sharedRegionsFor(next));
      const counters = this.counters.snapshot();
      if (this.handles[0] instanceof LocalHandle) await prepareTracing(next.tracing);
      const reports = await Promise.all(this.handles.map((h) => h.reload(next, counters)));
      if (this.handles[0] instanceof LocalHandle) void retireExporters(next.tracing);
      listenerErrors = [...new Set(reports.flatMap((r) => r.errors))];
    } catch (e) {
      this.appliedHash = null;
      this.ownMetrics.reload(false);
      logger.error("config reload failed", { error: String(e), trigger });
      return { ok: false, errors: [String(e)] };
    }
    this.cfg = next;
    this.envPaths = res.envPaths;
    this.syncOtlp(next);
    await this.applyOptional(next);
    this.syncWatch();
    if (listenerErrors.length > 0) {
      // Routes and upstreams are applied; only these listeners failed to open (a retry reloads again).
      this.appliedHash = null;
      this.ownMetrics.reload(false);
      logger.error("config reloaded, but listeners failed to open", { errors: listenerErrors, trigger });
      return { ok: false, errors: listenerErrors };
    }
    this.appliedHash = hash;
    this.ownMetrics.reload(true);
    void this.gatewayApi.publish();
    logger.info("config reloaded", { routes: next.routes.length, upstreams: next.upstreams.length, trigger });
    return { ok: true };
  }

  /**
   * Health checks and eBPF as `cfg` says, their code loaded by the first config that uses them
   * (most configs use neither). After the listeners: their bound ports go into the programs' maps.
   */
  private async applyOptional(cfg: LoomConfig): Promise<void> {
    if (this.health === null && cfg.upstreams.some((u) => u.health_check?.enabled === true)) {
      const { HealthMonitor } = await import("../upstream/health_check.ts");
      this.health = new HealthMonitor(
        this.counters,
        (u, e, healthy) => this.ownMetrics.healthStatus(u, e, healthy),
      );
      if (this.stopping !== null) this.health.stop();
    }
    this.health?.update(cfg);
    if (this.ebpfManager === null && cfg.ebpf?.enabled) await this.loadEbpf();
    this.ebpfManager?.apply(cfg.ebpf, this.ebpfTargets(cfg));
  }

  private async loadEbpf(): Promise<EbpfManager> {
    return this.ebpfManager ??= new (await import("../ebpf/mod.ts")).EbpfManager(this.ownMetrics.registry);
  }

  /** What socket_redirect accelerates: the TCP listeners bound now and the upstream endpoints. */
  private ebpfTargets(cfg: LoomConfig): RedirectTargets {
    return {
      listeners: Object.values(this.addresses()).filter((a) => a.transport === "tcp"),
      upstreams: cfg.upstreams.flatMap((u) => u.endpoints.map((e) => ({ host: e.hostname, port: e.port }))),
    };
  }

  /** GET /ebpf: socket_redirect here, tunnel splicing of every instance. */
  async ebpf(): Promise<EbpfStatus & { splice_tunnels: { instances: SplicingInfo[] } }> {
    const st = (await this.loadEbpf()).status();
    const instances = await Promise.all(this.handles.map((h) => h.ebpf()));
    return { ...st, splice_tunnels: { ...st.splice_tunnels, instances } };
  }

  /** Every isolate's metrics (the process and runtime series refreshed first). */
  private async snapshots(): Promise<MetricsSnapshot[]> {
    const snaps = await Promise.all(this.handles.map((h) => h.metrics()));
    this.ebpfManager?.refreshMetrics();
    this.processMetrics.update();
    this.runtimeMetrics.update();
    snaps.push(this.ownMetrics.registry.snapshot());
    return snaps;
  }

  async metrics(): Promise<string> {
    return renderMerged(await this.snapshots());
  }

  /** Samples the merged metrics for the dashboard every `admin.dashboard.sample_interval`. */
  private startDashboard(): void {
    const d = this.cfg.admin.dashboard;
    if (!this.cfg.admin.enabled || d?.enabled === false) return;
    const tick = async () => {
      try {
        this.history.sample(mergeSnapshots(await this.snapshots()));
      } catch (e) {
        logger.debug("dashboard sample failed", { error: String(e) });
      }
    };
    void tick();
    const timer = setInterval(tick, Math.max(100, d?.sample_interval ?? 10_000));
    Deno.unrefTimer(timer);
    this.sampler = timer;
  }

  /** Starts, restarts or stops the OTLP metrics export as `cfg` says. */
  private syncOtlp(cfg: LoomConfig): void {
    const o = cfg.metrics.opentelemetry;
    const key = o?.enabled ? JSON.stringify([o, cfg.tracing?.service_name]) : "";
    if (key === this.otlpKey) return;
    void this.otlp?.stop(false);
    this.otlp = null;
    this.otlpKey = key;
    if (key === "") return;
    this.otlp = new OtlpMetricsExporter(
      o,
      async () => mergeSnapshots(await this.snapshots()),
      cfg.tracing?.service_name ?? "loom",
    );
    this.otlp.start();
  }

  /** What the dashboard shows: totals as /metrics has them now, the sampled history, the state of things. */
  async dashboard(): Promise<DashboardState> {
    const [snaps, upstreams, plugins, errorLists] = await Promise.all([
      this.snapshots(),
      this.upstreams(),
      this.plugins(),
      Promise.all(this.handles.map((h) => h.recentErrors())),
    ]);
    const merged = mergeSnapshots(snaps);
    const now = Date.now();
    const totals = cumulative(merged, now);
    const series = (name: string) => merged.metrics.find((m) => m.name === name);
    const sum = (name: string) => (series(name)?.series ?? []).reduce((a, s) => a + (s.value ?? 0), 0);
    const byRoute = new Map<string, { requests: number; errors: number }>();
    const requests = series("loom_requests_total");
    if (requests !== undefined) {
      const ri = requests.labelNames.indexOf("route");
      const si = requests.labelNames.indexOf("status");
      for (const s of requests.series) {
        const r = byRoute.get(s.labels[ri]) ?? { requests: 0, errors: 0 };
        r.requests += s.value ?? 0;
        const st = Number(s.labels[si]);
        if (st >= 500 || st === 0) r.errors += s.value ?? 0;
        byRoute.set(s.labels[ri], r);
      }
    }
    const loop = series("loom_runtime_event_loop_delay_seconds")?.series.find((s) => s.labels[0] === "0.99");
    const d = this.cfg.admin.dashboard;
    return {
      info: this.info(),
      now,
      interval_ms: d?.sample_interval ?? 10_000,
      totals: {
        requests: totals.requests,
        errors: totals.errors,
        active_connections: sum("loom_active_connections"),
      },
      series: this.history.samples,
      routes: this.routes().map((r) => ({ ...r, ...(byRoute.get(r.id) ?? { requests: 0, errors: 0 }) })),
      upstreams,
      plugins,
      errors: errorLists.flat().sort((a, b) => b.time - a.time).slice(0, 50),
      reloads: this.history.reloads,
      process: {
        cpu_seconds: sum("process_cpu_seconds_total"),
        resident_bytes: sum("process_resident_memory_bytes"),
        heap_used_bytes: sum("loom_runtime_heap_used_bytes"),
        event_loop_p99_seconds: loop?.value ?? 0,
      },
    };
  }

  info(): GatewayInfo {
    return {
      version: VERSION,
      workers: this.handles.length,
      started_at: this.startedAt,
      config_file: this.opts.configPath,
    };
  }

  /** Readiness off, listeners closed, in-flight requests drained (up to `drainMs`). */
  shutdown(drainMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.isReady = false;
      for (const [sig, f] of this.signalHandlers) Deno.removeSignalListener(sig, f);
      clearTimeout(this.debounceTimer);
      this.watcher?.close();
      this.gatewayApi?.close();
      this.health?.stop();
      clearInterval(this.sampler);
      this.runtimeMetrics.sampler.stop();
      // The last metrics go out while the workers can still answer (bounded: a collector may be down).
      if (this.otlp !== null) {
        await Promise.race([this.otlp.stop(true), new Promise((r) => setTimeout(r, 2000))]);
      }
      await Promise.all(this.handles.map((h) => h.shutdown(drainMs)));
      // Links closed, nothing pinned: the redirected sockets still open keep it until they close.
      this.ebpfManager?.close();
      // Spans still batched go out before the process ends.
      await retireExporters(undefined);
      await this.admin?.shutdown();
      await this.echo?.shutdown();
    })();
    return this.stopping;
  }
}

/** Config fields a reload cannot change in place (admin, workers, demo); listeners can. */
function restartOnly(a: LoomConfig, b: LoomConfig): string[] {
  const out: string[] = [];
  if (JSON.stringify(a.admin) !== JSON.stringify(b.admin)) out.push("admin");
  if (a.workers !== b.workers) out.push("workers");
  if (JSON.stringify(a.demo) !== JSON.stringify(b.demo)) out.push("demo");
  return out;
}

/** Config blocks Loom accepts but does not act on yet: one warning line each (key and line). */
function warnConfig(warnings: readonly ConfigError[], file: string): void {
  if (warnings.length === 0) return;
  const lines = formatWarnings(warnings, file).split("\n");
  for (const line of lines) logger.warn(line);
}
