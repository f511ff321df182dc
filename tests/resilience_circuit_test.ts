/**
 * Acceptance: the circuit breaker opens after the threshold, fails fast (503 +
 * Retry-After, under 1 ms added) without touching the upstream, and recovers
 * through half-open. Also bulkheads (503 beyond capacity), retries of
 * retryable statuses with body replay, and the non-idempotent opt-in.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { metricValue, postReload } from "./gateway_util.ts";
import { endpointState } from "./resilience_util.ts";
import { startUpstream } from "./upstream.ts";

/** Median of `n` sequential GETs (ms), asserting each status. */
async function medianLatency(url: string, n: number, status: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(url);
    await r.arrayBuffer();
    times.push(performance.now() - t0);
    assert.equal(r.status, status);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)];
}

itest("resilience: circuit opens after the threshold, fails fast, recovers through half-open", async () => {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
      endpoints: [up.address],
      circuit_breaker: { failure_threshold: 5, success_threshold: 2, timeout: "300ms" },
    }],
    routes: [{ id: "r", path: "/*", upstream: "svc" }],
  }));
  const admin = loom.admin("");
  try {
    const healthy = await medianLatency(loom.url("/x"), 30, 200);
    up.mode = "fail";
    for (let i = 0; i < 5; i++) {
      const r = await fetch(loom.url("/x"));
      await r.text();
      assert.equal(r.status, 500, "the upstream's own 5xx passes through while closed");
    }
    assert.equal((await endpointState(admin, "svc", up.address)).circuit, "open");
    const served = up.served;
    const r = await fetch(loom.url("/x"));
    assert.equal(r.status, 503);
    assert.match(await r.text(), /circuit open/);
    assert.equal(r.headers.get("retry-after"), "1");
    const open = await medianLatency(loom.url("/x"), 30, 503);
    assert.equal(up.served, served, "an open circuit sends nothing upstream");
    // Failing fast costs no more than a proxied request (which includes the upstream) plus 1 ms.
    assert.ok(
      open < healthy + 1,
      `fail-fast median ${open.toFixed(3)} ms vs proxied ${healthy.toFixed(3)} ms`,
    );
    let metrics = await (await fetch(loom.admin("/metrics"))).text();
    assert.equal(
      metricValue(metrics, "loom_circuit_breaker_state", { upstream: "svc", endpoint: up.address }),
      1,
    );

    // A reload keeps the breaker of an endpoint present in both configs.
    writeConfig(
      loom,
      yamlOf({
        upstreams: [{
          name: "svc",
          endpoints: [up.address],
          circuit_breaker: { failure_threshold: 5, success_threshold: 2, timeout: "300ms" },
        }],
        routes: [{ id: "r", path: "/*", upstream: "svc" }, { id: "new", path: "/new", upstream: "svc" }],
      }),
    );
    assert.equal((await postReload(loom)).status, 200);
    assert.equal((await endpointState(admin, "svc", up.address)).circuit, "open", "kept across the reload");

    // Still failing at the half-open probe: open again.
    await waitFor(
      "half-open probe let through",
      async () => {
        const res = await fetch(loom.url("/x"));
        await res.text();
        return res.status === 500;
      },
      3000,
      25,
    );
    assert.equal((await endpointState(admin, "svc", up.address)).circuit, "open");

    // Upstream recovers: one probe, then success_threshold successes close the circuit.
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
    assert.equal((await endpointState(admin, "svc", up.address)).circuit, "half_open");
    assert.equal(await fetch(loom.url("/x")).then((x) => x.text().then(() => x.status)), 200);
    assert.equal((await endpointState(admin, "svc", up.address)).circuit, "closed");
    await medianLatency(loom.url("/x"), 10, 200);
    metrics = await (await fetch(loom.admin("/metrics"))).text();
    assert.equal(
      metricValue(metrics, "loom_circuit_breaker_state", { upstream: "svc", endpoint: up.address }),
      0,
    );
    console.log(`circuit: proxied median ${healthy.toFixed(3)} ms, fail-fast median ${open.toFixed(3)} ms`);
  } finally {
    await loom.close();
    await up.stop();
  }
});

