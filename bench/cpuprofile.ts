/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`) of Loom under
 * load: CPU by request stage and the functions with the most self time.
 *
 *   deno run -A bench/cpuprofile.ts <file.cpuprofile> [--from S] [--to S] [--requests N] [--top N]
 *
 * `--from`/`--to` keep the samples between these CLOCK_MONOTONIC seconds (the
 * clock of the profile's timestamps; bench/profile.ts passes the window of the
 * measured wrk run). With `--requests` the figures are also given in µs per
 * request (the sampled time in the window ÷ N).
 *
 * Stages: a sample in a socket read or write op is I/O (its time is mostly
 * the system call's); any other is charged to the innermost frame that is
 * Loom's own code (a `src/` file), classified by file and function (STAGES),
 * so runtime frames above it (promise machinery, TextEncoder...) count with
 * that stage. Samples with no Loom frame at all are runtime-only: the event
 * loop and microtask queue ("(program)", promise jobs), garbage collection,
 * and the rest by name.
 */
import { formatFixed, markdownTable } from "./parse.ts";

/** The parts of a .cpuprofile this summary reads. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** [stage, file pattern, optional function-name pattern]; the first match wins. */
const STAGES: readonly [string, RegExp, RegExp | null][] = [
  ["access log", /\/observability\/access_log\.ts$/, null],
  ["metrics", /\/observability\/(gateway_)?metrics\.ts$/, null],
  ["tracing / request id", /\/observability\/(tracing|request_id)\.ts$/, null],
  ["write (client response)", /\/listeners\/http1\.ts$/, /Http1Writer|write|end|reserve|put|count|begin/],
  ["parse (request head, reads)", /\/listeners\/http1\.ts$/, null],
  [
    "parse (request head, reads)",
    /\/http1\/(parse|reader)\.ts$/,
    /^(parseRequestHead|findHeadEnd|hasBareCr|fill|reset|.*Request.*)$/,
  ],
  ["upstream exchange (response head, body relay)", /\/proxy\/exchange\.ts$/, null],
  ["upstream exchange (response head, body relay)", /\/http1\/(parse|reader)\.ts$/, null],
  ["header rewrite (request head, response head)", /\/proxy\/header_policy\.ts$/, null],
  ["header rewrite (request head, response head)", /\/http1\/serialize\.ts$/, null],
  ["header rewrite (request head, response head)", /\/core\/headers\.ts$/, null],
  ["pool, balancing, endpoint", /\/upstream\//, null],
  ["forward (attempt, timeouts)", /\/proxy\/(forward|resilient|call)\.ts$/, null],
  ["forward (attempt, timeouts)", /\/core\/deadline\.ts$/, null],
  ["route (normalise, match, rewrite)", /\/router\//, null],
  [
    "route (normalise, match, rewrite)",
    /\/gateway\/(gateway|intermediary)\.ts$/,
    /route|hostForRouting|traceOrOptions/,
  ],
  ["gateway (handle, record)", /\/gateway\//, null],
  ["middleware", /\/middleware\//, null],
  ["request context", /\/core\//, null],
];

/** Where a Loom frame's time goes. */
export function stageOf(url: string, fn: string): string | null {
  if (!/\/src\//.test(url)) return null;
  for (const [stage, file, func] of STAGES) {
    if (file.test(url) && (func === null || func.test(fn))) return stage;
  }
  return "other Loom code";
}

/** Socket and file I/O ops: their time is mostly the system call's (the kernel's TCP path on loopback). */
const IO_OPS = /^op_(read|write|write_sync|read_sync|net_\w+|readv|writev)$/;
export const IO_STAGE = "I/O ops (read, write: the system calls)";

/** Runtime-only samples, by the leaf frame's name. */
function runtimeKind(fn: string, url: string): string {
  if (fn === "(garbage collector)") return "garbage collection";
  if (fn === "(program)") return 'runtime: event loop, microtask queue, native ("(program)")';
  if (fn === "(idle)") return "idle";
  if (/[Pp]romise|then|resolve|reject|await|[Mm]icrotask/.test(fn)) return "runtime: promise jobs";
  if (/op_|core/.test(url) || /^op/.test(fn)) return "runtime: ops outside a request (accept, timers)";
  return "runtime: other";
}

/** Result of {@link summarise}. */
export interface ProfileSummary {
  /** Sampled µs in the window (idle excluded). */
  busyUs: number;
  idleUs: number;
  samples: number;
  stages: Map<string, number>;
  /** Self time by "function (file:line)". */
  functions: Map<string, number>;
  /** Self time of promise/async machinery anywhere (leaf frames named like it), and of GC. */
  promiseUs: number;
  gcUs: number;
}

/** Aggregates samples whose timestamp (µs, the profile's clock) lies in [fromUs, toUs]. */
export function summarise(p: CpuProfile, fromUs = -Infinity, toUs = Infinity): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Per node: its stage (innermost Loom frame on its stack) or null.
  const stageCache = new Map<number, string | null>();
  const stageFor = (id: number): string | null => {
    if (stageCache.has(id)) return stageCache.get(id)!;
    const n = byId.get(id)!;
    const own = stageOf(n.callFrame.url, n.callFrame.functionName);
    const up = parent.get(id);
    const s = own ?? (up === undefined ? null : stageFor(up));
    stageCache.set(id, s);
    return s;
  };
  const out: ProfileSummary = {
    busyUs: 0,
    idleUs: 0,
    samples: 0,
    stages: new Map(),
    functions: new Map(),
    promiseUs: 0,
    gcUs: 0,
  };
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (t < fromUs || t > toUs) continue;
    // A sample stands for the time until the next one.
    const dt = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0;
    const n = byId.get(p.samples[i])!;
    const fn = n.callFrame.functionName || "(anonymous)";
    if (fn === "(idle)") {
      out.idleUs += dt;
      continue;
    }
    out.samples++;
    out.busyUs += dt;
    const file = n.callFrame.url.replace(/^.*\/(src|bench)\//, "$1/").replace(/^ext:/, "ext:");
    add(out.functions, `${fn} (${file || "native"}${file ? ":" + (n.callFrame.lineNumber + 1) : ""})`, dt);
    if (fn === "(garbage collector)") out.gcUs += dt;
    else if (/[Pp]romise|^then$|[Mm]icrotask|[Aa]wait|^resolve$/.test(fn)) out.promiseUs += dt;
    add(out.stages, IO_OPS.test(fn) ? IO_STAGE : stageFor(n.id) ?? runtimeKind(fn, n.callFrame.url), dt);
  }
  return out;
}

/** Markdown tables: stages, then the `top` functions by self time. */
export function render(s: ProfileSummary, requests: number, top = 25): string {
  const per = (us: number) => requests > 0 ? formatFixed(us / requests, 2) : "—";
  const pct = (us: number) => formatFixed(100 * us / s.busyUs, 1) + " %";
  const stages = [...s.stages].sort((a, b) => b[1] - a[1]);
  let md = markdownTable(
    ["stage", "share of busy CPU", "µs/request"],
    [...stages.map(([k, v]) => [k, pct(v), per(v)]), ["**total (busy)**", "100 %", per(s.busyUs)]],
  );
  md +=
    `\n\nGarbage collection: ${pct(s.gcUs)} (${per(s.gcUs)} µs/request); promise/async machinery as leaf ` +
    `frames: ${pct(s.promiseUs)} (${per(s.promiseUs)} µs/request). ${s.samples} samples.\n\n`;
  const fns = [...s.functions].sort((a, b) => b[1] - a[1]).slice(0, top);
  md += markdownTable(
    ["function (self time)", "share", "µs/request"],
    fns.map(([k, v]) => [k, pct(v), per(v)]),
  );
  return md;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const file = args.shift();
  if (file === undefined) {
    console.error(
      "usage: deno run -A bench/cpuprofile.ts <file.cpuprofile> [--from S] [--to S] [--requests N] [--top N]",
    );
    Deno.exit(2);
  }
  const opt = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i === -1 ? dflt : Number(args[i + 1]);
  };
  const p = JSON.parse(Deno.readTextFileSync(file)) as CpuProfile;
  const s = summarise(p, opt("--from", -Infinity) * 1e6, opt("--to", Infinity) * 1e6);
  console.log(render(s, opt("--requests", 0), opt("--top", 25)));
}
