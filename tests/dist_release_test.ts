/**
 * scripts/release.ts: the bundle tarball, the npm package, checksums that match and a dependency list
 * with licenses; a compiled binary whose runtime is not denort (DENORT_BIN at the Deno CLI) is skipped
 * with its reason, never shipped.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { TARGETS } from "../scripts/compile.ts";
import { capture, ROOT, VERSION } from "../scripts/dist_common.ts";

itest(
  "dist: release writes the artifacts, SHA256SUMS and DEPENDENCIES; a non-denort binary is skipped",
  async () => {
    const out = Deno.makeTempDirSync({ prefix: "loom-release-" });
    try {
      const host = Object.entries(TARGETS).find(([, triple]) => triple === Deno.build.target)?.[0] ??
        "linux-x86_64";
      const r = await capture(
        Deno.execPath(),
        ["run", "-A", `${ROOT}scripts/release.ts`, "--out", out, "--targets", host],
        { env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" }, timeoutMs: 150_000 },
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, new RegExp(`skipped loom-${VERSION}-${host}: .*not \`denort\``));
      const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
      assert.deepEqual(files, [
        "DEPENDENCIES.md",
        "SHA256SUMS",
        "dependencies.json",
        `loom-${VERSION}-bundle.tar.gz`,
        `loom-gateway-${VERSION}.tgz`,
      ]);
      const sums = Deno.readTextFileSync(`${out}/SHA256SUMS`).trim().split("\n").map((l) => l.split("  "));
      assert.equal(sums.length, 4);
      for (const [sum, name] of sums) {
        const digest = await crypto.subtle.digest("SHA-256", Deno.readFileSync(`${out}/${name}`));
        assert.equal(
          [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
          sum,
          name,
        );
      }
      const tar = await capture("tar", ["-tzf", `${out}/loom-${VERSION}-bundle.tar.gz`]);
      assert.match(tar.stdout, new RegExp(`^loom-${VERSION}/loom\\.js$`, "m"));
      assert.match(tar.stdout, new RegExp(`^loom-${VERSION}/loom-worker\\.js$`, "m"));
      const deps = JSON.parse(Deno.readTextFileSync(`${out}/dependencies.json`));
      const byName = new Map(deps.npm.map((d: { name: string }) => [d.name, d]));
      for (const name of ["yaml", "hono", "jose", "hash-wasm"]) {
        const d = byName.get(name) as { version: string; license: string; integrity?: string } | undefined;
        assert.ok(d, `${name} missing from dependencies.json`);
        assert.notEqual(d.license, "UNKNOWN", name);
        assert.match(d.integrity ?? "", /^sha512-/, name);
      }
      assert.equal(deps.runtime.version, Deno.version.deno);
      assert.match(Deno.readTextFileSync(`${out}/DEPENDENCIES.md`), /\| yaml \| \d+\.\d+\.\d+ \| ISC \|/);
    } finally {
      Deno.removeSync(out, { recursive: true });
    }
  },
  { needs: ["npm"], timeoutMs: 180_000 },
);
