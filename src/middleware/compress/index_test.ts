import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { addVary, compress } from "./index.ts";
import { cachedNegotiator, negotiate, typeMatcher } from "./negotiate.ts";
import { createCompressor, supported } from "./codec.ts";
import { HeaderList } from "../../core/headers.ts";
import { concat } from "../../net/bytes.ts";
import type { ResponseHead } from "../../core/middleware.ts";
import { compileChain } from "../compose.ts";
import { testContext } from "../test_context.ts";
import { type CompressOptions, DEFAULT_COMPRESS_TYPES } from "../../config/middleware/compress.ts";
import { parseConfig } from "../../config/load.ts";

const OFFERED = ["zstd", "br", "gzip"];

Deno.test("compress: Accept-Encoding negotiation table (q-values, q=0, *, ties by configured order)", () => {
  const cases: [string | undefined, string | null][] = [
    [undefined, null], // no header: identity
    ["", null],
    ["identity", null],
    ["gzip", "gzip"],
    ["GZip", "gzip"],
    ["x-gzip", "gzip"],
    ["gzip, br", "br"], // tie: configured order (zstd, br, gzip)
    ["gzip, deflate, br, zstd", "zstd"],
    ["gzip;q=1.0, br;q=0.5", "gzip"],
    ["br;q=0.8, gzip;q=0.9, zstd;q=0.1", "gzip"],
    ["gzip;q=0", null],
    ["gzip;q=0, br", "br"],
    ["*", "zstd"],
    ["*;q=0", null],
    ["gzip, *;q=0", "gzip"],
    ["zstd;q=0, *", "br"],
    ["gzip;q=0.5, *;q=0.6", "zstd"], // * covers the codings not named
    ["deflate, compress", null],
    ["gzip;q=2", null], // malformed q: the member is ignored
    ["gzip;q=0.5000", null],
    ["gzip;q=abc, br;q=0.1", "br"],
    ["gzip ; q=0.3 , br ; Q=0.2", "gzip"],
    ["br;q=1.000", "br"],
    ["br;q=1.001", null],
    [" , ,gzip,", "gzip"],
    ["gzip;level=1", "gzip"], // unknown parameters are ignored
    ["gzip;q=0.001", "gzip"],
    ["gzip;q=0.000", null],
  ];
  for (const [ae, want] of cases) {
    const i = negotiate(ae, OFFERED);
    assert.equal(i === -1 ? null : OFFERED[i], want, JSON.stringify(ae));
  }
  // Another preference order breaks ties its way.
  assert.equal(negotiate("gzip, br", ["gzip", "br"]), 0);
  const cached = cachedNegotiator(["gzip"], 2);
  for (let k = 0; k < 5; k++) assert.equal(cached(`gzip;q=0.${k + 1}`), 0);
  assert.equal(cached(undefined), -1);
});

Deno.test("compress: content-type patterns (exact, type/*, type/*+suffix, */*), parameters and case ignored", () => {
  const m = typeMatcher(DEFAULT_COMPRESS_TYPES);
  for (
    const t of [
      "text/html",
      "text/html; charset=utf-8",
      "TEXT/Plain",
      "text/event-stream",
      "application/json",
      "application/problem+json",
      "application/vnd.api+json;charset=utf-8",
      "application/javascript",
      "application/atom+xml",
      "image/svg+xml",
    ]
  ) assert.ok(m(t), t);
  for (
    const t of [
      "image/png",
      "application/octet-stream",
      "video/mp4",
      "application/grpc",
      "text",
      "",
      "/json",
      "text/",
    ]
  ) assert.ok(!m(t), t);
  const only = typeMatcher(["application/*+json"]);
  assert.ok(only("application/ld+json"));
  assert.ok(!only("application/+json"));
  assert.ok(!only("application/json"));
  assert.ok(typeMatcher(["*/*"])("image/png"));
});

Deno.test("compress: Vary gets Accept-Encoding once (appended; kept when listed or *)", () => {
  const h = new HeaderList();
  addVary(h);
  addVary(h);
  assert.deepEqual(h.entries(), [["vary", "Accept-Encoding"]]);
  const o = HeaderList.from([["Vary", "Origin"]]);
  addVary(o);
  assert.equal(o.getJoined("vary"), "Origin, Accept-Encoding");
  const s = HeaderList.from([["vary", "*"]]);
  addVary(s);
  assert.equal(s.getJoined("vary"), "*");
  const l = HeaderList.from([["vary", "origin, accept-encoding"]]);
  addVary(l);
  assert.equal(l.size, 1);
});

function decode(encoding: string, data: Uint8Array): string {
  const out = encoding === "gzip"
    ? zlib.gunzipSync(data)
    : encoding === "br"
    ? zlib.brotliDecompressSync(data)
    : (zlib as unknown as { zstdDecompressSync(b: Uint8Array): Uint8Array }).zstdDecompressSync(data);
  return new TextDecoder().decode(out);
}

