/**
 * The bundle (`deno task bundle`, scripts/bundle.ts) end to end, on the Deno running the tests: built into
 * a temporary directory, started from another working directory with a config that lies elsewhere
 * (relative plugin and users_file paths), `workers: 2`, a Proxy-Wasm plugin and basic_auth (whose hash
 * verification runs in a worker started from the worker's own bundle); a request proxied, a reload by
 * SIGHUP and one by POST /reload, then SIGTERM.
 */
import assert from "node:assert/strict";
import { bcrypt } from "hash-wasm";
import { itest } from "./helpers.ts";
import { buildBundle } from "../scripts/bundle.ts";
import {
  ROOT,
  smokeConfig,
  smokePorts,
  smokeRoutes,
  startLoomProcess,
  VERSION,
  waitForOk,
} from "../scripts/dist_common.ts";
import { WORKERS } from "../src/build.ts";

Deno.test("dist: every `new Worker(` in src/ starts a WORKERS entry through workerUrl", () => {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) {
        for (const m of Deno.readTextFileSync(p).matchAll(/new Worker\(\s*(workerUrl\("\w+"\)|[^,)]*)/g)) {
          found.push(`${p.slice(ROOT.length)}: ${m[1]}`);
        }
      }
    }
  };
  walk(ROOT + "src");
  assert.ok(found.length >= Object.keys(WORKERS).length, found.join("\n"));
  for (const f of found) assert.match(f, /: workerUrl\("\w+"\)$/, `a worker the bundle cannot start: ${f}`);
  for (const w of Object.values(WORKERS)) Deno.statSync(ROOT + w.source);
});

itest(
  "dist: the bundle serves, reloads (SIGHUP, POST /reload) and stops, with 2 workers and a plugin",
  async () => {
    const tmp = Deno.makeTempDirSync({ prefix: "loom-bundle-" });
    try {
      const t0 = performance.now();
      const b = await buildBundle(`${tmp}/dist`, "abc1234");
      const buildMs = performance.now() - t0;
      for (
        const f of ["loom.js", "loom-worker.js", "config/loom.yaml", "plugins/add-headers/add_headers.wasm"]
      ) {
        assert.ok(b.files.has(f), `${f} missing from the bundle`);
      }
      // The config and what it names live in etc/; Loom runs from run/.
      Deno.mkdirSync(`${tmp}/etc/plugins`, { recursive: true });
      Deno.mkdirSync(`${tmp}/run`);
      Deno.copyFileSync(
        `${tmp}/dist/plugins/add-headers/add_headers.wasm`,
        `${tmp}/etc/plugins/headers.wasm`,
      );
      const hash = await bcrypt({
        password: "pw",
        salt: crypto.getRandomValues(new Uint8Array(16)),
        costFactor: 4,
        outputType: "encoded",
      });
      Deno.writeTextFileSync(`${tmp}/etc/htpasswd`, `alice:${hash}\n`);
      const ports = smokePorts();
      const config = (servedBy: string, more = "") =>
        smokeConfig(
          ports,
          `workers: 2
plugins:
  - name: add-headers
    path: plugins/headers.wasm
    phase: on_response_headers
    config: |
      +x-gateway: loom
      >x-served-by: ${servedBy}
${
            smokeRoutes(`    plugins: [add-headers]
  - id: private
    path: /private/*
    strip_prefix: true
    upstream: echo
    middleware:
      - basic_auth:
          users_file: htpasswd
${more}`)
          }`,
        );
      const configPath = `${tmp}/etc/loom.yaml`;
      Deno.writeTextFileSync(configPath, config("one"));

      const start = performance.now();
      const loom = startLoomProcess(
        Deno.execPath(),
        ["run", "-A", "--unstable-net", "--no-config", b.main, "run", "-c", "../etc/loom.yaml"],
        { cwd: `${tmp}/run` },
      );
      try {
        const base = `http://127.0.0.1:${ports.port}`;
        const first = await waitForOk(`${base}/echo/hello`, loom, 30_000, start);
        const coldMs = first.ms;
        assert.equal(first.headers.get("x-served-by"), "one");
        const echoed = JSON.parse(first.body);
        assert.equal(echoed.path, "/hello");
        assert.equal(echoed.headers["x-gateway"], "loom");

        // basic_auth: the hash is checked in the verification worker, started from its own bundle.
        const denied = await fetch(`${base}/private/x`);
        await denied.body?.cancel();
        assert.equal(denied.status, 401);
        const allowed = await fetch(`${base}/private/x`, {
          headers: { authorization: `Basic ${btoa("alice:pw")}` },
        });
        assert.equal(allowed.status, 200, await allowed.text());
        // Several requests: connections spread over both workers; every one is answered.
        const many = await Promise.all(
          Array.from(
            { length: 20 },
            () => fetch(`${base}/echo/n`).then(async (r) => [r.status, await r.text()]),
          ),
        );
        assert.deepEqual(
          many.map(([s]) => s),
          Array(20).fill(200),
        );

        // Reload by SIGHUP: a new route and the plugin's new config.
        Deno.writeTextFileSync(
          configPath,
          config("two", "  - { id: v2, path: /v2/*, strip_prefix: true, upstream: echo }\n"),
        );
        loom.child.kill("SIGHUP");
        const v2 = await waitForOk(`${base}/v2/x`, loom, 20_000);
        assert.equal(JSON.parse(v2.body).path, "/x");
        const after = await fetch(`${base}/echo/hello`);
        await after.body?.cancel();
        assert.equal(after.headers.get("x-served-by"), "two");

        // Reload through the admin API.
        Deno.writeTextFileSync(configPath, config("three"));
        const r = await fetch(`http://127.0.0.1:${ports.admin}/reload`, {
          method: "POST",
          headers: { "x-loom-admin": "1" },
        });
        assert.equal(r.status, 200, await r.text());
        const gone = await fetch(`${base}/v2/x`);
        await gone.body?.cancel();
        assert.equal(gone.status, 404);
        const third = await fetch(`${base}/echo/hello`);
        await third.body?.cancel();
        assert.equal(third.headers.get("x-served-by"), "three");

        const rss = loom.rssKiB();
        const st = await loom.stop(20_000);
        assert.equal(st.code, 0, loom.output());
        assert.match(loom.output(), /"loom started".*"workers":2/);
        assert.match(loom.output(), /shutting down/);
        assert.doesNotMatch(loom.output(), /no verification worker|worker \d+ crashed/);

        // The bundle's own version: the stamped commit and the build target.
        const v = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--unstable-net", "--no-config", b.main, "version"],
          stdout: "piped",
        }).output();
        const text = new TextDecoder().decode(v.stdout);
        assert.match(text, new RegExp(`^loom ${VERSION.replaceAll(".", "\\.")} \\(deno `));
        assert.match(text, /^commit: +abc1234$/m);
        assert.match(text, new RegExp(`^target: +${Deno.build.target}$`, "m"));
        console.log(
          `bundle: built in ${Math.round(buildMs)} ms; loom.js ${b.files.get("loom.js")} bytes; ` +
            `cold start (2 workers) ${Math.round(coldMs)} ms; RSS ${rss ?? "?"} KiB`,
        );
      } finally {
        await loom.stop(1_000);
      }
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
  { timeoutMs: 120_000 },
);
