/**
 * Chaos run of the resilience scenarios, longer and at higher concurrency than
 * the acceptance tests, against real servers on loopback. Prints a table.
 *
 *   deno task chaos        (CHAOS_SECONDS=20 per load phase, LOOM_SSE_SECONDS=30)
 *   CHAOS_ONLY=failover,h2 (comma list: failover, h2, reload, sse, circuit, sigterm)
 *
 * Scenarios: an endpoint of three killed and revived under load (retries,
 * outlier ejection, health checks; 2 workers), over HTTP/1.1 and as gRPC over
 * h2c (kills graceful-first: GOAWAY, 100 ms grace, then reset); a reload storm (40 reloads, one
 * invalid, 2 workers); a 30 s SSE stream across 5 reloads; a flapping upstream
 * behind a circuit breaker (fail-fast 503s are expected and counted apart);
 * SIGTERM under load (requests accepted before the signal must all complete).
 */
import { freePort, startLoom, waitFor, writeConfig, writeTempConfig, yamlOf } from "../tests/helpers.ts";
import { metricValue, postReload } from "../tests/gateway_util.ts";
import { type LoadResult, runLoad } from "../tests/resilience_util.ts";
import { startUpstream } from "../tests/upstream.ts";
import { setLogLevel } from "../src/observability/logger.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";
import { ErrorCode } from "../src/http2/frame.ts";

setLogLevel("error");
const SECONDS = Number(Deno.env.get("CHAOS_SECONDS") ?? "20");
const SSE_SECONDS = Number(Deno.env.get("LOOM_SSE_SECONDS") ?? "30");
const rows: { scenario: string; sent: number; failed: number; p99: number; notes: string }[] = [];
const row = (scenario: string, r: LoadResult, notes: string) =>
  rows.push({ scenario, sent: r.sent, failed: r.failed, p99: r.p99, notes });

async function failover(): Promise<void> {
  const ups = [startUpstream(), startUpstream(), startUpstream()];
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      endpoints: ups.map((u) => u.address),
      health_check: { interval: "200ms", timeout: "200ms", healthy_threshold: 2, unhealthy_threshold: 2 },
      outlier_detection: { consecutive_failures: 3, base_ejection_time: "1s" },
      retry: { max_retries: 2, backoff_base: "2ms", backoff_max: "50ms", budget: 1 },
    }],
    routes: [{ id: "r", path: "/*", upstream: "svc" }],
    extra: "workers: 2",
  }));
  let kills = 0;
  const chaos = (async () => {
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end - 2000) {
      const victim = ups[kills % 3];
      await new Promise((r) => setTimeout(r, 1500));
      await victim.stop();
      kills++;
      await new Promise((r) => setTimeout(r, 1500));
      victim.start();
    }
  })();
  const r = await runLoad({ url: loom.url("/x"), concurrency: 64, durationMs: SECONDS * 1000 });
  await chaos;
  row(
    "endpoint killed/revived (3 eps, 2 workers)",
    r,
    `${kills} kills; retry budget 1.0, ejection, health checks${
      r.failed ? "; e.g. " + r.samples.slice(0, 3).join(" | ") : ""
    }`,
  );
  await loom.close();
  for (const u of ups) await u.stop();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const field = (f: string[], name: string) => {
  for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
  return undefined;
};
/** A gRPC length-prefixed message (uncompressed). */
const grpcFrame = (text: string) => {
  const p = new TextEncoder().encode(text);
  const f = new Uint8Array(5 + p.length);
  new DataView(f.buffer).setUint32(1, p.length);
  f.set(p, 5);
  return f;
};

/**
 * An h2c gRPC-style upstream (H2Connection.server on Deno.listen) that can be killed and revived on
 * its port. The kill is graceful-first, so only calls still running after the grace are lost, and
 * those are counted (`reset`) to tell them apart from Loom's own failures.
 */
