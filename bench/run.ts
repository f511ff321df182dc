/**
 * Loom benchmark harness: Loom (1 worker and `workers: auto`) against nginx as
 * a reverse proxy and against the upstream hit directly, measured with wrk on
 * 127.0.0.1. Methodology (pinning, alternation, CPU µs/req, idle wait) follows
 * shared/notes/http1-fast-path.md; see bench/README.md.
 *
 *   deno task bench [--rounds N] [--duration S] [--warmup S] [--quick]
 *                   [--only direct,nginx,loom-1w,loom-auto] [--idle-timeout S] [--no-nginx] [--cache]
 *
 * Everything it starts is killed on exit (also on Ctrl-C) and its temp dir is
 * removed. Results go to stdout and to bench/results/<timestamp>.md.
 */
import {
  busyCores,
  formatFixed,
  formatInt,
  formatLatency,
  markdownTable,
  median,
  parsePidStat,
  parseProcStat,
  parseShellTimes,
  parseVmRssKiB,
  parseWrkOutput,
  type SystemCpu,
  WRK_LUA,
  type WrkResult,
} from "./parse.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const BODY_SIZE = 1024;
const IDLE_MAX_BUSY = 0.15; // cores
const NOISE_MAX = 0.15; // cores used by other processes during a run before it is repeated
const MAX_REPEATS = 1;

// ---------------------------------------------------------------------------
// Options

interface Options {
  rounds: number;
  duration: number;
  warmup: number;
  idleTimeout: number;
  only: Set<string> | null;
  quick: boolean;
  /** Behave as if nginx were not installed (tests the CI fallback). */
  noNginx: boolean;
  /** Cache hits: nginx with proxy_cache, Loom with the cache middleware (both fresh for 10m). */
  cache: boolean;
  /** The realistic scenario (see REALISTIC_ROUTES): 10 routes with parameters, middleware, logs, 2 endpoints. */
  realistic: boolean;
  /** Access logs to a file on both sides (JSON lines; nginx buffered like Loom's batches). */
  accessLog: boolean;
  /** Extra arguments for Loom's `deno run` (e.g. `--v8-flags=--max-semi-space-size=16`). */
  loomFlags: string[];
}

const VARIANT_IDS = ["direct", "nginx", "loom-1w", "loom-auto"];

const USAGE = `Usage: deno task bench [flags]

  --rounds N         alternating rounds per connection count (default 3)
  --duration S       seconds per measured wrk run (default 8)
  --warmup S         seconds of unrecorded c64 load per variant before round 1 (default 3)
  --quick            smoke run: 1 round of 3 s, 1 s warm-up, short idle wait
  --only LIST        comma-separated subset of ${VARIANT_IDS.join(",")}
  --idle-timeout S   longest wait for an idle machine before each run (default 20)
  --no-nginx         act as if nginx were missing (Deno upstream, no nginx proxy)
  --cache            cache hits: nginx proxy_cache vs Loom's cache middleware (the upstream is asked once)
  --realistic        10 routes with parameters, a headers middleware, metrics, access logs to a file,
                     2 upstream endpoints (health-checked by Loom); nginx configured to match
  --access-log       access logs to a file on both sides (JSON lines; implied by --realistic)
  --no-access-log    with --realistic: access logs off on both sides
  --loom-flag F      extra \`deno run\` flag for Loom (repeatable), e.g. --loom-flag=--v8-flags=--max-semi-space-size=16
  -h, --help         this text`;

function parseOptions(argv: string[]): Options | string {
  const o: Options = {
    rounds: 3,
    duration: 8,
    warmup: 3,
    idleTimeout: 20,
    only: null,
    quick: false,
    noNginx: false,
    cache: false,
    realistic: false,
    accessLog: false,
    loomFlags: [],
  };
  let logSet: boolean | null = null;
  const set: Partial<Record<"rounds" | "duration" | "warmup" | "idleTimeout", boolean>> = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].includes("=")
      ? [argv[i].slice(0, argv[i].indexOf("=")), argv[i].slice(argv[i].indexOf("=") + 1)]
      : [argv[i], undefined];
    const num = (name: string, min: number): number | string => {
      const v = Number(inline ?? argv[++i]);
      return Number.isFinite(v) && v >= min ? v : `${name} needs a number >= ${min}`;
    };
    let v: number | string;
    switch (flag) {
      case "--rounds":
        if (typeof (v = num(flag, 1)) === "string") return v;
        o.rounds = Math.floor(v);
        set.rounds = true;
        break;
      case "--duration":
        if (typeof (v = num(flag, 1)) === "string") return v;
        o.duration = Math.floor(v);
        set.duration = true;
        break;
      case "--warmup":
        if (typeof (v = num(flag, 0)) === "string") return v;
        o.warmup = Math.floor(v);
        set.warmup = true;
        break;
      case "--idle-timeout":
        if (typeof (v = num(flag, 0)) === "string") return v;
        o.idleTimeout = v;
        set.idleTimeout = true;
        break;
      case "--only": {
        const list = (inline ?? argv[++i] ?? "").split(",").map((s) => s.trim()).filter(Boolean);
        const bad = list.filter((s) => !VARIANT_IDS.includes(s));
        if (list.length === 0 || bad.length) return `--only takes a subset of ${VARIANT_IDS.join(",")}`;
        o.only = new Set(list);
        break;
      }
      case "--quick":
        o.quick = true;
        break;
      case "--no-nginx":
        o.noNginx = true;
        break;
      case "--cache":
        o.cache = true;
        break;
      case "--realistic":
        o.realistic = true;
        break;
      case "--access-log":
        logSet = true;
        break;
      case "--no-access-log":
        logSet = false;
        break;
      case "--loom-flag": {
        const f = inline ?? argv[++i];
        if (!f) return "--loom-flag needs a value";
        o.loomFlags.push(f);
        break;
      }
      case "-h":
      case "--help":
        return "";
      default:
        return `unknown argument "${argv[i]}"`;
    }
  }
  o.accessLog = logSet ?? o.realistic;
  if (o.quick) {
    if (!set.rounds) o.rounds = 1;
    if (!set.duration) o.duration = 3;
    if (!set.warmup) o.warmup = 1;
    if (!set.idleTimeout) o.idleTimeout = 5;
  }
  return o;
}

