/**
 * Shared helpers for integration tests: real servers on loopback, a Loom
 * supervisor started in-process from YAML, raw TCP clients.
 */
import { Supervisor } from "../src/runtime/supervisor.ts";
import { setLogLevel } from "../src/observability/logger.ts";
import { type Tool, toolTest } from "./tools.ts";

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
 * Writes a test config: `${PORT}`/`${ADMIN_PORT}` become free ports; access
 * logs are off and the admin API is on loopback unless the YAML says otherwise.
 */
function prepareConfig(yaml: string): { configPath: string; port: number; adminPort: number } {
  const port = freePort();
  const adminPort = freePort();
  let text = yaml.replaceAll("${PORT}", String(port)).replaceAll("${ADMIN_PORT}", String(adminPort));
  if (!/^access_log:/m.test(text)) text += "\naccess_log:\n  enabled: false\n";
  if (!/^admin:/m.test(text)) text += `\nadmin:\n  address: "127.0.0.1:${adminPort}"\n`;
  return { configPath: writeTempConfig(text), port, adminPort };
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

/** A test upstream on Deno.serve. */
export interface TestUpstream {
  port: number;
  address: string;
  /** Requests seen, newest last. */
  seen: { method: string; url: string; headers: Headers }[];
  close(): Promise<void>;
}

/** Starts an upstream on 127.0.0.1 with `handler` (default: 200 "ok:<port>"). */
export function startUpstream(handler?: (req: Request) => Response | Promise<Response>): TestUpstream {
  const seen: TestUpstream["seen"] = [];
  let port = 0;
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req): Response | Promise<Response> => {
      seen.push({ method: req.method, url: req.url, headers: req.headers });
      return handler ? handler(req) : new Response(`ok:${port}`);
    },
  );
  port = server.addr.port;
  return {
    port: server.addr.port,
    address: `127.0.0.1:${server.addr.port}`,
    seen,
    close: () => server.shutdown(),
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Sends raw bytes to 127.0.0.1:port and returns everything received until
 * the server closes or `idleMs` passes without data.
 */
export async function rawExchange(
  port: number,
  data: string | Uint8Array,
  idleMs = 1000,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(typeof data === "string" ? enc.encode(data) : data);
    let out = "";
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        conn.read(buf),
        new Promise<"idle">((r) => timer = setTimeout(() => r("idle"), idleMs)),
      ]).catch(() => null);
      clearTimeout(timer);
      if (n === null || n === "idle") break;
      out += dec.decode(buf.subarray(0, n));
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Status code of the first response in a raw HTTP/1.1 reply ("" if none). */
export function statusOf(raw: string): string {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
  return m ? m[1] : "";
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
 * substitution as startLoom, and waits (bounded) until /ready answers 200.
 * Why: a Loom of its own (e.g. `workers:` isolates, SIGTERM handling) whose
 * stderr can go into assertion messages; a crash or hang there fails one test,
 * not the test runner.
 */
export async function startLoomProcess(yaml: string, readyMs = 15_000): Promise<TestLoomProcess> {
  const { configPath, port, adminPort } = prepareConfig(yaml);
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", main, "run", "-c", configPath, "--log-level", "error"],
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
