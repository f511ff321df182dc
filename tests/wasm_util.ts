/**
 * Shared by the Proxy-Wasm integration tests: the test plugin modules, the
 * shape of a `plugins:` entry (for yamlOf in tests/helpers.ts), and
 * {@linkcode watModule} for plugins written inline as WebAssembly text.
 */
import wabtInit from "wabt";

/** Directory of the built test plugins. */
export const PLUGINS = new URL("../plugins/test/", import.meta.url).pathname;
/** The kitchen-sink test plugin, one build per ABI version. */
export const KITCHEN = {
  "0.1.0": PLUGINS + "kitchen_0_1_0.wasm",
  "0.2.0": PLUGINS + "kitchen_0_2_0.wasm",
  "0.2.1": PLUGINS + "kitchen_0_2_1.wasm",
};

/** A `plugins:` entry. */
export interface PluginSpec {
  name: string;
  path: string;
  config?: unknown;
  phase?: string;
  priority?: number;
  failure_policy?: string;
  memory_limit?: string;
  timeout?: string;
  start_timeout?: string;
  vm_id?: string;
  vm_config?: unknown;
  root_id?: string;
  global?: boolean;
  isolation?: string;
}

/** Compiles WebAssembly text to a temporary `.wasm` file; returns its path (the caller removes it). */
export async function watModule(wat: string): Promise<string> {
  const wabt = await wabtInit();
  const m = wabt.parseWat("inline.wat", wat);
  try {
    const path = await Deno.makeTempFile({ suffix: ".wasm" });
    await Deno.writeFile(path, new Uint8Array(m.toBinary({}).buffer));
    return path;
  } finally {
    m.destroy();
  }
}
