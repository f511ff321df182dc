/**
 * eBPF acceleration (issue 17), in one run, on the rig of bench/run.ts (nginx upstream and wrk on
 * CPU 0, Loom on CPU 1, one Loom at a time, variants alternated per round):
 *
 *   HTTP   wrk → Loom → nginx on loopback, without eBPF and with socket_redirect: req/s, CPU µs per
 *          request of Loom and of the upstream (utime+stime from /proc), p50 and p99, at c64 and c1.
 *   tunnel one upgraded tunnel through Loom (a peer process on CPU 0 both ends: the client sends or
 *          receives N MiB, the upstream sinks or sources them), without eBPF, with socket_redirect,
 *          and with splice_tunnels: MB/s each way and Loom's CPU ms per 100 MB.
 *
 *   deno run -A --unstable-net bench/ebpf.ts [--rounds N] [--duration S] [--conns 64,1] [--mib N]
 *
 * Needs root (or CAP_BPF + CAP_NET_ADMIN), cgroup v2, libbpf1, wrk and nginx; prints why and exits 0
 * otherwise. Results go to stdout and bench/results/<timestamp>-ebpf.md. Only 127.0.0.1 is used.
 *
 * @module
 */
import {
  cleanup,
  configureRig,
  freePort,
  logTail,
  type Proc,
  runWrk,
  spawn,
  startNginxUpstream,
  stop,
  treeCpuSeconds,
  which,
} from "./run.ts";
import { formatFixed, formatLatency, markdownTable, median, parseWrkOutput } from "./parse.ts";
import { checkSupport } from "../src/ebpf/support.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

type Mode = "off" | "socket_redirect" | "splice_tunnels";

function parseArgs(argv: string[]) {
  const o = { rounds: 3, duration: 8, conns: [64, 1], mib: 256 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === "--rounds") (o.rounds = Number(v), i++);
    else if (argv[i] === "--duration") (o.duration = Number(v), i++);
    else if (argv[i] === "--conns") (o.conns = v.split(",").map(Number), i++);
    else if (argv[i] === "--mib") (o.mib = Number(v), i++);
  }
  return o;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function ebpfYaml(mode: Mode): string {
  if (mode === "off") return "";
  return `ebpf:
  enabled: true
  socket_redirect: ${mode === "socket_redirect"}
  splice_tunnels: ${mode === "splice_tunnels"}
`;
}

/** A Loom on CPU 1 with one route to the nginx upstream and one to the tunnel peer. */
async function startLoom(
  dir: string,
  mode: Mode,
  upstreamPort: number,
  tunnelPort: number,
  taskset: string | null,
): Promise<{ proc: Proc; port: number; admin: number }> {
  const port = freePort(), admin = freePort();
  const cfg = `${dir}/loom-${mode}.yaml`;
  Deno.writeTextFileSync(
    cfg,
    `listeners:
  - name: http
    address: "127.0.0.1:${port}"
    protocol: http
admin:
  address: "127.0.0.1:${admin}"
access_log:
  enabled: false
upstreams:
  - name: up
    endpoints: ["127.0.0.1:${upstreamPort}"]
  - name: tunnel
    endpoints: ["127.0.0.1:${tunnelPort}"]
routes:
  - id: tunnel
    path: /tunnel
    upstream: tunnel
  - id: all
    path: /*
    upstream: up
${ebpfYaml(mode)}`,
  );
  const proc = spawn(
    `Loom (${mode})`,
    [
      ...(taskset ? [taskset, "-c", "1"] : []),
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      "src/cli/main.ts",
      "run",
      "-c",
      cfg,
      "--log-level",
      "warn",
    ],
    `${dir}/loom-${mode}.log`,
    REPO,
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exited) throw new Error(`Loom (${mode}) exited:\n${logTail(proc)}`);
    try {
      const r = await fetch(`http://127.0.0.1:${admin}/ready`);
      await r.body?.cancel();
      if (r.status === 200) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`Loom (${mode}) not ready:\n${logTail(proc)}`);
    await sleep(100);
  }
  if (mode !== "off") {
    const st = await (await fetch(`http://127.0.0.1:${admin}/ebpf`)).json();
    const on = mode === "socket_redirect"
      ? st.socket_redirect.attached
      : st.splice_tunnels.instances[0]?.current;
    if (!on) throw new Error(`Loom (${mode}): eBPF not active: ${JSON.stringify(st)}\n${logTail(proc)}`);
  }
  return { proc, port, admin };
}

/**
 * The tunnel peer (one process, CPU 0): an upstream answering an upgrade with 101 that then sinks
 * ("up": counts until end of stream) or sources ("down": writes N MiB then closes), and a client
 * doing the other side through Loom, timing the transfer. Prints one JSON line per transfer.
 */
