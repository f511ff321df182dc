/**
 * Compiling plugin modules off the event loop, once per content: the bytes
 * are instrumented (binary.ts) and compiled by `WebAssembly.compile` in a
 * compile worker (compile_worker.ts), which posts the `WebAssembly.Module`
 * back; a 3 MB Go module costs the event loop well under a millisecond
 * (instrumenting it in line took ~100 ms). Results are cached by SHA-256 of
 * the bytes and the memory limit, shared by the config-time check (check.ts:
 * `loom validate`, start, every reload) and the plugin manager, so a reload
 * compiles only modules that changed. Where no worker can be started, the
 * same steps run in line.
 *
 * Gateway worker isolates (`workers: N`) compile nothing themselves: they
 * ask the main isolate, whose config check compiled every module already,
 * for the `WebAssembly.Module` by content key ({@link useModuleSource},
 * {@link compiledByKey}); a `Module` posted to a worker shares its compiled
 * code. A worker whose request fails compiles on its own.
 *
 * @module
 */
import { type AbiVersion, detectAbi } from "./abi.ts";
import { workerUrl } from "../build.ts";
import type { CounterChild, Registry } from "../observability/metrics.ts";

/** An instrumented, compiled plugin module. */
export interface CompiledModule {
  module: WebAssembly.Module;
  /** Null: the module declares no Proxy-Wasm ABI (refused by its users). */
  abi: AbiVersion | null;
  /** Loops the instrumentation made interruptible. */
  loops: number;
}

/** What the compile worker is asked: instrument and compile `bytes` for `maxPages` of memory. */
export interface CompileJob {
  id: number;
  bytes: Uint8Array;
  maxPages: number;
}

/** What it answers. */
export type CompileAnswer =
  | { id: number; module: WebAssembly.Module; loops: number }
  | { id: number; error: string };

/** A module as another isolate gets it: compiled already, with what the instrumentation reported. */
export interface SharedModule {
  module: WebAssembly.Module;
  loops: number;
}

/**
 * Where this isolate gets compiled modules by content key before compiling
 * them itself (a gateway worker: the main isolate); null = compile here.
 */
export type ModuleSource = (key: string) => Promise<SharedModule | null>;

let source: ModuleSource | null = null;

/** Makes this isolate ask `s` for modules first (worker.ts sets its parent isolate). */
export function useModuleSource(s: ModuleSource | null): void {
  source = s;
}

/** A gateway worker's request to the main isolate for the module of content key `key`. */
export interface ModuleRequest {
  type: "module";
  id: number;
  key: string;
}

/** The main isolate's answer: the module, or null (the worker compiles it itself). */
export interface ModuleAnswer {
  type: "module";
  id: number;
  module: SharedModule | null;
}

/**
 * A module source that asks another isolate with `post` (worker.ts: the
 * main isolate); `answer` takes its {@link ModuleAnswer}s. Unanswered
 * requests fail after `timeoutMs` (the worker compiles then).
 */
