/**
 * One Proxy-Wasm VM: an instance of a plugin module plus the host functions
 * it imports. The host functions act on the *effective context* (the stream
 * or root context the current callback belongs to, or the one picked with
 * `proxy_set_effective_context`), as in proxy-wasm-cpp-host.
 *
 * A VM is poisoned by the first trap, timeout or `proc_exit`: it is never
 * called again, and every stream still attached to it fails (see plugin.ts,
 * which recreates VMs).
 *
 * Isolation modes: `inline` runs callbacks as plain synchronous calls (a
 * runaway callback holds the isolate's event loop until its timeout);
 * `timeslice` enters them through JSPI (`WebAssembly.promising`), and the
 * instrumented loops (binary.ts) suspend the callback every few ms so other
 * requests are served meanwhile. Calls into one VM are then serialized: guest
 * state (an SDK's dispatcher, the effective context) is mid-call while a
 * callback is suspended.
 *
 * @module
 */
import { concat } from "../net/bytes.ts";
import {
  type AbiVersion,
  BufferType,
  Errno,
  LogLevel,
  MapType,
  MetricType,
  Status,
  StreamType,
} from "./abi.ts";
import { getLogLevel, isLevelEnabled, logger } from "../observability/logger.ts";
import { DEFAULT_FUEL_CHUNK } from "./binary.ts";
import type { HeaderList } from "../core/headers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** Thrown from `loom.check` when a callback ran past its deadline. */
export class PluginTimeout extends Error {
  constructor(ms: number) {
    super(`plugin callback exceeded its ${ms} ms timeout`);
  }
}

/**
 * Timeslice mode: the call never ran, because the VM failed (in another
 * callback) before this call's turn came. A stream that has no state in the
 * guest yet may move to a fresh VM.
 */
export class StaleVM extends Error {
  constructor(readonly failure: Error) {
    super(failure.message);
  }
}

/** Thrown by WASI `proc_exit`: ends the VM, never the process. */
export class ProcExit extends Error {
  constructor(readonly code: number) {
    super(`plugin called proc_exit(${code})`);
  }
}

/** A header map as the plugin sees it (pseudo headers included). */
export interface MapView {
  pairs(): [string, string][];
  get(key: string): string | undefined;
  add(key: string, value: string): void;
  replace(key: string, value: string): void;
  remove(key: string): void;
  setAll(pairs: [string, string][]): void;
}

/** A local response a plugin asked for. */
export interface LocalResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

/** What the VM needs of a stream (one HTTP request through this plugin). */
export interface StreamHost {
  readonly id: number;
  map(type: number): MapView | null;
  buffer(type: number): Uint8Array | null;
  setBuffer(type: number, data: Uint8Array): boolean;
  property(path: string[]): Uint8Array | null | undefined;
  setProperty(path: string, value: Uint8Array): void;
  localResponse(r: LocalResponse): void;
  resume(type: number): void;
  close(type: number): void;
}

/** How callbacks run: see the module doc. */
export type Isolation = "timeslice" | "inline";

/** Running time after which a timeslice callback gives the event loop back (ms). */
export const SLICE_MS = 2;
/** A suspended callback's wall time is bounded too: this many times its timeout. */
const WALL_FACTOR = 10;

/** JSPI (JavaScript Promise Integration), not yet in Deno's lib types. */
const JSPI = WebAssembly as unknown as {
  Suspending: new (f: () => Promise<unknown>) => WebAssembly.ImportValue;
  promising(f: unknown): (...a: number[]) => Promise<number>;
};

/** What the VM needs of its plugin and the isolate-wide stores. */
export interface VmHost {
  readonly pluginName: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly vmConfig: Uint8Array;
  readonly pluginConfig: Uint8Array;
  readonly timeout: number;
  /** Absent = inline (plugins default to timeslice: plugin.ts). */
  readonly isolation?: Isolation;
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
type AsyncFn = (...a: number[]) => Promise<number>;

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

/** A pairs list ([name, value]) as a MapView (http-call responses, send_local_response). */
export function pairsView(list: [string, string][]): MapView {
  return {
    pairs: () => list,
    get: (k) => list.find((p) => p[0] === k)?.[1],
    add: (k, v) => void list.push([k, v]),
    replace: (k, v) => {
      const i = list.findIndex((p) => p[0] === k);
      if (i === -1) list.push([k, v]);
      else {
        list[i][1] = v;
        for (let j = list.length - 1; j > i; j--) if (list[j][0] === k) list.splice(j, 1);
      }
    },
    remove: (k) => {
      for (let j = list.length - 1; j >= 0; j--) if (list[j][0] === k) list.splice(j, 1);
    },
    setAll: (p) => void list.splice(0, list.length, ...p),
  };
}

/** Pairs encoding of the reference host: count, (key len, value len)*, then key\0value\0 each. */
export function encodePairs(pairs: [string, string][]): Uint8Array {
  const bytes = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4;
  for (const [k, v] of bytes) size += 8 + k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let o = 4;
  for (const [k, v] of bytes) {
    dv.setUint32(o, k.length, true);
    dv.setUint32(o + 4, v.length, true);
    o += 8;
  }
  for (const [k, v] of bytes) {
    out.set(k, o);
    o += k.length + 1;
    out.set(v, o);
    o += v.length + 1;
  }
  return out;
}

/** Decodes the pairs encoding; null when malformed. */
export function decodePairs(b: Uint8Array): [string, string][] | null {
  // As the reference host: up to 4 bytes is an empty map (the spec allows a single 0x00).
  if (b.length <= 4) return [];
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const n = dv.getUint32(0, true);
  if (4 + n * 8 > b.length) return null;
  const out: [string, string][] = [];
  let data = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    if (data + kl + vl + 2 > b.length) return null;
    const k = dec.decode(b.subarray(data, data + kl));
    data += kl + 1;
    const v = dec.decode(b.subarray(data, data + vl));
    data += vl + 1;
    out.push([k, v]);
  }
  return out;
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
] as const;
/** A guest callback name. */
export type Callback = typeof CALLBACKS[number];
/**
 * Timeslice batches (binary.ts entry points): `loom:start` (ctx, root, a, b, c)
 * = on_context_create(ctx, root) + on_request_headers(ctx, a, b, c);
 * `loom:finish` (ctx) = on_done + on_log + on_delete, results ignored.
 */
