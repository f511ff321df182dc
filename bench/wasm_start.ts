/**
 * Plugin start-up (issue 14 item 4), two figures:
 *
 * 1. VM start time of the Go filter (plugins/sdk-go, 2.4 MiB): cold (a
 *    fresh process: read, instrument and compile the module in the compile
 *    worker, instantiate, `_initialize` with the Go runtime, on_vm_start,
 *    on_configure) and warm (the module compiled already: a second plugin
 *    definition of the same file, from the content cache), median of several.
 * 2. The longest event-loop stall while a reload adds a 3 MiB module (the Go
 *    filter padded with a custom section, so nothing is cached): a running
 *    gateway with a request loop on a route without plugins, a 1 ms timer
 *    measuring the event loop's lag, and each request's latency.
 *
 *   deno run -A --unstable-net bench/wasm_start.ts
 */
import { PluginManager } from "../src/wasm/mod.ts";
import type { LoomConfig, PluginConfig } from "../src/config/types.ts";
import { Supervisor } from "../src/runtime/supervisor.ts";
import { setLogLevel } from "../src/observability/logger.ts";

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

// 1. Cold, then warm starts of the Go filter.
const m = new PluginManager();
const cfgs = [pluginCfg("cold", GO)];
const cold = await startTime(m, cfgs, "cold");
const warm: number[] = [];
for (let i = 0; i < 7; i++) {
  cfgs.push(pluginCfg(`warm${i}`, GO));
  warm.push(await startTime(m, cfgs, `warm${i}`));
}
warm.sort((a, b) => a - b);
console.log(
  `Go filter VM start: cold ${cold.toFixed(1)} ms (compile + start), warm median ${
    warm[3].toFixed(1)
  } ms (min ${warm[0].toFixed(1)}, max ${warm[6].toFixed(1)})`,
);

// 2. The event loop while a reload adds a 3 MiB module.
const dir = Deno.makeTempDirSync();
const go = Deno.readFileSync(GO);
const padLen = 3 * 1024 * 1024 - go.length;
const name = new TextEncoder().encode("pad");
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
const body = padLen - 1 - 5 - 1 - name.length;
const big = new Uint8Array(3 * 1024 * 1024);
big.set(go);
const section = [0, ...leb(1 + name.length + body)];
big.set(section, go.length);
big.set([name.length, ...name], go.length + section.length);
const bigWasm = `${dir}/big.wasm`;
Deno.writeFileSync(bigWasm, big.subarray(0, go.length + section.length + 1 + name.length + body));

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
`;
const configPath = `${dir}/loom.yaml`;
Deno.writeTextFileSync(configPath, base + `routes: [{id: all, path: "/*", upstream: up}]\n`);
const sup = await Supervisor.start({ configPath, watch: false });

let maxLag = 0, maxReq = 0, requests = 0, measuring = false;
let last = performance.now();
const lagTimer = setInterval(() => {
  const now = performance.now();
  if (measuring) maxLag = Math.max(maxLag, now - last - 1);
  last = now;
}, 1);
let stop = false;
const client = (async () => {
  while (!stop) {
    const t = performance.now();
    await (await fetch(`http://127.0.0.1:${port}/x`)).text();
    if (measuring) maxReq = Math.max(maxReq, performance.now() - t), requests++;
  }
})();
await new Promise((r) => setTimeout(r, 300));
// The same loop without a reload first: the machine's own stalls (other processes, GC).
measuring = true;
await new Promise((r) => setTimeout(r, 1000));
measuring = false;
const idle = { lag: maxLag, req: maxReq, requests };
maxLag = maxReq = requests = 0;
measuring = true;
Deno.writeTextFileSync(
  configPath,
  base + `routes: [{id: all, path: "/*", upstream: up}, {id: go, path: "/go/*", upstream: up, plugins: [big]}]
plugins: [{name: big, path: "${bigWasm}", root_id: loom_go, config: c, memory_limit: 64MB}]
`,
);
const t0 = performance.now();
const res = await sup.reload("bench");
if (!res.ok) throw new Error("reload failed: " + JSON.stringify(res));
// Until the new plugin's VM runs (compiled and started in the background).
for (;;) {
  const info = await sup.plugins();
  if (info[0]?.running) break;
  if (info[0]?.last_error) throw new Error(info[0].last_error);
  await new Promise((r) => setTimeout(r, 5));
}
const took = performance.now() - t0;
await new Promise((r) => setTimeout(r, 200));
measuring = false;
stop = true;
await client;
clearInterval(lagTimer);
console.log(
  `without a reload (1 s): longest event-loop stall ${idle.lag.toFixed(1)} ms, slowest of ${idle.requests} ` +
    `requests ${idle.req.toFixed(1)} ms`,
);
console.log(
  `reload adding a 3 MiB module: plugin running after ${took.toFixed(0)} ms; longest event-loop stall ${
    maxLag.toFixed(1)
  } ms, slowest of ${requests} requests meanwhile ${maxReq.toFixed(1)} ms`,
);
await sup.shutdown(500);
await upstream.shutdown();
Deno.removeSync(dir, { recursive: true });
Deno.exit(0);
