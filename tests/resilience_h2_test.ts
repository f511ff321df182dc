/**
 * Resilience on the HTTP/2 upstream path (`protocol: h2c` upstreams, gRPC and
 * gRPC-Web): retries of connect failures and refused streams, never of a gRPC
 * call the upstream may have processed; circuit breakers (gRPC failures count,
 * gateway errors are gRPC statuses); bulkheads; and gRPC health checks
 * (grpc.health.v1) taking an endpoint out and back.
 *
 * Loom runs in-process, on its own HTTP/2 stack (src/http2) both towards the
 * upstreams and on the grpc listener; the misbehaving HTTP/2 upstreams are
 * H2Connection servers on Deno.listen.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor, yamlOf } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { endpointState, runLoad } from "./resilience_util.ts";
import { assertScenarios, runPeer, startGrpcServer } from "./grpc_util.ts";
import { ErrorCode } from "../src/http2/frame.ts";
import { startH2Upstream } from "./upstream.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** An h2c upstream on Deno.serve: counts requests and the most in flight at once. */
function h2cUpstream(opts: { delayMs?: number } = {}) {
  let active = 0;
  const u = {
    port: 0,
    address: "",
    served: 0,
    maxActive: 0,
    bodies: [] as string[],
    mode: "ok" as "ok" | "fail",
    server: null as Deno.HttpServer<Deno.NetAddr> | null,
  };
  u.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    active++;
    u.maxActive = Math.max(u.maxActive, active);
    try {
      const body = await req.text();
      if (body !== "") u.bodies.push(body);
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
      u.served++;
      return u.mode === "ok"
        ? new Response(`ok:${u.port}:${req.headers.get("via") ?? ""}`)
        : new Response("boom", { status: 500 });
    } finally {
      active--;
    }
  });
  u.port = u.server.addr.port;
  u.address = `127.0.0.1:${u.port}`;
  return u;
}

/** A gRPC-Web call over fetch (the gateway translates it to gRPC over HTTP/2 upstream). */
async function grpcWeb(
  url: string,
  message: string,
): Promise<{ http: number; status: string; message: string; body: string }> {
  const payload = enc.encode(message);
  const frame = new Uint8Array(5 + payload.length);
  new DataView(frame.buffer).setUint32(1, payload.length);
  frame.set(payload, 5);
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
    body: frame,
  });
  const body = new Uint8Array(await res.arrayBuffer());
  // Trailers-only answers carry the status in the head; others in the flagged last frame.
  let status = res.headers.get("grpc-status") ?? "";
  let msg = res.headers.get("grpc-message") ?? "";
  let data = "";
  for (let o = 0; o + 5 <= body.length;) {
    const len = new DataView(body.buffer, body.byteOffset + o + 1, 4).getUint32(0);
    const part = dec.decode(body.subarray(o + 5, o + 5 + len));
    if (body[o] & 0x80) {
      status = /grpc-status:\s*(\d+)/.exec(part)?.[1] ?? status;
      msg = /grpc-message:\s*([^\r\n]*)/.exec(part)?.[1] ?? msg;
    } else data += part;
    o += 5 + len;
  }
  return { http: res.status, status, message: decodeURIComponent(msg), body: data };
}

