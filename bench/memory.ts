/**
 * Loom's memory (issue 16 item 4): VmRSS after start and under load, with CPU
 * per request, for variants of how Loom is run, on the rig of bench/run.ts
 * (nginx upstream and wrk on CPU 0, Loom on CPU 1, `workers: 1`, the bare
 * config). Each round starts every variant afresh, in turn (A B A B): ready,
 * then `--settle` seconds idle, RSS "after start"; then `--duration` seconds of
 * wrk at `--conns`, RSS sampled every 250 ms (the peak and the value at the
 * end) and the process's CPU µs per request; then it is stopped.
 *
 *   deno run -A --unstable-net bench/memory.ts [--rounds N] [--duration S] [--settle S]
 *       [--conns C] [--config FILE] [--dist DIR] [--] VARIANT...
 *
 * A VARIANT is the extra `deno run` flags of one Loom, space-separated ("" for
 * none), optionally prefixed by `bundle ` to run dist/loom.js (`deno task
 * bundle` first; `--dist DIR` for another bundle directory, `bundle:DIR ` for
 * this variant's) instead of src/cli/main.ts; `deno` is an idle Deno script
 * (the runtime's own floor, after start only). Every Loom gets the V8 flags it
 * is shipped with (the start task's, which the bundle's shebang repeats)
 * before its own; `--v8-flags=--max-semi-space-size=0` gives V8's default
 * young generation back:
 *
 *   bench/memory.ts -- "" "bundle" "bundle --v8-flags=--max-semi-space-size=0" deno
 *
 * `--config FILE` serves FILE instead of the bare config: `{{PORT}}`,
 * `{{ADMIN}}` and `{{UPSTREAM}}` in it become the listener's, the admin API's
 * and the upstream's ports (the probe is `GET /file`, 200 and 1 KiB).
 */
import {
  cleanup,
  freePort,
  loomConfig,
  pin,
  type Proc,
  rigDir,
  runWrk,
  spawn,
  startRig,
  startTaskV8Flags,
  stop,
  treeCpuSeconds,
  treeRssKiB,
  waitReady,
} from "./run.ts";
import { formatFixed, markdownTable, median, parseWrkOutput } from "./parse.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Options {
  rounds: number;
  duration: number;
  settle: number;
  conns: number;
  config: string | null;
  /** Where the bundle is (`deno task bundle --out DIR`). */
  dist: string;
  variants: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: 8,
    settle: 2,
    conns: 64,
    config: null,
    dist: `${REPO}/dist`,
    variants: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      o.variants.push(...argv.slice(i + 1));
      break;
    }
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const flag = eq === -1 ? a : a.slice(0, eq);
    const val = () => eq === -1 ? argv[++i] : a.slice(eq + 1);
    if (flag === "--rounds") o.rounds = Number(val());
    else if (flag === "--duration") o.duration = Number(val());
    else if (flag === "--settle") o.settle = Number(val());
    else if (flag === "--conns") o.conns = Number(val());
    else if (flag === "--config") o.config = val();
    else if (flag === "--dist") o.dist = val();
    else o.variants.push(a);
  }
  if (o.variants.length === 0) o.variants = [""];
  return o;
}

/** One variant: how Loom is started. */
interface Variant {
  label: string;
  bundle: boolean;
  /** The bundle's directory (`bundle:DIR`); null: `--dist`. */
  dist: string | null;
  idle: boolean;
  flags: string[];
}

function variantOf(spec: string): Variant {
  const s = spec.trim();
  if (s === "deno") return { label: "deno (idle script)", bundle: false, idle: true, dist: null, flags: [] };
  const m = /^bundle(?::(\S+))?(?:\s+|$)/.exec(s);
  const flags = (m ? s.slice(m[0].length) : s).split(/\s+/).filter(Boolean);
  const label = `${m ? m[0].trim() : "source"}${flags.length ? " " + flags.join(" ") : ""}`;
  return { label, bundle: m !== null, idle: false, dist: m?.[1] ?? null, flags };
}

/** Starts `v` on CPU 1 and waits until it serves (an idle script: until it has started). */
async function startVariant(
  v: Variant,
  i: number,
  ups: number[],
  o: Options,
): Promise<Proc & { port: number }> {
  const dir = `${rigDir()}/m${i}`;
  Deno.mkdirSync(dir, { recursive: true });
  const port = freePort();
  if (v.idle) {
    const script = `${dir}/idle.ts`;
    Deno.writeTextFileSync(script, `console.log("ready"); setInterval(() => {}, 1 << 30);\n`);
    const p = spawn(v.label, [...pin("1"), Deno.execPath(), "run", ...v.flags, script], `${dir}/log`);
    const deadline = Date.now() + 10_000;
    const started = () => {
      try {
        return Deno.readTextFileSync(p.log).includes("ready");
      } catch {
        return false; // the shell has not opened the log yet
      }
    };
    while (!started()) {
      if (Date.now() > deadline || p.exited) throw new Error("idle deno did not start");
      await sleep(50);
    }
    return Object.assign(p, { port });
  }
  const yaml = o.config !== null
    ? Deno.readTextFileSync(o.config).replaceAll("{{PORT}}", String(port))
      .replaceAll("{{ADMIN}}", String(freePort())).replaceAll("{{UPSTREAM}}", String(ups[0]))
    : loomConfig(1, port, freePort(), ups, dir);
  Deno.writeTextFileSync(`${dir}/loom.yaml`, yaml);
  const entry = v.bundle ? [`${v.dist ?? o.dist}/loom.js`] : ["src/cli/main.ts"];
  const p = spawn(
    `Loom (${v.label})`,
    [
      ...pin("1"),
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      ...(v.bundle ? ["--no-config"] : []),
      // As shipped (the start task's and the bundle's shebang's young generation); a variant's flags win.
      ...startTaskV8Flags(),
      ...v.flags,
      ...entry,
      "run",
      "-c",
      `${dir}/loom.yaml`,
      "--log-level",
      "error",
    ],
    `${dir}/loom.log`,
  );
  await waitReady(p, port, 60_000);
  return Object.assign(p, { port });
}

