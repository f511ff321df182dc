/**
 * tcp listeners (issue 14 item 10): one stream of N MiB pushed through Loom to
 * a sink upstream (throughput), and short connections (a few bytes each way,
 * then closed) at a fixed concurrency (connections per second), each three
 * ways, alternated per round: straight to the sink, through a tcp listener, and
 * through a tcp listener with the network filter plugins/test/network.wasm
 * (counting bytes, looking at each window's first 256 bytes). Loom runs as a
 * child process (`loom run`); the sink and the client run in this process, so
 * on a 2-core machine the three compete: figures are relative.
 *
 * The filter path's cost per chunk (--cpu-prof of Loom, 1500 MiB through the
 * filtered listener): a copy of every 64 KiB read (so a filter could hold it)
 * was 15 % of the process's samples plus GC; the copy is now made only when a
 * filter pauses on the bytes. Alternating runs before/after, MiB/s of the
 * filtered stream (median of 3): 476, 329, 497 before; 722, 646, 594 after
 * (the plain tcp listener: 818, 630, 631 / 779, 1071, 526). What is left per
 * chunk is the sockets' reads and writes; the callbacks themselves (timeslice
 * entry included) are about 2 % of the samples.
 *
 *   deno run -A --unstable-net bench/tcp_proxy.ts [--mib N] [--conns N] [--concurrency C] [--rounds R]
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    mib: { type: "string", default: "200" },
    conns: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "16" },
    rounds: { type: "string", default: "3" },
  },
});
const MIB = Number(values.mib);
const CONNS = Number(values.conns);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const REPO = new URL("../", import.meta.url).pathname;
const enc = new TextEncoder();

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The sink: reads everything, then answers "done" and closes. */
const sink = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const sinkPort = (sink.addr as Deno.NetAddr).port;
(async () => {
  for await (const c of sink) {
    (async () => {
      const buf = new Uint8Array(256 * 1024);
      while ((await c.read(buf)) !== null) { /* discarded */ }
      await c.write(enc.encode("done"));
      c.close();
    })().catch(() => {});
  }
})();

const plain = freePort(), filtered = freePort(), admin = freePort();
const dir = Deno.makeTempDirSync({ prefix: "loom-tcp-bench-" });
Deno.writeTextFileSync(
  `${dir}/loom.yaml`,
  `listeners:
  - { name: plain, address: "127.0.0.1:${plain}", protocol: tcp, upstream: sink }
  - { name: filtered, address: "127.0.0.1:${filtered}", protocol: tcp, upstream: sink, plugins: [net] }
upstreams: [{ name: sink, endpoints: ["127.0.0.1:${sinkPort}"] }]
plugins: [{ name: net, path: "${REPO}plugins/test/network.wasm", config: "" }]
admin: { address: "127.0.0.1:${admin}" }
access_log: { enabled: false }
`,
);
const loom = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    "--unstable-net",
    `${REPO}src/cli/main.ts`,
    "run",
    "-c",
    `${dir}/loom.yaml`,
    "--log-level",
    "error",
  ],
  stdout: "null",
  stderr: "inherit",
}).spawn();
for (let i = 0;; i++) {
  try {
    const r = await fetch(`http://127.0.0.1:${admin}/ready`);
    await r.body?.cancel();
    if (r.ok) break;
  } catch { /* not yet */ }
  if (i > 300) throw new Error("loom did not get ready");
  await new Promise((r) => setTimeout(r, 50));
}

const chunk = new Uint8Array(64 * 1024).fill(120);

/** MiB/s of one connection pushing MIB MiB, half-closing and waiting for the sink's answer. */
async function stream(port: number): Promise<number> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const t0 = performance.now();
  for (let sent = 0; sent < MIB * 1024 * 1024; sent += chunk.length) {
    let off = 0;
    while (off < chunk.length) off += await c.write(chunk.subarray(off));
  }
  await c.closeWrite();
  const buf = new Uint8Array(16);
  while ((await c.read(buf)) !== null) { /* "done" */ }
  c.close();
  return MIB / ((performance.now() - t0) / 1000);
}

/** Connections per second: CONNS short connections, CONCURRENCY at a time. */
async function shortConns(port: number): Promise<number> {
  const t0 = performance.now();
  let started = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (started < CONNS) {
      started++;
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.write(enc.encode("ping"));
      await c.closeWrite();
      const buf = new Uint8Array(16);
      while ((await c.read(buf)) !== null) { /* "done" */ }
      c.close();
    }
  }));
  return CONNS / ((performance.now() - t0) / 1000);
}

const targets: [string, number][] = [["direct", sinkPort], ["loom", plain], ["loom + filter", filtered]];
const mbs = new Map<string, number[]>(targets.map(([n]) => [n, []]));
const cps = new Map<string, number[]>(targets.map(([n]) => [n, []]));
await stream(filtered); // warms the plugin's VM
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, port] of targets) mbs.get(name)!.push(await stream(port));
  for (const [name, port] of targets) cps.get(name)!.push(await shortConns(port));
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const row = (a: number[]) => `${median(a).toFixed(0)} (${a.map((x) => x.toFixed(0)).join(", ")})`;
console.log(`| path | MiB/s, one stream of ${MIB} MiB | connections/s, ${CONCURRENCY} at a time |`);
console.log("| --- | --- | --- |");
for (const [name] of targets) console.log(`| ${name} | ${row(mbs.get(name)!)} | ${row(cps.get(name)!)} |`);
loom.kill("SIGTERM");
await loom.status;
sink.close();
Deno.removeSync(dir, { recursive: true });
Deno.exit(0);
