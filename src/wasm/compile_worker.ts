/**
 * The compile worker (compile.ts): instruments a plugin module's bytes and
 * compiles them with `WebAssembly.compile`, off the gateway's event loop, and
 * posts the `WebAssembly.Module` back.
 *
 * Before posting it, the module is warmed up: V8 compiles wasm functions
 * lazily, on their first call, and a `Module` posted to another isolate
 * shares that compiled code. Without a warm-up the Go runtime's
 * `_initialize` compiled some thousand functions on the gateway's event loop
 * at the first VM start (20-35 ms, in pieces too long to slice); here a
 * throwaway inline VM with stand-in host state runs the start-up and one
 * request's header callbacks, bounded by {@link WARM_UP_MS} of running time.
 * Whatever it does (fail, trap, time out) stays here.
 *
 * @module
 */
import { detectAbi } from "./abi.ts";
import { instrument } from "./binary.ts";
import type { CompileAnswer, CompileJob } from "./compile.ts";
import { type Callback, PluginVM, type SharedStores, type VmHost } from "./vm.ts";
import { setLogOutput } from "../observability/logger.ts";

/** Running time the warm-up of one module may take (ms): a Go filter's start-up takes 30-150. */
const WARM_UP_MS = 250;

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<CompileJob>) => void) | null;
  postMessage(m: CompileAnswer): void;
};

// What the warm-up's plugin logs (its output, unimplemented host functions) is nobody's business.
setLogOutput(() => {});

scope.onmessage = async (e) => {
  const { id, bytes, maxPages } = e.data;
  try {
    const inst = instrument(bytes, { maxPages });
    const module = await WebAssembly.compile(inst.bytes as Uint8Array<ArrayBuffer>);
    warmUp(module);
    scope.postMessage({ id, module, loops: inst.loops });
  } catch (err) {
    scope.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
};

/** Callbacks of a stream the warm-up runs after the start-up, with (context, root or sizes...) arguments. */
const STREAM: [Callback, number[]][] = [
  ["proxy_on_context_create", [2, 1]],
  ["proxy_on_request_headers", [2, 0, 1]],
  ["proxy_on_response_headers", [2, 0, 1]],
  ["proxy_on_done", [2]],
  ["proxy_on_log", [2]],
  ["proxy_on_delete", [2]],
];

/** Runs `module`'s start-up and a request's header callbacks once, so V8 compiles what they call. */
function warmUp(module: WebAssembly.Module): void {
  const abi = detectAbi(WebAssembly.Module.exports(module).map((x) => x.name));
  if (abi === null) return;
  const end = performance.now() + WARM_UP_MS;
  let vm: PluginVM;
  try {
    vm = new PluginVM(module, abi, warmUpHost());
    vm.setCallTimeout(WARM_UP_MS);
    vm.start();
  } catch {
    return;
  }
  const root = vm.rootContextId;
  const steps: [Callback, number[]][] = [
    ["proxy_on_context_create", [root, 0]],
    ["proxy_on_vm_start", [root, 0]],
    ["proxy_on_configure", [root, 0]],
    ...STREAM,
  ];
  for (const [cb, args] of steps) {
    const left = end - performance.now();
    if (left <= 0 || vm.failed !== null) break;
    vm.setCallTimeout(left);
    try {
      vm.callPlain(cb, args[0], ...args);
    } catch {
      break;
    }
  }
  // Poisoned: nothing the plugin started (a timer, a DNS query) calls into it again.
  vm.fail(new Error("warm-up over"));
}

/** The warm-up VM's plugin: no configuration, no upstreams, shared data of its own. */
function warmUpHost(): VmHost {
  const shared: SharedStores = {
    data: new Map(),
    nextCas: 1,
    queues: new Map(),
    queueByName: new Map(),
    nextQueue: 1,
    defineMetric: () => -1,
    metric: () => undefined,
  };
  return {
    pluginName: "warm-up",
    rootId: "",
    vmId: "",
    vmConfig: new Uint8Array(0),
    pluginConfig: new Uint8Array(0),
    timeout: WARM_UP_MS,
    isolation: "inline",
    property: () => undefined,
    tickPeriod: () => {},
    httpCall: () => null,
    shared,
  };
}
