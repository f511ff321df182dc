/**
 * Where a request's CPU goes in the floor proxies (issue 16 item 2): nginx,
 * bench/floor_proxy.ts (Deno sockets) and bench/ffi_floor_proxy.ts (libc
 * sockets and epoll through FFI, in its waiting modes), on the rig of
 * bench/run.ts (upstream and wrk on CPU 0, the proxy on CPU 1), one at a time:
 *
 * - user and system CPU µs per request and context switches per request
 *   (voluntary and involuntary, summed over the proxy's threads from
 *   /proc/<pid>/task/<tid>/status), alternating rounds, medians;
 * - with `--strace`: system calls per request (`strace -c -f`, calls ÷ wrk's
 *   requests; strace slows the proxy, the count per request holds);
 * - with `--perf`: `perf record -e cpu-clock` of the floor and the FFI floor
 *   at c64, samples by binary (kernel, deno native, JIT code, libc).
 *
 *   deno run -A --unstable-net bench/ffi_profile.ts [--rounds N] [--duration S] [--conns 64,1]
 *       [--strace] [--perf] [--] [VARIANT...]
 *
 * VARIANTs: nginx, floor, ffi-floor[:hybrid|async|wait|block] (default: nginx
 * floor ffi-floor ffi-floor:async ffi-floor:block; ffi-floor is its `wait` mode).
 */
import {
  cleanup,
  freePort,
  type Proc,
  processTree,
  runWrk,
  startNginxProxy,
  startRig,
  stop,
  treeCounters,
  which,
} from "./run.ts";
import { formatFixed, markdownTable, median, parseWrkOutput } from "./parse.ts";
import { parseArgs, startFloor } from "./ab_wrk.ts";
import { parseStraceSummary, perfSummary } from "./profile.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const strace = Deno.args.includes("--strace"), perf = Deno.args.includes("--perf");
  const o = parseArgs(Deno.args.filter((a) => a !== "--strace" && a !== "--perf"));
  if (o.variants.length === 0) {
    o.variants = ["nginx", "floor", "ffi-floor", "ffi-floor:async", "ffi-floor:block"];
  }
  const { nginx, tmp, ups } = await startRig(o);
  const all: { label: string; port: number; proc: Proc }[] = [];
  for (const label of o.variants) {
    const port = freePort();
    const proc = label === "nginx"
      ? await startNginxProxy(nginx, port, ups)
      : await startFloor(label, port, ups[0]);
    all.push({ label, port, proc });
  }
  for (const x of all) await runWrk(x.port, 64, 3); // warm-up

  type Row = { label: string; conns: number; user: number; sys: number; vcs: number; ivcs: number };
  const rows: Row[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const conns of o.conns) {
      for (const x of all) {
        const a = treeCounters(x.proc.pid);
        const w = parseWrkOutput((await runWrk(x.port, conns, o.duration)).text);
        const b = treeCounters(x.proc.pid), n = Math.max(1, w.requests);
        const r: Row = {
          label: x.label,
          conns,
          user: (b.user - a.user) * 1e6 / n,
          sys: (b.sys - a.sys) * 1e6 / n,
          vcs: (b.vcs - a.vcs) / n,
          ivcs: (b.ivcs - a.ivcs) / n,
        };
        rows.push(r);
        console.error(
          `  round ${round} c${conns} ${x.label}: user ${formatFixed(r.user, 1)} sys ${
            formatFixed(r.sys, 1)
          } ` +
            `µs/req, ctx switches ${formatFixed(r.vcs, 2)} + ${formatFixed(r.ivcs, 2)} per req`,
        );
      }
    }
  }
  const table: string[][] = [];
  for (const conns of o.conns) {
    for (const x of all) {
      const rs = rows.filter((r) => r.label === x.label && r.conns === conns);
      const m = (f: (r: Row) => number) => median(rs.map(f));
      table.push([
        x.label,
        `c${conns}`,
        formatFixed(m((r) => r.user), 1),
        formatFixed(m((r) => r.sys), 1),
        formatFixed(m((r) => r.user + r.sys), 1),
        formatFixed(m((r) => r.vcs), 2),
        formatFixed(m((r) => r.ivcs), 2),
      ]);
    }
  }
  console.log(`## CPU and context switches per request (medians of ${o.rounds} rounds of ${o.duration} s)\n`);
  console.log(markdownTable(
    ["proxy", "conns", "user µs/req", "system µs/req", "total", "voluntary cs/req", "involuntary cs/req"],
    table,
  ));
  console.log();

  if (strace) {
    for (const conns of o.conns) {
      const per: Map<string, number>[] = [];
      for (const x of all) {
        const out = `${tmp}/strace-${x.label.replace(":", "-")}-c${conns}.txt`;
        const pids = processTree(x.proc.pid).flatMap((p) => ["-p", String(p)]);
        const st = new Deno.Command("strace", { args: ["-f", "-c", "-o", out, ...pids], stderr: "null" })
          .spawn();
        await sleep(1000);
        const w = parseWrkOutput((await runWrk(x.port, conns, o.duration)).text);
        st.kill("SIGINT");
        await st.status;
        const calls = parseStraceSummary(Deno.readTextFileSync(out));
        per.push(new Map([...calls].map(([k, v]) => [k, v / Math.max(1, w.requests)])));
      }
      const names = [...new Set(per.flatMap((m) => [...m.keys()]))]
        .filter((k) => per.some((m) => (m.get(k) ?? 0) >= 0.005))
        .sort((a, b) => per.reduce((s, m) => s + (m.get(b) ?? 0) - (m.get(a) ?? 0), 0));
      console.log(`## System calls per request, c${conns} (strace -c -f)\n`);
      console.log(markdownTable(
        ["syscall", ...all.map((x) => x.label)],
        [
          ...names.map((k) => [k, ...per.map((m) => formatFixed(m.get(k) ?? 0, 2))]),
          ["**total**", ...per.map((m) => formatFixed([...m.values()].reduce((s, v) => s + v, 0), 2))],
        ],
      ));
      console.log();
    }
  }

  if (perf) {
    const perfBin = which("perf");
    if (perfBin === null) console.log("perf not installed: apt-get install -y linux-perf\n");
    for (const x of perfBin === null ? [] : all.filter((x) => x.label !== "nginx")) {
      const data = `${tmp}/perf-${x.label.replace(":", "-")}.data`;
      // perf samples the proxy for as long as `sleep` runs, which covers the wrk run.
      const sampling = new Deno.Command(perfBin!, {
        args: ["record", "-e", "cpu-clock", "-F", "4999", "-o", data, "-p", String(x.proc.pid), "--", "sleep"]
          .concat(String(o.duration + 1)),
        stdout: "null",
        stderr: "null",
      }).output();
      await runWrk(x.port, 64, o.duration);
      await sampling;
      const args = ["report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-q"];
      const out = await new Deno.Command(perfBin!, { args, stdout: "piped", stderr: "null" }).output();
      const report = new TextDecoder().decode(out.stdout);
      console.log(`## ${x.label} under perf, c64 (cpu-clock samples)\n`);
      console.log(perfSummary(report));
      console.log();
    }
  }
  for (const x of all) await stop(x.proc);
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => void cleanup().finally(() => Deno.exit(130)));
  const code = await main().then(() => 0, (e) => {
    console.error(`ffi_profile: ${(e as Error).stack ?? e}`);
    return 1;
  });
  await cleanup();
  Deno.exit(code);
}
