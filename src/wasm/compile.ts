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
 * @module
 */
import { type AbiVersion, detectAbi } from "./abi.ts";
import { instrument } from "./binary.ts";
import { workerUrl } from "../build.ts";

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

/** Compiled modules by content digest and limit, most recently used last. */
const cache = new Map<string, Promise<CompiledModule>>();
const MAX_CACHED = 64;
/**
 * A compile worker with no job for this long is ended (it would keep the
 * process alive). Long: starting one holds the event loop ~20-40 ms, so it
 * is started with the plugin manager (before serving) and kept.
 */
const WORKER_IDLE_MS = 300_000;

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
  const p = compileUncached(bytes, maxPages);
  cache.set(key, p);
  if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value!);
  p.catch(() => cache.get(key) === p && cache.delete(key));
  return p;
}

async function digest(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function compileUncached(bytes: Uint8Array, maxPages: number): Promise<CompiledModule> {
  const r = await viaWorker(bytes, maxPages) ?? await inLine(bytes, maxPages);
  const abi = detectAbi(WebAssembly.Module.exports(r.module).map((e) => e.name));
  return { module: r.module, abi, loops: r.loops };
}

async function inLine(
  bytes: Uint8Array,
  maxPages: number,
): Promise<{ module: WebAssembly.Module; loops: number }> {
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
    // A copy: the caller keeps its bytes (a config load hashes and reports them).
    w.postMessage({ id, bytes: bytes.slice(), maxPages } satisfies CompileJob);
  });
}

/**
 * Starts the compile worker now (the plugin manager does, at gateway start):
 * creating a worker holds the event loop for tens of milliseconds, which must
 * not happen while requests are served (a reload adding the first plugin).
 */
export function warmCompileWorker(): void {
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
  idleTimer = setTimeout(() => {
    if (jobs.size > 0 || worker === null) return;
    worker.terminate();
    worker = null;
  }, WORKER_IDLE_MS);
  Deno.unrefTimer(idleTimer as unknown as number);
}
