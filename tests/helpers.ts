/**
 * Shared helpers for integration tests: time-bounded tests, free ports, the
 * config builder ({@linkcode yamlOf}, {@linkcode writeConfig}), a Loom started
 * in-process or as a child process from YAML, and polling ({@linkcode waitFor}).
 * The fake upstream is tests/upstream.ts, the raw HTTP/1.1 client tests/http1_util.ts.
 */
import { Supervisor } from "../src/runtime/supervisor.ts";
import { setLogLevel } from "../src/observability/logger.ts";
import { type Tool, toolTest } from "./tools.ts";
import type { PluginSpec } from "./wasm_util.ts";

setLogLevel((Deno.env.get("LOOM_TEST_LOG") as "debug" | undefined) ?? "error");

/**
 * Deno.test without the op/resource sanitizers (pools and timers outlive a test by design), bounded in
 * time: a hang (a peer that never answers) fails this test after `timeoutMs` instead of stalling CI.
 * A test that runs external programs lists them in `needs` (see tests/tools.ts).
 */
export function itest(
  name: string,
  fn: () => Promise<void>,
  opts: { ignore?: boolean; timeoutMs?: number; needs?: readonly Tool[] } = {},
): void {
  const { timeoutMs = 120_000, needs = [], ...rest } = opts;
  toolTest(needs, name, async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`test did not finish within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }, { sanitizeOps: false, sanitizeResources: false, ...rest });
}

/** A free TCP port on 127.0.0.1 (bind to 0, close, reuse). */
export function freePort(): number {
  // The kernel may hand the same just-closed port out twice in a row (seen: a listener and the admin
  // API given one port): never return a port this process already handed out.
  for (;;) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const handedOut = new Set<number>();

/** Writes `text` to a temp .yaml file; returns its path. */
export function writeTempConfig(text: string): string {
  const path = Deno.makeTempFileSync({ suffix: ".yaml" });
  Deno.writeTextFileSync(path, text);
  return path;
}

/** A running Loom for a test. */
export interface TestLoom {
  sup: Supervisor;
  configPath: string;
  port: number;
  adminPort: number;
  /** http://127.0.0.1:port + path */
  url(path: string): string;
  admin(path: string): string;
  close(): Promise<void>;
}

/**
 * A test config's text: `${PORT}`/`${ADMIN_PORT}` become the given ports; access
 * logs are off and the admin API is on loopback unless the YAML says otherwise.
 */
function configText(yaml: string, port: number, adminPort: number): string {
  let text = yaml.replaceAll("${PORT}", String(port)).replaceAll("${ADMIN_PORT}", String(adminPort));
  if (!/^access_log:/m.test(text)) text += "\naccess_log:\n  enabled: false\n";
  if (!/^admin:/m.test(text)) text += `\nadmin:\n  address: "127.0.0.1:${adminPort}"\n`;
  return text;
}

/** Writes a test config ({@linkcode configText}) with free ports. */
function prepareConfig(yaml: string): { configPath: string; port: number; adminPort: number } {
  const port = freePort();
  const adminPort = freePort();
  return { configPath: writeTempConfig(configText(yaml, port, adminPort)), port, adminPort };
}

/** Rewrites a running test Loom's config file the way it was written at start (same ports). */
export function writeConfig(
  loom: { configPath: string; port: number; adminPort: number },
  yaml: string,
): void {
  // Write then rename: a watcher never sees a half-written file.
  const tmp = loom.configPath + ".tmp";
  Deno.writeTextFileSync(tmp, configText(yaml, loom.port, loom.adminPort));
  Deno.renameSync(tmp, loom.configPath);
}

/** What {@linkcode yamlOf} writes; lists go in as YAML flow (JSON), as in the config reference. */
export interface ConfigParts {
  /** Keys added to the one listener, `http` on 127.0.0.1:${PORT}. */
  listener?: Record<string, unknown>;
  upstreams?: unknown[];
  routes?: unknown[];
  plugins?: PluginSpec[];
  /** Shorthand: upstream `up` with these endpoints (plus `upstream` keys) and route `all` (`/*`, plus `route` keys). */
  endpoints?: string[];
  upstream?: Record<string, unknown>;
  route?: Record<string, unknown>;
  /** Shorthand of the plugin tests: upstream `app` (and `auth`), and per [id, plugin names] a route `/<id>/*` to app. */
  app?: { address: string };
  auth?: { address: string };
  pluginRoutes?: [string, string[]][];
  /** YAML appended as is. */
  extra?: string;
}

/** The test config builder: a Loom YAML with one http listener on ${PORT} and the given parts. */
export function yamlOf(parts: ConfigParts): string {
  const upstreams = [...parts.upstreams ?? []];
  const routes = [...parts.routes ?? []];
  if (parts.endpoints) {
    upstreams.push({ name: "up", endpoints: parts.endpoints, ...parts.upstream });
    routes.push({ id: "all", path: "/*", upstream: "up", ...parts.route });
  }
  if (parts.app) upstreams.push({ name: "app", endpoints: [parts.app.address] });
  if (parts.auth) upstreams.push({ name: "auth", endpoints: [parts.auth.address] });
  for (const [id, plugins] of parts.pluginRoutes ?? []) {
    routes.push({ id, path: `/${id}/*`, upstream: "app", plugins });
  }
  const listener = Object.entries(parts.listener ?? {}).map(([k, v]) => `\n    ${k}: ${JSON.stringify(v)}`);
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http' + listener.join(""),
    `upstreams: ${JSON.stringify(upstreams)}`,
    `routes: ${JSON.stringify(routes)}`,
    ...(parts.plugins ? [`plugins: ${JSON.stringify(parts.plugins)}`] : []),
    parts.extra ?? "",
  ].join("\n") + "\n";
}

