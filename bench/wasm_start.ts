/**
 * Plugin start-up (issue 14 item 4), two figures:
 *
 * 1. VM start time of the Go filter (plugins/sdk-go, 2.4 MiB): cold (a
 *    fresh process: read, instrument, compile and warm up the module in the
 *    compile worker, instantiate, `_initialize` with the Go runtime,
 *    on_vm_start, on_configure) and warm (the module compiled already: a
 *    second plugin definition of the same file, from the content cache),
 *    median of several.
 * 2. The event loop while a reload adds a 3 MiB module (the Go filter padded
 *    with a custom section, new padding each time, so nothing is cached): a
 *    running gateway (with a plugin already) with a request loop on a route
 *    without plugins, a 1 ms timer measuring the event loop's lag, and each
 *    request's latency. Each round has three windows in rotating order: a
 *    reload while the compile worker runs (a gateway with plugins keeps it),
 *    a reload that has to start it (ended before: the first plugin of a
 *    gateway that had none, or a compile worker that crashed),
 *    and one of the same length without a reload (the machine's own stalls:
 *    other processes, GC). Medians of each, and the verdict against the
 *    target (no request waits more than 10 ms). On Linux the main thread's
 *    schedstat splits the longest stall into the time it waited for a CPU
 *    (the machine's load, this process's other threads) and its hold of the
 *    loop on a CPU (work on the event loop), which a busy shared machine
 *    does not inflate.
 *
 *   deno run -A --unstable-net bench/wasm_start.ts [--rounds N]
 */
import { parseArgs } from "node:util";
import { PluginManager } from "../src/wasm/mod.ts";
import { endCompileWorker } from "../src/wasm/compile.ts";
import type { LoomConfig, PluginConfig } from "../src/config/types.ts";
import { Supervisor } from "../src/runtime/supervisor.ts";
import { setLogLevel } from "../src/observability/logger.ts";

const { values: args } = parseArgs({ options: { rounds: { type: "string", default: "5" } } });
const ROUNDS = Math.max(1, Number(args.rounds));
/** The target of issue 14: no request waits longer than this while a reload adds a module (ms). */
const TARGET_MS = 10;

setLogLevel("error");
const GO = new URL("../plugins/sdk-go/http_filter.wasm", import.meta.url).pathname;

function pluginCfg(name: string, path: string): PluginConfig {
  return {
    name,
    path,
    root_id: "loom_go",
    config: "bench",
    memory_limit: 64 * 1024 * 1024,
    timeout: 50,
    priority: 0,
    failure_policy: "fail_closed",
  } as PluginConfig;
}

async function startTime(m: PluginManager, cfgs: PluginConfig[], name: string): Promise<number> {
  const t0 = performance.now();
  m.update({ plugins: cfgs } as unknown as LoomConfig, new Map());
  const chain = m.chain([name])!;
  const vm = await chain.plugins[0].getVM();
  if (vm === null) throw new Error(`${name} did not start: ${chain.plugins[0].lastError}`);
  return performance.now() - t0;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f1 = (x: number) => x.toFixed(1);

// 1. Cold, then warm starts of the Go filter.
const m = new PluginManager();
const cfgs = [pluginCfg("cold", GO)];
const cold = await startTime(m, cfgs, "cold");
const warm: number[] = [];
for (let i = 0; i < 7; i++) {
  cfgs.push(pluginCfg(`warm${i}`, GO));
  warm.push(await startTime(m, cfgs, `warm${i}`));
}
console.log(
  `Go filter VM start: cold ${f1(cold)} ms (compile + start), warm median ${f1(median(warm))} ms ` +
    `(min ${f1(Math.min(...warm))}, max ${f1(Math.max(...warm))})`,
);

// 2. The event loop while a reload adds a 3 MiB module, against windows without a reload.
const dir = Deno.makeTempDirSync();
const go = Deno.readFileSync(GO);
const leb = (n: number) => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
};
/** The Go filter with a custom section "pad" of `round`-specific bytes, 3 MiB in all. */
function bigModule(round: number): string {
  const name = new TextEncoder().encode("pad");
  const body = 3 * 1024 * 1024 - go.length - 1 - 5 - 1 - name.length;
  const section = [0, ...leb(1 + name.length + body)];
  const big = new Uint8Array(go.length + section.length + 1 + name.length + body);
  big.set(go);
  big.set(section, go.length);
  big.set([name.length, ...name], go.length + section.length);
  big.fill(round + 1, go.length + section.length + 1 + name.length);
  const path = `${dir}/big${round}.wasm`;
  Deno.writeFileSync(path, big);
  return path;
}

