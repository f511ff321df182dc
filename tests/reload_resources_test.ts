/**
 * A config is applied whole or not at all (issue 18 item 7): the files it names (plugin modules,
 * certificates and keys, ...) are read and checked before anything is swapped. A missing plugin file, a
 * module without a Proxy-Wasm ABI, an invalid certificate and an unreadable one are refused by `loom
 * validate` and `loom run` (exit 2), at start, and at reload (file watch and POST /reload), with the YAML
 * path and line, while the old config keeps serving every request. The file watch is configurable
 * (`reload.watch`), and one change gives one reload: a write and a SIGHUP together reload once, a
 * SIGHUP without a change reloads nothing.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor, writeConfig, writeTempConfig } from "./helpers.ts";
import { get, loadLoop, metricValue, postReload } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { ConfigInvalidError } from "../src/runtime/supervisor.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const ADD_HEADERS = new URL("../plugins/add-headers/add_headers.wasm", import.meta.url).pathname;
const dec = new TextDecoder();

interface Files {
  plugin: string;
  cert: string;
  key: string;
}

/**
 * An http listener (${PORT}) and an https one on `tlsPort` with `f.cert`/`f.key`; route /p/* to `app`
 * through the plugin at `f.plugin` (which adds `x-plugin: <tag>` to responses). Positions: plugins[0].path
 * is on line 15, column 11; listeners[1].tls.cert_file on line 8.
 */
function config(f: Files, tlsPort: number, app: string, tag = "one", extra = ""): string {
  return `listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
  - name: tls
    address: "127.0.0.1:${tlsPort}"
    protocol: https
    tls: { cert_file: "${f.cert}", key_file: "${f.key}" }
upstreams:
  - { name: app, endpoints: ["${app}"] }
routes:
  - { id: p, path: "/p/*", upstream: app, plugins: [hdr] }
plugins:
  - name: hdr
    path: "${f.plugin}"
    phase: on_response_headers
    config: ">x-plugin: ${tag}"
${extra}`;
}

/** The test PKI, the good files, and one bad variant per problem (with the YAML path it is reported at). */
async function fixture() {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const leaf = await ca.leaf("server", "localhost", ["DNS:localhost"]);
  const good: Files = { plugin: ADD_HEADERS, cert: leaf.cert, key: leaf.key };
  const garbage = `${dir}/garbage.pem`;
  Deno.writeTextFileSync(
    garbage,
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
  );
  const bad: { name: string; files: Files; at: string; message: RegExp }[] = [
    {
      name: "missing plugin file",
      files: { ...good, plugin: `${dir}/missing.wasm` },
      at: ":15:11: plugins[0].path: ",
      message: /cannot read .*missing\.wasm: file not found/,
    },
    {
      name: "module without a Proxy-Wasm ABI",
      files: { ...good, plugin: PLUGINS + "no_abi.wasm" },
      at: ":15:11: plugins[0].path: ",
      message: /no_abi\.wasm: not a Proxy-Wasm module \(no proxy_abi_version/,
    },
    {
      name: "invalid certificate",
      files: { ...good, cert: garbage },
      at: ":8:23: listeners[1].tls.cert_file: ",
      message: /garbage\.pem: not a PEM certificate/,
    },
    {
      name: "unreadable certificate",
      files: { ...good, cert: dir },
      at: ":8:23: listeners[1].tls.cert_file: ",
      message: /cannot read .*: (is a directory|Is a directory)/,
    },
  ];
  return { dir, caPem: Deno.readTextFileSync(ca.cert), good, bad };
}

/** Whether the https listener completes a handshake with the test CA. */
async function tlsServes(port: number, caPem: string): Promise<boolean> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const c = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [caPem] });
  try {
    await c.handshake();
    return true;
  } catch {
    return false;
  } finally {
    c.close();
  }
}

