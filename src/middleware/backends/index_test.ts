import assert from "node:assert/strict";
import {
  cookieValue,
  fnv1a,
  SmoothWeighted,
  stickyCookie,
  type WeightedBackend,
  weightedSplit,
} from "./index.ts";
import { HeaderList } from "../../core/headers.ts";
import { testContext } from "../test_context.ts";
import type { RequestContext } from "../../core/context.ts";

Deno.test("backends: smooth weighted round robin is exact per cycle and interleaved; 0 never", () => {
  const s = new SmoothWeighted([5, 1, 1, 0]);
  const seq = Array.from({ length: 7 }, () => s.next());
  assert.deepEqual(seq, [0, 0, 1, 0, 2, 0, 0]);
  const counts = [0, 0, 0, 0];
  const w = new SmoothWeighted([90, 10, 0, 1]);
  for (let i = 0; i < 10_100; i++) counts[w.next()]++;
  assert.deepEqual(counts, [9000, 1000, 0, 100]);
  assert.equal(new SmoothWeighted([0, 0]).next(), -1);
  // A hash point falls into one weight's share.
  assert.deepEqual([0, 4, 5, 6, 7, 12, 13].map((p) => s.at(p)), [0, 0, 1, 2, 0, 1, 2]);
});

Deno.test("backends: cookie values across fields and spacing; FNV-1a", () => {
  const { ctx } = testContext();
  ctx.headers = new HeaderList();
  ctx.headers.append("cookie", "a=1; lb=x");
  ctx.headers.append("cookie", 'lbx=2;lb2="q"');
  assert.equal(cookieValue(ctx, "lb"), "x");
  assert.equal(cookieValue(ctx, "lb2"), "q");
  assert.equal(cookieValue(ctx, "a"), "1");
  assert.equal(cookieValue(ctx, "nope"), undefined);
  assert.equal(fnv1a(""), 0x811c9dc5);
  assert.equal(fnv1a("a"), 0xe40c292c);
});

function backend(name: string, weight: number, seen: string[]): WeightedBackend {
  const handler = (_ctx: RequestContext) => {
    seen.push(name);
    return Promise.resolve();
  };
  return { name, weight, handler, assign: (_ctx) => (seen.push(name + "+cookie"), Promise.resolve()) };
}

Deno.test("backends: split, sticky cookie kept or assigned, sticky header, all zero → 500", async () => {
  const seen: string[] = [];
  const plain = weightedSplit([backend("a", 1, seen), backend("b", 1, seen)]);
  for (let i = 0; i < 4; i++) await plain(testContext().ctx);
  assert.deepEqual(seen.splice(0), ["a", "b", "a", "b"]);

  const sticky = weightedSplit([backend("a", 1, seen), backend("b w", 1, seen), backend("z", 0, seen)], {
    cookie: "lb",
    path: "/",
  });
  const withCookie = (v: string) => {
    const { ctx } = testContext();
    ctx.headers.append("cookie", `lb=${v}`);
    return ctx;
  };
  await sticky(testContext().ctx);
  await sticky(withCookie("b%20w"));
  await sticky(withCookie("b%20w"));
  await sticky(withCookie("z")); // weight 0: reassigned
  assert.deepEqual(seen.splice(0), ["a+cookie", "b w", "b w", "b w+cookie"]);

  const hashed = weightedSplit([backend("a", 1, seen), backend("b", 1, seen)], {
    header: "X-User",
    path: "/",
  });
  for (const user of ["u1", "u2", "u1", "u2", "u1"]) {
    const { ctx } = testContext();
    ctx.headers.append("x-user", user);
    await hashed(ctx);
  }
  assert.deepEqual(seen.slice(2), seen.slice(0, 3));
  seen.length = 0;

  const none = testContext();
  await weightedSplit([backend("a", 0, seen), backend("b", 0, seen)])(none.ctx);
  assert.equal(none.sent.status, 500);
  assert.deepEqual(seen, []);
});

Deno.test("backends: the sticky cookie's attributes; Secure on https", () => {
  const m = stickyCookie({ cookie: "lb", ttl: 3_600_000, path: "/app" }, "b w");
  const { ctx } = testContext();
  const h = new HeaderList();
  m.response!(ctx, { status: 200, headers: h, bodyLength: 0 });
  assert.equal(h.get("set-cookie"), "lb=b%20w; Path=/app; Max-Age=3600; HttpOnly; SameSite=Lax");
  ctx.scheme = "https";
  const s = new HeaderList();
  stickyCookie({ cookie: "lb", path: "/" }, "a").response!(ctx, { status: 200, headers: s, bodyLength: 0 });
  assert.equal(s.get("set-cookie"), "lb=a; Path=/; HttpOnly; SameSite=Lax; Secure");
});