/**
 * Starts Loom in-process. `yaml` may contain `${PORT}` and `${ADMIN_PORT}`,
 * replaced by free ports; unless the YAML sets them, access logs are off.
 */
export async function startLoom(yaml: string, opts: { watch?: boolean } = {}): Promise<TestLoom> {
  const { configPath, port, adminPort } = prepareConfig(yaml);
  const sup = await Supervisor.start({ configPath, watch: opts.watch ?? false });
  return {
    sup,
    configPath,
    port,
    adminPort,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    admin: (p) => `http://127.0.0.1:${adminPort}${p}`,
    close: async () => {
      await sup.shutdown(2000);
      try {
        Deno.removeSync(configPath);
      } catch { /* gone */ }
    },
  };
}

/** A Loom running as a child process (its own process: workers, signals, stderr in assertion messages). */
export interface TestLoomProcess {
  child: Deno.ChildProcess;
  configPath: string;
  port: number;
  adminPort: number;
  url(path: string): string;
  admin(path: string): string;
  /** stderr collected so far (for assertion messages). */
  log(): string;
  close(): Promise<void>;
}

/**
 * Starts `loom run` as a subprocess with the same `${PORT}`/`${ADMIN_PORT}`
 * substitution as startLoom (`env` added to the environment), and waits (bounded) until /ready answers 200.
 * Why: a Loom of its own (e.g. `workers:` isolates, SIGTERM handling) whose
 * stderr can go into assertion messages; a crash or hang there fails one test,
 * not the test runner. `runtimeArgs` go to `deno run` (e.g. `--v8-flags=...`).
 */
export async function startLoomProcess(
  yaml: string,
  readyMs = 15_000,
  env?: Record<string, string>,
  runtimeArgs: string[] = [],
): Promise<TestLoomProcess> {
  const { configPath, port, adminPort } = prepareConfig(yaml);
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    env,
    args: [
      "run",
      "-A",
      "--unstable-net",
      ...runtimeArgs,
      main,
      "run",
      "-c",
      configPath,
      "--log-level",
      "error",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const drained = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) stderr += dec.decode(chunk);
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (exited) throw new Error(`loom exited during start-up:\n${stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/ready`);
      await res.body?.cancel();
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`loom not ready within ${readyMs} ms:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    configPath,
    port,
    adminPort,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    admin: (p) => `http://127.0.0.1:${adminPort}${p}`,
    log: () => stderr,
    close: async () => {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 5000);
        await status;
        clearTimeout(timer);
      }
      await drained;
      try {
        Deno.removeSync(configPath);
      } catch { /* gone */ }
    },
  };
}

/**
 * Polls `check` every `everyMs` until it returns something other than undefined or false, and returns
 * that; a check that throws is tried again. After `timeoutMs` it throws, naming `what` (and the last error).
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = undefined;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A redis-server of a test on a free loopback port (no persistence); needs the "redis-server" tool. */
export async function startRedis(port = freePort()) {
  const child = new Deno.Command("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor("redis-server to accept", async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true as const;
  });
  return {
    port,
    kill: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}
