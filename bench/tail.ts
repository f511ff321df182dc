/**
 * The tail at c64, request by request (issue 16 item 3): nginx and Loom
 * variants on the rig of bench/run.ts (upstream and client on CPU 0, the proxy
 * on CPU 1), loaded by bench/tail_client.c, a closed-loop client like wrk that
 * records every request's send time and latency. Each round measures every
 * variant twice in a row: right after it idled (`--idle` seconds, plus the
 * others' turns) and then again at once (the steady state). For each run:
 * p50, p99, p99.9 and how much of the tail is stalls: requests at or above
 * p99 sent in a 10 ms window in which at least half the connections were that
 * slow (everything waited at once) rather than some connections served late.
 *
 *   deno run -A --unstable-net bench/tail.ts [--rounds N] [--duration S] [--idle S] [--conns C]
 *       [--keep DIR] [--] [VARIANT...]
 *
 * VARIANTs as bench/ab_wrk.ts's Loom variants (extra `deno run` flags; "" is
 * the working tree as shipped); nginx always runs first. Needs clang (to build
 * the client), wrk (warm-up), nginx and taskset. `--keep DIR` keeps each run's
 * records there (`<variant>-<round>-<phase>.txt`).
 */
import {
  cleanup,
  freePort,
  pin,
  type Proc,
  rigDir,
  runWrk,
  startLoom,
  startNginxProxy,
  startRig,
  which,
} from "./run.ts";
import { formatLatency, markdownTable, median } from "./parse.ts";

interface Run {
  requests: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Share of the requests at or above p99 that were part of a stall. */
  stalled: number;
}

/** Percentiles and stall share of one run's records ("conn sent latency" lines, µs). */
export function analyse(text: string, conns: number): Run {
  const rows = text.trim().split("\n").map((l) => l.split(" ").map(Number));
  const lat = rows.map((r) => r[2]).sort((a, b) => a - b);
  const q = (f: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * f))];
  const p99 = q(0.99);
  const windows = new Map<number, Set<number>>();
  const slow = rows.filter((r) => r[2] >= p99);
  for (const [c, sent] of slow) {
    const w = Math.floor(sent / 10_000);
    windows.set(w, (windows.get(w) ?? new Set()).add(c));
  }
  const stalled = slow.filter(([, sent]) => windows.get(Math.floor(sent / 10_000))!.size >= conns / 2).length;
  return {
    requests: rows.length,
    p50: q(0.5),
    p99,
    p999: q(0.999),
    max: lat[lat.length - 1],
    stalled: slow.length ? stalled / slow.length : 0,
  };
}

async function main(): Promise<void> {
  const o = { rounds: 3, duration: 4, idle: 12, conns: 64, keep: "", variants: [] as string[] };
  for (let i = 0; i < Deno.args.length; i++) {
    const a = Deno.args[i];
    if (a === "--") {
      o.variants.push(...Deno.args.slice(i + 1));
      break;
    }
    if (a === "--rounds") o.rounds = Number(Deno.args[++i]);
    else if (a === "--duration") o.duration = Number(Deno.args[++i]);
    else if (a === "--idle") o.idle = Number(Deno.args[++i]);
    else if (a === "--conns") o.conns = Number(Deno.args[++i]);
    else if (a === "--keep") o.keep = Deno.args[++i];
    else o.variants.push(a);
  }
  if (o.variants.length === 0) o.variants = [""];
  const clang = which("clang");
  if (clang === null) throw new Error("clang is required (apt-get install clang)");
  const rig = await startRig({
    conns: [o.conns],
    realistic: false,
    accessLog: false,
    loomFlags: [],
    duration: o.duration,
  });
  const client = `${rig.tmp}/tail_client`;
  const built = await new Deno.Command(clang, {
    args: ["-O2", "-o", client, new URL("./tail_client.c", import.meta.url).pathname],
  }).output();
  if (!built.success) throw new Error(new TextDecoder().decode(built.stderr));
  if (o.keep) Deno.mkdirSync(o.keep, { recursive: true });
  try {
    const all: { label: string; port: number; proc: Proc }[] = [];
    const ngPort = freePort();
    all.push({ label: "nginx", port: ngPort, proc: await startNginxProxy(rig.nginx, ngPort, rig.ups) });
    for (const [i, v] of o.variants.entries()) {
      const port = freePort();
      const flags = v.split(/\s+/).filter(Boolean);
      const proc = await startLoom(`loom-${i}`, 1, "1", port, rig.ups, [], flags);
      all.push({ label: v === "" ? "Loom" : `Loom ${v}`, port, proc });
    }
    for (const x of all) await runWrk(x.port, o.conns, 3); // compiled and warm before the first round
    const runs = new Map<string, Run[]>();
    const measure = async (x: { label: string; port: number }, phase: string, round: number) => {
      const out = `${rigDir()}/tail-${round}.txt`;
      const [cmd, ...args] = [
        ...pin("0"),
        client,
        String(x.port),
        String(o.conns),
        String(o.duration),
        "/file",
        out,
      ];
      const r = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
      if (!r.success) throw new Error(`${x.label}: ${new TextDecoder().decode(r.stderr)}`);
      const text = Deno.readTextFileSync(out);
      if (o.keep) {
        Deno.writeTextFileSync(`${o.keep}/${x.label.replace(/\W+/g, "_")}-${round}-${phase}.txt`, text);
      }
      const a = analyse(text, o.conns);
      const key = `${x.label}\u0000${phase}`;
      runs.set(key, [...(runs.get(key) ?? []), a]);
      console.log(
        `  round ${round} ${x.label} ${phase}: p50 ${formatLatency(a.p50)}, p99 ${formatLatency(a.p99)}, ` +
          `p99.9 ${formatLatency(a.p999)}, max ${formatLatency(a.max)}, ` +
          `${Math.round(a.requests / o.duration)} req/s, ${
            (a.stalled * 100).toFixed(0)
          } % of the tail in stalls`,
      );
    };
    for (let round = 1; round <= o.rounds; round++) {
      for (const x of all) {
        await new Promise((r) => setTimeout(r, o.idle * 1000));
        await measure(x, "after idle", round);
        await measure(x, "steady", round);
      }
    }
    const rows: string[][] = [];
    for (const phase of ["steady", "after idle"]) {
      const ng = runs.get(`nginx\u0000${phase}`)!;
      for (const x of all) {
        const rs = runs.get(`${x.label}\u0000${phase}`)!;
        // Ratios per round (nginx ran in the same round), then their median.
        const ratio = median(rs.map((r, i) => r.p99 / ng[i].p99));
        rows.push([
          x.label,
          phase,
          formatLatency(median(rs.map((r) => r.p50))),
          formatLatency(median(rs.map((r) => r.p99))),
          ratio.toFixed(2),
          formatLatency(median(rs.map((r) => r.p999))),
          formatLatency(median(rs.map((r) => r.max))),
          `${(median(rs.map((r) => r.stalled)) * 100).toFixed(0)} %`,
          String(Math.round(median(rs.map((r) => r.requests)) / o.duration)),
        ]);
      }
    }
    console.log(
      `\nc${o.conns}, ${o.duration} s runs, medians of ${o.rounds} rounds; "after idle": after ${o.idle} s ` +
        `and the other variants' turns without load\n`,
    );
    console.log(markdownTable(
      ["proxy", "phase", "p50", "p99", "p99 × nginx", "p99.9", "max", "tail in stalls", "req/s"],
      rows,
    ));
  } finally {
    await cleanup();
  }
}

if (import.meta.main) await main();
