/**
 * The committed test/example plugins match their sources: rebuilt here with
 * npm wabt (no native toolchain needed) and compared byte for byte.
 */
import assert from "node:assert/strict";
import { buildPlugins } from "../scripts/build_plugins.ts";

Deno.test("plugins: committed .wasm files are up to date with their WAT sources", async () => {
  const built = await buildPlugins();
  assert.ok(built.size >= 4);
  for (const [path, bytes] of built) {
    const committed = Deno.readFileSync(new URL(`../plugins/${path}`, import.meta.url));
    assert.deepEqual(committed, bytes, `plugins/${path} is stale: run deno task build:plugins`);
  }
});