const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response("ok"));
const port = (() => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
})();
const base = `listeners: [{name: http, address: "127.0.0.1:${port}", protocol: http}]
upstreams: [{name: up, endpoints: ["127.0.0.1:${upstream.addr.port}"]}]
access_log: {enabled: false}
admin: {enabled: false}
routes: [{id: all, path: "/*", upstream: up}, {id: go, path: "/go/*", upstream: up, plugins: [big]}]
`;
const configPath = `${dir}/loom.yaml`;
const pluginsOf = (path: string) =>
  `plugins: [{name: big, path: "${path}", root_id: loom_go, config: c, memory_limit: 64MB}]\n`;
Deno.writeTextFileSync(configPath, base + pluginsOf(bigModule(-1)));
const sup = await Supervisor.start({ configPath, watch: false });

/**
 * The main thread's time on a CPU and waiting for one so far (ns; Linux
 * schedstat), null elsewhere: how much of a stall was the machine's (other
 * processes, or this process's other threads, holding the CPUs) rather than
 * work on the event loop.
 */
function schedstat(): [number, number] | null {
  if (schedFile === null) return null;
  try {
    // Re-read through one open file (read every millisecond: opening it each time cost ~3 % of the loop).
    schedFile.seekSync(0, Deno.SeekMode.Start);
    const n = schedFile.readSync(schedBuf) ?? 0;
    const [run, wait] = new TextDecoder().decode(schedBuf.subarray(0, n)).split(" ").map(Number);
    return [run, wait];
  } catch {
    return null;
  }
}
const schedBuf = new Uint8Array(128);
const schedFile = (() => {
  try {
    return Deno.openSync("/proc/thread-self/schedstat");
  } catch {
    return null;
  }
})();

/**
 * The measured window's worst event-loop lag (and how much of it the thread
 * waited for a CPU), its longest hold of the event loop on a CPU (a lag less
 * the thread's wait for a CPU meanwhile: the work on the loop, whatever the
 * machine's load), worst request latency, and its request count.
 */
type Window = { lag: number; wait: number; busy: number; req: number; requests: number };
const empty = (): Window => ({ lag: 0, wait: 0, busy: 0, req: 0, requests: 0 });
let win = empty(), measuring = false;
let last = performance.now(), lastSched = schedstat();
const lagTimer = setInterval(() => {
  const now = performance.now(), sched = schedstat();
  const lag = now - last - 1;
  const wait = sched !== null && lastSched !== null ? (sched[1] - lastSched[1]) / 1e6 : NaN;
  if (measuring) {
    if (lag > win.lag) win.lag = lag, win.wait = wait;
    win.busy = Math.max(win.busy, lag - (wait || 0));
  }
  last = now, lastSched = sched;
}, 1);
let stop = false;
const client = (async () => {
  while (!stop) {
    const t = performance.now();
    await (await fetch(`http://127.0.0.1:${port}/x`)).text();
    if (measuring) win.req = Math.max(win.req, performance.now() - t), win.requests++;
  }
})();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function running(): Promise<void> {
  for (;;) {
    const info = await sup.plugins();
    if (info[0]?.running) return;
    if (info[0]?.last_error) throw new Error(info[0].last_error);
    await sleep(5);
  }
}

/** Measures `ms` of the request loop without a reload. */
async function idleWindow(ms: number) {
  win = empty();
  measuring = true;
  await sleep(ms);
  measuring = false;
  return win;
}

let modules = 0;