itest(
  "whole config: loom validate and loom run refuse missing/invalid files with file:line:col and exit 2",
  async () => {
    const f = await fixture();
    const port = freePort(), tlsPort = freePort();
    // Three problems at once: a missing plugin file, a module without ABI, an invalid certificate.
    const text = config({ ...f.bad[0].files, cert: f.bad[2].files.cert }, tlsPort, "127.0.0.1:9")
      .replace("${PORT}", String(port)) +
      `  - { name: hdr2, path: "${f.bad[1].files.plugin}" }\n`;
    const file = writeTempConfig(text);
    try {
      const run = (...args: string[]) =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--unstable-net", MAIN, ...args, "-c", file],
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).output();
      for (const cmd of ["validate", "run"]) {
        const o = await run(cmd);
        const err = dec.decode(o.stderr);
        assert.equal(o.code, 2, `${cmd}: ${dec.decode(o.stdout)}${err}`);
        assert.ok(err.includes(`${file}${f.bad[0].at}`) && f.bad[0].message.test(err), err);
        assert.ok(err.includes(`${file}:18:25: plugins[1].path: `) && f.bad[1].message.test(err), err);
        assert.ok(err.includes(`${file}${f.bad[2].at}`) && f.bad[2].message.test(err), err);
        if (cmd === "run") assert.match(err, /refusing to start/);
      }
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "nothing listens");
    } finally {
      Deno.removeSync(file);
      Deno.removeSync(f.dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

itest(
  "whole config: each bad file is refused at start (ConfigInvalidError with its YAML path and line)",
  async () => {
    const f = await fixture();
    try {
      for (const b of f.bad) {
        const err = await startLoom(config(b.files, freePort(), "127.0.0.1:9")).then(
          async (loom) => {
            await loom.close();
            return null;
          },
          (e) => e,
        );
        assert.ok(err instanceof ConfigInvalidError, `${b.name}: started, or ${err}`);
        assert.ok(err.message.includes(b.at) && b.message.test(err.message), `${b.name}: ${err.message}`);
      }
    } finally {
      Deno.removeSync(f.dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

itest(
  "whole config: bad files are refused at reload (watch and POST /reload) while the old config serves every request",
  async () => {
    const f = await fixture();
    const app = startUpstream({ echo: "app" });
    const tlsPort = freePort();
    const loom = await startLoom(config(f.good, tlsPort, app.address), { watch: true });
    const load = loadLoop(
      loom.url("/p/x"),
      8,
      (r) =>
        r.status === 200 && r.headers.get("x-plugin") === "one"
          ? undefined
          : `${r.status} x-plugin=${r.headers.get("x-plugin")} ${r.text.slice(0, 100)}`,
    );
    const failed = async () =>
      metricValue((await get(loom.admin("/metrics"))).text, "loom_config_reloads_total", {
        result: "failure",
      });
    try {
      await waitFor("requests flowing", () => load.ok > 20 || undefined);
      for (const b of f.bad) {
        const before = await failed();
        writeConfig(loom, config(b.files, tlsPort, app.address, "two"));
        // The watch reload is refused once; POST /reload answers the same errors (not counted again).
        await waitFor(
          `${b.name}: the watched reload refused`,
          async () => await failed() === before + 1 || undefined,
        );
        const r = await postReload(loom);
        assert.equal(r.status, 400, `${b.name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.result, "failure");
        const errors = (r.body.errors ?? []).join("\n");
        assert.ok(errors.includes(loom.configPath + b.at), `${b.name}: ${errors}`);
        assert.match(errors, b.message);
        assert.equal(await failed(), before + 1, `${b.name}: one change, one refusal`);
        assert.equal((await get(loom.admin("/ready"))).status, 200);
        assert.ok(await tlsServes(tlsPort, f.caPem), `${b.name}: the https listener serves`);
        const routes = await (await fetch(loom.admin("/routes"))).json() as { id: string }[];
        assert.deepEqual(routes.map((x) => x.id), ["p"]);
      }
      const served = load.ok;
      await waitFor("more requests", () => load.ok > served + 20 || undefined);
      await load.stop();
      const { ok, failures } = load;
      assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed of ${ok + failures.length}`);

      // A good config is applied again.
      writeConfig(loom, config(f.good, tlsPort, app.address, "two"));
      assert.deepEqual(await postReload(loom), { status: 200, body: { result: "success" } });
      assert.equal((await get(loom.url("/p/x"))).headers.get("x-plugin"), "two");
    } finally {
      await load.stop();
      await loom.close();
      await app.close();
      Deno.removeSync(f.dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

/** `loom run` in a subprocess at log level info, its stderr collected as it comes. */
function runLoom(file: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", MAIN, "run", "-c", file, "--log-level", "info"],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let stderr = "";
  const drained = (async () => {
    for await (const chunk of child.stderr) stderr += dec.decode(chunk);
  })();
  return {
    child,
    log: () => stderr,
    /** Log lines of applied reloads so far. */
    reloads: () => stderr.split("\n").filter((l) => l.includes('"msg":"config reloaded"')).length,
    close: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drained;
    },
  };
}

itest(
  "whole config: a write and a SIGHUP reload once; a SIGHUP without change reloads nothing; reload.watch: false",
  async () => {
    const app = startUpstream({ echo: "app" });
    const port = freePort(), adminPort = freePort();
    const cfg = (routes: string[], extra = "") =>
      `listeners:
  - { name: http, address: "127.0.0.1:${port}", protocol: http }
upstreams:
  - { name: app, endpoints: ["${app.address}"] }
routes: [${routes.map((r) => `{ id: ${r}, path: /${r}, upstream: app }`).join(", ")}]
admin: { address: "127.0.0.1:${adminPort}" }
access_log: { enabled: false }
${extra}`;
    const file = writeTempConfig(cfg(["one"]));
    const p = runLoom(file);
    const status = async (path: string) => (await get(`http://127.0.0.1:${port}${path}`)).status;
    const successes = async () =>
      metricValue((await get(`http://127.0.0.1:${adminPort}/metrics`)).text, "loom_config_reloads_total", {
        result: "success",
      });
    const settle = () => new Promise((r) => setTimeout(r, 800));
    try {
      await waitFor("loom to serve", async () => await status("/one") === 200 || undefined, 30_000);

      // A write (seen by the watch) and a SIGHUP for the same change: one reload, one log line.
      Deno.writeTextFileSync(file, cfg(["one", "two"]));
      Deno.kill(p.child.pid, "SIGHUP");
      await waitFor("route /two", async () => await status("/two") === 200 || undefined, 10_000);
      await settle();
      assert.equal(p.reloads(), 1, p.log());
      assert.equal(await successes(), 1);

      // A SIGHUP without a change: nothing reloads.
      Deno.kill(p.child.pid, "SIGHUP");
      await settle();
      assert.equal(p.reloads(), 1, p.log());

      // reload.watch: false (applied by a SIGHUP): later writes wait for a SIGHUP.
      Deno.writeTextFileSync(file, cfg(["one", "two"], "reload: { watch: false, debounce: 50ms }\n"));
      Deno.kill(p.child.pid, "SIGHUP");
      await waitFor("the second reload", () => p.reloads() === 2 || undefined, 10_000);
      Deno.writeTextFileSync(
        file,
        cfg(["one", "two", "three"], "reload: { watch: false, debounce: 50ms }\n"),
      );
      await settle();
      assert.equal(await status("/three"), 404, "not watched");
      Deno.kill(p.child.pid, "SIGHUP");
      await waitFor("route /three", async () => await status("/three") === 200 || undefined, 10_000);
      assert.equal(p.reloads(), 3, p.log());
      assert.equal(await successes(), 3);
    } finally {
      await p.close();
      await app.close();
      Deno.removeSync(file);
    }
  },
);