itest("resilience h2: an h2c endpoint that is down is retried to the live one; no client error", async () => {
  const live = h2cUpstream();
  const failing = h2cUpstream();
  failing.mode = "fail";
  const dead = freePort();
  const retry = { max_retries: 2, backoff_base: "1ms", backoff_max: "5ms", budget: 1 };
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      protocol: "h2c",
      endpoints: [`127.0.0.1:${dead}`, live.address],
      retry,
    }, {
      name: "codes",
      protocol: "h2c",
      endpoints: [failing.address, live.address],
      retry: { ...retry, retryable_codes: [500] },
    }],
    routes: [{ id: "codes", path: "/codes", upstream: "codes" }, { id: "r", path: "/*", upstream: "svc" }],
  }));
  try {
    const load = await runLoad({ url: loom.url("/x"), concurrency: 8, total: 400 });
    assert.equal(load.failed, 0, `failed requests: ${load.samples.join("; ")}`);
    assert.equal(live.served, 400);
    // Nothing was sent on a failed connect, so any method and body may be resent.
    for (let i = 0; i < 4; i++) {
      const r = await fetch(loom.url("/post"), { method: "POST", body: `body-${i}` });
      assert.equal(r.status, 200);
      // Via names the client's hop (HTTP/1.1 from fetch), whatever the upstream protocol.
      assert.match(await r.text(), /^ok:\d+:1\.1 loom$/, "reached the live endpoint");
    }
    assert.deepEqual(live.bodies, ["body-0", "body-1", "body-2", "body-3"]);
    // A retryable status is discarded unread and the (idempotent) request resent with its body.
    const put = await fetch(loom.url("/codes"), { method: "PUT", body: "put-body" });
    assert.equal(put.status, 200);
    await put.text();
    assert.deepEqual([failing.bodies, live.bodies.at(-1)], [["put-body"], "put-body"]);
    const metrics = await (await fetch(loom.admin("/metrics"))).text();
    assert.ok(
      metricValue(metrics, "loom_upstream_retries_total", { upstream: "svc", reason: "connect" }) >= 200,
    );
  } finally {
    await loom.close();
    await live.server?.shutdown();
    await failing.server?.shutdown();
  }
});

itest(
  "resilience h2: gRPC calls are resent after a connect failure or a refused stream, never after a reset",
  async () => {
    const grpc = await startGrpcServer(freePort());
    const dead = freePort();
    // HTTP/2 servers that refuse every stream unprocessed, or reset it after reading it.
    let refusedStreams = 0;
    let resetStreams = 0;
    const refusing = startH2Upstream((s) => {
      refusedStreams++;
      s.reset(ErrorCode.REFUSED_STREAM);
    });
    const resetting = startH2Upstream((s) => {
      resetStreams++;
      // Read the call, then reset: the upstream may have processed it.
      (async () => {
        while (await s.read() !== null) { /* discard */ }
      })().catch(() => {/* reset */});
      setTimeout(() => s.reset(ErrorCode.INTERNAL_ERROR), 20);
    });
    const refusingPort = refusing.port;
    const resettingPort = resetting.port;
    const retry = { max_retries: 1, backoff_base: "1ms", backoff_max: "2ms", budget: 1 };
    const loom = await startLoom(yamlOf({
      // Round robin starts on the first endpoint: the failing one.
      upstreams: [
        { name: "down", endpoints: [`127.0.0.1:${dead}`, `127.0.0.1:${grpc.port}`], retry },
        { name: "refuse", endpoints: [`127.0.0.1:${refusingPort}`, `127.0.0.1:${grpc.port}`], retry },
        { name: "reset", endpoints: [`127.0.0.1:${resettingPort}`, `127.0.0.1:${grpc.port}`], retry },
      ],
      routes: [
        { id: "down", path: "/down/*", upstream: "down", rewrite: "/test.Echo/{*}" },
        { id: "refuse", path: "/refuse/*", upstream: "refuse", rewrite: "/test.Echo/{*}" },
        { id: "reset", path: "/reset/*", upstream: "reset", rewrite: "/test.Echo/{*}" },
      ],
    }));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await grpcWeb(loom.url("/down/Unary"), `d${i}`);
        assert.deepEqual([r.status, r.body], ["0", `echo:d${i}`], JSON.stringify(r));
      }
      // The body, already sent on the refused stream, is replayed to the other endpoint.
      const refused = await grpcWeb(loom.url("/refuse/Unary"), "again");
      assert.deepEqual([refused.status, refused.body], ["0", "echo:again"], JSON.stringify(refused));
      assert.equal(refusedStreams, 1);
      // A reset after the upstream read the call: it may have run, so it is not resent.
      const reset = await grpcWeb(loom.url("/reset/Unary"), "once");
      assert.equal(reset.http, 200, "a gRPC status, not an HTTP error");
      assert.equal(reset.status, "14", JSON.stringify(reset));
      assert.equal(resetStreams, 1);
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.equal(
        metricValue(metrics, "loom_upstream_retries_total", { upstream: "refuse", reason: "refused" }),
        1,
      );
      assert.equal(metricValue(metrics, "loom_upstream_retries_total", { upstream: "reset" }), 0);
    } finally {
      await loom.close();
      await grpc.close();
      await refusing.close();
      await resetting.close();
    }
  },
  { needs: ["python3 grpc"] },
);

