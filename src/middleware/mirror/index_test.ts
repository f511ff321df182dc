import assert from "node:assert/strict";
import { mirror } from "./index.ts";
import type { BodyReader } from "../../core/body.ts";
import type { RequestContext } from "../../core/context.ts";
import type { MiddlewareEnv } from "../registry.ts";
import type { MirrorOptions } from "../../config/middleware/mirror.ts";
import { NO_ENV } from "../registry.ts";
import { testContext } from "../test_context.ts";

const OPTS: MirrorOptions = {
  upstream: "shadow",
  percent: 100,
  max_in_flight: 4,
  max_body: 10,
  timeout: 1000,
};

/** A body of `parts`, each read into the same reused buffer (as engines do). */
function reusedBody(parts: string[], length = -1): BodyReader {
  const buf = new Uint8Array(64);
  let i = 0;
  return {
    length,
    trailers: null,
    read() {
      if (i >= parts.length) return Promise.resolve(null);
      const n = new TextEncoder().encodeInto(parts[i++], buf).written;
      return Promise.resolve(buf.subarray(0, n));
    },
  };
}

async function readAll(b: BodyReader): Promise<string> {
  let s = "";
  for (let c = await b.read(); c !== null; c = await b.read()) s += new TextDecoder().decode(c);
  return s;
}

/** An env whose proxy records each copy (and, with `hold`, never finishes it). */
function fakeEnv(hold = false) {
  const copies: RequestContext[] = [];
  const results: string[] = [];
  let down: (() => void) | undefined;
  const env: MiddlewareEnv = {
    ...NO_ENV,
    proxy: (name, _timeout, onConnectFailure) => {
      if (name !== "shadow") return null;
      down = onConnectFailure;
      return (ctx) => {
        copies.push(ctx);
        return hold ? new Promise(() => {}) : Promise.resolve();
      };
    },
    metrics: {
      rateLimitDecision() {},
      redisRequest() {},
      redisError() {},
      redisState() {},
      mirrorRequest: (_route, _up, result) => results.push(result),
    },
  };
  return { env, copies, results, failConnect: () => down?.() };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("mirror: the copy is the request as seen, with the upstream_request hooks and vars only", async () => {
  const f = fakeEnv();
  const m = mirror(OPTS, f.env);
  const { ctx } = testContext();
  ctx.id = "r1";
  ctx.upstreamTarget = "/v2/x?q";
  ctx.headers.append("x-a", "1");
  const hook = () => {};
  ctx.hooks = { upstreamRequest: [hook], response: [hook], responseBody: null, log: [hook] };
  ctx.vars.set("k", "v");
  let mainRan = false;
  await m.request!(ctx, () => {
    mainRan = true;
    // A later edit of the client's request does not reach the copy.
    ctx.headers.set("x-a", "changed");
    return Promise.resolve();
  });
  await tick();
  assert.ok(mainRan);
  assert.equal(f.copies.length, 1);
  const c = f.copies[0];
  assert.notEqual(c, ctx);
  assert.equal(c.id, "r1");
  assert.equal(c.upstreamTarget, "/v2/x?q");
  assert.equal(c.headers.get("x-a"), "1");
  assert.deepEqual(c.hooks, { upstreamRequest: [hook], response: null, responseBody: null, log: null });
  assert.equal(c.vars.get("k"), "v");
  assert.equal(c.body.length, 0);
  c.res.writeHead(200, c.headers, 0); // answers go nowhere
  assert.deepEqual(f.results, ["sent"]);
});

Deno.test("mirror: the body is teed chunk by chunk; the main request reads it unchanged", async () => {
  const f = fakeEnv();
  const m = mirror(OPTS, f.env);
  const { ctx } = testContext();
  ctx.body = reusedBody(["abc", "def", "gh"]);
  let main = "";
  await m.request!(ctx, async () => {
    main = await readAll(ctx.body);
  });
  await tick();
  assert.equal(main, "abcdefgh");
  assert.equal(await readAll(f.copies[0].body), "abcdefgh");
});

Deno.test("mirror: a streamed body past max_body aborts the copy; an unread one fails it at the end", async () => {
  const f = fakeEnv();
  const m = mirror(OPTS, f.env);
  let t = testContext();
  t.ctx.body = reusedBody(["123456", "789012", "x"]);
  let main = "";
  await m.request!(t.ctx, async () => {
    main = await readAll(t.ctx.body);
  });
  await tick();
  assert.equal(main, "123456789012x");
  await assert.rejects(() => readAll(f.copies[0].body), /max_body/);
  assert.deepEqual(f.results, ["sent", "aborted_body"]);

  t = testContext();
  t.ctx.body = reusedBody(["1", "2"]);
  await m.request!(t.ctx, () => Promise.resolve()); // an early answer: the body was never read
  await tick();
  await assert.rejects(() => readAll(f.copies[1].body), /before its body was read/);
});

Deno.test("mirror: skips a declared length over max_body, past max_in_flight, 0 percent, while down", async () => {
  const f = fakeEnv(true);
  const m = mirror(OPTS, f.env);
  const run = async (body?: BodyReader) => {
    const { ctx } = testContext();
    if (body) ctx.body = body;
    let reached = false;
    await m.request!(ctx, () => {
      reached = true;
      return Promise.resolve();
    });
    assert.ok(reached, "the request always goes on");
  };
  await run(reusedBody(["x".repeat(11)], 11));
  for (let i = 0; i < 5; i++) await run();
  await tick();
  assert.deepEqual(f.results, ["skipped_body", "sent", "sent", "sent", "sent", "skipped_in_flight"]);
  assert.equal(f.copies.length, 4);

  const g = fakeEnv();
  const down = mirror(OPTS, g.env);
  g.failConnect();
  await down.request!(testContext().ctx, () => Promise.resolve());
  assert.deepEqual(g.results, ["skipped_down"]);

  const h = fakeEnv();
  const never = mirror({ ...OPTS, percent: 0 }, h.env);
  for (let i = 0; i < 10; i++) await never.request!(testContext().ctx, () => Promise.resolve());
  assert.deepEqual(h.results, []);
});

Deno.test("mirror: an upstream the env cannot send to is an error at construction", () => {
  assert.throws(() => mirror(OPTS, NO_ENV), /upstream "shadow" is not defined/);
  assert.throws(() => mirror({ ...OPTS, upstream: "other" }, fakeEnv().env), /not defined/);
});
