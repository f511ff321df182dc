/**
 * The `loom` command line as a real subprocess: version, validate (every
 * error located), run (refuses invalid configs, SIGHUP reloads, SIGTERM
 * drains), and the default config as `deno task start` runs it.
 */
import assert from "node:assert/strict";
import { freePort, itest, waitFor, writeTempConfig, yamlOf } from "./helpers.ts";
import { get } from "./gateway_util.ts";
import { startUpstream } from "./upstream.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const dec = new TextDecoder();

interface Proc {
  child: Deno.ChildProcess;
  /** Settles when the process exits, with everything it printed. */
  done: Promise<{ code: number; signal: Deno.Signal | null; stdout: string; stderr: string }>;
  /** Waits for exit up to `ms` (then SIGKILLs it and throws). */
  exited(ms: number): Promise<{ code: number; stdout: string; stderr: string }>;
  kill(): void;
}

function spawn(args: string[], cwd = ROOT): Proc {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const done = child.output().then((o) => ({
    code: o.code,
    signal: o.signal,
    stdout: dec.decode(o.stdout),
    stderr: dec.decode(o.stderr),
  }));
  let exited = false;
  done.then(() => exited = true, () => exited = true);
  const kill = () => {
    if (exited) return;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  };
  return {
    child,
    done,
    kill,
    exited: async (ms) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([done, new Promise<null>((r) => timer = setTimeout(() => r(null), ms))]);
      clearTimeout(timer);
      if (r === null) {
        kill();
        const late = await done;
        throw new Error(
          `process did not exit within ${ms} ms\nstdout: ${late.stdout}\nstderr: ${late.stderr}`,
        );
      }
      return r;
    },
  };
}

const loom = (...args: string[]) => spawn(["run", "-A", "--unstable-net", MAIN, ...args]);

itest("cli: version", async () => {
  const p = loom("version");
  const r = await p.exited(30_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^loom \d+\.\d+\.\d+\S* \(deno \d+\.\d+\.\d+/);
});

itest("cli: validate accepts config/loom.yaml", async () => {
  const r = await loom("validate", "-c", "config/loom.yaml").exited(30_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /config\/loom\.yaml: configuration is valid/);
});

itest("cli: validate prints every error as file:line:col: path: message and exits 2", async () => {
  const file = writeTempConfig(`listeners:
  - name: http
    address: ":8080"
    protocol: http
upstreams:
  - name: up
    endpoints: ["127.0.0.1:9"]
    load_balancer: fastest
routes:
  - id: a
    path: /a
    upstream: nope
  - id: b
    path: /b
    upstream: up
    timeout: soon
    pathh: /typo
`);
  try {
    const r = await loom("validate", "-c", file).exited(30_000);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const lines = r.stderr.trim().split("\n");
    const errors = lines.filter((l) => l.startsWith(file + ":") && !l.endsWith("error(s)"));
    const expected: [string, number][] = [
      ["upstreams[0].load_balancer", 8],
      ["routes[0].upstream", 12],
      ["routes[1].timeout", 16],
      ["routes[1].pathh", 17],
    ];
    for (const [path, line] of expected) {
      const re = new RegExp(
        `^${file.replaceAll(".", "\\.")}:${line}:\\d+: ${path.replace(/[[\].]/g, "\\$&")}: \\S`,
      );
      assert.ok(errors.some((l) => re.test(l)), `missing ${path} at line ${line} in:\n${r.stderr}`);
    }
    assert.match(r.stderr, new RegExp(`${errors.length} error\\(s\\)`));
  } finally {
    Deno.removeSync(file);
  }
});

itest("cli: run with an invalid config exits 2 without listening", async () => {
  const port = freePort();
  const file = writeTempConfig(`listeners:
  - name: http
    address: "127.0.0.1:${port}"
    protocol: http
routes:
  - id: a
    path: /a
    upstream: missing
`);
  const p = loom("run", "-c", file);
  try {
    const r = await p.exited(30_000);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /routes\[0\]\.upstream/);
    assert.match(r.stderr, /refusing to start/);
    assert.ok(!r.stdout.includes("loom started"), r.stdout);
    // Nothing listens on the port.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
  } finally {
    p.kill();
    Deno.removeSync(file);
  }
});

itest(
  "cli: run refuses an admin API on 0.0.0.0 without auth (exit 2, admin.address:line); validate warns",
  async () => {
    const [port, adminPort] = [freePort(), freePort()];
    const file = writeTempConfig(`listeners:
  - name: http
    address: "127.0.0.1:${port}"
    protocol: http
admin:
  address: "0.0.0.0:${adminPort}"
`);
    const p = loom("run", "-c", file);
    try {
      const r = await p.exited(30_000);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      const at = `${file}:6:12: admin.address: the admin API would listen on "0.0.0.0:${adminPort}"`;
      assert.ok(r.stderr.includes(at), r.stderr);
      assert.match(r.stderr, /set admin\.auth\.token .* or write admin\.insecure: true/);
      assert.match(r.stderr, /refusing to start/);
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: adminPort }));
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));

      const v = await loom("validate", "-c", file).exited(30_000);
      assert.equal(v.code, 0, v.stderr);
      assert.ok(
        v.stderr.includes(`${file}:6:12: warning: admin.address: the admin API would listen`),
        v.stderr,
      );
    } finally {
      p.kill();
      Deno.removeSync(file);
    }
  },
);

