import assert from "node:assert/strict";
import { ADMITTED, CircuitBreaker, CLOSED, DENIED, HALF_OPEN, OPEN, PROBE } from "./circuit_breaker.ts";
import { Bulkhead } from "./bulkhead.ts";
import { outlierFailure, outlierSuccess } from "./outlier.ts";
import { backoff, compileRetry, RetryBudget } from "./retry.ts";
import { endpointsOf, upstreamConfig } from "./testutil.ts";
import { inPanic } from "./endpoint.ts";
import { parseConfig } from "../config/mod.ts";
import type { CircuitBreakerConfig, OutlierDetectionConfig, RetryConfig } from "../config/types.ts";

const CB: CircuitBreakerConfig = {
  enabled: true,
  failure_threshold: 3,
  success_threshold: 2,
  timeout: 1000,
  window: 10_000,
  min_requests: 4,
  half_open_max: 1,
};

Deno.test("circuit breaker: consecutive failures open; timeout half-opens; bounded probes; successes close", () => {
  const b = new CircuitBreaker(CB);
  const states: number[] = [];
  b.onChange = (s) => states.push(s);
  for (let i = 0; i < 2; i++) b.record(b.admit(0), false, 0);
  b.record(b.admit(0), true, 0); // a success resets the streak
  for (let i = 0; i < 3; i++) b.record(b.admit(1), false, 1);
  assert.equal(b.state, OPEN);
  assert.equal(b.admit(500), DENIED);
  assert.equal(b.retryAfter(500), 1);
  const probe = b.admit(1001);
  assert.equal(probe, PROBE);
  assert.equal(b.state, HALF_OPEN);
  assert.equal(b.admit(1001), DENIED, "half_open_max probes at once");
  b.record(probe, true, 1002);
  b.record(b.admit(1003), true, 1003);
  assert.equal(b.state, CLOSED);
  assert.deepEqual(states, [OPEN, HALF_OPEN, CLOSED]);
  // A failed probe re-opens.
  for (let i = 0; i < 3; i++) b.record(b.admit(2000), false, 2000);
  const p2 = b.admit(3001);
  b.record(p2, false, 3001);
  assert.equal(b.state, OPEN);
  assert.equal(b.admit(3500), DENIED);
});

Deno.test("circuit breaker: failure ratio over the window once min_requests were seen", () => {
  const b = new CircuitBreaker({ ...CB, failure_threshold: 100, failure_ratio: 0.5 });
  b.record(ADMITTED, true, 0);
  b.record(ADMITTED, false, 0);
  b.record(ADMITTED, false, 0);
  assert.equal(b.state, CLOSED, "3 requests < min_requests");
  b.record(ADMITTED, true, 0);
  b.record(ADMITTED, false, 0);
  assert.equal(b.state, OPEN, "3 of 5 failed");
  // Old buckets leave the window.
  const c = new CircuitBreaker({ ...CB, failure_threshold: 100, failure_ratio: 0.5 });
  for (let i = 0; i < 3; i++) c.record(ADMITTED, false, 0);
  c.record(ADMITTED, true, 0);
  assert.equal(c.state, CLOSED, "3 consecutive < 100; the ratio is checked on failures");
  c.record(ADMITTED, false, 20_000);
  assert.equal(c.state, CLOSED);
});

Deno.test("outlier detection: ejects after N failures for a growing time, honours max_ejection_percent", () => {
  const od: OutlierDetectionConfig = {
    enabled: true,
    consecutive_failures: 2,
    base_ejection_time: 100,
    max_ejection_time: 250,
    max_ejection_percent: 50,
  };
  const eps = endpointsOf(upstreamConfig("round_robin", [1, 1, 1, 1]));
  const [a, b, c] = eps;
  const t = Date.now();
  assert.equal(outlierFailure(a, od, eps, t), false);
  outlierSuccess(a, od, t);
  assert.equal(outlierFailure(a, od, eps, t), false, "a success reset the streak");
  assert.equal(outlierFailure(a, od, eps, t), true);
  assert.equal(a.ejected, true);
  assert.equal(a.available, false);
  assert.equal(a.cells.until[a.cell], t + 100);
  outlierFailure(b, od, eps, t);
  assert.equal(outlierFailure(b, od, eps, t), true, "2 of 4 = 50%");
  outlierFailure(c, od, eps, t);
  assert.equal(outlierFailure(c, od, eps, t), false, "3 of 4 would exceed 50%");
  assert.equal(c.available, true);
  a.cells.until[a.cell] = 0; // its first ejection is over
  assert.equal(a.available, true, "readmitted lazily");
  // The second ejection lasts twice as long (200 ms, under max_ejection_time).
  outlierFailure(a, od, eps, t);
  outlierFailure(a, od, eps, t);
  assert.equal(a.cells.until[a.cell], t + 200);
});

