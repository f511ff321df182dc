/**
 * Plugins, their VMs and the per-isolate plugin manager.
 *
 * - A module is read, instrumented (binary.ts) and compiled once per
 *   content and memory limit, off the event loop (compile.ts); each plugin
 *   gets one VM per isolate (worker), started in the background and reused
 *   by every request; a request gets one stream context per plugin. Plugins
 *   with the same non-empty vm_id, module, vm_config, memory limit and
 *   isolation share one VM, each with its own root context (vm_group.ts).
 * - A VM that traps, times out or exits is dropped; the next request creates
 *   a fresh one. One that failed to start is retried in the background with
 *   backoff (1 s .. 60 s), with or without requests (vm_group.ts).
 * - Shared data, shared queues and plugin-defined metrics are isolate-wide,
 *   as in Envoy (per worker); http_call goes to a configured upstream.
 *
 * @module
 */
import type { LoomConfig, PluginConfig } from "../config/types.ts";
import type { Counter, Gauge, Histogram, HistogramChild, Registry } from "../observability/metrics.ts";
import { logger } from "../observability/logger.ts";
import { MetricType } from "./abi.ts";
import { WasmLoadError } from "./binary.ts";
import { type CompiledModule, compileModule, warmCompileWorker } from "./compile.ts";
import { GrpcCallouts } from "./grpc_callouts.ts";
import { call } from "../proxy/call.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { ConnectionPool } from "../upstream/pool.ts";
import type { CalloutData, Isolation, PluginVM, SharedStores, VmHost } from "./vm.ts";
import { groupKey, type GroupMember, VmGroup } from "./vm_group.ts";

const enc = new TextEncoder();
const log = logger.child({ component: "wasm" });

/** What the manager needs of an upstream for http_call and gRPC callouts: an endpoint and its pool. */
export interface CallUpstream {
  select(input: { header(name: string): string | undefined; clientIp: string }): Endpoint | null;
  pool(ep: Endpoint): ConnectionPool;
}

/** `GET /plugins` entry. */
export interface PluginInfo {
  name: string;
  path: string;
  phase: string;
  priority: number;
  abi_version: string | null;
  failure_policy: string;
  /** VMs created so far in this isolate (1 + recreations). */
  vms: number;
  /** Whether a VM is currently running. */
  running: boolean;
  errors: number;
  last_error: string | null;
  /** When last_error happened (ISO time), null without errors. */
  last_error_at: string | null;
  loops_instrumented: number;
  /** Isolates (workers) reporting this plugin; `GET /plugins` sums vms and errors over them. */
  workers: number;
  /** The other plugins running in the same VM (same vm_id, module and vm_config); `vms` counts that VM's. */
  vm_shared_with: string[];
}

/**
 * Merges the `GET /plugins` lists of several workers: VMs and errors are
 * summed, `running` holds only when every worker has a running VM, and the
 * most recent error wins.
 */
export function mergePluginInfo(lists: readonly PluginInfo[][]): PluginInfo[] {
  const byName = new Map<string, PluginInfo>();
  for (const list of lists) {
    for (const p of list) {
      const m = byName.get(p.name);
      if (m === undefined) {
        byName.set(p.name, { ...p });
        continue;
      }
      m.vms += p.vms;
      m.errors += p.errors;
      m.running &&= p.running;
      m.workers += p.workers;
      m.abi_version ??= p.abi_version;
      if (p.last_error_at !== null && (m.last_error_at === null || p.last_error_at > m.last_error_at)) {
        m.last_error = p.last_error;
        m.last_error_at = p.last_error_at;
      }
    }
  }
  return [...byName.values()];
}

/** Isolation of plugins that do not set `isolation` (timeslice costs ~1 µs per request more than inline). */
export const DEFAULT_ISOLATION: Isolation = "timeslice";
/** Longest running time of a VM's start-up (`_initialize`/`_start`, on_vm_start, on_configure) by default (ms). */
export const DEFAULT_START_TIMEOUT = 10_000;
/** Longest wait for in-flight requests, then for proxy_done, when a plugin is retired. */
const ROOT_DONE_WAIT_MS = 10_000;

