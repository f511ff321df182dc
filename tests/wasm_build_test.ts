/**
 * The committed test/example plugins match their sources: rebuilt here with
 * npm wabt (no native toolchain needed) and compared byte for byte.
 */
import assert from "node:assert/strict";
import { buildAssemblyScript, buildC, buildPlugins, hasTool } from "../scripts/build_plugins.ts";

Deno.test("plugins: committed .wasm files are up to date with their WAT sources", async () => {
  const built = await buildPlugins();
  assert.ok(built.size >= 4);
  for (const [path, bytes] of built) {
    const committed = Deno.readFileSync(new URL(`../plugins/${path}`, import.meta.url));
    assert.deepEqual(committed, bytes, `plugins/${path} is stale: run deno task build:plugins`);
  }
});

/** Compares freshly built plugins with the committed files. */
function assertCommitted(built: Map<string, Uint8Array>): void {
  assert.ok(built.size >= 1);
  for (const [path, bytes] of built) {
    const committed = Deno.readFileSync(new URL(`../plugins/${path}`, import.meta.url));
    assert.deepEqual(committed, bytes, `plugins/${path} is stale: run deno task build:plugins`);
  }
}

// clang is optional: without it the committed C plugin is used as is.
Deno.test({
  name: "plugins: committed C plugin matches a clang rebuild",
  ignore: !(await hasTool("clang")),
  fn: async () => assertCommitted(await buildC()),
});

// Installs the pinned npm toolchain (~10 s, needs the registry): opt-in.
Deno.test({
  name: "plugins: committed AssemblyScript SDK plugin matches an asc 0.14.13 rebuild",
  ignore: Deno.env.get("LOOM_TEST_AS_BUILD") !== "1",
  fn: async () => assertCommitted(await buildAssemblyScript()),
});