// ---------------------------------------------------------------------------
// Small system helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function which(name: string): string | null {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
  for (const d of dirs) {
    if (!d) continue;
    try {
      const p = `${d}/${name}`;
      const st = Deno.statSync(p);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return p;
    } catch { /* not here */ }
  }
  return null;
}

async function output(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return (dec.decode(r.stdout) + dec.decode(r.stderr)).trim();
  } catch {
    return "";
  }
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

let CLK_TCK = 100;

function systemCpu(): SystemCpu {
  return parseProcStat(Deno.readTextFileSync("/proc/stat"));
}

/** The process and all its descendants (nginx master + workers), by scanning /proc. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const t = readText(`/proc/${e.name}/stat`);
    if (!t) continue;
    try {
      const s = parsePidStat(t);
      const list = children.get(s.ppid) ?? [];
      list.push(s.pid);
      children.set(s.ppid, list);
    } catch { /* raced with exit */ }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

function pidAlive(pid: number): boolean {
  const t = readText(`/proc/${pid}/stat`);
  if (!t) return false;
  return !/\) [ZX] /.test(t);
}

/** CPU (seconds), context switches and minor page faults of a process tree, all threads. */
export interface TreeCounters {
  user: number;
  sys: number;
  /** Voluntary context switches (a thread slept: waited in epoll, a futex...). */
  vcs: number;
  /** Involuntary ones (a thread was preempted). */
  ivcs: number;
  minflt: number;
}

/** Reads the TreeCounters of `root` and its descendants from /proc. */
export function treeCounters(root: number): TreeCounters {
  const c: TreeCounters = { user: 0, sys: 0, vcs: 0, ivcs: 0, minflt: 0 };
  for (const pid of processTree(root)) {
    const t = readText(`/proc/${pid}/stat`);
    if (!t) continue; // exited
    const s = parsePidStat(t);
    c.user += s.utime / CLK_TCK;
    c.sys += s.stime / CLK_TCK;
    c.minflt += s.minflt;
    try {
      for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
        const st = readText(`/proc/${pid}/task/${task.name}/status`) ?? "";
        c.vcs += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
        c.ivcs += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
      }
    } catch { /* exited */ }
  }
  return c;
}

/** utime+stime in seconds of a process tree (all threads of every process). */
export function treeCpuSeconds(root: number): number {
  const c = treeCounters(root);
  return c.user + c.sys;
}

/** Sum of VmRSS over a process tree, KiB (shared pages of nginx master/worker count twice). */
export function treeRssKiB(root: number): number {
  let kib = 0;
  for (const pid of processTree(root)) kib += parseVmRssKiB(readText(`/proc/${pid}/status`) ?? "");
  return kib;
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

// ---------------------------------------------------------------------------
// Processes we start; all are killed by cleanup()

export interface Proc {
  name: string;
  pid: number;
  child: Deno.ChildProcess;
  log: string;
  exited: boolean;
}

const procs: Proc[] = [];
let tmpDir = "";

/** The rig's temp dir (removed by cleanup). */
export function rigDir(): string {
  return tmpDir;
}
let taskset: string | null = null;

/** Command prefix pinning to `cpus` ("0", "1") when taskset exists and the CPU exists. */
export function pin(cpus: string | null): string[] {
  if (!cpus || !taskset) return [];
  return [taskset, "-c", cpus];
}

/** Starts argv with stdout+stderr to `log`; `sh -c exec` keeps the pid of the final program. */
export function spawn(name: string, argv: string[], log: string, cwd = REPO): Proc {
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >"$0" 2>&1', log, ...argv],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const p: Proc = { name, pid: child.pid, child, log, exited: false };
  child.status.then(() => p.exited = true, () => p.exited = true);
  procs.push(p);
  return p;
}

export function logTail(p: Proc, lines = 20): string {
  const t = readText(p.log) ?? "";
  return t.trimEnd().split("\n").slice(-lines).join("\n");
}

export async function stop(p: Proc): Promise<void> {
  if (p.exited) return;
  const tree = processTree(p.pid);
  try {
    Deno.kill(p.pid, "SIGTERM");
  } catch { /* gone */ }
  await Promise.race([p.child.status.catch(() => {}), sleep(3000)]);
  for (const pid of tree.reverse()) {
    if (pid === p.pid && p.exited) continue;
    if (!pidAlive(pid)) continue;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await Promise.race([p.child.status.catch(() => {}), sleep(1000)]);
}

let cleaning: Promise<void> | null = null;

export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(procs.map(stop));
    if (tmpDir) {
      try {
        Deno.removeSync(tmpDir, { recursive: true });
      } catch { /* already gone */ }
    }
  })();
  return cleaning;
}

function onSignal(sig: Deno.Signal): void {
  console.error(`\nbench: ${sig}, stopping everything it started...`);
  cleanup().finally(() => Deno.exit(130));
}

// ---------------------------------------------------------------------------
// HTTP readiness / sanity check over a raw socket (no fetch pool left behind)

async function httpGet(
  port: number,
  path: string,
  timeoutMs = 2000,
): Promise<{ status: number; body: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(
      new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
    );
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(16384);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
    let off = 0;
    for (const c of chunks) all.set(c, (off += c.length) - c.length);
    const text = new TextDecoder("latin1").decode(all);
    const headEnd = text.indexOf("\r\n\r\n");
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
    return { status, body: headEnd < 0 ? 0 : all.length - headEnd - 4 };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by timer */ }
  }
}

/** Waits until `port` answers the scenario's probe request with 200 and the 1 KiB body. */
export async function waitReady(p: Proc, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (p.exited) throw new Error(`${p.name} exited during start-up:\n${logTail(p)}`);
    try {
      const r = await httpGet(port, scenario.probePath);
      if (r.status === 200 && r.body === BODY_SIZE) return;
      last = `status ${r.status}, body ${r.body} bytes`;
    } catch (e) {
      last = String(e);
    }
    await sleep(200);
  }
  throw new Error(
    `${p.name} not serving 200 + ${BODY_SIZE} bytes on :${port} within ${timeoutMs} ms (${last})`,
  );
}

