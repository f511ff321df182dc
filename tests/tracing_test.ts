/**
 * OpenTelemetry traces end to end: Loom runs as a child process with Deno's
 * built-in OTLP exporter (OTEL_DENO=true, http/json) pointed at a real
 * receiver on loopback (tests/otlp_util.ts); the span tree of a proxied
 * request (a middleware, two plugins, one retry) and the `traceparent` the
 * upstream received are checked, then sampling, h2c and Loom's own exporter
 * (the config's `endpoint`, the OpenTelemetry SDK).
 */
import assert from "node:assert/strict";
import { itest, startLoomProcess, waitFor } from "./helpers.ts";
import { startH2Upstream, startUpstream } from "./upstream.ts";
import type { H2Stream } from "../src/http2/connection.ts";
import { attr, type OtlpSpan, startOtlpReceiver } from "./otlp_util.ts";
import { watModule } from "./wasm_util.ts";

const ADD_HEADERS = new URL("../plugins/add-headers/add_headers.wasm", import.meta.url).pathname;

/** A plugin that logs one line in on_request_headers, and traps when the request has `x-trap`. */
const LOG_WAT = `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "hello from the plugin")
  (data (i32.const 64) "x-trap")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 21)))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 64) (i32.const 6) (i32.const 32) (i32.const 36)))
      (then (unreachable)))
    (i32.const 0)))`;

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";

/** Deno's exporter, batching 100 ms, console logs not exported. */
function otelEnv(receiver: string): Record<string, string> {
  return {
    OTEL_DENO: "true",
    OTEL_DENO_CONSOLE: "ignore",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver,
    OTEL_BSP_SCHEDULE_DELAY: "100",
    OTEL_SERVICE_NAME: "loom-test",
  };
}

function spansOf(all: OtlpSpan[], traceId: string): OtlpSpan[] {
  return all.filter((s) => s.traceId === traceId);
}

function tree(spans: OtlpSpan[]): string {
  return spans.map((s) => `${s.name} ${s.spanId} <- ${s.parentSpanId ?? "-"}`).join("\n");
}