itest("cli: run serves, SIGHUP reloads, SIGTERM drains an in-flight request and exits 0", async () => {
  const fast = startUpstream({ echo: "fast" });
  const slow = startUpstream({ echo: "slow", delayMs: 1000 });
  const port = freePort();
  const adminPort = freePort();
  const cfg = (routes: unknown[]) =>
    yamlOf({
      upstreams: [{ name: "fast", endpoints: [fast.address] }, { name: "slow", endpoints: [slow.address] }],
      routes,
      extra: `admin:\n  address: "127.0.0.1:${adminPort}"\ndrain_timeout: 10s\n`,
    }).replace("${PORT}", String(port));
  const file = writeTempConfig(cfg([{ id: "one", path: "/one", upstream: "fast" }]));
  const p = loom("run", "-c", file, "--log-level", "info");
  try {
    await waitFor(
      "loom to serve",
      async () => (await get(`http://127.0.0.1:${port}/one`)).status === 200 || undefined,
      30_000,
    );
    assert.equal((await get(`http://127.0.0.1:${port}/two`)).status, 404);

    Deno.writeTextFileSync(
      file,
      cfg([{ id: "one", path: "/one", upstream: "fast" }, { id: "two", path: "/two", upstream: "slow" }]),
    );
    Deno.kill(p.child.pid, "SIGHUP");
    await waitFor("route /two after SIGHUP", async () => {
      const r = await get(`http://127.0.0.1:${port}/two`);
      return r.status === 200 || undefined;
    }, 10_000);

    const before = slow.seen.length;
    const inflight = get(`http://127.0.0.1:${port}/two`);
    await waitFor("the slow request to reach its upstream", () => slow.seen.length > before || undefined);
    Deno.kill(p.child.pid, "SIGTERM");
    const res = await inflight;
    assert.equal(res.status, 200, "the in-flight request finishes");
    assert.equal(JSON.parse(res.text).tag, "slow");
    const r = await p.exited(15_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /config reloaded/);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
  } finally {
    p.kill();
    await fast.close();
    await slow.close();
    Deno.removeSync(file);
  }
});

itest("cli: `deno task start` serves /echo/hello from the default config (on free ports)", async () => {
  const task = JSON.parse(Deno.readTextFileSync(ROOT + "deno.json")).tasks.start as string;
  const [deno, ...args] = task.split(/\s+/);
  assert.equal(deno, "deno");
  assert.ok(args.includes("config/loom.yaml"), task);
  const port = freePort();
  const adminPort = freePort();
  const echoPort = freePort();
  const yaml = Deno.readTextFileSync(ROOT + "config/loom.yaml");
  const patched = yaml
    .replace('address: ":8080"', `address: "127.0.0.1:${port}"`)
    .replace('address: "127.0.0.1:9091"', `address: "127.0.0.1:${adminPort}"`)
    .replaceAll("127.0.0.1:18080", `127.0.0.1:${echoPort}`);
  assert.notEqual(patched, yaml);
  for (const p of ["8080", "9091", "18080"]) {
    assert.ok(!patched.includes(`:${p}"`), `port ${p} left in config`);
  }
  const file = writeTempConfig(patched);
  const p = spawn(args.map((a) => a === "config/loom.yaml" ? file : a));
  try {
    const r = await waitFor("the echo route", async () => {
      const r = await get(`http://127.0.0.1:${port}/echo/hello?x=1`);
      return r.status === 200 ? r : undefined;
    }, 30_000);
    const body = JSON.parse(r.text);
    assert.equal(body.service, "loom-demo-echo");
    assert.equal(body.path, "/hello");
    assert.equal(body.query, "x=1");
    const users = JSON.parse((await get(`http://127.0.0.1:${port}/users/42`)).text);
    assert.equal(users.path, "/v2/users/42");
    const docs = await fetch(`http://127.0.0.1:${port}/docs`, { redirect: "manual" });
    await docs.body?.cancel();
    assert.equal(docs.status, 301);
    assert.match(docs.headers.get("location") ?? "", /^https:\/\/github\.com\//);
    assert.equal((await get(`http://127.0.0.1:${adminPort}/health`)).status, 200);
    Deno.kill(p.child.pid, "SIGTERM");
    assert.equal((await p.exited(15_000)).code, 0);
  } finally {
    p.kill();
    Deno.removeSync(file);
  }
});