// ---------------------------------------------------------------------------
// Scenarios

/**
 * The realistic scenario's routes: Loom path pattern, the equivalent nginx
 * location regex, and the request wrk sends for it (wrk cycles through all ten).
 */
export const REALISTIC_ROUTES: readonly { id: string; loom: string; nginx: string; request: string }[] = [
  { id: "user", loom: "/api/users/{id}", nginx: "^/api/users/[^/]+$", request: "/api/users/42" },
  {
    id: "user-orders",
    loom: "/api/users/{id}/orders",
    nginx: "^/api/users/[^/]+/orders$",
    request: "/api/users/42/orders",
  },
  {
    id: "user-order",
    loom: "/api/users/{id}/orders/{order}",
    nginx: "^/api/users/[^/]+/orders/[^/]+$",
    request: "/api/users/42/orders/1001",
  },
  {
    id: "product",
    loom: "/api/products/{sku}",
    nginx: "^/api/products/[^/]+$",
    request: "/api/products/AB-123",
  },
  {
    id: "product-reviews",
    loom: "/api/products/{sku}/reviews",
    nginx: "^/api/products/[^/]+/reviews$",
    request: "/api/products/AB-123/reviews?page=2",
  },
  { id: "search", loom: "/api/search", nginx: "^/api/search$", request: "/api/search?q=shoes&sort=price" },
  {
    id: "cart-item",
    loom: "/api/carts/{cart}/items/{item}",
    nginx: "^/api/carts/[^/]+/items/[^/]+$",
    request: "/api/carts/c-77/items/5",
  },
  {
    id: "session",
    loom: "/api/sessions/{sid}",
    nginx: "^/api/sessions/[^/]+$",
    request: "/api/sessions/s9f3a",
  },
  {
    id: "inventory",
    loom: "/v2/inventory/{warehouse}/{sku}",
    nginx: "^/v2/inventory/[^/]+/[^/]+$",
    request: "/v2/inventory/berlin/AB-123",
  },
  { id: "static", loom: "/static/*", nginx: "^/static/", request: "/static/css/site.css" },
];

/** What the servers and wrk are configured for (set by main, or by bench/profile.ts through configureRig). */
export interface Scenario {
  realistic: boolean;
  accessLog: boolean;
  cache: boolean;
  /** Extra `deno run` flags for Loom. */
  loomFlags: string[];
  /** The path of the start-up sanity check. */
  probePath: string;
}

let scenario: Scenario = {
  realistic: false,
  accessLog: false,
  cache: false,
  loomFlags: [],
  probePath: "/file",
};

/** nginx's JSON access-log format, the fields of Loom's default line. */
const NGINX_JSON_LOG = `log_format loomjson escape=json '{"time":"$time_iso8601","request_id":"$request_id",'
    '"route":"","method":"$request_method","path":"$uri","query":"$args","status":$status,'
    '"bytes_in":$request_length,"bytes_out":$bytes_sent,"duration_ms":$request_time,'
    '"upstream":"$upstream_addr","client_ip":"$remote_addr","protocol":"$server_protocol",'
    '"user_agent":"$http_user_agent"}';`;

function nginxCommonHttp(dir: string, accessLog = false): string {
  // Buffered like Loom's batches (64 KiB or 100 ms, whichever first): one write per batch on both sides.
  const log = accessLog
    ? `  ${NGINX_JSON_LOG}\n  access_log ${dir}/access.log loomjson buffer=64k flush=100ms;`
    : "  access_log off;";
  return `${log}
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;
}

function nginxMain(dir: string): string {
  return `worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
`;
}

// ---------------------------------------------------------------------------
// Servers

/** The upstream: nginx serving the 1 KiB file on each port (realistic: for every path, and /health). */
export async function startNginxUpstream(nginx: string, ports: number[]): Promise<Proc> {
  const dir = `${tmpDir}/upstream-nginx`;
  Deno.mkdirSync(`${dir}/www`, { recursive: true });
  Deno.writeFileSync(`${dir}/www/file`, new Uint8Array(BODY_SIZE).fill(0x61));
  const listen = ports.map((p) => `    listen 127.0.0.1:${p};`).join("\n");
  const locations = scenario.realistic
    ? `    location = /health { return 200 "UP\\n"; }
    location / { try_files /file =404; }`
    : "";
  const conf = `${nginxMain(dir)}http {
${nginxCommonHttp(dir)}
  default_type application/octet-stream;
  server {
${listen}
    root ${dir}/www;
${locations}
  }
}
`;
  Deno.writeTextFileSync(`${dir}/nginx.conf`, conf);
  const p = spawn(
    "upstream (nginx)",
    [...pin("0"), nginx, "-p", `${dir}/`, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`],
    `${dir}/stdout.log`,
  );
  for (const port of ports) await waitReady(p, port, 10_000);
  return p;
}

async function startDenoUpstream(ports: number[]): Promise<Proc> {
  const dir = `${tmpDir}/upstream-deno`;
  Deno.mkdirSync(dir, { recursive: true });
  const script = `const body = new Uint8Array(${BODY_SIZE}).fill(0x61);
for (const port of ${JSON.stringify(ports)}) {
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, () =>
    new Response(body, { headers: { "content-type": "application/octet-stream" } }));
}
`;
  Deno.writeTextFileSync(`${dir}/upstream.ts`, script);
  const p = spawn(
    "upstream (Deno.serve)",
    [...pin("0"), Deno.execPath(), "run", "--allow-net", `${dir}/upstream.ts`],
    `${dir}/stdout.log`,
    dir,
  );
  for (const port of ports) await waitReady(p, port, 30_000);
  return p;
}

