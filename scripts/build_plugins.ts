/**
 * Builds Loom's own Proxy-Wasm plugins from source (`deno task build:plugins`).
 *
 * WAT sources are assembled with npm `wabt` (pure WebAssembly, so CI needs no
 * native toolchain). `kitchen.wat.in` is a template instantiated once per ABI
 * version. The built `.wasm` files are committed (a few KiB); the test
 * `tests/wasm_build_test.ts` rebuilds them and checks they match.
 *
 * Usage: deno run -A scripts/build_plugins.ts [--check]
 *
 * @module
 */
import wabtInit from "wabt";

const ROOT = new URL("../plugins/", import.meta.url);

/** ABI versions the template is built for: marker export and continue function differ. */
const ABIS = [
  {
    abi: "0.1.0",
    marker: "proxy_abi_version_0_1_0",
    eos: "",
    continueImport: '(import "env" "proxy_continue_request" (func $continue (result i32)))',
    continueBody: "(result i32) (call $continue)",
  },
  {
    abi: "0.2.0",
    marker: "proxy_abi_version_0_2_0",
    eos: "(param $eos i32)",
    continueImport: '(import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))',
    continueBody: "(result i32) (call $continue (i32.const 0))",
  },
  {
    abi: "0.2.1",
    marker: "proxy_abi_version_0_2_1",
    eos: "(param $eos i32)",
    continueImport: '(import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))',
    continueBody: "(result i32) (call $continue (i32.const 0))",
  },
];

/** Sources to build: output path (relative to plugins/) → WAT text. */
function sources(): Map<string, string> {
  const out = new Map<string, string>();
  const tpl = Deno.readTextFileSync(new URL("test/kitchen.wat.in", ROOT));
  for (const a of ABIS) {
    const text = tpl.replaceAll("{{ABI}}", a.abi).replaceAll("{{ABI_MARKER}}", a.marker)
      .replaceAll("{{EOS_PARAM}}", a.eos).replaceAll("{{CONTINUE_IMPORT}}", a.continueImport)
      .replaceAll("{{CONTINUE_BODY}}", a.continueBody);
    out.set(`test/kitchen_${a.abi.replaceAll(".", "_")}.wasm`, text);
  }
  for (const dir of Deno.readDirSync(ROOT)) {
    if (!dir.isDirectory) continue;
    for (const f of Deno.readDirSync(new URL(dir.name + "/", ROOT))) {
      if (f.isFile && f.name.endsWith(".wat")) {
        out.set(
          `${dir.name}/${f.name.slice(0, -4)}.wasm`,
          Deno.readTextFileSync(new URL(`${dir.name}/${f.name}`, ROOT)),
        );
      }
    }
  }
  return out;
}

/** Assembles every plugin; returns output path (relative to plugins/) → bytes. */
export async function buildPlugins(): Promise<Map<string, Uint8Array>> {
  const wabt = await wabtInit();
  const out = new Map<string, Uint8Array>();
  for (const [path, text] of sources()) {
    const mod = wabt.parseWat(path, text, { bulk_memory: true });
    try {
      mod.resolveNames();
      mod.validate();
      out.set(path, new Uint8Array(mod.toBinary({ log: false, write_debug_names: false }).buffer));
    } finally {
      mod.destroy();
    }
  }
  return out;
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  let stale = 0;
  for (const [path, bytes] of await buildPlugins()) {
    const url = new URL(path, ROOT);
    if (check) {
      let old: Uint8Array | null = null;
      try {
        old = Deno.readFileSync(url);
      } catch { /* missing */ }
      const same = old !== null && old.length === bytes.length && old.every((b, i) => b === bytes[i]);
      if (!same) stale++, console.error(`stale: plugins/${path}`);
    } else {
      Deno.writeFileSync(url, bytes);
      console.log(`plugins/${path} (${bytes.length} bytes)`);
    }
  }
  if (stale > 0) Deno.exit(1);
}
