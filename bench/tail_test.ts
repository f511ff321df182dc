/** Tests of bench/tail.ts's analysis on made-up records; no client, server or clang needed. */
import assert from "node:assert/strict";
import { analyse } from "./tail.ts";

/** Records of `conns` connections, one request each per ms for `ms` ms, `latency(conn, t)` µs each. */
function records(conns: number, ms: number, latency: (conn: number, t: number) => number): string {
  const lines: string[] = [];
  for (let t = 0; t < ms; t++) {
    for (let c = 0; c < conns; c++) lines.push(`${c} ${t * 1000} ${latency(c, t)}`);
  }
  return lines.join("\n") + "\n";
}

Deno.test("tail: a stall (every connection slow in the same 10 ms) is counted as one", () => {
  // 1 s of 8 connections at 1 ms; all of them wait 15 ms during 20 ms from t = 500.
  const r = analyse(records(8, 1000, (_, t) => t >= 500 && t < 520 ? 15_000 : 1_000), 8);
  assert.equal(r.requests, 8000);
  assert.equal(r.p50, 1_000);
  assert.equal(r.p99, 15_000);
  assert.equal(r.max, 15_000);
  assert.equal(r.stalled, 1);
});

Deno.test("tail: one connection served late is a tail without stalls", () => {
  // Connection 3 waits 9 ms every 5th request (2.5 % of all): the tail, but never half the connections at once.
  const r = analyse(records(8, 1000, (c, t) => c === 3 && t % 5 === 0 ? 9_000 : 1_000), 8);
  assert.equal(r.p99, 9_000);
  assert.equal(r.p999, 9_000);
  assert.equal(r.stalled, 0);
});
