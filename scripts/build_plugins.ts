/**
 * Builds Loom's own Proxy-Wasm plugins from source (`deno task build:plugins`).
 *
 * WAT sources are assembled with npm `wabt` (pure WebAssembly, so CI needs no
 * native toolchain). `kitchen.wat.in` is a template instantiated once per ABI
 * version. The built `.wasm` files are committed (a few KiB); the test
 * `tests/wasm_build_test.ts` rebuilds them and checks they match.
 *
 * Plugins in other languages are built by native toolchains when present:
 *
 * - C (`plugins/c-headers/*.c`, `plugins/test/*.c`): `clang --target=wasm32 -nostdlib` + lld, built
 *   whenever `clang` is on PATH, skipped (committed .wasm kept) otherwise.
 * - AssemblyScript with the `@solo-io/proxy-runtime` SDK
 *   (`plugins/sdk-assemblyscript/`): only with `--as`, because it installs the
 *   pinned npm packages (assemblyscript 0.14.13 — the SDK does not build with
 *   later compilers — and the SDK, unmodified) into a temporary directory.
 *
 * Usage: deno run -A scripts/build_plugins.ts [--check] [--as]
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

/** Runs a command; throws with its stderr when it fails. */
async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Whether `cmd` can be run (is on PATH). */
export async function hasTool(cmd: string): Promise<boolean> {
  try {
    await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

/** clang flags: no libc, no entry point; exports come from export_name attributes. */
const CLANG_FLAGS = ["--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry"];

/** Folders (under plugins/) whose `.c` files are plugins of their own. */
const C_DIRS = ["c-headers", "test"];

/** Builds the C plugins with clang (output path relative to plugins/ → bytes). */
export async function buildC(): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const tmp = await Deno.makeTempDir({ prefix: "loom-c-" });
  try {
    for (const dir of C_DIRS) {
      for (const f of Deno.readDirSync(new URL(`${dir}/`, ROOT))) {
        if (!f.isFile || !f.name.endsWith(".c")) continue;
        const src = new URL(`${dir}/${f.name}`, ROOT).pathname;
        const wasm = `${tmp}/${f.name.slice(0, -2)}.wasm`;
        await run("clang", [...CLANG_FLAGS, "-o", wasm, src]);
        out.set(`${dir}/${f.name.slice(0, -2)}.wasm`, Deno.readFileSync(wasm));
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  return out;
}

/** Pinned toolchain of the AssemblyScript SDK plugin. */
const AS_PACKAGES = ["assemblyscript@0.14.13", "@solo-io/proxy-runtime@0.1.8"];

/**
 * Builds plugins/sdk-assemblyscript with the SDK's documented command
 * (`asc assembly/index.ts --use abort=abort_proc_exit --optimize`), in a
 * temporary npm project so nothing lands in the repository.
 */
export async function buildAssemblyScript(): Promise<Map<string, Uint8Array>> {
  const tmp = await Deno.makeTempDir({ prefix: "loom-as-" });
  try {
    Deno.writeTextFileSync(`${tmp}/package.json`, '{"name":"loom-as-build","private":true}\n');
    await run("npm", ["install", "--no-audit", "--no-fund", "--save-exact", ...AS_PACKAGES], tmp);
    Deno.mkdirSync(`${tmp}/assembly`);
    Deno.copyFileSync(new URL("sdk-assemblyscript/assembly/index.ts", ROOT), `${tmp}/assembly/index.ts`);
    await run("node", [
      "node_modules/assemblyscript/bin/asc",
      "assembly/index.ts",
      "-b",
      "add_header.wasm",
      "--use",
      "abort=abort_proc_exit",
      "--optimize",
    ], tmp);
    return new Map([["sdk-assemblyscript/add_header.wasm", Deno.readFileSync(`${tmp}/add_header.wasm`)]]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  const built = await buildPlugins();
  if (await hasTool("clang")) { for (const [k, v] of await buildC()) built.set(k, v); }
  else console.error("clang not found: C plugins not rebuilt");
  if (Deno.args.includes("--as")) { for (const [k, v] of await buildAssemblyScript()) built.set(k, v); }
  let stale = 0;
  for (const [path, bytes] of built) {
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