export type Batch = "loom:start" | "loom:finish";

/**
 * How a timeslice callback is entered: by index through the serving loop
 * (`loom:serve`, binary.ts), or (a module without one) through its own
 * `promising` wrapper, a fresh JSPI stack per call.
 */
type Entry = { job: number; fn: null } | { job: -1; fn: AsyncFn };

const LEVELS = ["debug", "debug", "info", "warn", "error", "error"] as const;

/** One instantiated plugin module. */
export class PluginVM {
  readonly instance: WebAssembly.Instance;
  readonly memory: WebAssembly.Memory;
  /** Root context id (ids come from one counter per VM; 0 is the VM itself). */
  readonly rootContextId: number;
  /** Set on the first trap/timeout: the VM is never called again. */
  failed: Error | null = null;
  /** Stream contexts attached to this VM, by context id. */
  readonly streams = new Map<number, StreamHost>();
  /** Called once when the VM fails (so the plugin can fail its streams). */
  onFail: ((e: Error) => void) | null = null;
  private nextId = 1;
  private effective = 0;
  private deadline = 0;
  private callDepth = 0;
  private callout: CalloutData | null = null;
  private fns: Partial<Record<Callback, Fn>> = {};
  private alloc: Fn;
  /** Timeslice mode: callbacks entered through JSPI. */
  readonly sliced: boolean;
  private pfns: Partial<Record<Callback | Batch, Entry>> = {};
  /** Resumes the serving loop (parked in loom.next) with an entry index; null while it runs. */
  private wake: ((job: number) => void) | null = null;
  /** The job the serving loop runs: its arguments and its caller. */
  private args = [0, 0, 0, 0, 0];
  private jobResolve: ((r: number) => void) | null = null;
  private jobReject: ((e: Error) => void) | null = null;
  /** Inside an outermost JSPI call (check may ask it to yield). */
  private slicing = false;
  /** Running time of the current sliced callback before its current slice (ms). */
  private spent = 0;
  private sliceStart = 0;
  private wallDeadline = 0;
  /** A sliced callback is running or suspended; callers queue in `waiters`. */
  private busy = false;
  private waiters: (() => void)[] = [];

  constructor(module: WebAssembly.Module, readonly abi: AbiVersion, readonly host: VmHost) {
    this.sliced = host.isolation === "timeslice";
    this.instance = new WebAssembly.Instance(module, this.imports(module));
    const ex = this.instance.exports as Exports;
    if (!(ex.memory instanceof WebAssembly.Memory)) throw new Error("module exports no memory");
    this.memory = ex.memory;
    // Entry points in export order: their index in the serving loop (binary.ts).
    const jobs = new Map<string, number>();
    if (this.sliced && typeof ex["loom:serve"] === "function") {
      for (const e of WebAssembly.Module.exports(module)) {
        if (e.kind === "function" && e.name.startsWith("loom:") && e.name !== "loom:serve") {
          jobs.set(e.name, jobs.size);
        }
      }
    }
    for (const name of CALLBACKS) {
      if (typeof ex[name] !== "function") continue;
      this.fns[name] = ex[name] as Fn;
      if (!this.sliced) continue;
      const job = jobs.get("loom:" + name);
      this.pfns[name] = job !== undefined ? { job, fn: null } : { job: -1, fn: JSPI.promising(ex[name]) };
    }
    for (const b of ["loom:start", "loom:finish"] as const) {
      const job = jobs.get(b);
      if (job !== undefined) this.pfns[b] = { job, fn: null };
    }
    const alloc = ex.proxy_on_memory_allocate ?? ex.malloc;
    if (typeof alloc !== "function") {
      throw new Error("module exports neither malloc nor proxy_on_memory_allocate");
    }
    this.alloc = alloc as Fn;
    this.rootContextId = this.nextId++;
    if (jobs.size > 0) this.serve(ex["loom:serve"]);
  }

