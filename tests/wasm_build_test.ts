/**
 * The committed test/example plugins match their sources: rebuilt here with
 * npm wabt (no native toolchain needed) and compared byte for byte.
 */
import assert from "node:assert/strict";
import { buildAssemblyScript, buildC, buildPlugins } from "../scripts/build_plugins.ts";
import { toolTest } from "./tools.ts";

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

// Without clang 14 (Debian 12's, which built the committed files) they are used as they are.
toolTest(["clang 14"], "plugins: committed C plugin matches a clang rebuild", async () => {
  assertCommitted(await buildC());
});

// Installs the pinned npm toolchain (~10 s, needs the registry): opt-in, even in CI.
toolTest(
  ["npm"],
  "plugins: committed AssemblyScript SDK plugin matches an asc 0.14.13 rebuild",
  async () => assertCommitted(await buildAssemblyScript()),
  { ignore: Deno.env.get("LOOM_TEST_AS_BUILD") !== "1" },
);
