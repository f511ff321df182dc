import assert from "node:assert/strict";
import { compileChain, compileInnerChain, compose, phaseHooks } from "./compose.ts";
import type { Handler, Middleware } from "../core/middleware.ts";
import type { RequestContext } from "../core/context.ts";
import { HeaderList } from "../core/headers.ts";
import { testContext } from "./test_context.ts";

Deno.test("compose: handlers run in list order around the terminal, unwinding in reverse", async () => {
  const order: string[] = [];
  const mw = (n: string): Handler => async (_c, next) => {
    order.push(n + ">");
    await next();
    order.push("<" + n);
  };
  const run = compose([mw("a"), mw("b"), mw("c")], () => {
    order.push("proxy");
    return Promise.resolve();
  });
  await run(testContext().ctx);
  assert.deepEqual(order, ["a>", "b>", "c>", "proxy", "<c", "<b", "<a"]);
});

Deno.test("compose: no handlers is the terminal itself; an early answer skips the rest", async () => {
  const terminal = () => Promise.resolve();
  assert.equal(compose([], terminal), terminal);
  let reached = false;
  const run = compose([(_c, _n) => Promise.resolve(), (_c, next) => next()], () => {
    reached = true;
    return Promise.resolve();
  });
  await run(testContext().ctx);
  assert.equal(reached, false);
});

Deno.test("compose: next() called twice is an error (one handler and several)", async () => {
  const twice: Handler = async (_c, next) => {
    await next();
    await next();
  };
  for (const list of [[twice], [(_c: RequestContext, next: () => Promise<void>) => next(), twice]]) {
    const run = compose(list, () => Promise.resolve());
    await assert.rejects(run(testContext().ctx), /next\(\) called multiple times/);
  }
});

Deno.test("compileChain: phase hooks set on the context, response hooks and body filters applied", async () => {
  const seen: string[] = [];
  const list: Middleware[] = [
    { name: "a", request: (c, next) => (seen.push("request " + c.method), next()) },
    {
      name: "b",
      response: (_c, head) => {
        head.headers.set("x-b", "1");
        head.status = 201;
      },
      responseBody: (_c, head) => {
        head.bodyLength = -1;
        return {
          push: (c) => c.map((x) => x >= 97 && x <= 122 ? x - 32 : x),
          flush: () => new TextEncoder().encode("!"),
        };
      },
      log: () => seen.push("log"),
    },
  ];
  assert.equal(phaseHooks([{ name: "only-request", request: (_c, n) => n() }]), null);
  const { ctx, sent } = testContext();
  const run = compileChain(list, async (c) => {
    c.res.writeHead(200, new HeaderList(), 5);
    await c.res.write(new TextEncoder().encode("hello"));
    await c.res.end();
  });
  await run(ctx);
  assert.deepEqual(seen, ["request GET"]);
  assert.equal(sent.status, 201);
  assert.equal(sent.headers.get("x-b"), "1");
  assert.equal(sent.body, "HELLO!");
  assert.equal(ctx.hooks?.log?.length, 1);
});

Deno.test("compileChain: a route without middleware calls the terminal directly", () => {
  const terminal = () => Promise.resolve();
  assert.equal(compileChain([], terminal), terminal);
});

Deno.test("compileInnerChain: a backend's chain inside the route's; its response hooks nearer the upstream", async () => {
  const seen: string[] = [];
  const mw = (n: string, response = true): Middleware => ({
    name: n,
    request: (_c, next) => (seen.push("request " + n), next()),
    upstreamRequest: () => seen.push("upstream " + n),
    response: response ? (_c, head) => (seen.push("response " + n), head.headers.append("x", n)) : undefined,
    log: () => seen.push("log " + n),
  });
  const outer = [mw("route")];
  const terminal = (c: RequestContext) => {
    seen.push("proxy");
    for (const h of c.hooks?.upstreamRequest ?? []) {
      h(c, { method: "GET", target: "/", authority: "a", headers: new HeaderList() });
    }
    c.res.writeHead(200, new HeaderList(), 0);
    return c.res.end();
  };
  const { ctx, sent } = testContext();
  const run = compileChain(outer, compileInnerChain(outer, [mw("backend")], terminal));
  await run(ctx);
  for (const h of ctx.hooks?.log ?? []) h(ctx);
  assert.deepEqual(seen, [
    "request route",
    "request backend",
    "proxy",
    "upstream route",
    "upstream backend",
    "response backend",
    "response route",
    "log route",
    "log backend",
  ]);
  assert.deepEqual(sent.headers.entries(), [["x", "backend"], ["x", "route"]]);
  const terminalOnly = () => Promise.resolve();
  assert.equal(compileInnerChain(outer, [], terminalOnly), terminalOnly);
});
