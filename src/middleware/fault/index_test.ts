import assert from "node:assert/strict";
import { fault } from "./index.ts";
import { testContext } from "../test_context.ts";

/** A random source returning `values` in turn. */
const draws = (...values: number[]) => () => values.shift() ?? 0.99;

async function run(m: ReturnType<typeof fault>, headers: Record<string, string> = {}) {
  const t = testContext();
  for (const [k, v] of Object.entries(headers)) t.ctx.headers.append(k, v);
  let reached = false;
  const t0 = performance.now();
  await m.request!(t.ctx, () => {
    reached = true;
    return Promise.resolve();
  });
  return { reached, status: t.sent.status, ms: performance.now() - t0, rejection: t.ctx.rejection };
}

Deno.test("fault: abort by share, through reject", async () => {
  const m = fault({ abort: { percent: 30, status: 503 }, headers: false }, draws(0.29, 0.3, 0.5));
  const a = await run(m);
  assert.deepEqual([a.reached, a.status, a.rejection], [false, 503, "fault/abort"]);
  assert.equal((await run(m)).reached, true);
  assert.equal((await run(m)).reached, true);
});

Deno.test("fault: delay first, then abort; 0 and 100 percent never draw", async () => {
  let drawn = 0;
  const m = fault(
    { delay: { percent: 100, duration: 30 }, abort: { percent: 0, status: 500 }, headers: false },
    () => (drawn++, 0),
  );
  const r = await run(m);
  assert.ok(r.reached && r.ms >= 28, `delayed ${r.ms} ms`);
  assert.equal(drawn, 0);
  const both = fault(
    { delay: { percent: 50, duration: 20 }, abort: { percent: 50, status: 504 }, headers: false },
    draws(0.1, 0.1),
  );
  const b = await run(both);
  assert.ok(!b.reached && b.status === 504 && b.ms >= 18);
});

Deno.test("fault: header overrides act only with headers: true and their block configured", async () => {
  const on = fault({
    abort: { percent: 100, status: 500 },
    delay: { percent: 100, duration: 0 },
    headers: true,
  });
  assert.equal((await run(on, { "x-loom-fault-abort-request": "429" })).status, 429);
  assert.equal((await run(on, { "x-loom-fault-abort-request": "abc" })).status, 500);
  assert.equal((await run(on, { "x-loom-fault-abort-request-percentage": "0" })).reached, true);
  const d = await run(on, {
    "x-loom-fault-delay-request": "25",
    "x-loom-fault-abort-request-percentage": "0",
  });
  assert.ok(d.reached && d.ms >= 23);
  const off = fault({ abort: { percent: 0, status: 500 }, headers: false });
  assert.equal((await run(off, { "x-loom-fault-abort-request": "429" })).reached, true);
  const noDelayBlock = fault({ abort: { percent: 0, status: 500 }, headers: true });
  const n = await run(noDelayBlock, { "x-loom-fault-delay-request": "200" });
  assert.ok(n.reached && n.ms < 150);
  // The configured share caps the header's.
  const capped = fault({ abort: { percent: 10, status: 500 }, headers: true }, draws(0.5));
  assert.equal((await run(capped, { "x-loom-fault-abort-request-percentage": "100" })).reached, true);
});