const PEER = `
const [mode, portArg, loomArg, mibArg] = Deno.args;
const CHUNK = new Uint8Array(256 * 1024).fill(0x61);
async function head(c) {
  let s = ""; const b = new Uint8Array(4096);
  while (!s.includes("\\r\\n\\r\\n")) { const n = await c.read(b); if (n === null) throw new Error("eof"); s += new TextDecoder().decode(b.subarray(0, n)); }
  return s;
}
async function writeN(c, bytes) { let left = bytes; while (left > 0) { const n = await c.write(CHUNK.subarray(0, Math.min(left, CHUNK.length))); left -= n; } }
async function readAll(c) { let total = 0; const b = new Uint8Array(1 << 20); for (;;) { const n = await c.read(b); if (n === null) return total; total += n; } }
if (mode === "upstream") {
  const l = Deno.listen({ hostname: "127.0.0.1", port: Number(portArg) });
  console.log("ready");
  for await (const c of l) {
    (async () => {
      const h = await head(c);
      const dir = /x-dir: (\\w+)/.exec(h)[1], bytes = Number(/x-bytes: (\\d+)/.exec(h)[1]);
      await c.write(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\\r\\nupgrade: bench\\r\\nconnection: upgrade\\r\\n\\r\\n"));
      if (dir === "up") await readAll(c); else { await writeN(c, bytes); await c.closeWrite(); await readAll(c); }
      c.close();
    })().catch(() => {});
  }
} else {
  const bytes = Number(mibArg) * 1024 * 1024;
  for (const dir of ["up", "down"]) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: Number(loomArg) });
    await c.write(new TextEncoder().encode(\`GET /tunnel HTTP/1.1\\r\\nhost: x\\r\\nupgrade: bench\\r\\nconnection: upgrade\\r\\nx-dir: \${dir}\\r\\nx-bytes: \${bytes}\\r\\n\\r\\n\`));
    await head(c);
    const t0 = performance.now();
    let got = 0;
    if (dir === "up") { await writeN(c, bytes); await c.closeWrite(); await readAll(c); got = bytes; }
    else { got = await readAll(c); await c.closeWrite(); }
    const s = (performance.now() - t0) / 1000;
    c.close();
    console.log(JSON.stringify({ dir, bytes: got, seconds: s }));
  }
}
`;

interface HttpRow {
  mode: Mode;
  conns: number;
  rps: number;
  loomUs: number;
  upUs: number;
  p50: number;
  p99: number;
}

interface TunnelRow {
  mode: Mode;
  dir: string;
  mbps: number;
  loomMsPer100MB: number;
}