export function moduleSourceVia(
  post: (r: ModuleRequest) => void,
  timeoutMs = 10_000,
): { source: ModuleSource; answer(a: ModuleAnswer): void } {
  let next = 1;
  const waiting = new Map<number, (m: SharedModule | null) => void>();
  return {
    source: (key) =>
      new Promise((resolve) => {
        const id = next++;
        const timer = setTimeout(() => waiting.delete(id) && resolve(null), timeoutMs);
        waiting.set(id, (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        post({ type: "module", id, key });
      }),
    answer: (a) => {
      const done = waiting.get(a.id);
      waiting.delete(a.id);
      done?.(a.module);
    },
  };
}

/** Compilations run by this isolate (not answered from the cache or by the module source). */
let compilations = 0;
/** Series of loom_wasm_module_compilations_total fed by this isolate. */
const counters: CounterChild[] = [];

/**
 * Counts this isolate's module compilations in `registry` as
 * loom_wasm_module_compilations_total (once per registry; one registry per
 * isolate: merged over isolates, the process's compilations).
 */
export function countCompilations(registry: Registry): void {
  try {
    const c = registry.counter(
      "loom_wasm_module_compilations_total",
      "Plugin modules instrumented and compiled (once per content and memory limit; workers share them).",
    ).labels();
    c.inc(compilations);
    counters.push(c);
  } catch { /* registered already */ }
}

/** Compiled modules by content digest and limit, most recently used last. */
const cache = new Map<string, Promise<CompiledModule>>();
const MAX_CACHED = 64;
/**
 * A compile worker with no job for this long is ended (it would keep the
 * process alive), unless a plugin manager keeps it ({@link warmCompileWorker}).
 */
const WORKER_IDLE_MS = 300_000;
/**
 * Set once a plugin manager runs in this isolate (its config has plugins):
 * the compile worker is kept for the isolate's life. Starting one holds the
 * event loop 20-40 ms (Deno's Worker constructor waits for the new isolate),
 * which a reload adding a module after the idle timeout would cost every
 * request in flight; an idle one holds ~20 MiB.
 */
let kept = false;

/**
 * The module `bytes` instrumented for `memoryLimit` bytes of linear memory
 * and compiled, from the cache when the same bytes were compiled for the
 * same limit before. Rejects with the instrumenter's or compiler's error.
 */
export async function compileModule(bytes: Uint8Array, memoryLimit: number): Promise<CompiledModule> {
  const maxPages = Math.max(1, Math.floor(memoryLimit / 65536));
  const key = (await digest(bytes)) + "/" + maxPages;
  const hit = cache.get(key);
  if (hit !== undefined) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const p = compileUncached(bytes, maxPages, key);
  cache.set(key, p);
  if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
  p.catch(() => cache.get(key) === p && cache.delete(key));
  return p;
}

async function digest(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The module compiled for content key `key` (as {@link compileModule} makes
 * them) if this isolate has it or is compiling it; null otherwise, or when
 * its compilation failed (the asking isolate compiles it and reports the error).
 */
export async function compiledByKey(key: string): Promise<SharedModule | null> {
  const p = cache.get(key);
  if (p === undefined) return null;
  try {
    const c = await p;
    return { module: c.module, loops: c.loops };
  } catch {
    return null;
  }
}

async function compileUncached(bytes: Uint8Array, maxPages: number, key: string): Promise<CompiledModule> {
  const r = await shared(key) ?? await compiled(bytes, maxPages);
  const abi = detectAbi(WebAssembly.Module.exports(r.module).map((e) => e.name));
  return { module: r.module, abi, loops: r.loops };
}

/** The module from this isolate's module source; null without one, or when it fails (compiled here then). */
async function shared(key: string): Promise<SharedModule | null> {
  if (source === null) return null;
  try {
    const r = await source(key);
    return r !== null && r.module instanceof WebAssembly.Module ? r : null;
  } catch {
    return null;
  }
}

async function compiled(bytes: Uint8Array, maxPages: number): Promise<SharedModule> {
  const r = await viaWorker(bytes, maxPages) ?? await inLine(bytes, maxPages);
  compilations++;
  for (const c of counters) c.inc();
  return r;
}

async function inLine(
  bytes: Uint8Array,
  maxPages: number,
): Promise<{ module: WebAssembly.Module; loops: number }> {
  // Loaded here only: the supervisor and gateway workers import this module whether or not a config has plugins.
  const { instrument } = await import("./binary.ts");
  const inst = instrument(bytes, { maxPages });
  return { module: await WebAssembly.compile(inst.bytes as Uint8Array<ArrayBuffer>), loops: inst.loops };
}

let worker: Worker | null = null;
/** False once a worker could not be started: everything compiles in line from then on. */
let workersWork = true;
let nextJob = 1;
const jobs = new Map<number, (a: CompileAnswer | null) => void>();
let idleTimer: ReturnType<typeof setTimeout> | undefined;

/** The compile worker's answer; null when no worker can run it (the caller compiles in line). */
function viaWorker(
  bytes: Uint8Array,
  maxPages: number,
): Promise<{ module: WebAssembly.Module; loops: number } | null> {
  const w = compileWorker();
  if (w === null) return Promise.resolve(null);
  clearTimeout(idleTimer);
  const id = nextJob++;
  return new Promise((resolve, reject) => {
    jobs.set(id, (a) => {
      if (a === null) resolve(null);
      else if ("error" in a) reject(new Error(a.error));
      else resolve({ module: a.module, loops: a.loops });
    });
    // A copy (the caller keeps its bytes: a config load hashes and reports them), transferred:
    // cloning a 3 MB array into the message costs the event loop a few ms more than slice().
    const copy = bytes.slice();
    w.postMessage({ id, bytes: copy, maxPages } satisfies CompileJob, [copy.buffer]);
  });
}

/**
 * Starts the compile worker now and keeps it (the plugin manager does, at
 * gateway start): creating a worker holds the event loop for tens of
 * milliseconds, which must not happen while requests are served (a reload
 * adding a module).
 */
export function warmCompileWorker(): void {
  // An isolate with a module source (a gateway worker) starts one only if it must compile.
  if (source !== null) return;
  kept = true;
  if (compileWorker() !== null && jobs.size === 0) idle();
}

function compileWorker(): Worker | null {
  if (worker !== null || !workersWork) return worker;
  try {
    const w = new Worker(workerUrl("wasmCompile"), { type: "module", name: "loom-wasm-compile" });
    w.onmessage = (e: MessageEvent<CompileAnswer>) => {
      const done = jobs.get(e.data.id);
      jobs.delete(e.data.id);
      done?.(e.data);
      if (jobs.size === 0) idle();
    };
    w.onerror = (e) => {
      e.preventDefault();
      // The worker is gone (it could not load, or crashed): its jobs compile in line.
      if (worker === w) worker = null;
      workersWork = false;
      w.terminate();
      for (const done of jobs.values()) done(null);
      jobs.clear();
    };
    worker = w;
  } catch {
    workersWork = false;
  }
  return worker;
}

function idle(): void {
  clearTimeout(idleTimer);
  if (kept) return;
  idleTimer = setTimeout(() => {
    if (jobs.size > 0 || worker === null) return;
    worker.terminate();
    worker = null;
  }, WORKER_IDLE_MS);
  Deno.unrefTimer(idleTimer as unknown as number);
}

/**
 * Ends the compile worker now if it has no job (kept or not; the next
 * compilation starts a new one). For bench/wasm_start.ts, which measures a
 * reload that has to start it.
 */
export function endCompileWorker(): void {
  if (jobs.size > 0 || worker === null) return;
  clearTimeout(idleTimer);
  worker.terminate();
  worker = null;
}
