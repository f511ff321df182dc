/**
 * A/B of Loom variants over real sockets, on the rig of bench/run.ts (nginx
 * upstream and wrk on CPU 0, each Loom on CPU 1, one at a time): alternating
 * rounds, medians of the proxy's CPU µs per request (utime+stime from /proc,
 * which the machine's other load barely moves), p99 and RSS. Optionally nginx
 * in the same rotation, for ratios.
 *
 *   deno run -A --unstable-net bench/ab_wrk.ts [--rounds N] [--duration S] [--conns 64,1]
 *       [--realistic] [--access-log] [--loom-flag F] [--nginx] [--prewarm S] [--] VARIANT...
 *
 * `--prewarm S`: S seconds of the same load right before each measured run, so
 * that p99 is the steady state's. Without it each variant is measured after
 * idling while the others ran, and Loom's first second after an idle spell
 * (re-optimised code, the heap grown back) weighs in its p99 (bench/README.md,
 * the tail).
 *
 * A VARIANT is the extra `deno run` flags of one Loom, space-separated ("" for
 * none), optionally prefixed by `@<git rev> ` to run that revision's src/ (a
 * temporary worktree) instead of the working tree's; `floor` is
 * bench/floor_proxy.ts (the runtime's socket I/O alone, no gateway logic),
 * `ffi-floor` the same proxy on libc sockets and epoll through FFI
 * (bench/ffi_floor_proxy.ts; `ffi-floor:<mode>` for its other ways of
 * waiting: hybrid, async, block):
 *
 *   bench/ab_wrk.ts --nginx -- "@HEAD" ""                        HEAD against the working tree
 *   bench/ab_wrk.ts -- "" "--v8-flags=--max-semi-space-size=4"   a V8 flag
 *   bench/ab_wrk.ts --nginx -- "" "LOOM_HTTP1_IO=ffi"            NAME=value words: that Loom's environment
 */
import {
  cleanup,
  freePort,
  pin,
  type Proc,
  rigDir,
  rigFlag,
  runWrk,
  spawn,
  startLoom,
  startNginxProxy,
  startRig,
  treeCpuSeconds,
  treeRssKiB,
  waitReady,
} from "./run.ts";
import { formatFixed, formatLatency, markdownTable, median, parseWrkOutput } from "./parse.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

interface Variant {
  label: string;
  rev: string | null;
  flags: string[];
  /** NAME=value words of the variant: that Loom's environment (`env` before deno). */
  env: string[];
  /** `floor` or `ffi-floor[:mode]`: that floor proxy instead of a Loom (its environment still applies). */
  floor: string | null;
  port: number;
  proc?: Proc;
  worktree?: string;
}

/** The options and variants of a command line (bench/ffi_profile.ts reads its own the same way). */
export function parseArgs(argv: string[]) {
  const o = {
    rounds: 3,
    prewarm: 0,
    duration: 6,
    conns: [64, 1],
    realistic: false,
    accessLog: false,
    loomFlags: [] as string[],
    nginx: false,
    variants: [] as string[],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      o.variants.push(...argv.slice(i + 1));
      break;
    }
    const [flag, inline] = a.includes("=") && a.startsWith("--")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const val = () => inline ?? argv[++i];
    if (rigFlag(o, flag, val)) continue;
    if (flag === "--rounds") o.rounds = Number(val());
    else if (flag === "--prewarm") o.prewarm = Number(val());
    else if (flag === "--nginx") o.nginx = true;
    else o.variants.push(a);
  }
  return o;
}