Deno.test("compress: each codec's filter flushes every chunk (decodable as it goes) and ends the stream", async () => {
  assert.ok(supported("gzip") && supported("br"));
  const levels = { gzip_level: 6, brotli_quality: 4, zstd_level: 3 };
  for (const enc of ["gzip", "br", "zstd"] as const) {
    if (!supported(enc)) continue;
    const f = createCompressor(enc, levels, -1);
    const parts: Uint8Array[] = [];
    const reused = new Uint8Array(64);
    let text = "";
    for (let i = 0; i < 3; i++) {
      const line = `data: event ${i}\n\n`;
      text += line;
      // The writer's views may be reused after push settles: the filter must be done with them.
      reused.fill(0);
      const n = new TextEncoder().encodeInto(line, reused).written;
      const out = await f.push(reused.subarray(0, n));
      assert.ok(out.length > 0, `${enc}: chunk ${i} flushed`);
      parts.push(out.slice());
      if (enc === "gzip") {
        // A sync-flushed gzip prefix inflates to everything so far.
        const z = zlib.inflateRawSync(concat(parts).subarray(10), {
          finishFlush: zlib.constants.Z_SYNC_FLUSH,
        });
        assert.equal(new TextDecoder().decode(z), text);
      }
    }
    parts.push(await f.flush());
    assert.equal(decode(enc, concat(parts)), text, enc);
  }
  // abort frees a codec mid-stream; nothing throws.
  const f = createCompressor("gzip", levels, 100);
  await f.push(new Uint8Array(10));
  f.abort?.();
});

const OPTS: CompressOptions = {
  encodings: ["zstd", "br", "gzip"],
  types: [...DEFAULT_COMPRESS_TYPES],
  min_length: 1024,
  gzip_level: 6,
  brotli_quality: 4,
  zstd_level: 3,
};

/** Runs one response through compress as the writer would: head (status, fields, length), then body chunks. */
async function run(
  opts: {
    method?: string;
    request?: Record<string, string>;
    status?: number;
    headers?: [string, string][];
    length?: number;
    body?: string[];
  },
  o: CompressOptions = OPTS,
) {
  const t = testContext();
  t.ctx.method = opts.method ?? "GET";
  for (const [k, v] of Object.entries(opts.request ?? {})) t.ctx.headers.append(k, v);
  const raw: Uint8Array[] = [];
  const inner = t.ctx.res;
  let length = -2;
  t.ctx.res = {
    get headSent() {
      return inner.headSent;
    },
    writeHead(s, h, n) {
      length = n;
      inner.writeHead(s, h, n);
    },
    write(c) {
      raw.push(c.slice());
      return Promise.resolve();
    },
    end: () => Promise.resolve(),
    abort() {},
  };
  const body = opts.body ?? ["x".repeat(2000)];
  const declared = opts.length ?? body.reduce((n, b) => n + b.length, 0);
  const handler = compileChain([compress(o)], async (ctx) => {
    ctx.res.writeHead(
      opts.status ?? 200,
      HeaderList.from(opts.headers ?? [["content-type", "text/plain"]]),
      declared,
    );
    for (const b of body) await ctx.res.write(new TextEncoder().encode(b));
    await ctx.res.end();
  });
  await handler(t.ctx);
  return { headers: t.sent.headers, status: t.sent.status, length, raw: concat(raw) };
}

Deno.test("compress: a compressible response is encoded, Content-Length/Accept-Ranges dropped, ETag weakened, Vary added", async () => {
  const r = await run({
    request: { "accept-encoding": "gzip" },
    headers: [["content-type", "text/html; charset=utf-8"], ["content-length", "2000"], ["etag", '"abc"'], [
      "accept-ranges",
      "bytes",
    ], ["vary", "Origin"]],
  });
  assert.equal(r.headers.get("content-encoding"), "gzip");
  assert.equal(r.headers.get("content-length"), undefined);
  assert.equal(r.headers.get("accept-ranges"), undefined);
  assert.equal(r.headers.get("etag"), 'W/"abc"');
  assert.equal(r.headers.getJoined("vary"), "Origin, Accept-Encoding");
  assert.equal(r.length, -1);
  assert.equal(decode("gzip", r.raw), "x".repeat(2000));
  // A weak ETag stays as it is.
  const w = await run({
    request: { "accept-encoding": "br" },
    headers: [["content-type", "application/json"], ["etag", 'W/"v1"']],
  });
  assert.equal(w.headers.get("etag"), 'W/"v1"');
  assert.equal(decode("br", w.raw), "x".repeat(2000));
});

