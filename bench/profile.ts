/**
 * A profile of one proxied request, Loom against nginx, on the rig of
 * bench/run.ts (nginx upstream and wrk on CPU 0, the proxy on CPU 1):
 *
 * - `--split`: user and system CPU µs per request of each proxy (from
 *   /proc/<pid>/stat over a plain wrk run), so kernel and user-space costs
 *   are compared separately.
 * - `--strace`: system calls per request (`strace -c -f` attached to the
 *   proxy's process tree during a wrk run; calls ÷ wrk's request count).
 *   strace slows the proxy many times over, but the count per request holds.
 * - `--cpu-prof`: Loom run with `deno run --cpu-prof`; the samples of the
 *   measured wrk run summarised by request stage and by function
 *   (bench/cpuprofile.ts).
 * - `--perf`: Loom run with `--v8-flags=--perf-basic-prof` under `perf record`
 *   (cpu-clock): CPU by binary (kernel, deno's native code, V8 builtins, JIT
 *   code) and the top symbols.
 *
 *   deno run -A --unstable-net bench/profile.ts [--split] [--strace] [--cpu-prof] [--perf]
 *        [--conns 1,64] [--duration S] [--realistic] [--access-log] [--loom-flag F] [--keep DIR]
 *
 * With none of the four, all of them run. Output: markdown on stdout.
 */
import {
  cleanup,
  freePort,
  type Proc,
  processTree,
  rigFlag,
  runWrk,
  startLoom,
  startNginxProxy,
  startRig,
  stop,
  treeCounters,
  which,
} from "./run.ts";
import { formatFixed, markdownTable, parseWrkOutput } from "./parse.ts";
import { type CpuProfile, render, summarise } from "./cpuprofile.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Opts {
  split: boolean;
  strace: boolean;
  cpuProf: boolean;
  perf: boolean;
  conns: number[];
  duration: number;
  realistic: boolean;
  accessLog: boolean;
  loomFlags: string[];
  keep: string;
}

function parse(argv: string[]): Opts {
  const o: Opts = {
    split: false,
    strace: false,
    cpuProf: false,
    perf: false,
    conns: [1, 64],
    duration: 8,
    realistic: false,
    accessLog: false,
    loomFlags: [],
    keep: "",
  };
  const tools: Record<string, keyof Opts> = {
    "--split": "split",
    "--strace": "strace",
    "--cpu-prof": "cpuProf",
    "--perf": "perf",
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const flag = eq === -1 ? a : a.slice(0, eq);
    const val = () => eq === -1 ? argv[++i] : a.slice(eq + 1);
    if (rigFlag(o, flag, val)) continue;
    if (flag in tools) (o[tools[flag]] as boolean) = true;
    else if (flag === "--keep") o.keep = val();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.split && !o.strace && !o.cpuProf && !o.perf) {
    o.split =
      o.strace =
      o.cpuProf =
      o.perf =
        true;
  }
  return o;
}

/** CLOCK_BOOTTIME in seconds (the clock of V8's profile timestamps on a VM that never suspends). */
function uptime(): number {
  return Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
}

async function wrkRequests(port: number, conns: number, seconds: number): Promise<number> {
  const { text } = await runWrk(port, conns, seconds);
  const w = parseWrkOutput(text);
  if (w.totalErrors > 0) console.error(`  (${w.totalErrors} wrk errors)`);
  return w.requests;
}

/** Parses `strace -c` output: syscall -> calls. */
export function parseStraceSummary(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m !== null && m[2] !== "total") out.set(m[2], (out.get(m[2]) ?? 0) + Number(m[1]));
  }
  return out;
}