async function runTunnel(
  dir: string,
  loomPort: number,
  loom: Proc,
  mib: number,
  taskset: string | null,
): Promise<{ dir: string; mbps: number; loomMsPer100MB: number }[]> {
  const out: { dir: string; mbps: number; loomMsPer100MB: number }[] = [];
  const cpu0 = treeCpuSeconds(loom.pid);
  const r = await new Deno.Command("sh", {
    args: [
      "-c",
      `${
        taskset ? `${taskset} -c 0 ` : ""
      }'${Deno.execPath()}' run -A '${dir}/peer.js' client 0 ${loomPort} ${mib}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const cpu = treeCpuSeconds(loom.pid) - cpu0;
  const lines = new TextDecoder().decode(r.stdout).trim().split("\n").filter((l) => l.startsWith("{"));
  if (lines.length !== 2) throw new Error(`tunnel peer: ${new TextDecoder().decode(r.stderr)}`);
  const results = lines.map((l) => JSON.parse(l) as { dir: string; bytes: number; seconds: number });
  const totalBytes = results.reduce((a, x) => a + x.bytes, 0);
  for (const x of results) {
    out.push({
      dir: x.dir === "up" ? "client → upstream" : "upstream → client",
      mbps: x.bytes / 1e6 / x.seconds,
      // Loom's CPU over both transfers, per 100 MB moved.
      loomMsPer100MB: cpu * 1000 / (totalBytes / 1e8),
    });
  }
  return out;
}

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  const wrk = which("wrk"), nginx = which("nginx");
  const support = checkSupport();
  const missing = [
    ...(wrk ? [] : ["wrk (apt-get install wrk)"]),
    ...(nginx ? [] : ["nginx (apt-get install nginx)"]),
    ...support.missing,
  ];
  if (missing.length > 0) {
    console.log(`bench/ebpf.ts needs: ${missing.join("; ")}`);
    return;
  }
  const taskset = which("taskset");
  const tmp = configureRig(
    { realistic: false, accessLog: false, cache: false, loomFlags: [], probePath: "/file" },
    { wrk: wrk!, taskset },
  );
  const upPort = freePort();
  const upstream = await startNginxUpstream(nginx!, [upPort]);
  const peerPort = freePort();
  Deno.writeTextFileSync(`${tmp}/peer.js`, PEER);
  spawn(
    "tunnel peer",
    [
      ...(taskset ? [taskset, "-c", "0"] : []),
      Deno.execPath(),
      "run",
      "-A",
      `${tmp}/peer.js`,
      "upstream",
      String(peerPort),
    ],
    `${tmp}/peer.log`,
  );
  await sleep(1500);
  const http: HttpRow[] = [];
  const tunnels: TunnelRow[] = [];
  const modes: Mode[] = ["off", "socket_redirect", "splice_tunnels"];
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 === 0 ? modes : [...modes].reverse();
    for (const mode of order) {
      const loom = await startLoom(tmp, mode, upPort, peerPort, taskset);
      try {
        if (mode !== "splice_tunnels") {
          await runWrk(loom.port, 64, 2); // warm-up
          for (const conns of o.conns) {
            const l0 = treeCpuSeconds(loom.proc.pid), u0 = treeCpuSeconds(upstream.pid);
            const { text } = await runWrk(loom.port, conns, o.duration);
            const l1 = treeCpuSeconds(loom.proc.pid), u1 = treeCpuSeconds(upstream.pid);
            const w = parseWrkOutput(text);
            http.push({
              mode,
              conns,
              rps: w.requests / w.durationS,
              loomUs: (l1 - l0) * 1e6 / w.requests,
              upUs: (u1 - u0) * 1e6 / w.requests,
              p50: w.p50Us,
              p99: w.p99Us,
            });
            console.log(
              `round ${round + 1} ${mode} c${conns}: ${Math.round(w.requests / w.durationS)} req/s, Loom ${
                formatFixed((l1 - l0) * 1e6 / w.requests, 1)
              } µs + upstream ${formatFixed((u1 - u0) * 1e6 / w.requests, 1)} µs per request, p50 ${
                formatLatency(w.p50Us)
              }, p99 ${formatLatency(w.p99Us)}`,
            );
          }
        }
        for (const t of await runTunnel(tmp, loom.port, loom.proc, o.mib, taskset)) {
          tunnels.push({ mode, ...t });
          console.log(
            `round ${round + 1} ${mode} tunnel ${t.dir}: ${formatFixed(t.mbps, 0)} MB/s, Loom ${
              formatFixed(t.loomMsPer100MB, 1)
            } ms CPU per 100 MB`,
          );
        }
      } finally {
        await stop(loom.proc);
      }
    }
  }
  const httpRows: string[][] = [];
  for (const conns of o.conns) {
    for (const mode of ["off", "socket_redirect"] as Mode[]) {
      const rs = http.filter((r) => r.mode === mode && r.conns === conns);
      const loomUs = median(rs.map((r) => r.loomUs)), upUs = median(rs.map((r) => r.upUs));
      httpRows.push([
        `c${conns}`,
        mode,
        String(Math.round(median(rs.map((r) => r.rps)))),
        formatFixed(loomUs, 1),
        formatFixed(upUs, 1),
        formatFixed(loomUs + upUs, 1),
        formatLatency(median(rs.map((r) => r.p50))),
        formatLatency(median(rs.map((r) => r.p99))),
      ]);
    }
  }
  const tunnelRows: string[][] = [];
  for (const dir of ["client → upstream", "upstream → client"]) {
    for (const mode of modes) {
      const rs = tunnels.filter((r) => r.mode === mode && r.dir === dir);
      tunnelRows.push([
        dir,
        mode,
        formatFixed(median(rs.map((r) => r.mbps)), 0),
        formatFixed(median(rs.map((r) => r.loomMsPer100MB)), 1),
      ]);
    }
  }
  const report = [
    `# eBPF acceleration (${new Date().toISOString()})`,
    "",
    `Kernel ${support.kernel}, libbpf ${support.libbpf}, ${navigator.hardwareConcurrency} CPUs; ${o.rounds} rounds, ` +
    `medians; wrk ${o.duration} s per run; tunnels of ${o.mib} MiB each way.`,
    "",
    "## HTTP through Loom to a loopback nginx",
    "",
    markdownTable(
      ["conns", "mode", "req/s", "Loom µs/req", "upstream µs/req", "Loom + upstream µs/req", "p50", "p99"],
      httpRows,
    ),
    "",
    "## One upgraded tunnel",
    "",
    markdownTable(["direction", "mode", "MB/s", "Loom CPU ms per 100 MB"], tunnelRows),
    "",
  ].join("\n");
  console.log("\n" + report);
  Deno.mkdirSync(`${REPO}/bench/results`, { recursive: true });
  const file = `${REPO}/bench/results/${
    new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)
  }Z-ebpf.md`;
  Deno.writeTextFileSync(file, report);
  console.log(`written ${file}`);
}

if (import.meta.main) {
  try {
    await main();
  } finally {
    await cleanup();
  }
}