Deno.test("compress: when not to compress (each case leaves the body identical)", async () => {
  const ae = { "accept-encoding": "gzip, br" };
  const same = async (name: string, opts: Parameters<typeof run>[0], vary: boolean, o?: CompressOptions) => {
    const r = await run({ request: ae, ...opts }, o);
    assert.equal(
      r.headers.get("content-encoding") ?? null,
      opts.headers?.find(([k]) => k === "content-encoding")?.[1] ?? null,
      name,
    );
    assert.equal(new TextDecoder().decode(r.raw), (opts.body ?? ["x".repeat(2000)]).join(""), name);
    assert.equal(r.headers.getJoined("vary")?.includes("Accept-Encoding") ?? false, vary, name + ": vary");
  };
  await same("no accept-encoding", { request: {} }, true);
  await same("q=0", { request: { "accept-encoding": "gzip;q=0, br;q=0" } }, true);
  await same("too small", { body: ["small"] }, false);
  await same("not a compressible type", { headers: [["content-type", "image/png"]] }, false);
  await same("no content-type", { headers: [] }, false);
  await same(
    "already encoded",
    { headers: [["content-type", "text/plain"], ["content-encoding", "gzip"]] },
    false,
  );
  await same("no-transform", {
    headers: [["content-type", "text/plain"], ["cache-control", "public, No-Transform"]],
  }, false);
  await same("range request", { request: { ...ae, range: "bytes=0-10" } }, false);
  await same("206", {
    status: 206,
    headers: [["content-type", "text/plain"], ["content-range", "bytes 0-1999/5000"]],
  }, false);
  await same("204", { status: 204, body: [], length: 0 }, false);
  await same("304", {
    status: 304,
    body: [],
    length: 2000,
    headers: [["content-type", "text/plain"], ["etag", '"a"']],
  }, false);
  await same("zstd only offered, not accepted", {}, true, { ...OPTS, encodings: ["zstd"] });
  // Unknown length: compressed whatever the size.
  const u = await run({ request: ae, body: ["tiny"], length: -1 });
  assert.equal(u.headers.get("content-encoding"), "br");
  assert.equal(decode("br", u.raw), "tiny");
  // min_length 0 and an unknown length from a content-length field (HTTP/2 upstreams pass -1).
  const cl = await run({
    request: ae,
    body: ["tiny"],
    length: -1,
    headers: [["content-type", "text/plain"], ["content-length", "4"]],
  });
  assert.equal(cl.headers.get("content-encoding"), undefined);
  // gRPC is never touched.
  const t = testContext();
  t.ctx.grpc = 1;
  t.ctx.headers.append("accept-encoding", "gzip");
  const head: ResponseHead = {
    status: 200,
    headers: HeaderList.from([["content-type", "text/plain"]]),
    bodyLength: -1,
  };
  assert.equal(compress({ ...OPTS, types: ["*/*"] }).responseBody!(t.ctx, head), null);
  assert.equal(head.headers.size, 1);
});

Deno.test("compress: HEAD gets the headers of a GET and no body", async () => {
  const r = await run({
    method: "HEAD",
    request: { "accept-encoding": "gzip" },
    headers: [["content-type", "text/plain"], ["etag", '"e"']],
    body: [],
    length: 5000,
  });
  assert.equal(r.headers.get("content-encoding"), "gzip");
  assert.equal(r.headers.get("etag"), 'W/"e"');
  assert.equal(r.headers.get("vary"), "Accept-Encoding");
  assert.equal(r.length, -1);
  assert.equal(r.raw.length, 0);
});

Deno.test("compress config: defaults, bad media pattern and unknown coding are located errors", () => {
  const base = `listeners: [{ name: l, address: ":1", protocol: http }]
upstreams: [{ name: u, endpoints: ["127.0.0.1:2"] }]
routes:
  - id: r
    path: /
    upstream: u
    middleware:
`;
  const ok = parseConfig(base + "      - compress: {}\n", "c.yaml", {});
  assert.ok(ok.ok);
  if (!ok.ok) return;
  const entry = ok.config.routes[0].middleware![0] as { name: string; options: CompressOptions };
  assert.deepEqual(entry.options, { ...OPTS });
  const bad = parseConfig(
    base +
      '      - compress: { types: ["text/*; q=1", "te*t/html"], encodings: [deflate], min_length: lots }\n',
    "c.yaml",
    {},
  );
  assert.equal(bad.ok, false);
  if (bad.ok) return;
  const lines = bad.errors.map((e) => `${e.line}: ${e.path}: ${e.message}`).join("\n");
  assert.match(lines, /8: .*types\[0\].*not a media type pattern/);
  assert.match(lines, /8: .*types\[1\].*not a media type pattern/);
  assert.match(lines, /8: .*encodings\[0\]/);
  assert.match(lines, /8: .*min_length.*invalid size/);
});

Deno.test("compress: an aborted response aborts its body filters (the codec is freed)", async () => {
  const t = testContext();
  t.ctx.headers.append("accept-encoding", "gzip");
  let aborted = 0;
  const probe = {
    name: "probe",
    responseBody: () => ({
      push: (c: Uint8Array) => c,
      flush: () => new Uint8Array(0),
      abort: () => aborted++,
    }),
  };
  await compileChain([compress(OPTS), probe], async (ctx) => {
    ctx.res.writeHead(200, HeaderList.from([["content-type", "text/plain"]]), -1);
    await ctx.res.write(new TextEncoder().encode("partial"));
    ctx.res.abort();
  })(t.ctx);
  assert.equal(aborted, 1);
  assert.equal(t.sent.headers.get("content-encoding"), "gzip");
});