Deno.test("panic threshold: too few healthy endpoints: unhealthy ones are used", () => {
  const eps = endpointsOf(upstreamConfig("round_robin", [1, 1, 1, 1]));
  const g = { endpoints: eps, panicThreshold: 50 };
  for (const e of eps) e.group = g;
  eps[0].healthy = false;
  assert.equal(eps[0].available, false);
  eps[1].healthy = false;
  assert.equal(inPanic(g), false, "2 of 4 healthy = 50%");
  eps[2].healthy = false;
  assert.equal(inPanic(g), true);
  assert.equal(eps[0].available, true, "in panic every non-drained endpoint is used");
  eps[0].draining = true;
  assert.equal(eps[0].available, false, "drained endpoints never");
});

Deno.test("bulkhead: slots, queue, timeout, hand-over", async () => {
  const b = new Bulkhead({ enabled: true, max_concurrent: 1, queue_size: 1, timeout: 50 });
  assert.equal(b.tryEnter(), true);
  assert.equal(b.tryEnter(), false);
  const waiting = b.wait();
  assert.equal(await b.wait(), false, "queue full");
  b.leave();
  assert.equal(await waiting, true, "slot handed over");
  assert.equal(b.active, 1);
  assert.equal(await b.wait(), false, "timed out");
  b.leave();
  assert.equal(b.active, 0);
});

Deno.test("retry: policy, full-jitter backoff bounds, budget", () => {
  const cfg: RetryConfig = {
    max_retries: 3,
    backoff_base: 100,
    backoff_max: 250,
    retryable_codes: [503],
    retry_non_idempotent: false,
    max_body_size: 1024,
    budget: 0.2,
  };
  assert.equal(compileRetry(undefined), null);
  assert.equal(compileRetry({ ...cfg, max_retries: 0 }), null);
  const p = compileRetry(cfg, true)!;
  assert.equal(p.nonIdempotent, true);
  assert.equal(compileRetry(cfg)!.nonIdempotent, false);
  assert.equal(backoff(p, 1, () => 0.999), 99.9);
  assert.equal(backoff(p, 2, () => 0.5), 100);
  assert.equal(backoff(p, 3, () => 1), 250, "capped at backoff_max");
  const b = new RetryBudget();
  b.active = 100;
  b.retrying = 19;
  assert.equal(b.allows(0.2), true);
  b.retrying = 20;
  assert.equal(b.allows(0.2), false);
  b.active = 1;
  b.retrying = 2;
  assert.equal(b.allows(0.2), true, "a minimum concurrency is always allowed");
});

Deno.test("config: resilience blocks normalise; health check types http, tcp, grpc (with service)", () => {
  const yaml = (hc: string) =>
    `listeners: [{name: h, address: ":1", protocol: http}]\n` +
    `upstreams: [{name: u, endpoints: ["a:1"], health_check: ${hc}, outlier_detection: {}, circuit_breaker: {}}]\n`;
  const ok = parseConfig(yaml(`{expected_status: [200, "300-302", "2xx"], method: head}`), "t.yaml");
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.errors));
  const u = ok.config.upstreams[0];
  assert.deepEqual(u.health_check?.expected_status, [[200, 200], [300, 302], [200, 299]]);
  assert.equal(u.health_check?.method, "HEAD");
  assert.deepEqual(u.outlier_detection, {
    enabled: true,
    consecutive_failures: 5,
    base_ejection_time: 30_000,
    max_ejection_time: 300_000,
    max_ejection_percent: 50,
  });
  assert.equal(u.panic_threshold, 50);
  assert.equal(u.circuit_breaker?.half_open_max, 1);
  const grpc = parseConfig(yaml(`{type: grpc, service: test.Echo}`), "t.yaml");
  assert.ok(grpc.ok, JSON.stringify(!grpc.ok && grpc.errors));
  assert.equal(grpc.config.upstreams[0].health_check?.type, "grpc");
  assert.equal(grpc.config.upstreams[0].health_check?.service, "test.Echo");
  const bad = parseConfig(yaml(`{type: udp}`), "t.yaml");
  assert.ok(!bad.ok);
  assert.match(bad.errors[0].message, /type must be http, tcp or grpc/);
  assert.equal(bad.errors[0].path, "upstreams[0].health_check.type");
});