itest(
  "tracing: span tree of a proxied request with a middleware, plugins and one retry; traceparent upstream",
  async () => {
    const receiver = startOtlpReceiver();
    let n = 0;
    const seen: { traceparent: string | null; tracestate: string | null; plugin: string | null }[] = [];
    const up = startUpstream((req) => {
      seen.push({
        traceparent: req.headers.get("traceparent"),
        tracestate: req.headers.get("tracestate"),
        plugin: req.headers.get("x-plugin"),
      });
      return new Response(++n === 1 ? "busy" : "ok", { status: n === 1 ? 503 : 200 });
    });
    const logWasm = await watModule(LOG_WAT);
    const h2Port = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const p = (l.addr as Deno.NetAddr).port;
      l.close();
      return p;
    })();
    const loom = await startLoomProcess(
      `listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2Port}", protocol: h2c }
tracing: { enabled: true, service_name: ignored-by-deno, sample_rate: 1.0 }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
    retry: { max_retries: 1, backoff_base: 1ms, backoff_max: 2ms, retryable_codes: [503] }
plugins:
  - { name: add-headers, path: "${ADD_HEADERS}", config: "+x-plugin: yes" }
  - { name: logger, path: "${logWasm}", failure_policy: fail_open }
routes:
  - id: traced
    path: /t/*
    upstream: up
    plugins: [add-headers, logger]
    middleware: [{ headers: { request: { set: { x-mw: "1" } } } }]
`,
      15_000,
      otelEnv(receiver.url),
    );
    try {
      const res = await fetch(loom.url("/t/x?q=1"), {
        headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01`, tracestate: "vendor=abc" },
      });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "ok");

      // server, the wasm middleware (the plugin list), 2 plugin callbacks, 2 attempts, and the headers
      // middleware's upstream_request phase once per attempt.
      const spans = await waitFor("the request's spans", () => {
        const s = spansOf(receiver.spans, TRACE_ID);
        return s.length >= 8 ? s : undefined;
      }, 10_000);
      const server = spans.find((s) => s.kind === 2);
      assert.ok(server, tree(spans));
      assert.equal(server.name, "GET traced");
      assert.equal(server.parentSpanId, CLIENT_SPAN, "the client's span is the parent");
      assert.equal(server.service, "loom-test");
      assert.equal(attr(server, "http.request.method"), "GET");
      assert.equal(attr(server, "url.path"), "/t/x");
      assert.equal(attr(server, "url.query"), "q=1");
      assert.equal(attr(server, "http.route"), "traced");
      assert.equal(attr(server, "http.response.status_code"), 200);
      assert.equal(attr(server, "server.address"), "127.0.0.1");
      assert.equal(attr(server, "network.protocol.version"), "1.1");
      assert.ok(String(attr(server, "loom.request_id")).length > 0);
      const children = spans.filter((s) => s !== server);
      for (const c of children) assert.equal(c.parentSpanId, server.spanId, tree(spans));

      const mw = children.filter((s) => s.name === "middleware headers upstream_request");
      assert.equal(mw.length, 2, tree(spans));
      assert.equal(attr(mw[0], "loom.middleware"), "headers");
      assert.ok(children.some((s) => s.name === "middleware wasm"), tree(spans));
      const addHeaders = children.find((s) => s.name === "plugin add-headers on_request_headers");
      assert.ok(addHeaders, tree(spans));
      assert.equal(attr(addHeaders, "loom.plugin"), "add-headers");
      const logger = children.find((s) => s.name === "plugin logger on_request_headers");
      assert.ok(logger, tree(spans));
      const line = logger.events?.find((e) => e.name === "log");
      assert.ok(line, JSON.stringify(logger));
      assert.equal(attr(line, "log.message"), "hello from the plugin");
      assert.equal(attr(line, "log.severity"), "info");

      const attempts = children.filter((s) => s.name === "upstream up").sort((a, b) =>
        Number(attr(a, "http.request.resend_count") ?? 0) - Number(attr(b, "http.request.resend_count") ?? 0)
      );
      assert.equal(attempts.length, 2, tree(spans));
      assert.ok(attempts.every((a) => a.kind === 3), "attempts are CLIENT spans");
      assert.equal(attr(attempts[0], "http.response.status_code"), 503);
      assert.equal(attempts[0].status?.code, 2, "the 503 attempt failed");
      assert.equal(attr(attempts[0], "http.request.resend_count"), undefined);
      assert.equal(attr(attempts[1], "http.response.status_code"), 200);
      assert.equal(attr(attempts[1], "http.request.resend_count"), 1);
      assert.equal(attr(attempts[1], "loom.upstream.endpoint"), up.address);
      assert.equal(attr(attempts[1], "server.address"), "127.0.0.1");
      assert.equal(attr(attempts[1], "server.port"), up.port);

      // Each attempt carried its own span as the parent; the client's tracestate went on unchanged.
      assert.equal(seen.length, 2);
      assert.equal(seen[0].traceparent, `00-${TRACE_ID}-${attempts[0].spanId}-01`);
      assert.equal(seen[1].traceparent, `00-${TRACE_ID}-${attempts[1].spanId}-01`);
      assert.equal(seen[1].tracestate, "vendor=abc");
      assert.equal(seen[1].plugin, "yes");

      // A failing plugin (fail_open): its span records the failure, the request goes on.
      const failTrace = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
      const res2 = await fetch(loom.url("/t/y"), {
        headers: { traceparent: `00-${failTrace}-${CLIENT_SPAN}-01`, "x-trap": "1" },
      });
      assert.equal(res2.status, 200);
      await res2.body?.cancel();
      const failed = await waitFor(
        "the failed plugin's span",
        () => spansOf(receiver.spans, failTrace).find((s) => s.name === "plugin logger on_request_headers"),
      );
      assert.equal(failed.status?.code, 2, JSON.stringify(failed));
      assert.ok(failed.events?.some((e) => e.name === "exception"), JSON.stringify(failed));
      assert.ok(failed.events?.some((e) => e.name === "log"), "the line before the trap is kept");

      // HTTP/2 (h2c): the same tree; network.protocol.version 2.
      const h2Trace = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
      const client = Deno.createHttpClient({ http1: false, http2: true });
      try {
        const r = await fetch(`http://127.0.0.1:${h2Port}/t/h2`, {
          client,
          headers: { traceparent: `00-${h2Trace}-${CLIENT_SPAN}-01` },
        });
        assert.equal(r.status, 200);
        await r.body?.cancel();
      } finally {
        client.close();
      }
      const h2Server = await waitFor(
        "the h2c request's server span",
        () => spansOf(receiver.spans, h2Trace).find((s) => s.kind === 2),
      );
      assert.equal(attr(h2Server, "network.protocol.version"), "2");
      const h2Attempt = await waitFor(
        "the h2c request's attempt",
        () => spansOf(receiver.spans, h2Trace).find((s) => s.name === "upstream up"),
      );
      assert.equal(seen.at(-1)?.traceparent, `00-${h2Trace}-${h2Attempt.spanId}-01`);
    } finally {
      await loom.close();
      await up.close();
      await receiver.close();
      await Deno.remove(logWasm);
    }
  },
);