/** A configured plugin in one isolate. */
export class Plugin implements VmHost, GroupMember {
  readonly pluginName: string;
  /** Envoy's root_id: SDKs (AssemblyScript, C++) look their root context factory up by it. */
  readonly rootId: string;
  readonly vmId: string;
  readonly vmConfig: Uint8Array;
  readonly pluginConfig: Uint8Array;
  readonly timeout: number;
  /** Running time a VM's start-up may take (ms). */
  readonly startTimeout: number;
  readonly isolation: Isolation;
  readonly key: string;
  compiled: (CompiledModule & { abi: NonNullable<CompiledModule["abi"]> }) | null = null;
  /** The module is being read and compiled (off the event loop); getVM waits for it. */
  private loading: Promise<void> | null = null;
  loadError: string | null = null;
  /** The VM holding this plugin's started root context (set by its group). */
  vm: PluginVM | null = null;
  /** Its VM and the plugins sharing it; null until the module is compiled. */
  group: VmGroup | null = null;
  errors = 0;
  lastError: string | null = null;
  lastErrorAt: string | null = null;
  retired = false;
  /**
   * What runs, known once the module is compiled: every callback it exports
   * (as Envoy), unless `phase` restricts it to the callbacks up to that phase.
   */
  wantsRequestBody = false;
  wantsResponseHeaders = false;
  wantsResponseBody = false;
  readonly onlyLog: boolean;
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  /** VM whose root context's on_done returned false: it waits for proxy_done. */
  private pendingDone: PluginVM | null = null;
  private doneTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly cfg: PluginConfig, readonly manager: PluginManager) {
    this.pluginName = cfg.name;
    this.rootId = cfg.root_id ?? "";
    this.timeout = cfg.timeout > 0 ? cfg.timeout : 50;
    this.startTimeout = (cfg.start_timeout ?? 0) > 0 ? cfg.start_timeout! : DEFAULT_START_TIMEOUT;
    this.isolation = cfg.isolation ?? DEFAULT_ISOLATION;
    this.key = pluginKey(cfg);
    this.vmId = cfg.vm_id ?? "";
    this.pluginConfig = configBytes(cfg.config);
    this.vmConfig = configBytes(cfg.vm_config);
    this.onlyLog = cfg.phase === "on_log";
  }

  get shared(): SharedStores {
    return this.manager.shared;
  }

  get grpc(): GrpcCallouts {
    return this.manager.grpc;
  }

  /**
   * Reads and compiles the module (off the event loop, cached by content:
   * compile.ts), then starts the first VM in the background, so a plugin is
   * running before its first request.
   */
  load(): void {
    const loading = this.manager.compile(this.cfg.path, this.cfg.memory_limit, this.vmId !== "").then((c) => {
      this.compiled = c;
      if (!this.retired) this.group = this.manager.joinGroup(this, c);
      // A module without a callback gets nothing for it: a body it does not look at streams past uncopied.
      const exported = new Set(WebAssembly.Module.exports(c.module).map((e) => e.name));
      const has = (...names: string[]) => names.some((n) => exported.has("proxy_on_" + n));
      const phase = this.cfg.phase;
      const all = phase === undefined;
      this.wantsRequestBody = (all || phase === "on_request_body") && has("request_body", "request_trailers");
      this.wantsResponseBody = (all || phase === "on_response_body") &&
        has("response_body", "response_trailers");
      this.wantsResponseHeaders = this.wantsResponseBody ||
        ((all || phase === "on_response_headers") && has("response_headers"));
    }, (e) => {
      this.loadError = e instanceof Error ? e.message : String(e);
      this.recordError(this.loadError);
      log.error("plugin failed to load", {
        plugin: this.cfg.name,
        path: this.cfg.path,
        error: this.loadError,
      });
    }).finally(() => {
      this.loading = null;
      if (!this.retired) void this.getVM();
    });
    this.loading = loading;
  }

  /**
   * The running VM with this plugin's root context, created (and
   * configured) on demand by its group; null when it cannot start. While a
   * VM or the root context starts (`_initialize`, on_vm_start, on_configure;
   * in timeslice mode sliced like any callback) this returns a Promise,
   * shared by every caller, that never rejects.
   */
  getVM(): PluginVM | null | Promise<PluginVM | null> {
    if (this.vm !== null && this.vm.failed === null) return this.vm;
    if (this.loading !== null) return this.loading.then(() => this.getVM());
    if (this.group === null || this.retired) return null;
    return this.group.vmFor(this);
  }

  /** Its VM was lost (GroupMember): ticks stop. */
  lostVM(): void {
    this.stopTicks();
  }

  private durations = new Map<string, HistogramChild | null>();

  /** Records the time of one callback in loom_plugin_duration_seconds{plugin,phase}. */
  observe(phase: string, seconds: number): void {
    let c = this.durations.get(phase);
    if (c === undefined) this.durations.set(phase, c = this.manager.durationChild(this.cfg.name, phase));
    c?.observe(seconds);
  }

  recordError(msg: string): void {
    this.errors++;
    this.lastError = msg;
    this.lastErrorAt = new Date().toISOString();
    this.manager.errorCounter(this.cfg.name);
  }

  tickPeriod(ms: number): void {
    this.stopTicks();
    if (ms === 0 || this.retired) return;
    const vm = this.vm ?? undefined;
    let pending = false;
    this.tickTimer = setInterval(() => {
      const cur = this.vm;
      if (cur === null || cur.failed !== null || (vm !== undefined && cur !== vm)) return;
      // Timeslice: ticks do not pile up behind a long (suspended) callback.
      if (pending) return;
      try {
        const root = cur.rootFor(this);
        const r = cur.call("proxy_on_tick", root, root);
        if (typeof r !== "number") {
          pending = true;
          r.catch(() => {}).finally(() => pending = false);
        }
      } catch { /* recorded by vmFailed */ }
    }, Math.max(1, ms));
    // Ticks must not keep a draining process alive.
    Deno.unrefTimer(this.tickTimer as unknown as number);
  }

  private stopTicks(): void {
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
  }

  /**
   * Stops the plugin after a reload dropped or replaced it. Requests still in
   * flight keep its VM; once they are done the root context is torn down as
   * the reference host does: `proxy_on_done(root)`, and when that returns
   * false the plugin may finish asynchronous work (ticks, http_call) until it
   * calls `proxy_done`, then `proxy_on_delete(root)`.
   */
  retire(): void {
    this.retired = true;
    this.manager.leaveGroup(this);
    const vm = this.vm;
    if (vm === null || vm.failed !== null) return this.stopTicks();
    const started = performance.now();
    // Only this plugin's streams: a shared VM serves other plugins meanwhile. A tcp connection
    // (network stream) keeps the root context however long it lives, as in Envoy, where each
    // connection's filter holds the plugin handle whose release shuts the root context down.
    let connections = false;
    const busy = () => {
      connections = false;
      let any = false;
      for (const s of vm.streams.values()) {
        if (s.plugin !== undefined && s.plugin !== this) continue;
        any = true;
        if ((s as { kind?: string }).kind === "network") connections = true;
      }
      return any;
    };
    const whenIdle = () => {
      const waited = performance.now() - started;
      if (busy() && (connections || waited < ROOT_DONE_WAIT_MS) && vm.failed === null) {
        const t = setTimeout(whenIdle, waited < ROOT_DONE_WAIT_MS ? 20 : 1000);
        Deno.unrefTimer(t as unknown as number);
        return;
      }
      void this.rootDone(vm);
    };
    whenIdle();
  }

  private async rootDone(vm: PluginVM): Promise<void> {
    if (vm.failed !== null) return this.stopTicks();
    const root = vm.rootFor(this);
    let done = true;
    try {
      done = (await vm.call("proxy_on_done", root, root)) !== 0;
    } catch {
      return this.stopTicks(); // recorded by vmFailed
    }
    if (done) return this.deleteRoot(vm);
    this.pendingDone = vm;
    // Bounded: a plugin that never calls proxy_done is deleted anyway.
    this.doneTimer = setTimeout(() => this.deleteRoot(vm), ROOT_DONE_WAIT_MS);
    Deno.unrefTimer(this.doneTimer as unknown as number);
  }

  /** proxy_done from a VM (VmHost). */
  done(vm: PluginVM, contextId: number): boolean {
    if (this.pendingDone !== vm || contextId !== vm.rootFor(this)) return false;
    this.pendingDone = null;
    clearTimeout(this.doneTimer);
    // Deferred like the reference host: on_delete must not run inside the proxy_done call.
    setTimeout(() => this.deleteRoot(vm), 0);
    return true;
  }

  private deleteRoot(vm: PluginVM): void {
    this.pendingDone = null;
    clearTimeout(this.doneTimer);
    this.stopTicks();
    if (this.vm === vm) this.vm = null;
    const root = vm.rootFor(this);
    vm.fire("proxy_on_delete", root, root);
    // Only its own root context's callouts: a shared VM's other plugins keep theirs.
    this.manager.grpc.dropVM(vm, root);
    vm.removeRoot(root);
  }

  property(path: string[]): Uint8Array | null | undefined {
    const p = path.join(".");
    switch (p) {
      case "plugin_name":
        return enc.encode(this.cfg.name);
      case "plugin_vm_id":
        return enc.encode(this.vmId);
      case "node.id":
        return enc.encode("loom");
      case "node.cluster":
        return enc.encode("loom");
      default:
        return undefined;
    }
  }

  httpCall(
    vm: PluginVM,
    upstream: string,
    headers: [string, string][],
    body: Uint8Array,
    trailers: [string, string][],
    timeoutMs: number,
  ): number | null {
    // The answer goes to this plugin's root context (a shared VM has one per plugin).
    return this.manager.httpCall(vm, upstream, headers, body, trailers, timeoutMs, vm.rootFor(this));
  }

  info(): PluginInfo {
    return {
      name: this.cfg.name,
      path: this.cfg.path,
      phase: this.cfg.phase ?? "all",
      priority: this.cfg.priority,
      abi_version: this.compiled?.abi ?? null,
      failure_policy: this.cfg.failure_policy,
      vms: this.group?.vms ?? 0,
      running: this.vm !== null && this.vm.failed === null,
      errors: this.errors,
      last_error: this.lastError,
      last_error_at: this.lastErrorAt,
      loops_instrumented: this.compiled?.loops ?? 0,
      workers: 1,
      vm_shared_with: this.group?.sharedWith(this) ?? [],
    };
  }
}

