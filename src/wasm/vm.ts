/**
 * One Proxy-Wasm VM: an instance of a plugin module plus the host functions
 * it imports. The host functions (host/) act on the *effective context* (the
 * stream or root context the current callback belongs to, or the one picked
 * with `proxy_set_effective_context`), as in proxy-wasm-cpp-host.
 *
 * A VM is poisoned by the first trap, timeout or `proc_exit`: it is never
 * called again, and every stream still attached to it fails (see plugin.ts,
 * which recreates VMs).
 *
 * Isolation modes: `inline` runs callbacks as plain synchronous calls (a
 * runaway callback holds the isolate's event loop until its timeout);
 * `timeslice` enters them through JSPI and suspends them every few ms so
 * other requests are served meanwhile (timeslice.ts).
 *
 * @module
 */
import type { AbiVersion } from "./abi.ts";
import { PluginTimeout, ProcExit, StaleVM } from "./errors.ts";
import type { MapView } from "./header_maps.ts";
import { hostImports } from "./host/mod.ts";
import { GuestMemory } from "./memory.ts";
import type { PluginConfig } from "../config/types.ts";
import { PluginOutput } from "./wasi.ts";
import { CallClock, type Entry, entryOf, loomImports, servingJobs, Timeslicer } from "./timeslice.ts";

/** A local response a plugin asked for. */
export interface LocalResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

/** What the VM needs of a stream (one HTTP request through this plugin). */
export interface StreamHost {
  readonly id: number;
  /** Its plugin: in a VM shared by plugins (vm_group.ts) host calls act for it; absent = the VM's first. */
  readonly plugin?: VmHost;
  map(type: number): MapView | null;
  buffer(type: number): Uint8Array | null;
  setBuffer(type: number, data: Uint8Array): boolean;
  property(path: string[]): Uint8Array | null | undefined;
  setProperty(path: string, value: Uint8Array): void;
  localResponse(r: LocalResponse): void;
  resume(type: number): void;
  close(type: number): void;
  /** proxy_clear_route_cache: the request is routed again before it goes upstream. */
  clearRouteCache(): void;
}

/** How callbacks run: see the module doc. */
export type Isolation = "timeslice" | "inline";

/** What the VM needs of its plugin and the isolate-wide stores. */
export interface VmHost {
  readonly pluginName: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly vmConfig: Uint8Array;
  readonly pluginConfig: Uint8Array;
  readonly timeout: number;
  /** Running time of its root context's start-up (on_vm_start, on_configure); absent = `timeout`. */
  readonly startTimeout?: number;
  /** Absent = inline (plugins default to timeslice: plugin.ts). */
  readonly isolation?: Isolation;
  /** Its config's host features: read-only `files` (preopens.ts) and `dns_server` (host/dns.ts). */
  readonly cfg?: Pick<PluginConfig, "files" | "dns_server">;
  property(path: string[]): Uint8Array | null | undefined;
  tickPeriod(ms: number): void;
  httpCall(
    vm: PluginVM,
    upstream: string,
    headers: [string, string][],
    body: Uint8Array,
    trailers: [string, string][],
    timeoutMs: number,
  ): number | null;
  shared: SharedStores;
  /** gRPC callouts; absent = every gRPC host call fails with INTERNAL_FAILURE. */
  grpc?: GrpcHost;
  /**
   * `proxy_done` from `contextId`: true when that root context was waiting
   * for it (its on_done returned false); the host then deletes it later.
   */
  done?(vm: PluginVM, contextId: number): boolean;
}

/** Shared data, queues and metrics: one set per gateway isolate, across all plugins and VMs. */
export interface SharedStores {
  data: Map<string, { value: Uint8Array; cas: number }>;
  nextCas: number;
  queues: Map<number, { vmId: string; name: string; items: Uint8Array[]; owner: (token: number) => void }>;
  queueByName: Map<string, number>;
  nextQueue: number;
  defineMetric(type: number, name: string): number;
  metric(
    id: number,
  ): { type: number; get(): bigint; add(v: bigint): void; record(v: bigint): void } | undefined;
}