async function git(args: string[]): Promise<void> {
  const r = await new Deno.Command("git", { args, cwd: REPO, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** bench/floor_proxy.ts (`floor`) or bench/ffi_floor_proxy.ts (`ffi-floor[:mode]`) on CPU 1, ready. */
export async function startFloor(
  label: string,
  port: number,
  upstreamPort: number,
  env: string[] = [],
): Promise<Proc> {
  const [script, ...mode] = label.startsWith("ffi-floor")
    ? ["bench/ffi_floor_proxy.ts", ...label.split(":").slice(1)]
    : ["bench/floor_proxy.ts"];
  const p = spawn(
    label,
    [
      ...pin("1"),
      ...(env.length ? ["env", ...env] : []),
      Deno.execPath(),
      "run",
      "-A",
      script,
      String(port),
      String(upstreamPort),
      ...mode,
    ],
    `${rigDir()}/${label.replace(/[^\w-]+/g, "-")}.log`,
  );
  await waitReady(p, port, 30_000);
  return p;
}

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  if (o.variants.length === 0) o.variants = [""];
  const { nginx, tmp, ups, upstream } = await startRig(o);
  const variants: Variant[] = o.variants.map((v) => {
    const m = /^@(\S+)\s*(.*)$/.exec(v.trim());
    const rev = m ? m[1] : null;
    const words = (m ? m[2] : v).split(/\s+/).filter(Boolean);
    const isEnv = (w: string) => /^[A-Z_][A-Z0-9_]*=/.test(w);
    const own = words.filter((w) => !isEnv(w));
    const floor = rev === null && own.length === 1 && /^(floor|ffi-floor(:\w+)?)$/.test(own[0])
      ? own[0]
      : null;
    const flags = [...o.loomFlags, ...own];
    const env = words.filter(isEnv);
    return { label: v.trim() === "" ? "working tree" : v.trim(), rev, flags, env, floor, port: freePort() };
  });
  const worktrees: string[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      let cwd = REPO;
      if (v.rev !== null) {
        cwd = `${tmp}/tree-${i}`;
        await git(["worktree", "add", "--detach", cwd, v.rev]);
        worktrees.push(cwd);
      }
      v.proc = v.floor !== null ? await startFloor(v.floor, v.port, ups[0], v.env) : await startLoom(
        `loom-${i}`,
        1,
        "1",
        v.port,
        ups,
        v.env.length ? ["env", ...v.env] : [],
        v.flags,
        cwd,
      );
      console.log(`ab: ${v.label} ready (pid ${v.proc.pid})`);
    }
    let ng: Proc | null = null;
    const ngPort = freePort();
    if (o.nginx) ng = await startNginxProxy(nginx, ngPort, ups);
    const all: { label: string; port: number; proc: Proc }[] = [
      ...(ng ? [{ label: "nginx", port: ngPort, proc: ng }] : []),
      ...variants.map((v) => ({ label: v.label, port: v.port, proc: v.proc! })),
    ];
    for (const x of all) await runWrk(x.port, 64, 3); // warm-up
    type Row = {
      label: string;
      conns: number;
      round: number;
      cpu: number;
      p99: number;
      rps: number;
      rss: number;
    };
    const rows: Row[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      for (const conns of o.conns) {
        for (const x of all) {
          if (o.prewarm > 0) await runWrk(x.port, conns, o.prewarm);
          const a = treeCpuSeconds(x.proc.pid), ua = treeCpuSeconds(upstream.pid);
          const { text } = await runWrk(x.port, conns, o.duration);
          const w = parseWrkOutput(text);
          const cpu = (treeCpuSeconds(x.proc.pid) - a) * 1e6 / Math.max(1, w.requests);
          const up = (treeCpuSeconds(upstream.pid) - ua) * 1e6 / Math.max(1, w.requests);
          const rss = treeRssKiB(x.proc.pid) / 1024;
          rows.push({ label: x.label, conns, round, cpu, p99: w.p99Us, rps: w.rps, rss });
          console.log(
            `  round ${round} c${conns} ${x.label}: ${formatFixed(cpu, 1)} µs/req, p99 ${
              formatLatency(w.p99Us)
            }, ${Math.round(w.rps)} req/s, upstream ${formatFixed(up, 1)} µs/req, RSS ${
              formatFixed(rss, 0)
            } MiB${w.totalErrors ? `, ${w.totalErrors} ERRORS` : ""}`,
          );
        }
      }
    }
    const table: string[][] = [];
    for (const conns of o.conns) {
      for (const x of all) {
        const rs = rows.filter((r) => r.label === x.label && r.conns === conns);
        const ratio = (f: (r: Row) => number) => {
          if (!ng) return "—";
          const per = rs.map((r) => {
            const n = rows.find((q) => q.label === "nginx" && q.conns === conns && q.round === r.round)!;
            return f(r) / f(n);
          });
          return formatFixed(median(per), 2);
        };
        table.push([
          x.label,
          `c${conns}`,
          formatFixed(median(rs.map((r) => r.cpu)), 1),
          ratio((r) => r.cpu),
          formatLatency(median(rs.map((r) => r.p99))),
          ratio((r) => r.p99),
          String(Math.round(median(rs.map((r) => r.rps)))),
          formatFixed(median(rs.map((r) => r.rss)), 0),
        ]);
      }
    }
    console.log(
      `\n${o.realistic ? "realistic" : "bare"}, access logs ${
        o.accessLog ? "on" : "off"
      }; medians of ${o.rounds} ` +
        `alternating rounds of ${o.duration} s${
          o.prewarm > 0 ? `, each after ${o.prewarm} s of the same load` : ""
        }\n`,
    );
    console.log(markdownTable(
      ["variant", "conns", "CPU µs/req", "× nginx", "p99", "p99 × nginx", "req/s", "RSS MiB"],
      table,
    ));
  } finally {
    await cleanup();
    for (const w of worktrees) await git(["worktree", "remove", "--force", w]).catch(() => {});
    if (worktrees.length) await git(["worktree", "prune"]).catch(() => {});
  }
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => void cleanup().finally(() => Deno.exit(130)));
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    console.error(`ab_wrk: ${(e as Error).stack ?? e}`);
    await cleanup();
    Deno.exit(1);
  }
}