itest(
  "tracing: parent-based sampling; unsampled requests get no span and their traceparent passes on",
  async () => {
    const receiver = startOtlpReceiver();
    const seen: (string | null)[] = [];
    const up = startUpstream((req) => {
      seen.push(req.headers.get("traceparent"));
      return new Response("ok");
    });
    const loom = await startLoomProcess(
      `tracing: { sample_rate: 0 }
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: all, path: "/*", upstream: up }]
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
`,
      15_000,
      otelEnv(receiver.url),
    );
    try {
      // Rate 0, no parent: not traced, nothing sent upstream.
      let r = await fetch(loom.url("/a"));
      await r.body?.cancel();
      assert.equal(seen[0], null);
      // An unsampled parent: not traced; the client's traceparent goes on as it was.
      const unsampled = `00-${"c".repeat(32)}-${CLIENT_SPAN}-00`;
      r = await fetch(loom.url("/b"), { headers: { traceparent: unsampled } });
      await r.body?.cancel();
      assert.equal(seen[1], unsampled);
      // A sampled parent: traced whatever the rate (parent-based).
      const sampledTrace = "d".repeat(32);
      r = await fetch(loom.url("/c"), { headers: { traceparent: `00-${sampledTrace}-${CLIENT_SPAN}-01` } });
      await r.body?.cancel();
      const server = await waitFor(
        "the sampled request's span",
        () => spansOf(receiver.spans, sampledTrace).find((s) => s.kind === 2),
      );
      assert.equal(server.parentSpanId, CLIENT_SPAN);
      assert.match(seen[2] ?? "", new RegExp(`^00-${sampledTrace}-[0-9a-f]{16}-01$`));
      // An invalid traceparent counts as none.
      r = await fetch(loom.url("/d"), { headers: { traceparent: `00-${"0".repeat(32)}-${CLIENT_SPAN}-01` } });
      await r.body?.cancel();
      await new Promise((res) => setTimeout(res, 400));
      assert.deepEqual(
        receiver.spans.filter((s) => s.kind === 2 && s.name.startsWith("GET ")).map((s) => s.traceId),
        [sampledTrace],
      );
    } finally {
      await loom.close();
      await up.close();
      await receiver.close();
    }
  },
);

itest(
  "tracing: the config's endpoint, service_name and batch_timeout (Loom's own OTLP exporter)",
  async () => {
    const receiver = startOtlpReceiver();
    const up = startUpstream(() => new Response("ok"));
    const loom = await startLoomProcess(
      `tracing: { endpoint: "${receiver.url}", service_name: gateway-a, batch_timeout: 100ms }
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: all, path: "/*", upstream: up }]
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
`,
      15_000,
      // Deno's own telemetry off: Loom's exporter carries the spans.
      { OTEL_DENO: "false" },
    );
    try {
      const trace = "e".repeat(32);
      const r = await fetch(loom.url("/x"), { headers: { traceparent: `00-${trace}-${CLIENT_SPAN}-01` } });
      await r.body?.cancel();
      const spans = await waitFor("spans from Loom's exporter", () => {
        const s = spansOf(receiver.spans, trace);
        return s.length >= 2 ? s : undefined;
      }, 10_000);
      const server = spans.find((s) => s.kind === 2)!;
      assert.equal(server.service, "gateway-a");
      assert.equal(server.parentSpanId, CLIENT_SPAN);
      assert.equal(attr(server, "http.response.status_code"), 200);
      assert.ok(spans.some((s) => s.name === "upstream up" && s.parentSpanId === server.spanId), tree(spans));
    } finally {
      await loom.close();
      await up.close();
      await receiver.close();
    }
  },
);