type Exports = Record<string, unknown> & { memory: WebAssembly.Memory };
type Fn = (...a: number[]) => number;

/**
 * What a root context's callout callback reads: an http_call answer, or one
 * gRPC event (initial metadata, a message, trailing metadata, or the close
 * status read with proxy_get_status).
 */
export interface CalloutData {
  /** http_call response headers, or gRPC initial metadata. */
  headers: [string, string][];
  /** http_call response body, or one gRPC message. */
  body: Uint8Array;
  /** http_call response trailers, or gRPC trailing metadata. */
  trailers: [string, string][];
  /** gRPC status of proxy_on_grpc_close. */
  status?: { code: number; message: string };
}

/** The plugin's gRPC calls and streams (grpc_callouts.ts); tokens are odd for calls, even for streams. */
export interface GrpcHost {
  /** A unary call; its answer goes to the root context. Token, or a Status when it cannot be sent. */
  call(
    vm: PluginVM,
    upstream: Uint8Array,
    service: string,
    method: string,
    metadata: [string, string][],
    message: Uint8Array,
    timeoutMs: number,
  ): { token: number } | number;
  /** Opens a stream. Token, or a Status. */
  stream(
    vm: PluginVM,
    upstream: Uint8Array,
    service: string,
    method: string,
    metadata: [string, string][],
  ): { token: number } | number;
  send(vm: PluginVM, token: number, message: Uint8Array, endStream: boolean): number;
  cancel(vm: PluginVM, token: number): number;
  close(vm: PluginVM, token: number): number;
}

/** Guest exports the host calls, by name. */
const CALLBACKS = [
  "proxy_on_context_create",
  "proxy_on_vm_start",
  "proxy_on_configure",
  "proxy_on_tick",
  "proxy_on_queue_ready",
  "proxy_on_request_headers",
  "proxy_on_request_body",
  "proxy_on_request_trailers",
  "proxy_on_response_headers",
  "proxy_on_response_body",
  "proxy_on_response_trailers",
  "proxy_on_http_call_response",
  "proxy_on_done",
  "proxy_on_log",
  "proxy_on_delete",
  "proxy_on_grpc_receive_initial_metadata",
  "proxy_on_grpc_receive",
  "proxy_on_grpc_receive_trailing_metadata",
  "proxy_on_grpc_close",
  "proxy_on_foreign_function",
  // Network (L4) filters: network.ts.
  "proxy_on_new_connection",
  "proxy_on_downstream_data",
  "proxy_on_upstream_data",
  "proxy_on_downstream_connection_close",
  "proxy_on_upstream_connection_close",
] as const;
/** A guest callback name. */
export type Callback = typeof CALLBACKS[number];
/**
 * Timeslice batches (binary.ts entry points): `loom:start` (ctx, root, a, b, c)
 * = on_context_create(ctx, root) + on_request_headers(ctx, a, b, c);
 * `loom:finish` (ctx) = on_done + on_log + on_delete, results ignored.
 */
export type Batch = "loom:start" | "loom:finish";

/** One instantiated plugin module. */
export class PluginVM {
  readonly instance: WebAssembly.Instance;
  readonly memory: WebAssembly.Memory;
  /** Guest memory as host functions read and write it. */
  readonly mem: GuestMemory;
  /** Root context id (ids come from one counter per VM; 0 is the VM itself). */
  readonly rootContextId: number;
  /**
   * Root contexts and their plugins: one (rootContextId) unless plugins
   * share the VM (vm_group.ts), each with a root context of its own.
   */
  private readonly roots = new Map<number, VmHost>();
  private readonly rootIds = new Map<VmHost, number>();
  /** More than one plugin has a root context here: host calls find theirs by the effective context. */
  private shared = false;
  /** Roots whose start-up runs, and its time budget (ms). */
  private readonly setupMs = new Map<number, number>();
  private readonly primary: VmHost;
  /** Set on the first trap/timeout: the VM is never called again. */
  failed: Error | null = null;
  /** Stream contexts attached to this VM, by context id. */
  readonly streams = new Map<number, StreamHost>();
  /** Called once when the VM fails (so the plugin can fail its streams). */
  onFail: ((e: Error) => void) | null = null;
  /** The context host calls act on (set per callback, or by proxy_set_effective_context). */
  effective = 0;
  /** What a root context's callout callback reads, for its duration. */
  callout: CalloutData | null = null;
  /** Timeslice mode: callbacks entered through JSPI. */
  readonly sliced: boolean;
  /** What the plugin writes to stdout/stderr (WASI), logged once per callback. */
  readonly output: PluginOutput;
  /** What the plugin wrote in the callback that failed the VM (say a Go panic's message), "" if nothing. */
  failedOutput = "";
  private nextId = 1;
  private readonly clock: CallClock;
  /** Null in inline mode. */
  private readonly slicer: Timeslicer | null;
  private fns: Partial<Record<Callback, Fn>> = {};
  private pfns: Partial<Record<Callback | Batch, Entry>> = {};