  /**
   * Enters the serving loop once: it runs until it parks in loom.next, and
   * ends only by a failure (trap, timeout, proc_exit) of the job it ran.
   */
  private serve(f: unknown): void {
    JSPI.promising(f)().catch((err: unknown) => {
      this.wake = null;
      this.fail(err instanceof Error ? err : new Error(String(err)));
      const reject = this.jobReject;
      this.jobResolve = this.jobReject = null;
      // Its caller learns the failure; waiting callers find the VM failed (StaleVM).
      if (reject !== null) {
        this.leave();
        reject(this.failed!);
      }
    });
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
    if (!this.sliced) {
      this.guard(() => {
        for (const f of steps) (f as Fn)(0, 0); // main(argc, argv); the others take none
        return 0;
      });
      return;
    }
    return (async () => {
      // A one-off JSPI stack per step: start-up runs once per VM.
      for (const f of steps) await this.enter({ job: -1, fn: JSPI.promising(f) }, 0, 0, 0);
    })();
  }

  /** A fresh stream context id. */
  newContextId(): number {
    return this.nextId++;
  }

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
    if (this.sliced) {
      if (this.failed !== null) throw new StaleVM(this.failed);
      const p = this.pfns[cb];
      if (p === undefined) return 0;
      return this.enter(p, effective, a, b, c, d, e);
    }
    return this.callPlain(cb as Callback, effective, a, b, c, d, e);
  }

  /** A sliced call now, or after the VM's current one. */
  private enter(p: Entry, effective: number, a = 0, b = 0, c = 0, d = 0, e = 0): Promise<number> {
    if (this.busy) return this.queued(p, effective, null, a, b, c, d, e);
    this.busy = true;
    return this.runSliced(p, effective, null, a, b, c, d, e);
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

  /** Delivers an http_call answer to the root context. */
  deliverHttpCall(token: number, res: CalloutData): void {
    this.deliver(
      "proxy_on_http_call_response",
      res,
      token,
      res.headers.length,
      res.body.length,
      res.trailers.length,
    );
  }

  /**
   * Calls a root-context callout callback (http_call answer, gRPC event) with
   * `data` readable for its duration. False when the VM is failed (the
   * callout should be dropped).
   */
  deliver(cb: Callback, data: CalloutData, token: number, x: number, y = 0, z = 0): boolean {
    if (this.failed !== null) return false;
    const root = this.rootContextId;
    if (this.sliced) {
      const p = this.pfns[cb];
      if (p === undefined) return true;
      // The data is set once the call owns the VM, not while another callback is suspended.
      if (this.busy) {
        this.queued(p, root, data, root, token, x, y, z).catch(() => {});
        return true;
      }
      this.busy = true;
      try {
        this.runSliced(p, root, data, root, token, x, y, z).catch(() => {});
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
    }
    return true;
  }

  /** A sliced call that waits for the VM's current one (which hands the VM over). */
  private async queued(
    p: Entry,
    effective: number,
    data: CalloutData | null,
    a: number,
    b: number,
    c: number,
    d: number,
    e: number,
  ): Promise<number> {
    await new Promise<void>((r) => this.waiters.push(r));
    return await this.runSliced(p, effective, data, a, b, c, d, e);
  }

  /** One sliced (JSPI) callback; the caller owns the VM (`busy`). */
  private runSliced(
    p: Entry,
    effective: number,
    data: CalloutData | null,
    a: number,
    b: number,
    c: number,
    d: number,
    e: number,
  ): Promise<number> {
    if (this.failed !== null) {
      this.release();
      throw new StaleVM(this.failed);
    }
    const wake = this.wake;
    if (p.fn === null && wake === null) {
      // Cannot happen (the loop parks before any other JS runs); fail rather than hang.
      this.release();
      throw new Error("plugin VM serving loop is not waiting");
    }
    this.effective = effective;
    this.callout = data;
    const now = performance.now();
    this.spent = 0;
    this.sliceStart = now;
    this.wallDeadline = now + this.host.timeout * WALL_FACTOR;
    this.slicing = true;
    this.callDepth = 1;
    if (p.fn === null) {
      const args = this.args;
      args[0] = a, args[1] = b, args[2] = c, args[3] = d, args[4] = e;
      this.wake = null;
      return new Promise<number>((resolve, reject) => {
        this.jobResolve = resolve;
        this.jobReject = reject;
        wake!(p.job);
      });
    }
    return this.settle(p.fn, a, b, c, d, e);
  }

  /** A callback entered through its own `promising` wrapper. */
  private async settle(fn: AsyncFn, a: number, b: number, c: number, d: number, e: number): Promise<number> {
    try {
      return (await fn(a, b, c, d, e)) | 0;
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      throw this.failed;
    } finally {
      this.leave();
    }
  }

  /** Ends the current sliced call and hands the VM to the next waiting one. */
  private leave(): void {
    this.slicing = false;
    this.callDepth = 0;
    this.effective = 0;
    this.callout = null;
    this.release();
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.busy = false;
  }

  private guard(f: () => number): number {
    const outer = this.callDepth === 0;
    if (outer) this.deadline = performance.now() + this.host.timeout;
    this.callDepth++;
    try {
      return f() | 0;
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      throw this.failed;
    } finally {
      this.callDepth--;
    }
  }

  /** Poisons the VM (idempotent). */
  fail(e: Error): void {
    if (this.failed !== null) return;
    this.failed = e instanceof WebAssembly.RuntimeError || e instanceof PluginTimeout || e instanceof ProcExit
      ? e
      : e instanceof RangeError
      ? new Error("plugin trapped: " + e.message)
      : e;
    this.onFail?.(this.failed);
  }

  // ---- memory helpers (views re-created per call: memory.grow detaches buffers) ----

  private u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }
  private read(ptr: number, len: number): Uint8Array {
    ptr >>>= 0, len >>>= 0;
    const m = this.u8();
    if (ptr + len > m.length) throw new RangeError("out of bounds");
    return m.subarray(ptr, ptr + len);
  }
  private str(ptr: number, len: number): string {
    const b = this.read(ptr, len);
    // Header names and values are short and ASCII: building the string directly beats TextDecoder.
    if (b.length <= 64) {
      let out = "";
      for (let i = 0; i < b.length; i++) {
        const c = b[i];
        if (c >= 0x80) return dec.decode(b);
        out += String.fromCharCode(c);
      }
      return out;
    }
    return dec.decode(b);
  }
  private setU32(ptr: number, v: number): void {
    new DataView(this.memory.buffer).setUint32(ptr >>> 0, v >>> 0, true);
  }
  /** Copies `data` into guest memory (via its allocator) and writes ptr/size. */
  private give(data: Uint8Array, ptrPtr: number, sizePtr: number): void {
    let p = 0;
    if (data.length > 0) {
      // A nested call: its loops must never yield (JS frames are on the stack).
      this.callDepth++;
      try {
        p = this.alloc(data.length) >>> 0;
      } finally {
        this.callDepth--;
      }
      if (p === 0) throw new Error("plugin allocator returned NULL");
      this.u8().set(data, p);
    }
    this.setU32(ptrPtr, p);
    this.setU32(sizePtr, data.length);
  }

  private stream(): StreamHost | null {
    return this.streams.get(this.effective) ?? null;
  }

  private map(type: number): MapView | null {
    if (type >= MapType.GRPC_RECEIVE_INITIAL_METADATA && type <= MapType.HTTP_CALL_RESPONSE_TRAILERS) {
      const r = this.callout;
      if (r === null) return null;
      const leading = type === MapType.HTTP_CALL_RESPONSE_HEADERS ||
        type === MapType.GRPC_RECEIVE_INITIAL_METADATA;
      return pairsView(leading ? r.headers : r.trailers);
    }
    return this.stream()?.map(type) ?? null;
  }

  private buffer(type: number): Uint8Array | null {
    switch (type) {
      case BufferType.VM_CONFIGURATION:
        return this.host.vmConfig;
      case BufferType.PLUGIN_CONFIGURATION:
        return this.host.pluginConfig;
      case BufferType.HTTP_CALL_RESPONSE_BODY:
      case BufferType.GRPC_RECEIVE_BUFFER:
        return this.callout?.body ?? null;
      default:
        return this.stream()?.buffer(type) ?? null;
    }
  }

  private property(path: string[]): Uint8Array | null | undefined {
    const s = this.stream();
    if (s !== null) {
      const v = s.property(path);
      if (v !== undefined) return v;
    }
    if (path.length === 1 && path[0] === "plugin_root_id") return enc.encode(this.host.rootId);
    return this.host.property(path);
  }

  // ---- imports ----

  private imports(module: WebAssembly.Module): WebAssembly.Imports {
    const env = this.envFunctions();
    const wasi = this.wasiFunctions();
    const out: Record<string, Record<string, WebAssembly.ImportValue>> = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      const ns = out[imp.module] ??= {};
      if (imp.module === "loom" && imp.name === "check") {
        ns.check = () => {
          const now = performance.now();
          if (this.slicing) {
            // Only running time counts: a callback must not time out because others were slow.
            if (this.spent + now - this.sliceStart > this.host.timeout || now > this.wallDeadline) {
              throw new PluginTimeout(this.host.timeout);
            }
            // 0 = yield (outermost call only: suspending across JS frames is impossible).
            return this.callDepth === 1 && now - this.sliceStart >= SLICE_MS ? 0 : DEFAULT_FUEL_CHUNK;
          }
          if (now > this.deadline) throw new PluginTimeout(this.host.timeout);
          return DEFAULT_FUEL_CHUNK;
        };
        continue;
      }
      if (imp.module === "loom" && imp.name === "result") {
        ns.result = (r: number) => {
          const resolve = this.jobResolve;
          if (resolve !== null) {
            // A serving-loop job: the VM is free once the loop parks again (before any other JS runs).
            this.jobResolve = this.jobReject = null;
            this.leave();
            resolve(r | 0);
          }
        };
        continue;
      }
      if (imp.module === "loom" && imp.name === "next") {
        ns.next = this.sliced ? new JSPI.Suspending(() => new Promise<number>((r) => this.wake = r)) : () => {
          throw new Error("loom.next outside timeslice mode");
        };
        continue;
      }
      if (imp.module === "loom" && imp.name === "arg") {
        ns.arg = (i: number) => this.args[i];
        continue;
      }
      if (imp.module === "loom" && imp.name === "yield") {
        ns.yield = this.sliced
          ? new JSPI.Suspending(async () => {
            this.spent += performance.now() - this.sliceStart;
            // A timer (not a microtask or setImmediate) lets the event loop poll I/O.
            await new Promise((r) => setTimeout(r, 0));
            this.sliceStart = performance.now();
          })
          : () => {};
        continue;
      }
      if (imp.kind !== "function") {
        throw new Error(`unsupported import ${imp.module}.${imp.name} (${imp.kind})`);
      }
      if (imp.module === "env") {
        ns[imp.name] = env[imp.name] ?? (() => {
          logger.warn("plugin called an unimplemented host function", {
            plugin: this.host.pluginName,
            function: imp.name,
          });
          return Status.UNIMPLEMENTED;
        });
      } else if (imp.module === "wasi_snapshot_preview1" || imp.module === "wasi_unstable") {
        ns[imp.name] = wasi[imp.name] ?? (() => Errno.NOSYS);
      } else {
        throw new Error(`unsupported import module ${imp.module} (function ${imp.name})`);
      }
    }
    return out;
  }

  private envFunctions(): Record<string, (...a: never[]) => number> {
    const S = Status;
    const mapOp = (type: number) => this.map(type);
    const continueStream = (t: number) => {
      const s = this.stream();
      if (s === null) return S.NOT_FOUND;
      s.resume(t);
      return S.OK;
    };
    const closeStream = (t: number) => {
      const s = this.stream();
      if (s === null) return S.NOT_FOUND;
      s.close(t);
      return S.OK;
    };
    // What both gRPC openers read: upstream, service, method and initial metadata.
    const grpcTarget = (
      up: number,
      upLen: number,
      sp: number,
      sl: number,
      mp: number,
      ml: number,
      hp: number,
      hl: number,
    ) =>
      [
        this.read(up, upLen).slice(),
        this.str(sp, sl),
        this.str(mp, ml),
        // As the reference host's toPairs: malformed metadata is no metadata.
        hl === 0 ? [] : decodePairs(this.read(hp, hl)) ?? [],
      ] as const;
    const grpcToken = (r: { token: number } | number, tokenPtr: number) => {
      if (typeof r === "number") return r;
      this.setU32(tokenPtr, r.token);
      return S.OK;
    };
    const grpcCall = (
      up: number,
      upLen: number,
      sp: number,
      sl: number,
      mp: number,
      ml: number,
      hp: number,
      hl: number,
      msgPtr: number,
      msgLen: number,
      timeout: number,
      tokenPtr: number,
    ) => {
      const g = this.host.grpc;
      if (g === undefined) return S.INTERNAL_FAILURE;
      const target = grpcTarget(up, upLen, sp, sl, mp, ml, hp, hl);
      return grpcToken(g.call(this, ...target, this.read(msgPtr, msgLen).slice(), timeout >>> 0), tokenPtr);
    };
    const grpcStream = (
      up: number,
      upLen: number,
      sp: number,
      sl: number,
      mp: number,
      ml: number,
      hp: number,
      hl: number,
      tokenPtr: number,
    ) => {
      const g = this.host.grpc;
      if (g === undefined) return S.INTERNAL_FAILURE;
      return grpcToken(g.stream(this, ...grpcTarget(up, upLen, sp, sl, mp, ml, hp, hl)), tokenPtr);
    };
    const grpcSend = (token: number, p: number, l: number, end: number) =>
      this.host.grpc?.send(this, token >>> 0, this.read(p, l).slice(), end !== 0) ?? S.NOT_FOUND;
    const httpCall = (
      up: number,
      upLen: number,
      hp: number,
      hl: number,
      bp: number,
      bl: number,
      tp: number,
      tl: number,
      timeout: number,
      tokenPtr: number,
    ) => {
      const headers = decodePairs(this.read(hp, hl));
      const trailers = decodePairs(this.read(tp, tl));
      if (headers === null || trailers === null) return S.BAD_ARGUMENT;
      const has = (k: string) => headers.some((p) => p[0] === k);
      if (!has(":method") || !has(":path") || !has(":authority")) return S.BAD_ARGUMENT;
      const token = this.host.httpCall(
        this,
        this.str(up, upLen),
        headers,
        this.read(bp, bl).slice(),
        trailers,
        timeout >>> 0,
      );
      if (token === null) return S.BAD_ARGUMENT;
      this.setU32(tokenPtr, token);
      return S.OK;
    };
    return {
      proxy_log: (level: number, p: number, l: number) => {
        const lv = LEVELS[level] ?? "info";
        // Below Loom's level (an SDK's debug/trace chatter): not even decoded.
        if (isLevelEnabled(lv)) logger[lv]("plugin: " + this.str(p, l), { plugin: this.host.pluginName });
        return S.OK;
      },
      // Loom's own level, so SDKs that check it skip formatting what would be dropped.
      proxy_get_log_level: (ptr: number) => {
        const lv = getLogLevel();
        this.setU32(
          ptr,
          lv === "debug"
            ? LogLevel.DEBUG
            : lv === "info"
            ? LogLevel.INFO
            : lv === "warn"
            ? LogLevel.WARN
            : LogLevel.ERROR,
        );
        return S.OK;
      },
      proxy_get_current_time_nanoseconds: (ptr: number) => {
        const ns = BigInt(Date.now()) * 1_000_000n;
        new DataView(this.memory.buffer).setBigUint64(ptr >>> 0, ns, true);
        return S.OK;
      },
      proxy_set_tick_period_milliseconds: (ms: number) => {
        this.host.tickPeriod(ms >>> 0);
        return S.OK;
      },
      proxy_get_configuration: (pp: number, sp: number) => {
        this.give(this.host.pluginConfig, pp, sp);
        return S.OK;
      },
      proxy_get_buffer_bytes: (type: number, start: number, max: number, pp: number, sp: number) => {
        const b = this.buffer(type);
        if (b === null) return S.NOT_FOUND;
        start >>>= 0, max >>>= 0;
        if (start > b.length) return S.BAD_ARGUMENT;
        const end = Math.min(b.length, start + max);
        // Nothing to copy: OK without touching *pp/*sp, as the reference host does.
        // The AssemblyScript SDK's onConfigure passes the config size as size_ptr and
        // relies on this when the configuration is empty.
        if (end === start) return S.OK;
        this.give(b.subarray(start, end), pp, sp);
        return S.OK;
      },
      proxy_get_buffer_status: (type: number, lenPtr: number, flagsPtr: number) => {
        const b = this.buffer(type);
        if (b === null) return S.NOT_FOUND;
        this.setU32(lenPtr, b.length);
        this.setU32(flagsPtr, 0);
        return S.OK;
      },
      proxy_set_buffer_bytes: (type: number, start: number, size: number, dp: number, dl: number) => {
        const b = this.buffer(type);
        if (b === null) return S.NOT_FOUND;
        const data = this.read(dp, dl);
        start >>>= 0, size >>>= 0;
        let next: Uint8Array;
        if (start === 0xffffffff) next = concat([b, data]); // append (SIZE_MAX)
        else if (start === 0 && size >= b.length) next = data.slice(); // replace all
        else if (start === 0 && size === 0) next = concat([data, b]); // prepend
        else {
          if (start > b.length) return S.BAD_ARGUMENT;
          const end = Math.min(b.length, start + size);
          next = concat([b.subarray(0, start), data, b.subarray(end)]);
        }
        const s = this.stream();
        if (s === null || !s.setBuffer(type, next)) return S.NOT_FOUND;
        return S.OK;
      },
      proxy_get_header_map_pairs: (type: number, pp: number, sp: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        this.give(encodePairs(m.pairs()), pp, sp);
        return S.OK;
      },
      proxy_set_header_map_pairs: (type: number, p: number, l: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        const pairs = decodePairs(this.read(p, l));
        if (pairs === null) return S.BAD_ARGUMENT;
        m.setAll(pairs.map(([k, v]) => [k.toLowerCase(), v]));
        return S.OK;
      },
      proxy_get_header_map_size: (type: number, sp: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        this.setU32(sp, encodePairs(m.pairs()).length);
        return S.OK;
      },
      proxy_get_header_map_value: (type: number, kp: number, kl: number, pp: number, sp: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        const v = m.get(this.str(kp, kl).toLowerCase());
        if (v === undefined) return S.NOT_FOUND;
        this.give(enc.encode(v), pp, sp);
        return S.OK;
      },
      proxy_add_header_map_value: (type: number, kp: number, kl: number, vp: number, vl: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        m.add(this.str(kp, kl).toLowerCase(), this.str(vp, vl));
        return S.OK;
      },
      proxy_replace_header_map_value: (type: number, kp: number, kl: number, vp: number, vl: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        m.replace(this.str(kp, kl).toLowerCase(), this.str(vp, vl));
        return S.OK;
      },
      proxy_remove_header_map_value: (type: number, kp: number, kl: number) => {
        const m = mapOp(type);
        if (m === null) return S.NOT_FOUND;
        m.remove(this.str(kp, kl).toLowerCase());
        return S.OK;
      },
      proxy_get_property: (p: number, l: number, pp: number, sp: number) => {
        let raw = this.str(p, l);
        if (raw.endsWith("\0")) raw = raw.slice(0, -1);
        const v = this.property(raw.split("\0"));
        if (v === undefined || v === null) return S.NOT_FOUND;
        this.give(v, pp, sp);
        return S.OK;
      },
      proxy_set_property: (p: number, l: number, vp: number, vl: number) => {
        const s = this.stream();
        if (s === null) return S.NOT_FOUND;
        s.setProperty(this.str(p, l).replaceAll("\0", "."), this.read(vp, vl).slice());
        return S.OK;
      },
      proxy_send_local_response: (
        status: number,
        _dp: number,
        _dl: number,
        bp: number,
        bl: number,
        hp: number,
        hl: number,
        _grpc: number,
      ) => {
        const s = this.stream();
        if (s === null) return S.NOT_FOUND;
        const headers = decodePairs(this.read(hp, hl));
        if (headers === null) return S.BAD_ARGUMENT;
        s.localResponse({ status: status >>> 0, headers, body: this.read(bp, bl).slice() });
        return S.OK;
      },
      proxy_continue_stream: continueStream,
      proxy_close_stream: closeStream,
      proxy_continue_request: () => continueStream(StreamType.HTTP_REQUEST),
      proxy_continue_response: () => continueStream(StreamType.HTTP_RESPONSE),
      proxy_resume_http_request: () => continueStream(StreamType.HTTP_REQUEST),
      proxy_resume_http_response: () => continueStream(StreamType.HTTP_RESPONSE),
      proxy_resume_downstream: () => S.OK,
      proxy_resume_upstream: () => S.OK,
      proxy_reset_http_request: () => closeStream(StreamType.HTTP_REQUEST),
      proxy_reset_http_response: () => closeStream(StreamType.HTTP_RESPONSE),
      proxy_close_downstream: () => S.OK,
      proxy_close_upstream: () => S.OK,
      proxy_clear_route_cache: () => S.OK,
      proxy_http_call: httpCall,
      proxy_dispatch_http_call: httpCall,
      proxy_grpc_call: grpcCall,
      proxy_dispatch_grpc_call: grpcCall,
      proxy_grpc_stream: grpcStream,
      proxy_open_grpc_stream: grpcStream,
      proxy_grpc_send: grpcSend,
      proxy_send_grpc_stream_message: grpcSend,
      proxy_grpc_cancel: (token: number) => this.host.grpc?.cancel(this, token >>> 0) ?? S.NOT_FOUND,
      proxy_cancel_grpc_call: (token: number) => this.host.grpc?.cancel(this, token >>> 0) ?? S.NOT_FOUND,
      proxy_grpc_close: (token: number) => this.host.grpc?.close(this, token >>> 0) ?? S.NOT_FOUND,
      proxy_close_grpc_call: (token: number) => this.host.grpc?.close(this, token >>> 0) ?? S.NOT_FOUND,
      // The status of the gRPC call being closed (proxy_on_grpc_close), else OK with no message.
      proxy_get_status: (codePtr: number, pp: number, sp: number) => {
        const st = this.callout?.status;
        this.setU32(codePtr, st?.code ?? 0);
        this.give(st === undefined ? EMPTY : enc.encode(st.message), pp, sp);
        return S.OK;
      },
      proxy_set_shared_data: (kp: number, kl: number, vp: number, vl: number, cas: number) => {
        const key = this.str(kp, kl);
        const store = this.host.shared;
        const cur = store.data.get(key);
        cas >>>= 0;
        if (cas !== 0 && (cur === undefined || cur.cas !== cas)) return S.CAS_MISMATCH;
        store.data.set(key, { value: this.read(vp, vl).slice(), cas: store.nextCas++ });
        return S.OK;
      },
      proxy_get_shared_data: (kp: number, kl: number, pp: number, sp: number, casPtr: number) => {
        const cur = this.host.shared.data.get(this.str(kp, kl));
        if (cur === undefined) return S.NOT_FOUND;
        this.give(cur.value, pp, sp);
        this.setU32(casPtr, cur.cas);
        return S.OK;
      },
      proxy_register_shared_queue: (np: number, nl: number, tokenPtr: number) => {
        const store = this.host.shared;
        const key = this.host.vmId + "\0" + this.str(np, nl);
        let token = store.queueByName.get(key);
        const root = this.rootContextId;
        const owner = (t: number) => this.fire("proxy_on_queue_ready", root, root, t);
        if (token === undefined) {
          token = store.nextQueue++;
          store.queueByName.set(key, token);
          store.queues.set(token, { vmId: this.host.vmId, name: key, items: [], owner });
        } else store.queues.get(token)!.owner = owner;
        this.setU32(tokenPtr, token);
        return S.OK;
      },
      proxy_resolve_shared_queue: (_vp: number, _vl: number, np: number, nl: number, tokenPtr: number) => {
        const vmId = this.str(_vp, _vl);
        const token = this.host.shared.queueByName.get(vmId + "\0" + this.str(np, nl));
        if (token === undefined) return S.NOT_FOUND;
        this.setU32(tokenPtr, token);
        return S.OK;
      },
      proxy_enqueue_shared_queue: (token: number, dp: number, dl: number) => {
        const q = this.host.shared.queues.get(token >>> 0);
        if (q === undefined) return S.NOT_FOUND;
        q.items.push(this.read(dp, dl).slice());
        // Delivered after the current callback, never re-entrantly.
        setTimeout(() => q.owner(token >>> 0), 0);
        return S.OK;
      },
      proxy_dequeue_shared_queue: (token: number, pp: number, sp: number) => {
        const q = this.host.shared.queues.get(token >>> 0);
        if (q === undefined) return S.NOT_FOUND;
        const item = q.items.shift();
        if (item === undefined) return S.EMPTY;
        this.give(item, pp, sp);
        return S.OK;
      },
      proxy_define_metric: (type: number, np: number, nl: number, idPtr: number) => {
        if (type < MetricType.COUNTER || type > MetricType.HISTOGRAM) return S.BAD_ARGUMENT;
        const id = this.host.shared.defineMetric(type, this.str(np, nl));
        if (id < 0) return S.BAD_ARGUMENT;
        this.setU32(idPtr, id);
        return S.OK;
      },
      proxy_increment_metric: ((id: number, offset: bigint) => {
        const m = this.host.shared.metric(id >>> 0);
        if (m === undefined) return S.NOT_FOUND;
        if (m.type === MetricType.HISTOGRAM) return S.BAD_ARGUMENT;
        m.add(BigInt(offset));
        return S.OK;
      }) as unknown as (...a: never[]) => number,
      proxy_record_metric: ((id: number, value: bigint) => {
        const m = this.host.shared.metric(id >>> 0);
        if (m === undefined) return S.NOT_FOUND;
        m.record(BigInt.asUintN(64, BigInt(value)));
        return S.OK;
      }) as unknown as (...a: never[]) => number,
      proxy_get_metric: (id: number, resultPtr: number) => {
        const m = this.host.shared.metric(id >>> 0);
        if (m === undefined) return S.NOT_FOUND;
        if (m.type === MetricType.HISTOGRAM) return S.BAD_ARGUMENT;
        new DataView(this.memory.buffer).setBigUint64(resultPtr >>> 0, BigInt.asUintN(64, m.get()), true);
        return S.OK;
      },
      proxy_set_effective_context: (id: number) => {
        id >>>= 0;
        if (id !== this.rootContextId && !this.streams.has(id)) return S.BAD_ARGUMENT;
        this.effective = id;
        return S.OK;
      },
      // As the reference host: OK only for a root context whose on_done returned false.
      proxy_done: () => this.host.done?.(this, this.effective) ? S.OK : S.NOT_FOUND,
      proxy_call_foreign_function: () => S.NOT_FOUND,
    };
  }

  private wasiFunctions(): Record<string, (...a: never[]) => number> {
    const E = Errno;
    return {
      fd_write: (fd: number, iovs: number, n: number, nwritten: number) => {
        if (fd !== 1 && fd !== 2) return E.BADF;
        const dv = new DataView(this.memory.buffer);
        let text = "";
        let total = 0;
        for (let i = 0; i < n; i++) {
          const p = dv.getUint32((iovs >>> 0) + i * 8, true);
          const l = dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
          text += this.str(p, l);
          total += l;
        }
        const line = text.replace(/\n$/, "");
        if (line !== "") {
          logger[fd === 2 ? "warn" : "info"]("plugin: " + line, { plugin: this.host.pluginName });
        }
        this.setU32(nwritten, total);
        return E.SUCCESS;
      },
      fd_read: () => E.BADF,
      fd_close: () => E.SUCCESS,
      fd_seek: () => E.BADF,
      fd_fdstat_get: (fd: number, ptr: number) => {
        if (fd > 2) return E.BADF;
        const m = this.u8();
        m.fill(0, ptr >>> 0, (ptr >>> 0) + 24);
        m[ptr >>> 0] = 2; // character device
        return E.SUCCESS;
      },
      // EBADF (not ENOSYS) tells wasi-libc there are no preopened directories.
      fd_prestat_get: () => E.BADF,
      fd_prestat_dir_name: () => E.BADF,
      clock_time_get: ((id: number, _precision: bigint, ptr: number) => {
        const ns = id === 0
          ? BigInt(Date.now()) * 1_000_000n
          : BigInt(Math.round(performance.now() * 1_000_000));
        new DataView(this.memory.buffer).setBigUint64(ptr >>> 0, ns, true);
        return E.SUCCESS;
      }) as unknown as (...a: never[]) => number,
      clock_res_get: (_id: number, ptr: number) => {
        new DataView(this.memory.buffer).setBigUint64(ptr >>> 0, 1000n, true);
        return E.SUCCESS;
      },
      random_get: (ptr: number, len: number) => {
        const view = this.read(ptr, len);
        for (let o = 0; o < view.length; o += 65536) crypto.getRandomValues(view.subarray(o, o + 65536));
        return E.SUCCESS;
      },
      environ_sizes_get: (countPtr: number, sizePtr: number) => {
        this.setU32(countPtr, 0);
        this.setU32(sizePtr, 0);
        return E.SUCCESS;
      },
      environ_get: () => E.SUCCESS,
      args_sizes_get: (countPtr: number, sizePtr: number) => {
        this.setU32(countPtr, 0);
        this.setU32(sizePtr, 0);
        return E.SUCCESS;
      },
      args_get: () => E.SUCCESS,
      sched_yield: () => E.SUCCESS,
      proc_exit: (code: number) => {
        throw new ProcExit(code);
      },
    };
  }
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