function h2cEndpoint() {
  const reply = grpcFrame("pong");
  let listener: Deno.Listener | null = null;
  let port = 0;
  const conns = new Set<H2Connection>();
  // Calls accepted and not yet answered in full.
  const open = new Set<H2Stream>();
  const onStream = (s: H2Stream) => {
    if (field(s.headers, ":path") !== "/svc.Echo/Call") {
      s.respond([":status", "200", "content-type", "application/grpc", "grpc-status", "12"], true);
      return;
    }
    ep.accepted++;
    open.add(s);
    void s.done.then(() => open.delete(s));
    (async () => {
      while ((await s.read()) !== null) { /* request message: discarded */ }
      s.respond([":status", "200", "content-type", "application/grpc"], false);
      await s.write(reply);
      await s.end(["grpc-status", "0"]);
    })().catch(() => {/* reset by the peer or by the kill */});
  };
  const ep = {
    accepted: 0,
    /** Calls in flight when a kill's grace ran out (reset, so legitimately failed at the client). */
    reset: 0,
    get address() {
      return `127.0.0.1:${port}`;
    },
    start() {
      const l = Deno.listen({ hostname: "127.0.0.1", port });
      listener = l;
      port = (l.addr as Deno.NetAddr).port;
      (async () => {
        for await (const conn of l) {
          // Accepted just as the kill closed the listener: not part of the endpoint any more.
          if (listener !== l) {
            conn.close();
            continue;
          }
          (conn as Deno.TcpConn).setNoDelay(true);
          const h2 = H2Connection.server(conn, { onStream });
          conns.add(h2);
          void h2.closed.then(() => conns.delete(h2));
        }
      })().catch(() => {/* listener closed */});
    },
    async stop() {
      listener?.close();
      listener = null;
      // GOAWAY first: Loom stops opening streams here and retries any above the last id elsewhere.
      for (const c of conns) c.goaway();
      // Each connection closes itself once its streams are done (and its GOAWAY flushed): a grace of
      // up to 100 ms for that, then whatever is left is cut.
      const grace = Date.now() + 100;
      while (Date.now() < grace && conns.size > 0) await sleep(5);
      ep.reset += open.size;
      for (const c of conns) c.destroy();
      await Promise.all([...conns].map((c) => c.closed));
      conns.clear();
      open.clear();
    },
  };
  ep.start();
  return ep;
}

async function h2Failover(): Promise<void> {
  const ups = [h2cEndpoint(), h2cEndpoint(), h2cEndpoint()];
  const loom = await startLoom(
    [
      "listeners:",
      '  - name: h2c\n    address: "127.0.0.1:${PORT}"\n    protocol: h2c',
      `upstreams: ${
        JSON.stringify([{
          name: "svc",
          protocol: "h2c",
          endpoints: ups.map((u) => u.address),
          // An HTTP/1.1 probe cannot talk to an h2c-only endpoint: connect-only probes.
          health_check: {
            type: "tcp",
            interval: "200ms",
            timeout: "200ms",
            healthy_threshold: 2,
            unhealthy_threshold: 2,
          },
          outlier_detection: { consecutive_failures: 3, base_ejection_time: "1s" },
          retry: { max_retries: 2, backoff_base: "2ms", backoff_max: "50ms", budget: 1 },
        }])
      }`,
      `routes: ${JSON.stringify([{ id: "r", path: "/*", upstream: "svc" }])}`,
      "workers: 2",
    ].join("\n") + "\n",
  );
  let kills = 0;
  const chaos = (async () => {
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end - 2000) {
      const victim = ups[kills % 3];
      await sleep(1500);
      await victim.stop();
      kills++;
      await sleep(1500);
      victim.start();
    }
  })();

  const request = grpcFrame("ping");
  const latencies: number[] = [];
  const samples: string[] = [];
  let sent = 0;
  let failed = 0;
  let reconnects = 0;
  const fail = (why: string) => {
    failed++;
    if (samples.length < 3) samples.push(why);
  };
  const stopAt = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: 16 }, async () => {
    let h2: H2Connection | null = null;
    while (Date.now() < stopAt) {
      if (h2 === null || h2.goingAway) {
        // The connection to Loom died or is closing: a new one (its in-flight call already failed).
        if (h2 !== null) {
          h2.destroy();
          reconnects++;
        }
        try {
          const cc = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
          // As gRPC clients do: HEADERS and DATA go out in separate writes, Nagle would hold the DATA.
          cc.setNoDelay(true);
          h2 = H2Connection.client(cc);
          await h2.ready;
        } catch (e) {
          h2 = null;
          sent++;
          fail(`connect: ${e}`);
          await sleep(10);
          continue;
        }
      }
      sent++;
      const t0 = performance.now();
      let s: H2Stream | undefined;
      const timer = setTimeout(() => s?.reset(ErrorCode.CANCEL), 10_000);
      try {
        s = h2.request([
          ":method",
          "POST",
          ":scheme",
          "http",
          ":path",
          "/svc.Echo/Call",
          ":authority",
          `127.0.0.1:${loom.port}`,
          "content-type",
          "application/grpc",
          "te",
          "trailers",
        ], false);
        await s.write(request);
        await s.end();
        const head = await s.response;
        let body = 0;
        for (let c = await s.read(); c !== null; c = await s.read()) body += c.length;
        // A trailers-only answer carries grpc-status in the head.
        const status = field(s.headersEnded ? head : s.trailers ?? [], "grpc-status");
        if (field(head, ":status") !== "200" || status !== "0") {
          fail(
            `:status ${field(head, ":status")} grpc-status ${status} ${field(head, "grpc-message") ?? ""}`,
          );
        } else if (body !== request.length) fail(`body of ${body} bytes`);
      } catch (e) {
        fail(String(e));
      } finally {
        clearTimeout(timer);
      }
      latencies.push(performance.now() - t0);
    }
    h2?.destroy();
  }));
  await chaos;
  latencies.sort((a, b) => a - b);
  const metrics = await (await fetch(loom.admin("/metrics"))).text();
  const retries = ["connect", "refused", "reset", "timeout"]
    .map((
      reason,
    ) => [reason, metricValue(metrics, "loom_upstream_retries_total", { upstream: "svc", reason })])
    .filter(([, n]) => n !== 0)
    .map(([reason, n]) => `${n} ${reason}`);
  const reset = ups.reduce((n, u) => n + u.reset, 0);
  rows.push({
    scenario: "h2c endpoint killed/revived (gRPC-style, 2 workers)",
    sent,
    failed,
    p99: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? 0,
    notes:
      `${kills} kills (GOAWAY, 100 ms grace); ${reset} in flight on the killed endpoint reset; retries: ${
        retries.join(", ") || "none"
      }; ${reconnects} client reconnects${failed ? "; e.g. " + samples.join(" | ") : ""}`,
  });
  await loom.close();
  for (const u of ups) await u.stop();
}