/** The plugins of one route, in execution order (priority, higher first). */
export interface PluginChain {
  readonly plugins: readonly Plugin[];
  readonly responseSide: boolean;
  readonly requestBody: boolean;
}

interface MetricEntry {
  type: number;
  name: string;
  value: bigint;
  counter?: Counter;
  gauge?: Gauge;
  hist?: HistogramChild;
  get(): bigint;
  add(v: bigint): void;
  record(v: bigint): void;
}

let lastManager: PluginManager | null = null;

/** The plugin manager of the most recently started gateway in this isolate (admin API). */
export function currentPluginManager(): PluginManager | null {
  return lastManager;
}

/** All plugins of one gateway isolate, carried from snapshot to snapshot across reloads. */
export class PluginManager {
  private plugins = new Map<string, Plugin>();
  /** VMs shared by plugins, by sharing key (vm_group.ts). */
  private groups = new Map<string, VmGroup>();
  private upstreams: ReadonlyMap<string, CallUpstream> = new Map();
  private registry: Registry | null = null;
  private durations: Histogram | null = null;
  private errorsTotal: Counter | null = null;
  private metricList: MetricEntry[] = [];
  private metricByName = new Map<string, number>();
  private nextToken = 1;
  readonly shared: SharedStores;
  /** gRPC calls and streams of every plugin in this isolate. */
  readonly grpc = new GrpcCallouts(() => this.upstreams);