/** nginx as the reverse proxy (1 worker), configured like Loom for the scenario. */
export async function startNginxProxy(nginx: string, port: number, upstreamPorts: number[]): Promise<Proc> {
  const dir = `${tmpDir}/proxy-nginx`;
  Deno.mkdirSync(dir, { recursive: true });
  const cache = scenario.cache;
  // --cache: every hit from proxy_cache (a 10m zone; the upstream answer has no Cache-Control).
  const cachePath = cache
    ? `  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=loom:10m max_size=100m inactive=10m;\n`
    : "";
  const cacheUse = cache
    ? `      proxy_cache loom;\n      proxy_cache_valid 200 10m;\n      proxy_cache_lock on;\n`
    : "";
  const servers = upstreamPorts.map((p) => `    server 127.0.0.1:${p};`).join("\n");
  let locations: string;
  if (scenario.realistic) {
    // What Loom does on every proxied request: forwarding headers and a request id, the route's
    // response header (the headers middleware), nothing else.
    const proxy = `proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-ID $request_id;
      add_header X-Served-By loom-bench always;`;
    locations = REALISTIC_ROUTES.map((r) => `    location ~ ${r.nginx} {\n      ${proxy}\n    }`).join("\n") +
      `\n    location / { return 404; }`;
  } else {
    locations = `    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${cacheUse}    }`;
  }
  const conf = `${nginxMain(dir)}http {
${nginxCommonHttp(dir, scenario.accessLog)}
${cachePath}
  upstream up {
${servers}
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
${locations}
  }
}
`;
  Deno.writeTextFileSync(`${dir}/nginx.conf`, conf);
  const p = spawn(
    "nginx proxy",
    [...pin("1"), nginx, "-p", `${dir}/`, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`],
    `${dir}/stdout.log`,
  );
  await waitReady(p, port, 10_000);
  return p;
}

/** Loom's YAML for the scenario. */
export function loomConfig(
  workers: number | "auto",
  port: number,
  adminPort: number,
  upstreamPorts: number[],
  dir: string,
): string {
  const endpoints = upstreamPorts.map((p) => `      - "127.0.0.1:${p}"`).join("\n");
  const accessLog = scenario.accessLog
    ? `access_log:\n  enabled: true\n  path: ${dir}/access.log`
    : `access_log:\n  enabled: false`;
  let routes: string;
  let health = "";
  if (scenario.realistic) {
    health = `    load_balancer: round_robin
    health_check: { path: /health, interval: 1s, timeout: 1s }\n`;
    routes = REALISTIC_ROUTES.map((r) =>
      `  - id: ${r.id}
    path: ${r.loom}
    methods: [GET, HEAD]
    upstream: up
    middleware: [{headers: {response: {set: {x-served-by: loom-bench}}}}]`
    ).join("\n");
  } else {
    routes = `  - id: all
    path: /*
    upstream: up
${scenario.cache ? "    middleware: [{cache: {default_ttl: 10m}}]" : ""}`;
  }
  return `# generated by bench/run.ts
workers: ${workers}
drain_timeout: 1s
listeners:
  - name: http
    address: "127.0.0.1:${port}"
    protocol: http
admin:
  address: "127.0.0.1:${adminPort}"
${accessLog}
upstreams:
  - name: up
    endpoints:
${endpoints}
${health}routes:
${routes}
`;
}

/**
 * The V8 flags Loom is started with by `deno task start` (deno.json), so the
 * bench measures Loom as it is run: the young generation's size (see
 * bench/README.md, Memory).
 */
export function startTaskV8Flags(): string[] {
  try {
    const start = JSON.parse(Deno.readTextFileSync(`${REPO}/deno.json`)).tasks?.start ?? "";
    return (start as string).split(/\s+/).filter((a) => a.startsWith("--v8-flags="));
  } catch {
    return [];
  }
}

/** Loom pinned to `cpus` (null: unpinned). */
export async function startLoom(
  id: string,
  workers: number | "auto",
  cpus: string | null,
  port: number,
  upstreamPorts: number[],
  wrapper: string[] = [],
  denoFlags: string[] = [],
  cwd = REPO,
): Promise<Proc> {
  const dir = `${tmpDir}/${id}`;
  Deno.mkdirSync(dir, { recursive: true });
  Deno.writeTextFileSync(`${dir}/loom.yaml`, loomConfig(workers, port, freePort(), upstreamPorts, dir));
  const p = spawn(
    `Loom (${id})`,
    [
      ...pin(cpus),
      ...wrapper,
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      ...startTaskV8Flags(),
      ...scenario.loomFlags,
      ...denoFlags,
      "src/cli/main.ts",
      "run",
      "-c",
      `${dir}/loom.yaml`,
      "--log-level",
      "error",
    ],
    `${dir}/loom.log`,
    cwd,
  );
  await waitReady(p, port, 60_000);
  return p;
}

// ---------------------------------------------------------------------------
// Measurement

interface Variant {
  id: string;
  label: string;
  port: number;
  /** Pinning as documented in the table. */
  pinning: string;
  /** Proxy process (null for the direct baseline). */
  proc: Proc | null;
  failed?: string;
}

interface Run {
  round: number;
  variant: string;
  conns: number;
  wrk: WrkResult;
  /** Proxy utime+stime per request (µs); NaN for direct. */
  proxyUsPerReq: number;
  /** Cores used by the proxy during the run. */
  proxyCores: number;
  upstreamUsPerReq: number;
  upstreamCores: number;
  wrkCores: number;
  /** System busy cores minus proxy, upstream and wrk: other load on the machine. */
  otherCores: number;
  /** Busy cores in the last idle-wait second before the run. */
  idleBefore: number;
  idleOk: boolean;
  rssKiB: number;
  attempts: number;
}

let wrkLuaPath = "";
let wrkBin = "";

/** WRK_LUA, plus (realistic) a `request` function cycling through the routes' requests. */
function wrkLua(): string {
  if (!scenario.realistic) return WRK_LUA;
  const paths = REALISTIC_ROUTES.map((r) => `"${r.request}"`).join(", ");
  return `${WRK_LUA}
local paths = { ${paths} }
local reqs = {}
local i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
`;
}

/**
 * Sets up what the servers and wrk need (temp dir, pinning, wrk script) for `s`;
 * returns the temp dir. main() calls it; so does bench/profile.ts.
 */
export function configureRig(s: Scenario, tools: { wrk: string; taskset: string | null }): string {
  scenario = s;
  wrkBin = tools.wrk;
  taskset = navigator.hardwareConcurrency < 2 ? null : tools.taskset;
  tmpDir = Deno.makeTempDirSync({ prefix: "loom-bench-" });
  Deno.chmodSync(tmpDir, 0o755); // nginx workers run as "nobody" when started by root
  wrkLuaPath = `${tmpDir}/report.lua`;
  Deno.writeTextFileSync(wrkLuaPath, wrkLua());
  return tmpDir;
}

/** Options of the rig's other tools (bench/profile.ts, bench/ab_wrk.ts). */
export interface RigOptions {
  conns: number[];
  duration: number;
  realistic: boolean;
  accessLog: boolean;
  loomFlags: string[];
}

/** Takes one of the flags the rig's tools share; false when `flag` is not one of them. */
export function rigFlag(o: RigOptions, flag: string, value: () => string): boolean {
  switch (flag) {
    case "--conns":
      o.conns = value().split(",").map(Number);
      return true;
    case "--duration":
      o.duration = Number(value());
      return true;
    case "--realistic":
      o.realistic = o.accessLog = true;
      return true;
    case "--access-log":
      o.accessLog = true;
      return true;
    case "--no-access-log":
      o.accessLog = false;
      return true;
    case "--loom-flag":
      o.loomFlags.push(value());
      return true;
    default:
      return false;
  }
}

/**
 * The rig for a tool: wrk and nginx found, configureRig for `o`, the nginx
 * upstream started on its port(s) (two with `realistic`).
 */
export async function startRig(
  o: RigOptions,
): Promise<{ nginx: string; tmp: string; ups: number[]; upstream: Proc }> {
  const wrk = which("wrk"), nginx = which("nginx");
  if (wrk === null || nginx === null) throw new Error("wrk and nginx are required");
  const tmp = configureRig({
    realistic: o.realistic,
    accessLog: o.accessLog,
    cache: false,
    loomFlags: o.loomFlags,
    probePath: o.realistic ? REALISTIC_ROUTES[0].request : "/file",
  }, { wrk, taskset: which("taskset") });
  const ups = o.realistic ? [freePort(), freePort()] : [freePort()];
  return { nginx, tmp, ups, upstream: await startNginxUpstream(nginx, ups) };
}

/** wrk pinned to CPU 0 against `port` for `seconds` (the output, with the shell's `times`). */
export async function runWrk(
  port: number,
  conns: number,
  seconds: number,
): Promise<{ text: string; code: number }> {
  const cmd = [...pin("0"), wrkBin, "-t1", `-c${conns}`, `-d${seconds}s`, "--latency", "-s", wrkLuaPath]
    .map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const child = new Deno.Command("sh", {
    args: ["-c", `${cmd} http://127.0.0.1:${port}${scenario.probePath}; code=$?; times; exit $code`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const p: Proc = { name: "wrk", pid: child.pid, child, log: "", exited: false };
  procs.push(p);
  const killer = setTimeout(() => stop(p), (seconds + 20) * 1000);
  try {
    const r = await child.output();
    p.exited = true;
    const dec = new TextDecoder();
    return { text: dec.decode(r.stdout) + dec.decode(r.stderr), code: r.code };
  } finally {
    clearTimeout(killer);
    procs.splice(procs.indexOf(p), 1);
  }
}

/** Waits (bounded) until the machine is idle: < 0.15 busy cores over 1 s. */
export async function waitIdle(timeoutS: number): Promise<{ busy: number; ok: boolean }> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const a = systemCpu();
    await sleep(1000);
    const busy = busyCores(a, systemCpu());
    if (busy < IDLE_MAX_BUSY) return { busy, ok: true };
    if (Date.now() >= deadline) return { busy, ok: false };
  }
}

async function measureOnce(
  v: Variant,
  upstream: Proc,
  conns: number,
  round: number,
  opts: Options,
): Promise<Run> {
  const idle = await waitIdle(opts.idleTimeout);
  const sysA = systemCpu();
  const pA = v.proc ? treeCpuSeconds(v.proc.pid) : 0;
  const uA = treeCpuSeconds(upstream.pid);
  const t0 = performance.now();
  const { text, code } = await runWrk(v.port, conns, opts.duration);
  const wall = (performance.now() - t0) / 1000;
  const sysB = systemCpu();
  const proxyS = v.proc ? treeCpuSeconds(v.proc.pid) - pA : NaN;
  const upS = treeCpuSeconds(upstream.pid) - uA;
  let wrk: WrkResult;
  try {
    wrk = parseWrkOutput(text);
  } catch (e) {
    throw new Error(`wrk failed (exit ${code}) against ${v.label}: ${(e as Error).message}\n${text}`);
  }
  const times = parseShellTimes(text);
  const wrkS = times ? times.userS + times.sysS : NaN;
  const sysBusyS = (sysB.busy - sysA.busy) / CLK_TCK;
  const ours = (Number.isFinite(proxyS) ? proxyS : 0) + upS + (Number.isFinite(wrkS) ? wrkS : 0);
  const reqs = Math.max(wrk.requests, 1);
  return {
    round,
    variant: v.id,
    conns,
    wrk,
    proxyUsPerReq: (proxyS * 1e6) / reqs,
    proxyCores: proxyS / wall,
    upstreamUsPerReq: (upS * 1e6) / reqs,
    upstreamCores: upS / wall,
    wrkCores: wrkS / wall,
    otherCores: Math.max(0, (sysBusyS - ours) / wall),
    idleBefore: idle.busy,
    idleOk: idle.ok,
    rssKiB: conns === 64 && v.proc ? treeRssKiB(v.proc.pid) : conns === 64 ? treeRssKiB(upstream.pid) : NaN,
    attempts: 1,
  };
}

/** One recorded run; repeated once if other processes used more than 0.15 cores during it. */
async function measure(
  v: Variant,
  upstream: Proc,
  conns: number,
  round: number,
  opts: Options,
): Promise<Run> {
  let run = await measureOnce(v, upstream, conns, round, opts);
  for (let i = 0; i < MAX_REPEATS && run.otherCores > NOISE_MAX; i++) {
    console.log(`    other processes used ${run.otherCores.toFixed(2)} cores; repeating`);
    const again = await measureOnce(v, upstream, conns, round, opts);
    again.attempts = run.attempts + 1;
    run = again;
  }
  return run;
}

function describeRun(r: Run): string {
  const e = r.wrk.errors;
  const errs = r.wrk.totalErrors
    ? ` ERRORS ${r.wrk.totalErrors} (connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, status>=400 ${e.status})`
    : "";
  const cpu = Number.isFinite(r.proxyUsPerReq)
    ? `, proxy ${r.proxyUsPerReq.toFixed(1)} µs/req (${r.proxyCores.toFixed(2)} cores)`
    : `, upstream ${r.upstreamUsPerReq.toFixed(1)} µs/req`;
  const noise = r.otherCores > NOISE_MAX ? `, other load ${r.otherCores.toFixed(2)} cores` : "";
  const idle = r.idleOk ? "" : `, not idle before (${r.idleBefore.toFixed(2)} cores)`;
  return `${formatInt(r.wrk.rps)} req/s, p50 ${formatLatency(r.wrk.p50Us)}, p99 ${
    formatLatency(r.wrk.p99Us)
  }${cpu}${noise}${idle}${errs}`;
}

// ---------------------------------------------------------------------------
// Report

function summarise(variants: Variant[], runs: Run[], hasNginx: boolean): string {
  const rows: string[][] = [];
  for (const conns of [64, 1]) {
    for (const v of variants) {
      const rs = runs.filter((r) => r.variant === v.id && r.conns === conns);
      if (rs.length === 0) continue;
      const rss = median(runs.filter((r) => r.variant === v.id && r.conns === 64).map((r) => r.rssKiB));
      rows.push([
        v.label,
        `c${conns}`,
        formatInt(median(rs.map((r) => r.wrk.rps))),
        formatLatency(median(rs.map((r) => r.wrk.p50Us))),
        formatLatency(median(rs.map((r) => r.wrk.p99Us))),
        String(rs.reduce((a, r) => a + r.wrk.totalErrors, 0)),
        v.proc ? formatFixed(median(rs.map((r) => r.proxyUsPerReq)), 1) : "—",
        v.proc ? formatFixed(median(rs.map((r) => r.proxyCores)), 2) : "—",
        formatFixed(median(rs.map((r) => r.upstreamUsPerReq)), 1),
        `${formatFixed(rss / 1024, 0)} MiB`,
      ]);
    }
  }
  let md = markdownTable(
    [
      "variant",
      "conns",
      "req/s",
      "p50",
      "p99",
      "errors (sum)",
      "proxy CPU µs/req",
      "proxy cores",
      "upstream CPU µs/req",
      "RSS",
    ],
    rows,
  );

  const loomIds = variants.filter((v) => v.id.startsWith("loom")).map((v) => v.id);
  if (hasNginx && loomIds.length) {
    const ratio = (id: string, conns: number, f: (r: Run) => number): number => {
      const per: number[] = [];
      for (const r of runs.filter((r) => r.variant === id && r.conns === conns)) {
        const n = runs.find((x) => x.variant === "nginx" && x.conns === conns && x.round === r.round);
        if (n) per.push(f(r) / f(n));
      }
      return median(per);
    };
    const label = (id: string) => variants.find((v) => v.id === id)!.label;
    const rrows: string[][] = [];
    for (
      const [name, conns, f] of [
        ["req/s c64", 64, (r: Run) => r.wrk.rps],
        ["proxy CPU µs/req c64", 64, (r: Run) => r.proxyUsPerReq],
        ["req/s c1", 1, (r: Run) => r.wrk.rps],
        ["proxy CPU µs/req c1", 1, (r: Run) => r.proxyUsPerReq],
      ] as [string, number, (r: Run) => number][]
    ) {
      rrows.push([name, ...loomIds.map((id) => formatFixed(ratio(id, conns, f), 2))]);
    }
    md +=
      "\n\nRatios Loom / nginx proxy (median of the per-round ratios; req/s: higher is better, CPU: lower is better):\n\n";
    md += markdownTable(["", ...loomIds.map(label)], rrows);
  } else if (!hasNginx) {
    md +=
      "\n\n(No Loom/nginx ratios: the nginx proxy was not measured, because nginx is missing or not selected.)";
  }
  return md;
}

function allRunsTable(variants: Variant[], runs: Run[]): string {
  const label = (id: string) => variants.find((v) => v.id === id)!.label;
  return markdownTable(
    [
      "round",
      "variant",
      "conns",
      "req/s",
      "p50",
      "p99",
      "errors",
      "proxy µs/req",
      "proxy cores",
      "upstream cores",
      "wrk cores",
      "other cores",
      "idle before",
      "attempts",
    ],
    runs.map((r) => [
      String(r.round),
      label(r.variant),
      `c${r.conns}`,
      formatInt(r.wrk.rps),
      formatLatency(r.wrk.p50Us),
      formatLatency(r.wrk.p99Us),
      String(r.wrk.totalErrors),
      formatFixed(r.proxyUsPerReq, 1),
      formatFixed(r.proxyCores, 2),
      formatFixed(r.upstreamCores, 2),
      formatFixed(r.wrkCores, 2),
      formatFixed(r.otherCores, 2),
      `${formatFixed(r.idleBefore, 2)}${r.idleOk ? "" : " (timed out)"}`,
      String(r.attempts),
    ]),
  );
}

async function machineDescription(nginx: string | null, noNginx: boolean, git: string): Promise<string[]> {
  const cpuinfo = readText("/proc/cpuinfo") ?? "";
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  const nproc = (await output("nproc", [])) || String(navigator.hardwareConcurrency);
  const mem = /^MemTotal:\s+(\d+)/m.exec(readText("/proc/meminfo") ?? "")?.[1];
  return [
    `- nproc: ${nproc}; CPU: ${model}; memory: ${mem ? Math.round(Number(mem) / 1024) + " MiB" : "?"}`,
    `- kernel: ${Deno.osRelease()} (${Deno.build.target})`,
    `- deno: ${Deno.version.deno} (V8 ${Deno.version.v8})`,
    `- nginx: ${
      nginx
        ? (await output(nginx, ["-v"])).replace(/^nginx version:\s*/, "")
        : noNginx
        ? "not used (--no-nginx)"
        : "not installed"
    }`,
    `- wrk: ${(await output(wrkBin, ["--version"])).split("\n")[0].replace(/\s+Copyright.*$/, "")}`,
    `- Loom tree when the proxies started: ${git || "unknown"} (git describe --always --dirty)`,
  ];
}

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  if (typeof opts === "string") {
    if (opts) console.error(`bench: ${opts}\n`);
    console.log(USAGE);
    return opts ? 2 : 0;
  }
  if (Deno.build.os !== "linux") {
    console.log("bench: Linux only (it reads /proc for CPU accounting); skipping.");
    return 0;
  }
  const wrk = which("wrk");
  if (!wrk) {
    console.log(
      "bench: wrk is required but not installed; skipping.\n" +
        "  Debian/Ubuntu: sudo apt-get install wrk    macOS: brew install wrk\n" +
        "  from source:   https://github.com/wg/wrk (make; put wrk on PATH)",
    );
    return 0;
  }
  const nginx = opts.noNginx ? null : which("nginx");
  const tasksetBin = which("taskset");
  const ncpu = navigator.hardwareConcurrency;
  if (!tasksetBin) console.log("bench: taskset not found (util-linux); running everything unpinned.");
  else if (ncpu < 2) console.log("bench: only 1 CPU; running everything unpinned.");
  if (!nginx) {
    console.log(
      `bench: nginx ${
        opts.noNginx ? "disabled by --no-nginx" : "not installed"
      }: skipping the nginx reverse-proxy variant (and the Loom/nginx ratios);\n` +
        "  the upstream is a Deno.serve server instead of nginx. Install nginx (apt-get install nginx) for the full comparison.",
    );
  }
  CLK_TCK = Number(await output("getconf", ["CLK_TCK"])) || 100;

  // Loom runs the working tree as it is now; record that, not the tree at the end of the run.
  const git = await output("git", ["-C", REPO, "describe", "--always", "--dirty"]);
  configureRig({
    realistic: opts.realistic,
    accessLog: opts.accessLog,
    cache: opts.cache,
    loomFlags: opts.loomFlags,
    probePath: opts.realistic ? REALISTIC_ROUTES[0].request : "/file",
  }, { wrk, taskset: tasksetBin });

  const want = (id: string) => !opts.only || opts.only.has(id);
  const started = new Date();
  const variants: Variant[] = [];
  // The realistic scenario balances over two endpoints (two ports of the one upstream process).
  const upstreamPorts = opts.realistic ? [freePort(), freePort()] : [freePort()];
  const upstreamPort = upstreamPorts[0];
  console.log(`bench: temp dir ${tmpDir}`);
  const upstream = nginx
    ? await startNginxUpstream(nginx, upstreamPorts)
    : await startDenoUpstream(upstreamPorts);
  const upstreamDesc = nginx
    ? `nginx static 1 KiB file, 1 worker, pinned to CPU 0`
    : `Deno.serve returning 1 KiB, pinned to CPU 0 (no nginx)`;
  console.log(`bench: upstream ${upstreamDesc} on 127.0.0.1:${upstreamPorts.join(", ")}`);

  const add = async (
    id: string,
    label: string,
    pinning: string,
    start: (port: number) => Promise<Proc | null>,
  ) => {
    if (!want(id)) return;
    const port = id === "direct" ? upstreamPort : freePort();
    try {
      const proc = await start(port);
      variants.push({ id, label, port, pinning, proc });
      console.log(`bench: ${label} ready on 127.0.0.1:${port}${proc ? ` (pid ${proc.pid})` : ""}`);
    } catch (e) {
      console.log(`bench: ${label} FAILED to start, skipped: ${(e as Error).message}`);
    }
  };
  await add("direct", "upstream direct (baseline)", "—", () => Promise.resolve(null));
  if (nginx) {
    await add(
      "nginx",
      "nginx proxy, 1 worker",
      "CPU 1",
      (p) => startNginxProxy(nginx, p, upstreamPorts),
    );
  }
  await add(
    "loom-1w",
    "Loom workers: 1",
    "CPU 1",
    (p) => startLoom("loom-1w", 1, "1", p, upstreamPorts),
  );
  await add(
    "loom-auto",
    `Loom workers: auto (${ncpu})`,
    "unpinned",
    (p) => startLoom("loom-auto", "auto", null, p, upstreamPorts),
  );
  if (variants.length === 0) throw new Error("no variant started");

  const perRun = opts.duration + 1.5;
  const estimate = variants.length * (opts.warmup + 1) +
    opts.rounds * 2 * variants.length * perRun;
  console.log(
    `bench: ${variants.length} variants × ${opts.rounds} rounds × (c64, c1) × ${opts.duration}s; ` +
      `at least ~${Math.ceil(estimate / 60)} min (more while the machine is busy)`,
  );

  // Warm-up (not recorded).
  for (const v of variants) {
    if (opts.warmup <= 0) break;
    console.log(`  warm-up ${v.label}: ${opts.warmup}s at c64`);
    await runWrk(v.port, 64, opts.warmup);
  }

  const runs: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const conns of [64, 1]) {
      for (const v of variants) {
        if (v.failed) continue;
        if (v.proc?.exited) {
          v.failed = `process exited:\n${logTail(v.proc)}`;
          console.log(`  ${v.label}: ${v.failed}`);
          continue;
        }
        const r = await measure(v, upstream, conns, round, opts);
        runs.push(r);
        console.log(`  round ${round} c${conns} ${v.label}: ${describeRun(r)}`);
      }
    }
  }

  // Problems worth reporting: errors, logged errors, dead processes.
  const problems: string[] = [];
  for (const v of variants) {
    const rs = runs.filter((r) => r.variant === v.id);
    const errs = rs.filter((r) => r.wrk.totalErrors > 0);
    for (const r of errs) {
      const e = r.wrk.errors;
      problems.push(
        `${v.label}, round ${r.round} c${r.conns}: ${r.wrk.totalErrors} errors of ${r.wrk.requests} requests ` +
          `(connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, status>=400 ${e.status})`,
      );
    }
    if (v.failed) problems.push(`${v.label}: ${v.failed}`);
    if (v.proc) {
      const log = (readText(v.proc.log) ?? "") +
        (v.id === "nginx" ? readText(`${tmpDir}/proxy-nginx/error.log`) ?? "" : "");
      const lines = log.split("\n").filter((l) => l.trim());
      if (lines.length) {
        problems.push(
          `${v.label} logged ${lines.length} line(s) (first 5):\n\n` +
            lines.slice(0, 5).map((l) => `    ${l.slice(0, 300)}`).join("\n"),
        );
      }
    }
  }
  const noisy = runs.filter((r) => r.otherCores > NOISE_MAX || !r.idleOk);
  if (noisy.length) {
    problems.push(
      `${noisy.length} of ${runs.length} runs had other load on the machine (> ${NOISE_MAX} cores during the run ` +
        `after ${MAX_REPEATS} repeat, or no idle second before it within ${opts.idleTimeout}s); see "All runs".`,
    );
  }

  const summary = summarise(variants, runs, variants.some((v) => v.id === "nginx"));
  const machine = await machineDescription(nginx, opts.noNginx, git);
  const stamp = started.toISOString().replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  const setup = [
    opts.realistic
      ? `- Upstream: ${upstreamDesc}, on two ports (two endpoints). --realistic: ${REALISTIC_ROUTES.length} routes ` +
        "with parameters, wrk cycling through one request per route (`/api/users/42`, ...); Loom: a `headers` middleware " +
        "setting a response header on every route, metrics (always on), round robin over the two endpoints with " +
        "active health checks every 1 s; nginx: one regex `location` per route, `add_header`, X-Forwarded-* and " +
        "X-Request-ID like Loom's, `upstream` with the two servers and `keepalive 128` (nginx OSS has no active checks)."
      : `- Upstream: ${upstreamDesc}; requests are \`GET /file\`.`,
    ...(opts.accessLog
      ? [
        "- Access logs on both sides, to a file in the temp dir: Loom's JSON lines (batched: 64 KiB or 100 ms); " +
        "nginx `log_format escape=json` with the same fields, `access_log ... buffer=64k flush=100ms`.",
      ]
      : ["- Access logs off on both sides."]),
    ...(opts.loomFlags.length ? [`- Loom's extra deno flags: \`${opts.loomFlags.join(" ")}\`.`] : []),
    ...(opts.cache
      ? [
        "- --cache: cache hits. nginx: `proxy_cache` (zone on disk in the temp dir, `proxy_cache_valid 200 10m`, " +
        "`proxy_cache_lock on`); Loom: the route's `cache: {default_ttl: 10m}` (memory store). The upstream sees one request per proxy (worker).",
      ]
      : []),
    `- Load: \`taskset -c 0 wrk -t1 -c64|-c1 -d${opts.duration}s --latency\` over 127.0.0.1; ` +
    `${opts.rounds} round(s), each c64 then c1, variants alternated in the order ${
      variants.map((v) => v.id).join(", ")
    }; ${opts.warmup}s unrecorded c64 warm-up per variant.`,
    `- Pinning: ${variants.map((v) => `${v.label}: ${v.pinning}`).join("; ")}.`,
    `- Before each run: wait for < ${IDLE_MAX_BUSY} busy cores over 1 s (at most ${opts.idleTimeout}s). ` +
    `A run during which other processes used > ${NOISE_MAX} cores is repeated once.`,
    `- Proxy CPU µs/req: utime+stime of the proxy process tree (all threads; nginx master+worker) over the run ÷ wrk's requests. RSS: VmRSS after the c64 run (for the direct row: the upstream's).`,
    `- Errors: wrk socket errors (connect/read/write/timeout) + responses with status >= 400, summed over rounds.`,
  ];
  const md = [
    `# Loom benchmark ${started.toISOString()}`,
    "",
    "## Machine",
    "",
    ...machine,
    "",
    "## Setup",
    "",
    ...setup,
    "",
    "## Medians",
    "",
    summary,
    "",
    "## All runs",
    "",
    allRunsTable(variants, runs),
    "",
    "## Problems seen",
    "",
    problems.length ? problems.map((p) => `- ${p}`).join("\n") : "None.",
    "",
  ].join("\n");

  const outDir = `${REPO}/bench/results`;
  Deno.mkdirSync(outDir, { recursive: true });
  const outFile = `${outDir}/${stamp}${opts.cache ? "-cache" : ""}${opts.realistic ? "-realistic" : ""}${
    opts.accessLog && !opts.realistic ? "-logs" : ""
  }${opts.quick ? "-quick" : ""}.md`;
  Deno.writeTextFileSync(outFile, md);
  console.log(`\n${machine.join("\n")}\n\n${summary}\n`);
  if (problems.length) console.log(`Problems seen:\n${problems.map((p) => `- ${p}`).join("\n")}\n`);
  console.log(`bench: results written to ${outFile}`);
  return 0;
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => onSignal("SIGTERM"));
  let code = 1;
  try {
    code = await main();
  } catch (e) {
    if (!cleaning) console.error(`bench: ${(e as Error).stack ?? e}`); // else: interrupted, onSignal exits
  } finally {
    await cleanup();
  }
  Deno.exit(code);
}