async function reloadStorm(): Promise<void> {
  const ups = [startUpstream(), startUpstream(), startUpstream()];
  const variant = (i: number) =>
    yamlOf({
      upstreams: [{
        name: "svc",
        endpoints: i % 3 === 2 ? ups.slice(0, 2).map((u) => u.address) : ups.map((u) => u.address),
        load_balancer: i % 2 === 0 ? "round_robin" : "least_conn",
        ...(i % 4 === 1 ? { retry: { max_retries: 1 } } : {}),
      }],
      routes: [{ id: "main", path: "/x", upstream: "svc" }, { id: `e${i}`, path: `/e${i}`, upstream: "svc" }],
      extra: "workers: 2",
    });
  const loom = await startLoom(variant(0));
  let ok = 0;
  let rejected = 0;
  const storm = (async () => {
    for (let i = 1; i <= 40; i++) {
      await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 42));
      writeConfig(
        loom,
        i === 20 ? variant(i).replaceAll('"upstream":"svc"', '"upstream":"nope"') : variant(i),
      );
      if ((await postReload(loom)).status === 200) ok++;
      else rejected++;
    }
  })();
  const r = await runLoad({ url: loom.url("/x"), concurrency: 64, durationMs: SECONDS * 1000 });
  await storm;
  row("reload storm (2 workers)", r, `${ok} reloads applied, ${rejected} invalid rejected`);
  await loom.close();
  for (const u of ups) await u.stop();
}

async function sse(): Promise<void> {
  const events = SSE_SECONDS * 10;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    let n = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    return new Response(
      new ReadableStream<Uint8Array>({
        start(c) {
          timer = setInterval(() => {
            if (n === events) {
              clearInterval(timer);
              c.close();
              return;
            }
            c.enqueue(new TextEncoder().encode(`id: ${n++}\ndata: x\n\n`));
          }, 100);
        },
        cancel: () => clearInterval(timer),
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  });
  const cfg = (i: number) =>
    yamlOf({
      upstreams: [{ name: "sse", endpoints: [`127.0.0.1:${server.addr.port}`] }],
      // The route timeout bounds a whole response: long streams need a longer one.
      routes: [
        { id: "ev", path: "/ev", upstream: "sse", timeout: "10m" },
        { id: `r${i}`, path: `/r${i}`, upstream: "sse" },
      ],
    });
  const loom = await startLoom(cfg(0));
  const t0 = performance.now();
  const res = await fetch(loom.url("/ev"));
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let reloads = 0;
  let next = Date.now() + (SSE_SECONDS * 1000) / 6;
  let broken = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (reloads < 5 && Date.now() >= next) {
        reloads++;
        next += (SSE_SECONDS * 1000) / 6;
        writeConfig(loom, cfg(reloads));
        await postReload(loom);
      }
    }
  } catch {
    broken = true;
  }
  const got = [...text.matchAll(/^id: (\d+)$/gm)].length;
  const failed = broken || got !== events ? 1 : 0;
  rows.push({
    scenario: `SSE stream ${SSE_SECONDS} s`,
    sent: 1,
    failed,
    p99: performance.now() - t0,
    notes: `${got}/${events} events, ${reloads} reloads during the stream`,
  });
  await loom.close();
  await server.shutdown();
}

