/**
 * ARM64: the bundle on Deno's aarch64 binary (npm @deno/linux-arm64-glibc, the version running the tests)
 * under qemu-user, with Debian's arm64 glibc as the sysroot: `loom run` proxies one request and stops on
 * SIGTERM, and `loom version` reports the aarch64 target. The cold start (a fresh DENO_DIR) and RSS are
 * printed (README, "Install"). Emulated start-up takes 10-15 s: one test, a generous timeout.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { buildBundle } from "../scripts/bundle.ts";
import { capture, run, smokeTest } from "../scripts/dist_common.ts";

const SYSROOT = "/usr/aarch64-linux-gnu";
const NPM_ENV = { npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" };

itest("dist: arm64 Deno under qemu-aarch64-static runs the bundle (a request, version)", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-arm64-" });
  try {
    const b = await buildBundle(`${tmp}/dist`);
    const pkg = `@deno/linux-arm64-glibc@${Deno.version.deno}`;
    // --force: the package declares cpu arm64, which npm refuses on an x86_64 machine otherwise.
    const npmArgs = ["install", "--prefix", `${tmp}/arm64`, "--force", "--no-save", "--loglevel=error", pkg];
    await run("npm", npmArgs, { env: NPM_ENV });
    const deno = `${tmp}/arm64/node_modules/@deno/linux-arm64-glibc/deno`;
    // A fresh DENO_DIR: no code cache from an earlier run, so the first start is cold.
    const env = { DENO_DIR: `${tmp}/deno-dir`, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
    const loom = ["-L", SYSROOT, deno, "run", "-A", "--unstable-net", "--no-config", b.main];

    const smoke = await smokeTest("qemu-aarch64-static", loom, { env, timeoutMs: 120_000 });

    const t0 = performance.now();
    const v = await capture("qemu-aarch64-static", [...loom, "version"], { env, timeoutMs: 120_000 });
    const versionMs = performance.now() - t0;
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^target: +aarch64-unknown-linux-gnu$/m);
    console.log(
      `arm64 under qemu: cold run to first proxied request ${Math.round(smoke.coldStartMs)} ms; ` +
        `RSS ${smoke.rssKiB ?? "?"} KiB; then loom version ${Math.round(versionMs)} ms`,
    );
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}, { needs: ["npm", "qemu-aarch64-static", "aarch64 sysroot"], timeoutMs: 240_000 });
