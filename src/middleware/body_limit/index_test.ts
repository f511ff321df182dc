import assert from "node:assert/strict";
import { bodyLimit } from "./index.ts";
import { BodyLimitError, limitBody } from "../../core/body_limit.ts";
import { type BodyReader, bytesBody } from "../../core/body.ts";
import { HeaderList } from "../../core/headers.ts";
import { testContext } from "../test_context.ts";
import { parseConfig } from "../../config/load.ts";

/** A streamed body of unknown length (HTTP/1.1 chunked, or an HTTP/2 / HTTP/3 stream without content-length). */
function streamed(chunks: number[], trailers: HeaderList | null = null): BodyReader & { reads: number } {
  let i = 0;
  const buf = new Uint8Array(64 * 1024);
  const r = {
    length: -1,
    reads: 0,
    get trailers() {
      return i >= chunks.length ? trailers : null;
    },
    read(): Promise<Uint8Array | null> {
      r.reads++;
      // A view into one reused buffer, as the engines hand out.
      return Promise.resolve(i < chunks.length ? buf.subarray(0, chunks[i++]) : null);
    },
  };
  return r;
}

async function drain(b: BodyReader): Promise<number> {
  let n = 0;
  for (;;) {
    const c = await b.read();
    if (c === null) return n;
    n += c.length;
  }
}

Deno.test("body_limit: a Content-Length over the limit is refused with 413 before next(), body unread, counted", async () => {
  const t = testContext();
  const body = bytesBody(new Uint8Array(2049));
  let read = false;
  t.ctx.body = { ...body, read: () => (read = true, body.read()) };
  let called = false;
  await bodyLimit({ max: 2048 }).request!(t.ctx, () => {
    called = true;
    return Promise.resolve();
  });
  assert.equal(called, false);
  assert.equal(read, false);
  assert.equal(t.sent.status, 413);
  assert.equal(t.ctx.rejection, "body_limit/too_large");
  assert.equal(t.sent.headers.get("connection"), "close");
  assert.match(t.sent.body, /request body larger than 2048 bytes/);
});

Deno.test("body_limit: a declared length within the limit passes untouched (no wrapper)", async () => {
  const t = testContext();
  const body = bytesBody(new Uint8Array(2048));
  t.ctx.body = body;
  await bodyLimit({ max: 2048 }).request!(t.ctx, () => Promise.resolve());
  assert.equal(t.ctx.body, body);
  assert.equal(t.ctx.rejection, "");
});

Deno.test("body_limit: a streamed body is counted as it passes; the read past the limit throws BodyLimitError", async () => {
  const t = testContext();
  const src = streamed([1000, 1000, 1000]);
  t.ctx.body = src;
  let seen: BodyReader | null = null;
  await bodyLimit({ max: 2500 }).request!(t.ctx, () => {
    seen = t.ctx.body;
    return Promise.resolve();
  });
  assert.notEqual(seen, src);
  const b = t.ctx.body;
  assert.equal(b.length, -1);
  assert.equal((await b.read())!.length, 1000);
  assert.equal((await b.read())!.length, 1000);
  assert.equal(t.ctx.rejection, "");
  const e = await b.read().then(() => null, (e) => e);
  assert.ok(e instanceof BodyLimitError);
  assert.equal(e.status, 413);
  assert.equal(t.ctx.rejection, "body_limit/too_large");
  // Later reads fail too, without reading the source again.
  const reads = src.reads;
  await assert.rejects(b.read(), BodyLimitError);
  assert.equal(src.reads, reads);
  assert.equal(t.sent.status, 0, "the middleware itself answers nothing: the proxy maps the error");
});

Deno.test("body_limit: a streamed body at the limit passes whole, trailers kept (HTTP/3-style stream reader)", async () => {
  const tr = HeaderList.from([["x-checksum", "abc"]]);
  const b = limitBody(streamed([1024, 1024, 0, 512], tr), 2560);
  assert.equal(await drain(b), 2560);
  assert.equal(b.trailers?.get("x-checksum"), "abc");
  // 0 allows no body at all (an empty stream still passes).
  assert.equal(await drain(limitBody(streamed([]), 0)), 0);
  await assert.rejects(drain(limitBody(streamed([1]), 0)), BodyLimitError);
});

Deno.test("body_limit config: max is required and a size", () => {
  const base = `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["127.0.0.1:2"] }]
middleware:
`;
  const ok = parseConfig(base + "  - body_limit: { max: 1MB }\n", "b.yaml", {});
  assert.ok(ok.ok);
  if (!ok.ok) return;
  assert.deepEqual(ok.config.middleware, [{ name: "body_limit", options: { max: 1024 * 1024 } }]);
  for (const [text, want] of [["{}", /max.*required|missing/i], ["{ max: big }", /invalid size/]] as const) {
    const bad = parseConfig(base + `  - body_limit: ${text}\n`, "b.yaml", {});
    assert.equal(bad.ok, false);
    if (bad.ok) continue;
    assert.match(bad.errors.map((e) => `${e.line}: ${e.message}`).join("\n"), want);
    assert.equal(bad.errors[0].line, 4);
  }
});