async function straceRun(proc: Proc, port: number, conns: number, seconds: number, dir: string) {
  const out = `${dir}/strace-${proc.pid}-c${conns}.txt`;
  const pids = processTree(proc.pid).flatMap((p) => ["-p", String(p)]);
  const st = new Deno.Command("strace", {
    args: ["-f", "-c", "-o", out, ...pids],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await sleep(1000);
  const requests = await wrkRequests(port, conns, seconds);
  st.kill("SIGINT");
  await st.status;
  await sleep(200);
  return { requests, calls: parseStraceSummary(Deno.readTextFileSync(out)) };
}

async function main(): Promise<void> {
  const o = parse(Deno.args);
  const { nginx, tmp, ups } = await startRig(o);
  const dir = o.keep || tmp;
  Deno.mkdirSync(dir, { recursive: true });
  const scenario = `${o.realistic ? "realistic scenario" : "bare proxy"}, access logs ${
    o.accessLog ? "on" : "off"
  }${o.loomFlags.length ? ", Loom flags " + o.loomFlags.join(" ") : ""}`;
  console.log(`# Profile of one request (${scenario})\n`);

  if (o.split || o.strace) {
    const ngPort = freePort(), loomPort = freePort();
    const ng = await startNginxProxy(nginx, ngPort, ups);
    const loom = await startLoom("loom-profile", 1, "1", loomPort, ups);
    for (const port of [ngPort, loomPort]) await wrkRequests(port, 64, 3);
    if (o.split) {
      const rows: string[][] = [];
      for (const conns of o.conns) {
        for (const [name, p, port] of [["nginx", ng, ngPort], ["Loom", loom, loomPort]] as const) {
          const a = treeCounters(p.pid);
          const n = await wrkRequests(port, conns, o.duration);
          const b = treeCounters(p.pid);
          rows.push([
            name,
            `c${conns}`,
            String(n),
            formatFixed((b.user - a.user) * 1e6 / n, 1),
            formatFixed((b.sys - a.sys) * 1e6 / n, 1),
            formatFixed((b.user + b.sys - a.user - a.sys) * 1e6 / n, 1),
            formatFixed((b.vcs + b.ivcs - a.vcs - a.ivcs) / n, 2),
            formatFixed((b.minflt - a.minflt) / n, 3),
          ]);
        }
      }
      console.log("## CPU per request, user and kernel\n");
      console.log(
        markdownTable(
          [
            "proxy",
            "conns",
            "requests",
            "user µs/req",
            "system µs/req",
            "total",
            "cs/req",
            "minor faults/req",
          ],
          rows,
        ),
      );
      console.log();
    }
    if (o.strace) {
      console.log("## System calls per request (strace -c -f)\n");
      for (const conns of o.conns) {
        const ngs = await straceRun(ng, ngPort, conns, o.duration, dir);
        const ls = await straceRun(loom, loomPort, conns, o.duration, dir);
        const names = [...new Set([...ngs.calls.keys(), ...ls.calls.keys()])];
        const per = (s: typeof ngs, k: string) => (s.calls.get(k) ?? 0) / s.requests;
        names.sort((a, b) => per(ls, b) + per(ngs, b) - per(ls, a) - per(ngs, a));
        const shown = names.filter((k) => per(ls, k) >= 0.005 || per(ngs, k) >= 0.005);
        const total = (s: typeof ngs) => [...s.calls.values()].reduce((x, y) => x + y, 0) / s.requests;
        console.log(`c${conns}: nginx ${ngs.requests} requests, Loom ${ls.requests} requests under strace\n`);
        console.log(markdownTable(
          ["syscall", "Loom per request", "nginx per request"],
          [
            ...shown.map((k) => [k, formatFixed(per(ls, k), 2), formatFixed(per(ngs, k), 2)]),
            ["**total**", formatFixed(total(ls), 2), formatFixed(total(ngs), 2)],
          ],
        ));
        console.log();
      }
    }
    await stop(ng);
    await stop(loom);
  }

  if (o.cpuProf) {
    const profDir = `${dir}/cpuprof`;
    Deno.mkdirSync(profDir, { recursive: true });
    const port = freePort();
    const flags = [`--cpu-prof`, `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=200`];
    const loom = await startLoomWith(flags, "loom-cpuprof", port, ups);
    await wrkRequests(port, 64, 3);
    const windows: { conns: number; from: number; to: number; requests: number }[] = [];
    for (const conns of o.conns) {
      const from = uptime() + 0.3;
      const requests = await wrkRequests(port, conns, o.duration);
      windows.push({ conns, from, to: uptime() - 0.3, requests });
      await sleep(500);
    }
    await stop(loom); // SIGTERM: Loom drains and exits, and V8 writes the profile
    const file = [...Deno.readDirSync(profDir)].find((e) => e.name.endsWith(".cpuprofile"));
    if (file === undefined) throw new Error("no .cpuprofile written");
    const prof = JSON.parse(Deno.readTextFileSync(`${profDir}/${file.name}`)) as CpuProfile;
    for (const w of windows) {
      const s = summarise(prof, w.from * 1e6, w.to * 1e6);
      // The sampled window is a little shorter than wrk's run: scale the request count to it.
      const reqs = w.requests * (w.to - w.from) / o.duration;
      console.log(`## Loom CPU by stage, c${w.conns} (deno --cpu-prof, 200 µs sampling)\n`);
      console.log(render(s, reqs, 30));
      console.log();
    }
    console.log(`(profile: ${profDir}/${file.name})\n`);
  }

  if (o.perf) {
    const perfBin = which("perf");
    if (perfBin === null) console.log("perf not installed: apt-get install -y linux-perf\n");
    else {
      const port = freePort();
      const loom = await startLoomWith(
        ["--v8-flags=--perf-basic-prof,--interpreted-frames-native-stack"],
        "loom-perf",
        port,
        ups,
      );
      await wrkRequests(port, 64, 3);
      for (const conns of o.conns) {
        const data = `${dir}/perf-c${conns}.data`;
        const rec = new Deno.Command(perfBin, {
          args: ["record", "-e", "cpu-clock", "-F", "4999", "-o", data, "-p", String(loom.pid)],
          stdout: "null",
          stderr: "null",
        }).spawn();
        await sleep(500);
        const requests = await wrkRequests(port, conns, o.duration);
        rec.kill("SIGINT");
        await rec.status;
        const report = new TextDecoder().decode(
          (await new Deno.Command(perfBin, {
            args: ["report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-q"],
            stdout: "piped",
            stderr: "null",
          }).output()).stdout,
        );
        console.log(`## Loom under perf, c${conns} (${requests} requests; cpu-clock samples)\n`);
        console.log(perfSummary(report));
        console.log();
      }
      await stop(loom);
    }
  }
}

/** Loom pinned to CPU 1 with extra deno flags. */
function startLoomWith(flags: string[], id: string, port: number, ups: number[]): Promise<Proc> {
  return startLoom(id, 1, "1", port, ups, [], flags);
}

/** perf report lines ("  12.34%  deno  [.] symbol") grouped: kernel, V8 builtins, JS, deno native, libc. */
export function perfSummary(report: string): string {
  const groups = new Map<string, number>();
  const top: [string, number][] = [];
  for (const line of report.split("\n")) {
    const m = /^\s*([\d.]+)%\s+(.+?)\s+\[(.)\]\s+(.*)$/.exec(line);
    if (m === null) continue;
    const pct = Number(m[1]), dso = m[2], sym = m[4].trim();
    let g: string;
    if (dso.includes("kernel")) g = "kernel";
    else if (/^perf-\d+\.map$/.test(dso) || dso.startsWith("[JIT]")) {
      g = /^(Builtin|BytecodeHandler|Stub|RegExp)[:]/.test(sym)
        ? "V8 builtins, stubs, interpreter"
        : "JavaScript (JIT and interpreted)";
    } else if (dso.startsWith("libc") || dso.includes("ld-linux")) g = "libc";
    else if (dso === "deno") g = "deno native (Rust: tokio, ops, V8 C++ incl. GC)";
    else g = dso;
    groups.set(g, (groups.get(g) ?? 0) + pct);
    if (top.length < 30) top.push([`${sym} [${dso}]`, pct]);
  }
  const rows = [...groups].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, formatFixed(v, 1) + " %"]);
  return markdownTable(["where", "share of samples"], rows) + "\n\n" +
    markdownTable(["top symbols (self)", "share"], top.map(([k, v]) => [k, formatFixed(v, 2) + " %"]));
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => void cleanup().finally(() => Deno.exit(130)));
  let code = 0;
  try {
    await main();
  } catch (e) {
    console.error(`profile: ${(e as Error).stack ?? e}`);
    code = 1;
  } finally {
    await cleanup();
  }
  Deno.exit(code);
}