  constructor(module: WebAssembly.Module, readonly abi: AbiVersion, host: VmHost) {
    this.primary = host;
    this.sliced = host.isolation === "timeslice";
    this.clock = new CallClock(host.timeout);
    this.mem = new GuestMemory(this.clock);
    this.output = new PluginOutput(() => this.host.pluginName);
    this.slicer = this.sliced ? new Timeslicer(this, this.clock) : null;
    this.instance = new WebAssembly.Instance(
      module,
      hostImports(this, module, loomImports(this.clock, this.slicer)),
    );
    const ex = this.instance.exports as Exports;
    if (!(ex.memory instanceof WebAssembly.Memory)) throw new Error("module exports no memory");
    this.memory = ex.memory;
    // Entry points in export order: their index in the serving loop (binary.ts).
    const jobs = this.sliced ? servingJobs(module, this.instance.exports) : new Map<string, number>();
    for (const name of CALLBACKS) {
      if (typeof ex[name] !== "function") continue;
      this.fns[name] = ex[name] as Fn;
      if (this.sliced) this.pfns[name] = entryOf(jobs.get("loom:" + name), ex[name]);
    }
    for (const b of ["loom:start", "loom:finish"] as const) {
      const job = jobs.get(b);
      if (job !== undefined) this.pfns[b] = { job, fn: null };
    }
    const alloc = ex.proxy_on_memory_allocate ?? ex.malloc;
    if (typeof alloc !== "function") {
      throw new Error("module exports neither malloc nor proxy_on_memory_allocate");
    }
    this.mem.attach(this.memory, alloc as Fn);
    this.rootContextId = this.nextId++;
    this.roots.set(this.rootContextId, host);
    this.rootIds.set(host, this.rootContextId);
    if (jobs.size > 0) this.slicer!.serve(ex["loom:serve"]);
  }

  /**
   * Runs the module's start code: `_initialize` (+ `main`) or `_start`. In
   * timeslice mode it is sliced like any callback (a Promise, rejected with
   * the failure), so a slow start-up does not hold the event loop.
   */
  start(): void | Promise<void> {
    const ex = this.instance.exports as Record<string, unknown>;
    const steps: unknown[] = [];
    if (typeof ex._initialize === "function") {
      steps.push(ex._initialize);
      if (typeof ex.main === "function") steps.push(ex.main);
      else if (typeof ex.__main_void === "function") steps.push(ex.__main_void);
    } else if (typeof ex._start === "function") steps.push(ex._start);
    const slicer = this.slicer;
    if (slicer === null) {
      this.guard(() => {
        for (const f of steps) (f as Fn)(0, 0); // main(argc, argv); the others take none
        return 0;
      });
      return;
    }
    return (async () => {
      // The first slice in a task of its own: right after the instantiation (2-4 ms for a Go module) it held
      // the event loop for both.
      await new Promise((r) => setTimeout(r, 0));
      // A one-off JSPI stack per step: start-up runs once per VM.
      for (const f of steps) await slicer.enter(entryOf(undefined, f), 0, null);
    })();
  }

