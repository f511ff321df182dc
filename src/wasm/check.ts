/**
 * The load-time check of a plugin module, run on every config load (start,
 * reload, `loom validate`) before anything is applied: the bytes are
 * instrumented as the plugin manager will instrument them, compiled with
 * `WebAssembly.compile` (async, off the request path), and the compiled
 * module must declare a Proxy-Wasm ABI, export its memory, and ask only for
 * imports the host provides (host/mod.ts `hostImports`, the same function a
 * VM is built with).
 *
 * @module
 */
import { type AbiVersion, detectAbi } from "./abi.ts";
import { instrument } from "./binary.ts";
import { hostImports } from "./host/mod.ts";
import { loomImports } from "./timeslice.ts";
import type { CallClock } from "./timeslice.ts";
import type { PluginVM } from "./vm.ts";

/** Passed modules by content and memory limit: a reload re-checks only modules that changed. */
const passed = new Map<string, AbiVersion>();
const MAX_REMEMBERED = 64;

/**
 * Checks a plugin module's bytes (read from `file`) for `memoryLimit` bytes of
 * linear memory. Resolves to its ABI version; rejects with an Error naming
 * `file` and what is wrong (not WebAssembly, too much memory, no ABI marker,
 * no memory export, an import the host does not provide).
 */
export async function checkPluginModule(
  bytes: Uint8Array,
  file: string,
  memoryLimit: number,
): Promise<AbiVersion> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  const key = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("") + "/" + memoryLimit;
  const known = passed.get(key);
  if (known !== undefined) return known;
  const fail = (e: unknown): never => {
    throw new Error(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  };
  let module: WebAssembly.Module;
  try {
    const inst = instrument(bytes, { maxPages: Math.max(1, Math.floor(memoryLimit / 65536)) });
    module = await WebAssembly.compile(inst.bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    return fail(e);
  }
  const exports = WebAssembly.Module.exports(module);
  const abi = detectAbi(exports.map((e) => e.name));
  if (abi === null) fail("not a Proxy-Wasm module (no proxy_abi_version_0_1_0/0_2_0/0_2_1 export)");
  if (!exports.some((e) => e.name === "memory" && e.kind === "memory")) fail("the module exports no memory");
  try {
    // Binds nothing that runs: the host functions only close over the VM they are given.
    hostImports(CHECK_VM, module, loomImports(CHECK_CLOCK, null));
  } catch (e) {
    fail(e);
  }
  if (passed.size >= MAX_REMEMBERED) passed.delete(passed.keys().next().value!);
  passed.set(key, abi!);
  return abi!;
}

/** Stand-ins for the VM and clock the import object is built for (never called). */
const CHECK_VM = { mem: {}, host: { pluginName: "" } } as unknown as PluginVM;
const CHECK_CLOCK = { check: () => 0 } as unknown as CallClock;