/**
 * Whether a plugin-set header may reach the wire. Invalid ones (CR/LF/NUL in
 * the value, non-token names) are dropped rather than refused: SDKs trap on a
 * non-OK status from add/replace, and a buggy plugin (e.g. the AssemblyScript
 * SDK decoding stale memory for an empty configuration) must not be able to
 * emit a malformed or header-injecting response.
 */
function validHeader(k: string, v: string): boolean {
  return HEADER_NAME.test(k) && !BAD_VALUE.test(v);
}

/** Adapts a HeaderList plus pseudo headers to a MapView. */
export function headerListView(
  h: HeaderList,
  pseudo: { get(k: string): string | undefined; set(k: string, v: string): void; list(): [string, string][] },
): MapView {
  return {
    pairs: () => {
      const out = pseudo.list();
      for (let i = 0; i < h.keys.length; i++) out.push([h.keys[i], h.values[i]]);
      return out;
    },
    get: (k) => k.charCodeAt(0) === 58 ? pseudo.get(k) : h.getJoined(k),
    add: (k, v) => {
      if (k.charCodeAt(0) === 58) pseudo.set(k, v);
      else if (validHeader(k, v)) h.append(k, v);
    },
    replace: (k, v) => {
      if (k.charCodeAt(0) === 58) pseudo.set(k, v);
      else if (validHeader(k, v)) h.set(k, v);
    },
    remove: (k) => {
      if (k.charCodeAt(0) !== 58) h.delete(k);
    },
    setAll: (pairs) => {
      h.names.length = h.keys.length = h.values.length = 0;
      for (const [k, v] of pairs) {
        if (k.charCodeAt(0) === 58) pseudo.set(k, v);
        else if (validHeader(k, v)) h.append(k, v);
      }
    },
  };
}

export { BufferType, MapType };
