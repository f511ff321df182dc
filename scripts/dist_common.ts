/**
 * What the distribution scripts (bundle.ts, compile.ts, npm_pack.ts, release.ts) and their tests share:
 * the repository's paths, running a command, the commit a build is stamped with, the files shipped
 * beside Loom, and the smoke test a built artifact must pass (start it, proxy one request through its
 * demo echo upstream, stop it) with its cold start and memory.
 *
 * @module
 */
import { gitHead } from "../src/build.ts";
import { VERSION } from "../src/version.ts";

/**
 * V8's young generation held to 4 MiB semi-spaces: the bundle's RSS under c64 load 135 → 79 MiB with
 * `workers: 1`, CPU per request unchanged on the wire (bench/README.md, Memory). The bundle's shebang,
 * `deno compile`, the tasks in deno.json, the Dockerfile, the systemd unit and the npm launcher pass it.
 */
export const LOOM_V8_FLAGS = "--v8-flags=--max-semi-space-size=4";

/** The repository root (a path ending in "/"). */
export const ROOT: string = new URL("../", import.meta.url).pathname;

export { VERSION };

const dec = new TextDecoder();

/** A finished command. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args` and collects its output; throws when it cannot start, never on a non-zero exit. */
export async function capture(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Ran> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, opts.timeoutMs);
  try {
    const o = await child.output();
    return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `cmd args`; throws with its output when it fails. Returns stdout. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const r = await capture(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** Whether `cmd` is on PATH. */
export function onPath(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const p = `${dir}/${cmd}`;
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** The commit a build is stamped with: LOOM_BUILD_COMMIT, else the checkout's HEAD, else "unknown". */
export function buildCommitOfCheckout(): string {
  return Deno.env.get("LOOM_BUILD_COMMIT") || gitHead(ROOT) || "unknown";
}

/**
 * Files shipped beside Loom, relative to the repository (and to the bundle's directory): the default
 * config and its JSON Schema, and the example Proxy-Wasm plugins (every plugins/<name>/*.wasm and its
 * README; plugins/test/ holds test fixtures and is left out).
 */
export function shippedAssets(): string[] {
  const out = ["config/loom.yaml", "config/loom.schema.json"];
  const dirs = [...Deno.readDirSync(ROOT + "plugins")].filter((d) => d.isDirectory && d.name !== "test")
    .map((d) => d.name).sort();
  for (const dir of dirs) {
    const files = [...Deno.readDirSync(`${ROOT}plugins/${dir}`)].filter((f) =>
      f.isFile && (f.name.endsWith(".wasm") || f.name === "README.md")
    ).map((f) => f.name).sort();
    if (files.some((f) => f.endsWith(".wasm"))) out.push(...files.map((f) => `plugins/${dir}/${f}`));
  }
  // Dashboard assets, should Loom grow an admin UI (none today).
  for (const dir of ["assets", "src/admin/dashboard"]) {
    try {
      if (Deno.statSync(ROOT + dir).isDirectory) out.push(dir);
    } catch { /* none */ }
  }
  return out;
}

/** Copies repository-relative `paths` (files or folders) under `dir`, keeping their relative paths. */
export function copyInto(dir: string, paths: string[]): void {
  for (const p of paths) {
    const from = ROOT + p;
    const to = `${dir}/${p}`;
    Deno.mkdirSync(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    if (Deno.statSync(from).isDirectory) {
      for (const e of Deno.readDirSync(from)) copyInto(dir, [`${p}/${e.name}`]);
    } else Deno.copyFileSync(from, to);
  }
}

/** "1.2 MB" */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Ports of a {@linkcode smokeConfig}. */
export interface SmokePorts {
  port: number;
  admin: number;
  echo: number;
}

/** Fresh ports for a smoke test. */
export function smokePorts(): SmokePorts {
  return { port: freePort(), admin: freePort(), echo: freePort() };
}

/**
 * A config that needs nothing else: a listener, the admin API and Loom's demo echo upstream on loopback,
 * with /echo/* proxied to it; `extra` is appended (workers, plugins, more routes).
 */
export function smokeConfig(p: SmokePorts, extra = ""): string {
  return `listeners:
  - name: http
    address: "127.0.0.1:${p.port}"
    protocol: http
admin:
  address: "127.0.0.1:${p.admin}"
demo:
  echo:
    address: "127.0.0.1:${p.echo}"
upstreams:
  - name: echo
    endpoints: ["127.0.0.1:${p.echo}"]
access_log:
  enabled: false
${extra}`;
}

/** The routes of a smoke config: /echo/* to the demo echo upstream (plus `more` route lines). */
export function smokeRoutes(more = ""): string {
  return `routes:
  - id: echo
    path: /echo/*
    strip_prefix: true
    upstream: echo
${more}`;
}

/** A Loom process started by {@linkcode startLoomProcess}. */
export interface LoomProcess {
  child: Deno.ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Settles with the exit status. */
  status: Promise<Deno.CommandStatus>;
  /** Resident memory of the process, in KiB (Linux /proc), or undefined. */
  rssKiB(): number | undefined;
  /** SIGTERM, then SIGKILL after `ms`; resolves with the exit status. */
  stop(ms?: number): Promise<Deno.CommandStatus>;
}

/** Starts `cmd args` (a Loom `run`), collecting its output. */
export function startLoomProcess(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): LoomProcess {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) text += dec.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const status = child.status.then(async (s) => {
    await drained;
    return s;
  });
  let exited = false;
  status.then(() => exited = true);
  const signal = (sig: Deno.Signal) => {
    if (exited) return;
    try {
      child.kill(sig);
    } catch { /* exited meanwhile */ }
  };
  return {
    child,
    output: () => text,
    status,
    rssKiB: () => {
      try {
        const m = Deno.readTextFileSync(`/proc/${child.pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
        return m ? Number(m[1]) : undefined;
      } catch {
        return undefined;
      }
    },
    stop: async (ms = 30_000) => {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), ms);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Polls `url` until it answers 200 (returns the body and the time since `since`), the process exits
 * (throws with its output) or `timeoutMs` passes (throws).
 */
export async function waitForOk(
  url: string,
  proc: LoomProcess,
  timeoutMs: number,
  since = performance.now(),
  headers: Record<string, string> = {},
): Promise<{ body: string; headers: Headers; ms: number }> {
  let exited = false;
  proc.status.then(() => exited = true);
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    if (exited) throw new Error(`Loom exited before answering ${url}:\n${proc.output()}`);
    try {
      const r = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) });
      const body = await r.text();
      if (r.status === 200) return { body, headers: r.headers, ms: performance.now() - since };
      last = `${r.status} ${body.slice(0, 200)}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no 200 from ${url} within ${timeoutMs} ms (last: ${last}):\n${proc.output()}`);
}

/** What a smoke test measured. */
export interface SmokeResult {
  /** From spawn to the first proxied 200. */
  coldStartMs: number;
  /** Resident memory once serving (KiB), when /proc tells. */
  rssKiB?: number;
}

/**
 * The one-request smoke test of a built Loom: `cmd [...args, "run", "-c", config]` with the
 * {@linkcode smokeConfig} in a temporary directory; one request through the demo echo upstream; SIGTERM,
 * which must end it with exit 0.
 */
export async function smokeTest(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<SmokeResult> {
  const dir = Deno.makeTempDirSync({ prefix: "loom-smoke-" });
  try {
    const ports = smokePorts();
    const config = `${dir}/loom.yaml`;
    Deno.writeTextFileSync(config, smokeConfig(ports, smokeRoutes()));
    const t0 = performance.now();
    const proc = startLoomProcess(cmd, [...args, "run", "-c", config], { cwd: dir, env: opts.env });
    try {
      const r = await waitForOk(
        `http://127.0.0.1:${ports.port}/echo/smoke`,
        proc,
        opts.timeoutMs ?? 30_000,
        t0,
      );
      if (!r.body.includes('"loom-demo-echo"') || !r.body.includes('"/smoke"')) {
        throw new Error(`unexpected answer through Loom: ${r.body.slice(0, 300)}`);
      }
      const rssKiB = proc.rssKiB();
      const st = await proc.stop();
      if (st.code !== 0) throw new Error(`Loom exited ${st.code} on SIGTERM:\n${proc.output()}`);
      return { coldStartMs: r.ms, rssKiB };
    } finally {
      await proc.stop(1_000);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