  /** The time budget (ms) of the calls that follow: start-up has its own (`start_timeout`). */
  setCallTimeout(ms: number): void {
    this.clock.setTimeout(ms);
  }

  /** A fresh stream context id. */
  newContextId(): number {
    return this.nextId++;
  }

  /** The plugin (VmHost) host calls act for: the one of the effective context. */
  get host(): VmHost {
    return this.shared ? this.hostOf(this.effective) : this.primary;
  }

  /** The plugin context `ctx` belongs to (a root context's, or a stream's); the first one otherwise. */
  hostOf(ctx: number): VmHost {
    return this.roots.get(ctx) ?? this.streams.get(ctx)?.plugin ?? this.primary;
  }

  /** The root context `ctx` belongs to: itself for a root context, its plugin's for a stream. */
  rootOf(ctx: number): number {
    if (this.roots.has(ctx)) return ctx;
    const p = this.streams.get(ctx)?.plugin;
    return p === undefined ? this.rootContextId : this.rootFor(p);
  }

  /** The root context id of plugin `host` in this VM (rootContextId for a VM of one plugin). */
  rootFor(host: VmHost): number {
    return this.shared ? this.rootIds.get(host) ?? this.rootContextId : this.rootContextId;
  }

  /** Whether `ctx` is a live root context here. */
  isRoot(ctx: number): boolean {
    return this.roots.has(ctx);
  }

  /**
   * A root context for one more plugin sharing this VM (vm_group.ts): its
   * id; the plugin's calls then get its own timeout.
   */
  addRoot(host: VmHost): number {
    const id = this.nextId++;
    this.roots.set(id, host);
    this.rootIds.set(host, id);
    this.shared = true;
    this.clock.budget ??= () => this.budget();
    return id;
  }

  /** A root context was deleted (its plugin retired). */
  removeRoot(id: number): void {
    const h = this.roots.get(id);
    if (h === undefined) return;
    this.roots.delete(id);
    if (this.rootIds.get(h) === id) this.rootIds.delete(h);
    this.rootGone(id);
  }

  /** Host resources of root contexts (timers, DNS lookups: host/completions.ts), released when they go. */
  private readonly releasers = new Map<number, (() => void)[]>();

  /** Runs `f` once root context `root` is removed or the VM fails (at once when that happened already). */
  onRootGone(root: number, f: () => void): void {
    if (this.failed !== null || !this.roots.has(root)) return f();
    const list = this.releasers.get(root);
    if (list === undefined) this.releasers.set(root, [f]);
    else list.push(f);
  }

  private rootGone(root: number): void {
    const list = this.releasers.get(root);
    this.releasers.delete(root);
    for (const f of list ?? []) f();
  }

  /**
   * Calls on root context `root` (and, for rootContextId, the module's start
   * code) run with budget `ms` (its start-up), or again with its plugin's
   * timeout when null.
   */
  setupBudget(root: number, ms: number | null): void {
    if (ms === null) this.setupMs.delete(root);
    else this.setupMs.set(root, ms);
    this.clock.budget ??= () => this.budget();
  }

  /** The time budget of the callback about to run (CallClock.budget). */
  private budget(): number {
    if (!this.shared) return this.setupMs.get(this.rootContextId) ?? this.primary.timeout;
    const root = this.rootOf(this.effective);
    return this.setupMs.get(root) ?? this.hostOf(root).timeout;
  }

  /** Whether the module exports callback `cb`. */
  has(cb: Callback): boolean {
    return this.fns[cb] !== undefined;
  }

  /** Whether this (timeslice) VM has the batch entry point `b`. */
  hasBatch(b: Batch): boolean {
    return this.pfns[b] !== undefined;
  }