async function circuit(): Promise<void> {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      endpoints: [up.address],
      circuit_breaker: { failure_threshold: 5, success_threshold: 3, timeout: "500ms" },
    }],
    routes: [{ id: "r", path: "/*", upstream: "svc" }],
  }));
  let flips = 0;
  const flap = (async () => {
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 2000));
      up.mode = up.mode === "ok" ? "fail" : "ok";
      flips++;
    }
    up.mode = "ok";
  })();
  const r = await runLoad({ url: loom.url("/x"), concurrency: 32, durationMs: SECONDS * 1000 });
  await flap;
  // Failures here are the upstream's 500s and fail-fast 503s while it is down: expected.
  const open = await runLoad({ url: loom.url("/x"), concurrency: 1, total: 1 });
  row(
    "flapping upstream + circuit breaker",
    r,
    `${flips} flips; failures expected while down; after: ${open.failed === 0 ? "closed" : "still failing"}`,
  );
  await loom.close();
  await up.stop();
}

async function sigterm(): Promise<void> {
  const up = startUpstream({ delayMs: 50 });
  const port = freePort();
  const admin = freePort();
  const cfg = writeTempConfig(
    [
      `listeners: [{name: http, address: "127.0.0.1:${port}", protocol: http}]`,
      `upstreams: [{name: svc, endpoints: ["${up.address}"]}]`,
      'routes: [{id: r, path: "/*", upstream: svc}]',
      `admin: {address: "127.0.0.1:${admin}"}`,
      "access_log: {enabled: false}",
      "drain_timeout: 10s",
      "workers: 2",
    ].join("\n") + "\n",
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("../src/cli/main.ts", import.meta.url).pathname,
      "run",
      "-c",
      cfg,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor(
    "ready",
    () => fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.text().then(() => r.ok), () => false),
    20_000,
    50,
  );
  // Every request carries an id; the upstream counts it accepted when it arrives.
  let id = 0;
  const results = new Map<string, number>();
  const signalled = { at: 0 };
  setTimeout(() => {
    signalled.at = Date.now();
    child.kill("SIGTERM");
  }, Math.min(5000, SECONDS * 250));
  const latencies: number[] = [];
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (signalled.at === 0 || Date.now() - signalled.at < 200) {
      const key = String(id++);
      const t0 = performance.now();
      try {
        const r = await fetch(`http://127.0.0.1:${port}/${key}`);
        await r.text();
        results.set(key, r.status);
        latencies.push(performance.now() - t0);
      } catch {
        results.set(key, 0);
        if (signalled.at !== 0) break;
      }
    }
  }));
  const { code } = await child.status;
  const accepted = [...results.entries()].filter(([, s]) => s !== 0 || false);
  const failed = [...results.values()].filter((s) => s !== 0 && s !== 200).length;
  latencies.sort((a, b) => a - b);
  rows.push({
    scenario: "SIGTERM under load (2 workers)",
    sent: accepted.length,
    failed,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    notes: `exit ${code}; ${results.size - accepted.length} refused after the signal (not accepted)`,
  });
  await up.stop();
}

for (
  const [name, f] of [["failover", failover], ["h2", h2Failover], ["reload", reloadStorm], ["sse", sse], [
    "circuit",
    circuit,
  ], [
    "sigterm",
    sigterm,
  ]] as const
) {
  const only = Deno.env.get("CHAOS_ONLY");
  if (only !== undefined && !only.split(",").includes(name)) continue;
  await f();
}

const pad = (s: string, n: number) => s.padEnd(n);
const w = Math.max(44, ...rows.map((r) => r.scenario.length));
console.log(`\n${pad("scenario", w)} ${pad("requests", 9)} ${pad("failed", 7)} ${pad("p99 ms", 9)} notes`);
for (const r of rows) {
  console.log(
    `${pad(r.scenario, w)} ${pad(String(r.sent), 9)} ${pad(String(r.failed), 7)} ${
      pad(r.p99.toFixed(1), 9)
    } ${r.notes}`,
  );
}
Deno.exit(0);
