/**
 * scripts/compile.ts refuses a binary whose runtime is not denort: with DENORT_BIN at the Deno CLI (the
 * only Deno binary package registries offer), `deno compile` exits 0 but writes the Deno CLI with Loom
 * appended; the script must fail, say why and how to fix it, and leave no binary behind.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { machineOf, resolveTarget, TARGETS } from "../scripts/compile.ts";
import { ROOT } from "../scripts/dist_common.ts";

itest("dist: compile with DENORT_BIN at the Deno CLI fails with the reason and the fix", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-compile-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}scripts/compile.ts`, "--no-check", "--out", `${tmp}/loom`],
      env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    assert.match(stderr, /is the Deno CLI with Loom appended, not Loom/);
    assert.match(stderr, /not `denort`/);
    // The host binary was run: the Deno CLI's own answer to `version` is quoted.
    assert.match(stderr, /`version` printed: "error: unrecognized subcommand 'version'"/);
    assert.match(stderr, new RegExp(`fix: DENORT_BIN=${Deno.execPath()} is not the denort runtime`));
    assert.match(stderr, /deno task bundle/);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "the broken binary was left behind");
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}, { timeoutMs: 120_000 });

Deno.test("dist: compile targets and the executable header check", () => {
  assert.equal(resolveTarget().triple, Deno.build.target);
  assert.equal(resolveTarget("linux-aarch64").triple, "aarch64-unknown-linux-gnu");
  assert.match(resolveTarget("windows-x86_64").output, /dist\/loom-windows-x86_64\.exe$/);
  assert.equal(resolveTarget(TARGETS["macos-aarch64"]).triple, "aarch64-apple-darwin");
  assert.throws(() => resolveTarget("plan9"), /unknown target "plan9"/);
  const head = Deno.readFileSync(Deno.execPath()).subarray(0, 4096);
  assert.equal(machineOf(head), Deno.build.arch);
  assert.equal(machineOf(new Uint8Array(64)), undefined);
});