  /**
   * Calls a guest callback with `effective` as the current context. Returns
   * its result (0 when the export is missing); throws the VM's failure when it
   * traps, times out or was poisoned before. In timeslice mode the result of
   * an exported callback is a Promise (rejected with the failure), which
   * waits for the VM's current callback first.
   */
  call(cb: Callback | Batch, effective: number, a = 0, b = 0, c = 0, d = 0, e = 0): number | Promise<number> {
    const slicer = this.slicer;
    if (slicer !== null) {
      if (this.failed !== null) throw new StaleVM(this.failed);
      const p = this.pfns[cb];
      if (p === undefined) return 0;
      return slicer.enter(p, effective, null, a, b, c, d, e);
    }
    return this.callPlain(cb as Callback, effective, a, b, c, d, e);
  }

  /**
   * A plain synchronous call in either mode (VM start-up, before any sliced
   * call can be pending): it never yields.
   */
  callPlain(cb: Callback, effective: number, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    if (this.failed !== null) throw this.failed;
    const f = this.fns[cb];
    if (f === undefined) return 0;
    const prev = this.effective;
    this.effective = effective;
    try {
      return this.guard(() => f(a, b, c, d, e));
    } finally {
      this.effective = prev;
    }
  }

  /**
   * Calls a callback without caring about its result; failures are recorded
   * on the VM (and its plugin) already.
   */
  fire(cb: Callback, effective: number, a = 0, b = 0): void {
    if (this.failed !== null) return;
    try {
      const r = this.call(cb, effective, a, b);
      if (typeof r !== "number") r.catch(() => {});
    } catch { /* recorded */ }
  }

  /** Delivers an http_call answer to the root context (`root`: the caller's, in a shared VM). */
  deliverHttpCall(token: number, res: CalloutData, root = this.rootContextId): void {
    this.deliver(
      "proxy_on_http_call_response",
      res,
      token,
      res.headers.length,
      res.body.length,
      res.trailers.length,
      root,
    );
  }

  /**
   * Calls a root-context callout callback (http_call answer, gRPC event) with
   * `data` readable for its duration, on root context `root` (the caller's
   * in a shared VM). False when the VM is failed (the callout should be
   * dropped). `done` runs once the callback has run (or failed).
   */
  deliver(
    cb: Callback,
    data: CalloutData,
    token: number,
    x: number,
    y = 0,
    z = 0,
    root = this.rootContextId,
    done?: () => void,
  ): boolean {
    // A root context deleted since the call (its plugin retired) gets nothing, as in the reference host.
    if (this.failed !== null || !this.roots.has(root)) return false;
    const slicer = this.slicer;
    if (slicer !== null) {
      const p = this.pfns[cb];
      if (p === undefined) return true;
      // The data is set once the call owns the VM, not while another callback is suspended.
      try {
        slicer.enter(p, root, data, root, token, x, y, z).catch(() => {}).finally(done);
      } catch { /* the VM is failed now; its streams were told */ }
      return true;
    }
    this.callout = data;
    try {
      this.callPlain(cb, root, root, token, x, y, z);
    } catch {
      /* the VM is failed now; its streams were told */
    } finally {
      this.callout = null;
      done?.();
    }
    return true;
  }

  /** Runs a plain guest call under the callback deadline; a failure poisons the VM. */
  private guard(f: () => number): number {
    this.clock.enter();
    try {
      return f() | 0;
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      throw this.failed;
    } finally {
      this.clock.exit();
      if (this.clock.depth === 0) this.output.flush();
    }
  }

  /** A sliced callback ended (timeslice.ts): what it wrote is logged. */
  callbackEnded(): void {
    this.output.flush();
  }

  /** Poisons the VM (idempotent). */
  fail(e: Error): void {
    if (this.failed !== null) return;
    this.failed = e instanceof WebAssembly.RuntimeError || e instanceof PluginTimeout || e instanceof ProcExit
      ? e
      : e instanceof RangeError
      ? new Error("plugin trapped: " + e.message)
      : e;
    // A panic's message (Go's runtime writes it to stderr, then exits or traps) goes with the failure.
    this.failedOutput = this.output.take();
    for (const root of [...this.releasers.keys()]) this.rootGone(root);
    this.onFail?.(this.failed);
  }

  /** The stream of the effective context; null for the root context (or a stream already gone). */
  stream(): StreamHost | null {
    return this.streams.get(this.effective) ?? null;
  }
}