  constructor() {
    lastManager = this;
    warmCompileWorker();
    this.shared = {
      data: new Map(),
      nextCas: 1,
      queues: new Map(),
      queueByName: new Map(),
      nextQueue: 1,
      defineMetric: (type, name) => this.defineMetric(type, name),
      metric: (id) => this.metricList[id - 1],
    };
  }

  /**
   * Applies a config: plugins whose definition is unchanged keep their VM
   * (and state); changed or new ones are loaded. Never throws: load errors
   * are recorded on the plugin (GET /plugins) and fail its requests.
   */
  update(config: LoomConfig, upstreams: ReadonlyMap<string, CallUpstream>): void {
    this.upstreams = upstreams;
    const next = new Map<string, Plugin>();
    for (const cfg of config.plugins) {
      const old = this.plugins.get(cfg.name);
      if (old !== undefined && old.key === pluginKey(cfg) && old.loadError === null) {
        next.set(cfg.name, old);
        continue;
      }
      const p = new Plugin(cfg, this);
      p.load();
      next.set(cfg.name, p);
    }
    this.pending = [...this.plugins.values()].filter((p) => next.get(p.cfg.name) !== p);
    this.plugins = next;
  }

  private pending: Plugin[] = [];

  /** After the snapshot swap: stops plugins the new config dropped or replaced. */
  retireReplaced(): void {
    for (const p of this.pending) p.retire();
    this.pending = [];
  }

  /** The plugin named `name` (a tcp listener's network filters: wasm/network.ts). */
  get(name: string): Plugin | undefined {
    return this.plugins.get(name);
  }

