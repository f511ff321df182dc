/**
 * process_* and runtime series, connections per listener and protocol, all
 * merged over two workers, and the OTLP/HTTP metrics export to a real
 * receiver (tests/otlp_util.ts).
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { startOtlpReceiver } from "./otlp_util.ts";

/** The value of one series of a Prometheus text, by name and label text ("" = no labels). */
function sample(text: string, name: string, labels = ""): number | undefined {
  const want = labels === "" ? name : `${name}{${labels}}`;
  for (const line of text.split("\n")) {
    const sp = line.lastIndexOf(" ");
    if (line.slice(0, sp) === want) return Number(line.slice(sp + 1));
  }
  return undefined;
}

function total(text: string, name: string): number {
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
      n += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return n;
}

itest(
  "metrics: process and runtime series, connections by protocol, merged over workers; OTLP export",
  async () => {
    const receiver = startOtlpReceiver();
    const up = startUpstream(() => new Response("ok"));
    const loom = await startLoom(`
workers: 2
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: all, path: "/*", upstream: up }]
metrics:
  opentelemetry: { enabled: true, endpoint: "${receiver.url}", interval: 200ms }
`);
    // Kept-alive connections, open while the metrics are read.
    const conns: Deno.TcpConn[] = [];
    try {
      const N = 20;
      for (let i = 0; i < N; i++) await (await fetch(loom.url(`/r${i}`))).body?.cancel();
      for (let i = 0; i < 3; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port: loom.port }));
      const text = await waitFor("3 open connections in /metrics", async () => {
        const t = await (await fetch(loom.admin("/metrics"))).text();
        return (sample(t, "loom_active_connections", 'listener="http",protocol="http"') ?? 0) >= 3
          ? t
          : undefined;
      });
      assert.equal(total(text, "loom_requests_total"), N, "requests summed over both workers");
      const cpu = sample(text, "process_cpu_seconds_total")!;
      assert.ok(cpu > 0 && cpu < 1000, `process_cpu_seconds_total ${cpu}`);
      assert.ok(sample(text, "process_resident_memory_bytes")! > 10 * 1024 * 1024);
      const fds = sample(text, "process_open_fds")!;
      assert.ok(fds > 5 && fds < 10_000, `process_open_fds ${fds}`);
      assert.ok(sample(text, "process_max_fds")! >= fds);
      const start = sample(text, "process_start_time_seconds")!;
      assert.ok(Math.abs(start - Date.now() / 1000) < 600, `process_start_time_seconds ${start}`);
      // The main isolate and both workers: three heaps summed.
      assert.ok(sample(text, "loom_runtime_heap_used_bytes")! > 3 * 1024 * 1024);
      assert.ok(
        sample(text, "loom_runtime_heap_total_bytes")! >= sample(text, "loom_runtime_heap_used_bytes")!,
      );
      for (const q of ["0.5", "0.99", "1"]) {
        const v = sample(text, "loom_runtime_event_loop_delay_seconds", `quantile="${q}"`);
        assert.ok(v !== undefined && v >= 0 && v < 5, `event-loop delay p${q}: ${v}`);
      }
      assert.match(text, /^# TYPE process_cpu_seconds_total counter$/m);

      // OTLP: the merged counters as cumulative sums, the latency histogram with its buckets.
      const requests = await waitFor("loom_requests_total over OTLP with every request", () => {
        const m = receiver.metrics.filter((x) => x.name === "loom_requests_total").at(-1);
        const points = (m?.data.sum as { dataPoints: { asDouble: number }[] } | undefined)?.dataPoints ?? [];
        return points.reduce((a, p) => a + p.asDouble, 0) === N ? m : undefined;
      }, 5000);
      const sum = requests.data.sum as { isMonotonic: boolean; aggregationTemporality: number };
      assert.equal(sum.isMonotonic, true);
      assert.equal(sum.aggregationTemporality, 2);
      const hist = receiver.metrics.find((x) => x.name === "loom_request_duration_seconds");
      const hp = (hist?.data.histogram as { dataPoints: { count: string; explicitBounds: number[] }[] })
        .dataPoints;
      assert.equal(hp.reduce((a, p) => a + Number(p.count), 0), N);
      assert.ok(hp[0].explicitBounds.length > 5);
      assert.ok(receiver.metrics.some((x) => x.name === "process_cpu_seconds_total"));
      assert.ok(receiver.paths.every((p) => p === "/v1/metrics"));
    } finally {
      for (const c of conns) c.close();
      await loom.close();
      await up.close();
      await receiver.close();
    }
  },
);
