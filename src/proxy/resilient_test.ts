import assert from "node:assert/strict";
import type { BodyReader } from "../core/body.ts";
import type { RequestContext } from "../core/context.ts";
import { BodyRecorder } from "./resilient.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A streamed body that reuses one buffer for every chunk (as the engines' readers may). */
function streamed(chunks: string[], length = -1): BodyReader & { reads: number } {
  const buf = new Uint8Array(64);
  const b = {
    length,
    trailers: null,
    reads: 0,
    read(): Promise<Uint8Array | null> {
      const c = chunks[b.reads++];
      if (c === undefined) return Promise.resolve(null);
      const n = enc.encodeInto(c, buf).written;
      // Resolves a tick later, so two readers can overlap on one pending read.
      return new Promise((r) => setTimeout(() => r(buf.subarray(0, n)), 1));
    },
  };
  return b;
}

async function drain(body: BodyReader, max = Infinity): Promise<string> {
  let out = "";
  for (let i = 0; i < max; i++) {
    const c = await body.read();
    if (c === null) break;
    out += dec.decode(c);
  }
  return out;
}

Deno.test("BodyRecorder: a retry replays what was read, then continues with the live body", async () => {
  const src = streamed(["ab", "cd", "ef"]);
  const ctx = { body: src as BodyReader } as RequestContext;
  const rec = new BodyRecorder(ctx, 100);
  assert.equal(await drain(ctx.body, 2), "abcd", "first attempt read two chunks, then failed");
  assert.ok(rec.replayable());
  rec.rewind(ctx);
  assert.equal(await drain(ctx.body), "abcdef", "the copies survive the source's buffer reuse");
  assert.equal(src.reads, 4, "each chunk read from the source once");
});

Deno.test("BodyRecorder: a read the failed attempt left pending is shared, not lost", async () => {
  const ctx = { body: streamed(["one", "two"]) as BodyReader } as RequestContext;
  const rec = new BodyRecorder(ctx, 100);
  const old = ctx.body;
  const pending = old.read(); // the failed attempt's read, still in flight
  rec.rewind(ctx);
  assert.equal(await drain(ctx.body), "onetwo");
  assert.equal(dec.decode((await pending)!), "one");
});

Deno.test("BodyRecorder: past max_body_size the body still streams but is no longer replayable", async () => {
  const ctx = { body: streamed(["12345", "67890", "abc"]) as BodyReader } as RequestContext;
  const rec = new BodyRecorder(ctx, 6);
  assert.equal(await drain(ctx.body), "1234567890abc");
  assert.equal(rec.replayable(), false);
  // A body known to be too big is not wrapped at all.
  const big = streamed(["x"], 1000);
  const ctx2 = { body: big as BodyReader } as RequestContext;
  assert.equal(new BodyRecorder(ctx2, 10).replayable(), false);
  assert.equal(ctx2.body, big);
});