itest(
  "resilience h2: native gRPC through the resilient path: all call types, no error while an endpoint is down",
  async () => {
    const grpc = await startGrpcServer(freePort());
    const dead = freePort();
    const loom = await startLoom(`
listeners:
  - name: g
    address: "127.0.0.1:\${PORT}"
    protocol: grpc
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${dead}", "127.0.0.1:${grpc.port}"]
    retry: { max_retries: 2, backoff_base: 1ms, backoff_max: 5ms, budget: 1, max_body_size: 1KB }
    bulkhead: { max_concurrent: 50 }
    circuit_breaker: { failure_threshold: 100 }
  - name: down
    endpoints: ["127.0.0.1:${dead}"]
    retry: { max_retries: 1, backoff_base: 1ms, backoff_max: 2ms }
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
  - { id: down, path: "/test.Down/*", upstream: down }
`);
    try {
      // Each call on a new channel: round robin sends every other one to the dead endpoint first.
      const r = await runPeer(["fresh", `127.0.0.1:${loom.port}`, "20"]);
      assert.deepEqual(r, { ok: 20, errors: [] });
      // Streaming calls (bodies recorded while they stream), trailers, deadlines, gateway errors.
      assertScenarios(await runPeer(["client", `127.0.0.1:${loom.port}`]));
    } finally {
      await loom.close();
      await grpc.close();
    }
  },
  { needs: ["python3 grpc"] },
);

itest("resilience h2: the circuit of an h2c endpoint opens, fails fast and recovers", async () => {
  const up = h2cUpstream();
  up.mode = "fail";
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      protocol: "h2c",
      endpoints: [up.address],
      circuit_breaker: { failure_threshold: 3, success_threshold: 1, timeout: "300ms" },
    }],
    routes: [{ id: "r", path: "/*", upstream: "svc" }],
  }));
  try {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(loom.url("/x"));
      await r.text();
      assert.equal(r.status, 500, "the upstream's own 5xx passes through while closed");
    }
    assert.equal((await endpointState(loom.admin(""), "svc", up.address)).circuit, "open");
    const served = up.served;
    const t0 = performance.now();
    const r = await fetch(loom.url("/x"));
    assert.equal(r.status, 503);
    assert.match(await r.text(), /circuit open/);
    assert.ok(performance.now() - t0 < 100, "fails fast");
    assert.equal(r.headers.get("retry-after"), "1");
    assert.equal(up.served, served, "an open circuit sends nothing upstream");
    up.mode = "ok";
    await waitFor(
      "half-open probe succeeds",
      async () => {
        const res = await fetch(loom.url("/x"));
        await res.text();
        return res.status === 200;
      },
      3000,
      25,
    );
    assert.equal((await endpointState(loom.admin(""), "svc", up.address)).circuit, "closed");
  } finally {
    await loom.close();
    await up.server?.shutdown();
  }
});