itest(
  "tracing: gRPC over an HTTP/2 upstream and a WebSocket upgrade are traced and carry traceparent",
  async () => {
    const receiver = startOtlpReceiver();
    const grpcSeen: string[] = [];
    const h2 = startH2Upstream((s: H2Stream) => {
      const i = s.headers.indexOf("traceparent");
      grpcSeen.push(i === -1 ? "" : s.headers[i + 1]);
      (async () => {
        while (await s.read() !== null) { /* drain */ }
        s.respond([":status", "200", "content-type", "application/grpc"], false);
        await s.write(new Uint8Array(5));
        await s.end(["grpc-status", "0"]);
      })().catch(() => {/* reset */});
    });
    const wsSeen: (string | null)[] = [];
    const ws = startUpstream((req) => {
      wsSeen.push(req.headers.get("traceparent"));
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => socket.send(e.data);
      return response;
    });
    const loom = await startLoomProcess(
      `listeners: [{ name: grpc, address: "127.0.0.1:\${PORT}", protocol: h2c }]
tracing: { sample_rate: 1.0 }
upstreams:
  - { name: svc, endpoints: ["127.0.0.1:${h2.port}"], protocol: h2c }
  - { name: ws, endpoints: ["${ws.address}"] }
routes:
  - { id: greeter, path: /helloworld.Greeter/*, upstream: svc }
  - { id: chat, path: /ws, upstream: ws }
`,
      15_000,
      otelEnv(receiver.url),
    );
    const client = Deno.createHttpClient({ http1: false, http2: true });
    try {
      const grpcTrace = "f".repeat(32);
      const res = await fetch(loom.url("/helloworld.Greeter/SayHello"), {
        method: "POST",
        client,
        headers: {
          "content-type": "application/grpc",
          te: "trailers",
          traceparent: `00-${grpcTrace}-${CLIENT_SPAN}-01`,
        },
        body: new Uint8Array(5),
      });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const server = await waitFor(
        "the gRPC call's server span",
        () => spansOf(receiver.spans, grpcTrace).find((s) => s.kind === 2 && s.name === "POST greeter"),
      );
      const attempt = await waitFor(
        "the gRPC call's attempt",
        () => spansOf(receiver.spans, grpcTrace).find((s) => s.name === "upstream svc"),
      );
      assert.equal(attr(server, "rpc.grpc.status_code"), 0);
      assert.equal(attempt.parentSpanId, server.spanId);
      assert.equal(grpcSeen[0], `00-${grpcTrace}-${attempt.spanId}-01`);

      // WebSocket (HTTP/1.1 Upgrade): no parent, sample_rate 1: a root span whose attempt is the upstream's parent.
      const sock = new WebSocket(loom.url("/ws").replace("http:", "ws:"));
      await new Promise<void>((resolve, reject) => {
        sock.onopen = () => sock.send("ping");
        sock.onmessage = () => resolve();
        sock.onerror = () => reject(new Error("websocket failed"));
      });
      sock.close();
      const wsServer = await waitFor(
        "the WebSocket's server span",
        () => receiver.spans.find((s) => s.kind === 2 && s.name === "GET chat"),
        10_000,
      );
      assert.equal(attr(wsServer, "http.response.status_code"), 101);
      assert.equal(wsServer.parentSpanId || undefined, undefined, "a root span");
      const wsAttempt = receiver.spans.find((s) =>
        s.traceId === wsServer.traceId && s.name === "upstream ws"
      )!;
      assert.equal(wsSeen[0], `00-${wsServer.traceId}-${wsAttempt.spanId}-01`);
    } finally {
      client.close();
      await loom.close();
      await h2.close();
      await ws.close();
      await receiver.close();
    }
  },
);
