/**
 * The npm package (scripts/npm_pack.ts) as a user gets it: packed, installed globally into a temporary
 * prefix (npm fetches the `deno` package it depends on), then `loom version`, `loom validate` and
 * `loom run` serving a request through the installed `bin/loom`, stopped by SIGTERM.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { PACKAGE, packNpm } from "../scripts/npm_pack.ts";
import {
  capture,
  run,
  smokeConfig,
  smokePorts,
  smokeRoutes,
  smokeTest,
  VERSION,
} from "../scripts/dist_common.ts";

itest("dist: npm pack, npm install -g into a prefix, loom version / validate / run", async () => {
  const tmp = Deno.makeTempDirSync({ prefix: "loom-npm-" });
  try {
    const pack = await packNpm(`${tmp}/dist`);
    assert.match(pack.tarball, new RegExp(`/${PACKAGE}-${VERSION.replaceAll(".", "\\.")}\\.tgz$`));
    const env = { npm_config_update_notifier: "false", npm_config_fund: "false", npm_config_audit: "false" };
    const t0 = performance.now();
    await run("npm", ["install", "-g", "--prefix", `${tmp}/prefix`, "--loglevel=error", pack.tarball], {
      env,
    });
    const installMs = performance.now() - t0;
    const loom = `${tmp}/prefix/bin/loom`;

    const v = await capture(loom, ["version"], { cwd: tmp });
    assert.equal(v.code, 0, v.stderr);
    assert.match(
      v.stdout,
      new RegExp(`^loom ${VERSION.replaceAll(".", "\\.")} \\(deno ${Deno.version.deno}\\)`),
    );
    assert.match(v.stdout, /^commit: +\S+$/m);

    const config = `${tmp}/loom.yaml`;
    Deno.writeTextFileSync(config, smokeConfig(smokePorts(), smokeRoutes()));
    const ok = await capture(loom, ["validate", "-c", config], { cwd: tmp });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /configuration is valid/);
    Deno.writeTextFileSync(config, "listeners: []\nroutes: [{ id: x }]\n");
    const bad = await capture(loom, ["validate", "-c", config], { cwd: tmp });
    assert.equal(bad.code, 2, "an invalid config is exit 2 through bin/loom too");

    // bin/loom run: a request through the demo upstream, SIGTERM passed on to Loom, exit 0.
    const smoke = await smokeTest(loom, []);
    console.log(
      `npm: ${pack.tarball.split("/").pop()} ${pack.size} bytes (${pack.files} files); ` +
        `install ${Math.round(installMs)} ms; first request after ${Math.round(smoke.coldStartMs)} ms`,
    );
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}, { needs: ["npm"], timeoutMs: 180_000 });