  /**
   * The chain for a route's `plugins:` list plus every `global: true` plugin,
   * or null when both are empty (routes without plugins pay nothing).
   */
  chain(names: readonly string[] | undefined): PluginChain | null {
    const plugins: Plugin[] = [];
    for (const n of names ?? []) {
      const p = this.plugins.get(n);
      if (p !== undefined && !plugins.includes(p)) plugins.push(p);
    }
    // Global plugins come after the route's own at equal priority; a global
    // plugin also listed by the route runs once.
    for (const p of this.plugins.values()) if (p.cfg.global && !plugins.includes(p)) plugins.push(p);
    if (plugins.length === 0) return null;
    // Stable sort: equal priorities keep the route's order.
    plugins.sort((a, b) => b.cfg.priority - a.cfg.priority);
    return {
      plugins,
      // Known once the modules are compiled (off the event loop): asked after on_request_headers.
      get responseSide() {
        return plugins.some((p) => p.wantsResponseHeaders);
      },
      get requestBody() {
        return plugins.some((p) => p.wantsRequestBody);
      },
    };
  }

  /**
   * Reads, instruments and compiles a module, off the event loop and cached
   * by content (compile.ts: the config-time check compiled it already).
   * `hash`: the content's SHA-256 too (hex), for sharing VMs by module.
   */
  async compile(
    path: string,
    memoryLimit: number,
    hash = false,
  ): Promise<CompiledModule & { abi: NonNullable<CompiledModule["abi"]>; hash: string }> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw new WasmLoadError(`cannot read ${path}: ${e instanceof Error ? e.message : e}`);
    }
    const digest = hash ? await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>) : null;
    let c: CompiledModule;
    try {
      c = await compileModule(bytes, memoryLimit);
    } catch (e) {
      throw new WasmLoadError(`${path}: ${e instanceof Error ? e.message : e}`);
    }
    const abi = c.abi;
    if (abi === null) {
      throw new WasmLoadError(
        `${path}: not a Proxy-Wasm module (no proxy_abi_version_0_1_0/0_2_0/0_2_1 export)`,
      );
    }
    const hex = digest === null
      ? ""
      : Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    return { ...c, abi, hash: hex };
  }

  /**
   * The VM group of a plugin whose module is compiled: the one of its
   * sharing key (same vm_id, module, vm_config, memory limit, isolation:
   * vm_group.ts), kept across reloads while any plugin uses it, or a new one.
   */
  joinGroup(
    p: Plugin,
    c: CompiledModule & { abi: NonNullable<CompiledModule["abi"]>; hash: string },
  ): VmGroup {
    const key = groupKey(p.vmId, c.hash, p.cfg.memory_limit, p.isolation, p.vmConfig);
    let g = key === null ? undefined : this.groups.get(key);
    if (g === undefined) {
      g = new VmGroup(key, c.module, c.abi, (vm, root) => this.grpc.dropVM(vm, root));
      if (key !== null) this.groups.set(key, g);
    }
    g.add(p);
    return g;
  }

  /** A plugin retired: it leaves its group, and a group left empty is forgotten (its VM ends with it). */
  leaveGroup(p: Plugin): void {
    const g = p.group;
    if (g === null || !g.remove(p) || g.key === null) return;
    if (this.groups.get(g.key) === g) this.groups.delete(g.key);
  }

  /** Plugin metrics and the loom_plugin_* metrics go to `registry` (once). */
  attachMetrics(registry: Registry | null): void {
    if (registry === null || this.registry !== null) return;
    this.registry = registry;
    try {
      this.durations = registry.histogram(
        "loom_plugin_duration_seconds",
        "Time spent in plugin callbacks, by plugin and phase.",
        ["plugin", "phase"],
        [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.005, 0.025, 0.1],
      );
      this.errorsTotal = registry.counter(
        "loom_plugin_errors_total",
        "Plugin failures (load errors, traps, timeouts), by plugin.",
        ["plugin"],
      );
      for (const p of this.plugins.values()) {
        if (p.errors > 0) this.errorsTotal.labels(p.cfg.name).inc(p.errors);
      }
      for (const m of this.metricList) this.register(m);
    } catch (e) {
      log.warn("plugin metrics not registered", { error: String(e) });
    }
  }

  /** The loom_plugin_duration_seconds series of (plugin, phase); null before metrics are attached. */
  durationChild(plugin: string, phase: string): HistogramChild | null {
    return this.durations?.labels(plugin, phase) ?? null;
  }

  errorCounter(plugin: string): void {
    this.errorsTotal?.labels(plugin).inc();
  }

  private defineMetric(type: number, name: string): number {
    const prom = "wasm_" + name.replace(/[^a-zA-Z0-9_:]/g, "_");
    const existing = this.metricByName.get(prom);
    if (existing !== undefined) return this.metricList[existing - 1].type === type ? existing : -1;
    const m: MetricEntry = {
      type,
      name: prom,
      value: 0n,
      get: () => m.value,
      add: (v) => {
        m.value += v;
        if (m.type === MetricType.COUNTER && m.value < 0n) m.value = 0n;
        this.publish(m);
      },
      record: (v) => {
        if (m.type === MetricType.HISTOGRAM) m.hist?.observe(Number(v));
        else {
          m.value = v;
          this.publish(m);
        }
      },
    };
    this.metricList.push(m);
    const id = this.metricList.length;
    this.metricByName.set(prom, id);
    if (this.registry !== null) this.register(m);
    return id;
  }

  private register(m: MetricEntry): void {
    const r = this.registry!;
    try {
      if (m.type === MetricType.COUNTER) m.counter = r.counter(m.name, "Proxy-Wasm plugin counter.");
      else if (m.type === MetricType.GAUGE) m.gauge = r.gauge(m.name, "Proxy-Wasm plugin gauge.");
      else {
        m.hist = r.histogram(m.name, "Proxy-Wasm plugin histogram.", [], [
          1,
          5,
          10,
          50,
          100,
          500,
          1000,
          5000,
          10000,
        ]).labels();
      }
      this.publish(m);
    } catch (e) {
      log.warn("plugin metric not registered", { metric: m.name, error: String(e) });
    }
  }

  private publish(m: MetricEntry): void {
    if (m.counter !== undefined) m.counter.labels().value = Number(m.value);
    else if (m.gauge !== undefined) m.gauge.labels().set(Number(m.value));
  }

  /** Dispatches an http_call; the answer goes to the VM's root context. */
  httpCall(
    vm: PluginVM,
    upstream: string,
    headers: [string, string][],
    body: Uint8Array,
    _trailers: [string, string][],
    timeoutMs: number,
    root = vm.rootContextId,
  ): number | null {
    const up = this.upstreams.get(upstream);
    if (up === undefined) return null;
    const token = this.nextToken++;
    let method: string | undefined, path: string | undefined, authority: string | undefined;
    const rest: [string, string][] = [];
    const lower = new Map<string, string>();
    for (const [k, v] of headers) {
      // Pseudo headers are singletons: the first wins (a plugin sets its own :path, then copies the request's).
      if (k === ":method") method ??= v;
      else if (k === ":path") path ??= v;
      else if (k === ":authority") authority ??= v;
      else if (k.charCodeAt(0) !== 58) rest.push([k, v]), lower.set(k.toLowerCase(), v);
    }
    method ??= "GET", path ??= "/", authority ??= "";
    lower.set("host", authority);
    const ep = up.select({ header: (n) => lower.get(n), clientIp: "" });
    const deliver = (r: CalloutData) => vm.deliverHttpCall(token, r, root);
    // As Envoy: a call that fails (no endpoint, connect error, timeout) is answered with no headers.
    const failed = () => deliver({ headers: [], body: new Uint8Array(0), trailers: [] });
    if (ep === null) {
      setTimeout(failed, 0);
      return token;
    }
    call(up.pool(ep), { method, path, authority, headers: rest, body }, timeoutMs > 0 ? timeoutMs : 5000)
      .then(
        (res) =>
          deliver({
            headers: [[":status", String(res.status)], ...res.headers],
            body: res.body,
            trailers: res.trailers,
          }),
        failed,
      );
    return token;
  }

  /** Plugins for `GET /plugins`. */
  describe(): PluginInfo[] {
    return [...this.plugins.values()].map((p) => p.info());
  }
}

function mtimeOf(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch {
    return -1;
  }
}

/** Identity of a plugin definition: its config and its module file's version. */
function pluginKey(cfg: PluginConfig): string {
  return JSON.stringify(cfg) + "\0" + mtimeOf(cfg.path);
}

/** A configuration as the plugin reads it: a string as is, anything else as JSON. */
function configBytes(c: unknown): Uint8Array {
  return c === undefined || c === null
    ? new Uint8Array(0)
    : enc.encode(typeof c === "string" ? c : JSON.stringify(c));
}