interface Row {
  label: string;
  round: number;
  startMiB: number;
  peakMiB: number;
  endMiB: number;
  cpu: number;
  rps: number;
}

async function measure(v: Variant, i: number, round: number, ups: number[], o: Options): Promise<Row> {
  const p = await startVariant(v, i, ups, o);
  try {
    await sleep(o.settle * 1000);
    const startMiB = treeRssKiB(p.pid) / 1024;
    if (v.idle) return { label: v.label, round, startMiB, peakMiB: NaN, endMiB: NaN, cpu: NaN, rps: NaN };
    let peak = 0;
    const sampler = setInterval(() => peak = Math.max(peak, treeRssKiB(p.pid)), 250);
    const cpu0 = treeCpuSeconds(p.pid);
    const { text } = await runWrk(p.port, o.conns, o.duration);
    const cpuS = treeCpuSeconds(p.pid) - cpu0;
    const endKiB = treeRssKiB(p.pid);
    clearInterval(sampler);
    const w = parseWrkOutput(text);
    if (w.totalErrors > 0) console.log(`    ${v.label}: ${w.totalErrors} wrk errors`);
    return {
      label: v.label,
      round,
      startMiB,
      peakMiB: Math.max(peak, endKiB) / 1024,
      endMiB: endKiB / 1024,
      cpu: cpuS * 1e6 / Math.max(1, w.requests),
      rps: w.rps,
    };
  } finally {
    await stop(p);
  }
}

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  const variants = o.variants.map(variantOf);
  for (const v of variants.filter((v) => v.bundle)) {
    const dir = v.dist ?? o.dist;
    try {
      Deno.statSync(`${dir}/loom.js`);
    } catch {
      throw new Error(`${dir}/loom.js is missing: run \`deno task bundle --out ${dir}\` first`);
    }
  }
  const { ups } = await startRig({
    conns: [o.conns],
    duration: o.duration,
    realistic: false,
    accessLog: false,
    loomFlags: [],
  });
  const rows: Row[] = [];
  const f = (x: number) => Number.isNaN(x) ? "—" : formatFixed(x, 1);
  for (let round = 1; round <= o.rounds; round++) {
    for (const [i, v] of variants.entries()) {
      const r = await measure(v, i, round, ups, o);
      rows.push(r);
      console.log(
        `  round ${round} ${v.label}: start ${f(r.startMiB)} MiB, c${o.conns} peak ${f(r.peakMiB)} end ${
          f(r.endMiB)
        } MiB, ${f(r.cpu)} µs/req, ${Number.isNaN(r.rps) ? "—" : Math.round(r.rps)} req/s`,
      );
    }
  }
  const table = variants.map((v) => {
    const rs = rows.filter((r) => r.label === v.label);
    const m = (g: (r: Row) => number) => median(rs.map(g));
    const range = (g: (r: Row) => number) => {
      const xs = rs.map(g);
      return `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
    };
    return [
      v.label,
      f(m((r) => r.startMiB)),
      range((r) => r.startMiB),
      f(m((r) => r.peakMiB)),
      range((r) => r.peakMiB),
      f(m((r) => r.cpu)),
      Number.isNaN(m((r) => r.rps)) ? "—" : String(Math.round(m((r) => r.rps))),
    ];
  });
  console.log(
    `\nVmRSS, workers: 1, ${o.config ?? "bare config"}; medians of ${o.rounds} alternating rounds; ` +
      `after ${o.settle} s idle, then ${o.duration} s of wrk c${o.conns}\n`,
  );
  console.log(markdownTable(
    ["variant", "after start MiB", "range", `c${o.conns} peak MiB`, "range", "CPU µs/req", "req/s"],
    table,
  ));
}

if (import.meta.main) {
  Deno.addSignalListener("SIGINT", () => void cleanup().finally(() => Deno.exit(130)));
  try {
    await main();
    await cleanup();
    Deno.exit(0);
  } catch (e) {
    console.error(`memory: ${(e as Error).stack ?? e}`);
    await cleanup();
    Deno.exit(1);
  }
}