itest("resilience: bulkhead queues up to queue_size, then answers 503 at once", async () => {
  const up = startUpstream({ delayMs: 300 });
  const loom = await startLoom(yamlOf({
    upstreams: [{
      name: "svc",
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
  } finally {
    await loom.close();
    await up.stop();
  }
});

itest(
  "resilience: retryable statuses are retried on another endpoint, bodies resent; POST only when opted in",
  async () => {
    const bodies: string[] = [];
    const bad = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      bodies.push(`bad:${req.method}:${await req.text()}`);
      return new Response("unavailable", { status: 503 });
    });
    const good = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      bodies.push(`good:${req.method}:${await req.text()}`);
      return new Response("fine");
    });
    const addr = (s: Deno.HttpServer<Deno.NetAddr>) => `127.0.0.1:${s.addr.port}`;
    const loom = await startLoom(yamlOf({
      // One upstream per case: each round robin starts on `bad`.
      upstreams: ["put", "post", "chunked", "large"].map((name) => ({
        name,
        endpoints: [addr(bad), addr(good)],
        retry: { max_retries: 1, backoff_base: "1ms", backoff_max: "2ms", max_body_size: "1KB", budget: 1 },
      })),
      routes: [
        { id: "put", path: "/put", upstream: "put" },
        { id: "post", path: "/post", upstream: "post" },
        { id: "chunked", path: "/chunked", upstream: "chunked", retry_non_idempotent: true },
        { id: "large", path: "/large", upstream: "large", retry_non_idempotent: true },
      ],
    }));
    try {
      // Round robin starts on `bad`: each request hits it first, then is retried on `good`.
      const put = await fetch(loom.url("/put"), { method: "PUT", body: "hello" });
      assert.equal(put.status, 200);
      assert.equal(await put.text(), "fine");
      assert.deepEqual(bodies.splice(0), ["bad:PUT:hello", "good:PUT:hello"]);

      // POST is not retried without the opt-in: the 503 is relayed.
      const post = await fetch(loom.url("/post"), { method: "POST", body: "x" });
      assert.equal(post.status, 503);
      await post.text();
      assert.deepEqual(bodies.splice(0), ["bad:POST:x"]);

      // Opted-in route, chunked body (unknown length) under max_body_size: resent.
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode("chunk1-"));
          c.enqueue(new TextEncoder().encode("chunk2"));
          c.close();
        },
      });
      const chunked = await fetch(loom.url("/chunked"), { method: "POST", body: stream });
      assert.equal(chunked.status, 200);
      await chunked.text();
      assert.deepEqual(bodies.splice(0), ["bad:POST:chunk1-chunk2", "good:POST:chunk1-chunk2"]);

      // A body above max_body_size is never retried (it is streamed once).
      const big = "z".repeat(2048);
      const large = await fetch(loom.url("/large"), { method: "POST", body: big });
      assert.equal(large.status, 503);
      await large.text();
      assert.deepEqual(bodies.splice(0), [`bad:POST:${big}`]);

      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      assert.equal(
        metricValue(metrics, "loom_upstream_retries_total", { reason: "503" }),
        2,
      );
    } finally {
      await loom.close();
      await bad.shutdown();
      await good.shutdown();
    }
  },
);

itest(
  "resilience: the retry budget caps concurrent retries of processed requests; unsent requests are resent outside it",
  async () => {
    // Every answer is a retryable 503 after 100 ms, so the 20 first attempts fail together.
    let received = 0;
    const failing = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
      received++;
      await new Promise((r) => setTimeout(r, 100));
      return new Response("unavailable", { status: 503 });
    });
    const good = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("fine"),
    );
    const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadAddr = `127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
    dead.close();
    const retry = { max_retries: 1, backoff_base: "1ms", backoff_max: "2ms", budget: 0.1 };
    const loom = await startLoom(yamlOf({
      upstreams: [
        { name: "failing", endpoints: [`127.0.0.1:${failing.addr.port}`], retry },
        // Round robin starts on the dead endpoint: every request is refused there first.
        {
          name: "half",
          endpoints: [deadAddr, `127.0.0.1:${good.addr.port}`],
          retry,
          load_balancer: "round_robin",
        },
      ],
      routes: [
        { id: "failing", path: "/failing", upstream: "failing" },
        { id: "half", path: "/half", upstream: "half" },
      ],
    }));
    try {
      const statuses = await Promise.all(
        Array.from(
          { length: 20 },
          () => fetch(loom.url("/failing")).then(async (r) => (await r.text(), r.status)),
        ),
      );
      assert.ok(statuses.every((s) => s === 503));
      // 20 first attempts, then at most max(3, 0.1 × 20) = 3 retries at once; a slot frees only after 100 ms,
      // so a loaded machine staggering the 20 requests may add a few.
      assert.ok(received >= 21 && received <= 26, `upstream saw ${received} requests (40 without a budget)`);

      // Connect failures are resent whatever the budget: none of 20 concurrent requests fails.
      const half = await Promise.all(
        Array.from(
          { length: 20 },
          () => fetch(loom.url("/half")).then(async (r) => (await r.text(), r.status)),
        ),
      );
      assert.deepEqual(half.filter((s) => s !== 200), []);
    } finally {
      await loom.close();
      await failing.shutdown();
      await good.shutdown();
    }
  },
);
