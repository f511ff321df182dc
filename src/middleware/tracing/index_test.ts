import assert from "node:assert/strict";
import { parseTraceparent, Tracing } from "../../observability/tracing.ts";
import { tracing } from "./index.ts";
import { testContext } from "../test_context.ts";
import { compileChain } from "../compose.ts";
import type { TracingConfig } from "../../config/observability.ts";

const CFG: TracingConfig = { enabled: true, service_name: "t", sample_rate: 1, batch_timeout: 5000 };
const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Deno.test("tracing: traceparent parsing (W3C Trace Context)", () => {
  assert.deepEqual(parseTraceparent(TP), {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    sampled: true,
  });
  assert.equal(parseTraceparent(TP.slice(0, -2) + "00")?.sampled, false);
  assert.equal(parseTraceparent(TP.slice(0, -2) + "03")?.sampled, true);
  assert.equal(parseTraceparent(undefined), null);
  assert.equal(parseTraceparent(""), null);
  assert.equal(parseTraceparent(TP.toUpperCase()), null, "upper-case hex is invalid");
  assert.equal(parseTraceparent("ff" + TP.slice(2)), null, "version ff");
  assert.equal(parseTraceparent(TP + "-x"), null, "version 00 has nothing after the flags");
  assert.ok(parseTraceparent("01" + TP.slice(2) + "-later"), "a later version may add fields");
  assert.equal(parseTraceparent(`00-${"0".repeat(32)}-00f067aa0ba902b7-01`), null, "all-zero trace id");
  assert.equal(parseTraceparent(`00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`), null);
});

Deno.test("tracing: parent-based ratio sampling", () => {
  const never = new Tracing({ ...CFG, sample_rate: 0 });
  assert.equal(never.sample(undefined), false);
  assert.equal(never.sample(TP.slice(0, -2) + "00"), false, "an unsampled parent is followed");
  assert.equal(typeof never.sample(TP), "object", "a sampled parent is followed whatever the rate");
  const always = new Tracing(CFG);
  assert.equal(always.sample(undefined), null, "a root");
  assert.equal(always.sample(TP.slice(0, -2) + "00"), false);
  const tenth = new Tracing({ ...CFG, sample_rate: 0.1 });
  let n = 0;
  for (let i = 0; i < 20_000; i++) if (tenth.sample(undefined) !== false) n++;
  assert.ok(n > 1600 && n < 2400, `~10 % sampled: ${n}`);
});

Deno.test("tracing: unsampled requests get no trace and their traceparent is left alone", async () => {
  const mw = tracing({ ...CFG, sample_rate: 0 });
  const { ctx } = testContext();
  ctx.headers.append("traceparent", TP.slice(0, -2) + "00");
  let saw: unknown = "unset";
  await mw.request!(ctx, () => {
    saw = ctx.trace;
    return Promise.resolve();
  });
  assert.equal(saw, null);
  assert.equal(ctx.hooks, null, "no upstream_request hook: the client's traceparent goes on as sent");
  assert.equal(mw.upstreamRequest, undefined);
});

Deno.test("tracing: without the tracing middleware a chain is not wrapped", () => {
  const request = (_c: unknown, next: () => Promise<void>) => next();
  const terminal = () => Promise.resolve();
  // A lone middleware compiles to compose's single-handler path: no span wrapper in between.
  const plain = compileChain([{ name: "a", request }], terminal);
  const traced = compileChain([tracing(CFG), { name: "a", request }], terminal);
  assert.notEqual(plain, traced);
  assert.equal(compileChain([], terminal), terminal);
});