/** Measures a reload adding a new 3 MiB module until its VM runs, plus 200 ms. */
async function reloadWindow(coldWorker: boolean) {
  const path = bigModule(modules++);
  if (coldWorker) endCompileWorker();
  win = empty();
  measuring = true;
  const t0 = performance.now();
  Deno.writeTextFileSync(configPath, base + pluginsOf(path));
  const res = await sup.reload("bench");
  if (!res.ok) throw new Error("reload failed: " + JSON.stringify(res));
  await running();
  const took = performance.now() - t0;
  await sleep(200);
  measuring = false;
  Deno.removeSync(path);
  return { ...win, took, ms: performance.now() - t0 };
}

await running();
await sleep(300);
const idle: Window[] = [], warmReload: (Window & { took: number })[] = [], coldReload: typeof warmReload = [];
const show = (w: Window) =>
  `stall ${f1(w.lag)} ms (${f1(w.wait)} waiting for a CPU), longest hold ${f1(w.busy)} ms, slowest of ` +
  `${w.requests} requests ${f1(w.req)} ms`;
for (let r = 0; r < ROUNDS; r++) {
  // Rotating the order: drift in the machine's load hits all three alike.
  const kinds = ["warm", "cold", "idle"];
  for (let k = 0; k < 3; k++) {
    const kind = kinds[(k + r) % 3];
    if (kind === "idle") idle.push(await idleWindow(Math.max(500, (warmReload.at(-1)?.took ?? 300) + 200)));
    else (kind === "warm" ? warmReload : coldReload).push(await reloadWindow(kind === "cold"));
    await sleep(100);
  }
  const w = warmReload.at(-1)!, c = coldReload.at(-1)!;
  console.log(
    `round ${r + 1}: reload, compile worker running: ${show(w)} (plugin running after ${
      w.took.toFixed(0)
    } ms); ` +
      `starting it: ${show(c)} (${c.took.toFixed(0)} ms); no reload: ${show(idle.at(-1)!)}`,
  );
}
stop = true;
await client;
clearInterval(lagTimer);
const med = (xs: Window[]) =>
  `longest event-loop stall ${f1(median(xs.map((x) => x.lag)))} ms (of it waiting for a CPU: ${
    f1(median(xs.map((x) => x.wait)))
  } ms), longest hold of the loop on a CPU ${f1(median(xs.map((x) => x.busy)))} ms, slowest request ${
    f1(median(xs.map((x) => x.req)))
  } ms`;
const took = (xs: { took: number }[]) => median(xs.map((x) => x.took)).toFixed(0);
console.log(`medians of ${ROUNDS} rounds:`);
console.log(
  `  reload adding a 3 MiB module, compile worker running: ${med(warmReload)} (plugin running after ${
    took(warmReload)
  } ms)`,
);
console.log(
  `  the same, the compile worker to be started:            ${med(coldReload)} (plugin running after ${
    took(coldReload)
  } ms)`,
);
console.log(`  no reload (the machine's own):                         ${med(idle)}`);
const worst = (xs: Window[]) => median(xs.map((x) => x.req));
const hold = (xs: Window[]) => median(xs.map((x) => x.busy));
const verdict = (xs: Window[]) => worst(xs) <= TARGET_MS ? "met" : "missed";
console.log(
  `target (no request waits more than ${TARGET_MS} ms during the reload): ${
    verdict(warmReload)
  } with the compile ` +
    `worker running (${f1(worst(warmReload))} ms), ${verdict(coldReload)} when it must start (${
      f1(worst(coldReload))
    } ms); without a reload the slowest request took ${f1(worst(idle))} ms`,
);
console.log(
  `the loop's own longest hold on a CPU (the machine's waits taken out): ${
    f1(hold(warmReload))
  } ms with the ` +
    `compile worker running, ${f1(hold(coldReload))} ms when it must start, ${f1(hold(idle))} ms without a ` +
    `reload: ${
      hold(warmReload) <= TARGET_MS ? "within" : "over"
    } the ${TARGET_MS} ms target with the worker running`,
);
await sup.shutdown(500);
await upstream.shutdown();
Deno.removeSync(dir, { recursive: true });
Deno.exit(0);