itest(
  "resilience h2: gRPC UNAVAILABLE answers open the circuit; gRPC clients get a gRPC status",
  async () => {
    const grpc = await startGrpcServer(freePort());
    const address = `127.0.0.1:${grpc.port}`;
    const loom = await startLoom(yamlOf({
      upstreams: [{
        name: "svc",
        endpoints: [address],
        circuit_breaker: { failure_threshold: 3, success_threshold: 1, timeout: "30s" },
      }],
      routes: [{ id: "r", path: "/test.Echo/*", upstream: "svc" }],
    }));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await grpcWeb(loom.url("/test.Echo/Unavailable"), "");
        assert.deepEqual([r.status, r.message], ["14", "overloaded"], "the upstream's own status, relayed");
      }
      assert.equal((await endpointState(loom.admin(""), "svc", address)).circuit, "open");
      const r = await grpcWeb(loom.url("/test.Echo/Unary"), "x");
      assert.equal(r.http, 200);
      assert.deepEqual([r.status, r.message], ["14", "upstream circuit open"]);
    } finally {
      await loom.close();
      await grpc.close();
    }
  },
  { needs: ["python3 grpc"] },
);

itest("resilience h2: a bulkhead limits concurrent h2c requests, then answers 503 at once", async () => {
  const up = h2cUpstream({ delayMs: 300 });
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      protocol: "h2c",
      endpoints: [up.address],
      bulkhead: { max_concurrent: 2, queue_size: 1, timeout: "5s" },
    }],
    routes: [{ id: "r", path: "/*", upstream: "svc" }],
  }));
  try {
    const first = Array.from(
      { length: 3 },
      () => fetch(loom.url("/x")).then((r) => r.text().then(() => r.status)),
    );
    await waitFor(
      "two in flight",
      async () => (await endpointState(loom.admin(""), "svc", up.address)).in_flight === 2,
      10_000,
    );
    const t0 = performance.now();
    const r = await fetch(loom.url("/x"));
    await r.text();
    assert.equal(r.status, 503, "beyond max_concurrent + queue_size");
    assert.ok(performance.now() - t0 < 200, "rejected at once");
    assert.deepEqual(await Promise.all(first), [200, 200, 200], "the queued request got a slot");
    assert.equal(up.maxActive, 2, "never more than max_concurrent at the upstream");
  } finally {
    await loom.close();
    await up.server?.shutdown();
  }
});

itest("resilience h2: a gRPC health check takes a NOT_SERVING endpoint out and readmits it", async () => {
  const a = await startGrpcServer(freePort());
  const b = await startGrpcServer(freePort());
  const addrA = `127.0.0.1:${a.port}`;
  const addrB = `127.0.0.1:${b.port}`;
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      endpoints: [addrA, addrB],
      health_check: {
        type: "grpc",
        service: "",
        interval: "100ms",
        timeout: "1s",
        healthy_threshold: 1,
        unhealthy_threshold: 1,
      },
    }],
    routes: [{ id: "r", path: "/test.Echo/*", upstream: "svc" }],
  }));
  const served = async (addr: string) =>
    metricValue(await (await fetch(loom.admin("/metrics"))).text(), "loom_upstream_requests_total", {
      upstream: "svc",
      endpoint: addr,
    });
  const calls = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await grpcWeb(loom.url("/test.Echo/Unary"), `c${i}`);
      assert.deepEqual([r.status, r.body], ["0", `echo:c${i}`], JSON.stringify(r));
    }
  };
  try {
    await calls(4);
    assert.ok(await served(addrA) > 0 && await served(addrB) > 0, "both serve");
    await a.setServing(false);
    await waitFor(
      "a marked unhealthy",
      async () => !(await endpointState(loom.admin(""), "svc", addrA)).healthy,
      10_000,
    );
    const [a0, b0] = [await served(addrA), await served(addrB)];
    await calls(10);
    assert.equal(await served(addrA), a0, "no traffic to the NOT_SERVING endpoint");
    assert.equal(await served(addrB), b0 + 10);
    await a.setServing(true);
    await waitFor(
      "a healthy again",
      async () => (await endpointState(loom.admin(""), "svc", addrA)).healthy,
      10_000,
    );
    await calls(10);
    assert.ok(await served(addrA) > a0, "readmitted");
  } finally {
    await loom.close();
    await a.close();
    await b.close();
  }
}, { needs: ["python3 grpc"] });
