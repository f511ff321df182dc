/**
 * The load-time check of a plugin module, run on every config load (start,
 * reload, `loom validate`) before anything is applied: the bytes are
 * instrumented and compiled as the plugin manager will use them (compile.ts:
 * in the compile worker, off the event loop, cached by content so the
 * manager and later reloads reuse the module), and the compiled module must
 * declare a Proxy-Wasm ABI, export its memory, and ask only for imports the
 * host provides (host/mod.ts `hostImports`, the same function a VM is built
 * with).
 *
 * @module
 */
import type { AbiVersion } from "./abi.ts";
import { compileModule } from "./compile.ts";
import { hostImports } from "./host/mod.ts";
import { loomImports } from "./timeslice.ts";
import type { CallClock } from "./timeslice.ts";
import type { PluginVM } from "./vm.ts";

/** Modules that passed, by compiled module and memory limit: a reload re-checks only modules that changed. */
const passed = new WeakMap<WebAssembly.Module, AbiVersion>();

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
  const fail = (e: unknown): never => {
    throw new Error(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  };
  let compiled;
  try {
    compiled = await compileModule(bytes, memoryLimit);
  } catch (e) {
    return fail(e);
  }
  const { module, abi } = compiled;
  const known = passed.get(module);
  if (known !== undefined) return known;
  const exports = WebAssembly.Module.exports(module);
  if (abi === null) return fail("not a Proxy-Wasm module (no proxy_abi_version_0_1_0/0_2_0/0_2_1 export)");
  if (!exports.some((e) => e.name === "memory" && e.kind === "memory")) fail("the module exports no memory");
  try {
    // Binds nothing that runs: the host functions only close over the VM they are given.
    hostImports(CHECK_VM, module, loomImports(CHECK_CLOCK, null));
  } catch (e) {
    fail(e);
  }
  passed.set(module, abi);
  return abi;
}

/** Stand-ins for the VM and clock the import object is built for (never called). */
const CHECK_VM = { mem: {}, output: {}, host: { pluginName: "" } } as unknown as PluginVM;
const CHECK_CLOCK = { check: () => 0 } as unknown as CallClock;
