/**
 * The compress middleware through a running gateway, on HTTP/1.1 and h2c:
 * raw response bytes (a raw HTTP/1.1 client, Loom's own HTTP/2 client) decoded
 * with DecompressionStream and node:zlib, `curl --compressed` as an
 * independent client, HEAD/204/304/Range/206 and the other cases that pass
 * untouched, and a streamed upstream response whose compressed chunks reach
 * the client before the upstream finished. HTTP/3 through the raw QUIC client.
 */
import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { itest } from "./helpers.ts";
import { field, parseMessage, RawClient } from "./http1_util.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";
import { concat } from "../src/net/bytes.ts";
import { GET, withH3Loom } from "./h3_client.ts";
import { startDualLoom } from "./mw_auth_util.ts";

const TEXT = Array.from({ length: 400 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog\n`)
  .join("");
const enc = new TextEncoder();

/** A resolvable promise. */
function signal(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

/** The test upstream (Deno.serve, HTTP/1.1): one behaviour per path suffix. */
function upstream() {
  const sse = { sent: signal(), release: signal() };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    const last = path.slice(path.lastIndexOf("/") + 1);
    const text = { "content-type": "text/plain; charset=utf-8", etag: '"v1"' };
    switch (last) {
      case "text":
        if (req.headers.get("if-none-match") === '"v1"') {
          return new Response(null, { status: 304, headers: text });
        }
        return new Response(TEXT, { headers: text });
      case "range":
        // Honours Range as a file server would.
        if (req.headers.has("range")) {
          return new Response(TEXT.slice(0, 100), {
            status: 206,
            headers: { ...text, "content-range": `bytes 0-99/${TEXT.length}` },
          });
        }
        return new Response(TEXT, { headers: text });
      case "nocontent":
        return new Response(null, { status: 204, headers: text });
      case "png":
        return new Response(TEXT, { headers: { "content-type": "image/png" } });
      case "small":
        return new Response("tiny", { headers: text });
      case "notransform":
        return new Response(TEXT, { headers: { ...text, "cache-control": "no-transform" } });
      case "encoded":
        return new Response(new Uint8Array(zlib.gzipSync(enc.encode(TEXT))), {
          headers: { ...text, "content-encoding": "gzip" },
        });
      case "sse": {
        // One event, then nothing until the test has seen it arrive compressed.
        const body = new ReadableStream<Uint8Array>({
          async start(c) {
            c.enqueue(enc.encode("data: first\n\n"));
            sse.sent.resolve();
            await sse.release.promise;
            c.enqueue(enc.encode("data: second\n\n"));
            c.close();
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }
    }
    return new Response("no such path", { status: 404 });
  });
  return {
    address: `127.0.0.1:${server.addr.port}`,
    sse,
    close: () => server.shutdown(),
  };
}

/** Decodes a whole body: gzip and Brotli with DecompressionStream, zstd with node:zlib. */
async function decode(encoding: string, data: Uint8Array): Promise<string> {
  if (encoding === "zstd") {
    return new TextDecoder().decode(
      (zlib as unknown as { zstdDecompressSync(b: Uint8Array): Uint8Array }).zstdDecompressSync(data),
    );
  }
  const format = encoding === "br" ? "brotli" : encoding;
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream(format as CompressionFormat),
  );
  return await new Response(stream).text();
}

/** What both clients return: status, lower-case fields, the raw (still encoded) body. */
interface Answer {
  status: number;
  get(name: string): string | undefined;
  body: Uint8Array;
}

/** HTTP/1.1 over a raw connection: the body exactly as sent (de-chunked, not decoded). */
async function h1(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<Answer> {
  const c = await RawClient.connect(port);
  try {
    const lines = [
      `${method} ${path} HTTP/1.1`,
      "Host: 127.0.0.1",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    await c.write(lines.join("\r\n") + "\r\n\r\n");
    const m = await c.response({ noBody: method === "HEAD" });
    return { status: m.status, get: (n) => field(m, n), body: m.body };
  } finally {
    c.close();
  }
}

/** An h2c connection on Loom's own HTTP/2 client, which never decodes bodies. */
async function h2c(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const s = H2Connection.client(conn);
  await s.ready;
  const open = (method: string, path: string, headers: Record<string, string>): H2Stream =>
    s.request([
      ":method",
      method,
      ":scheme",
      "http",
      ":authority",
      `127.0.0.1:${port}`,
      ":path",
      path,
      ...Object.entries(headers).flat(),
    ], true);
  return {
    open,
    async fetch(method: string, path: string, headers: Record<string, string>): Promise<Answer> {
      const st = open(method, path, headers);
      const f = await st.response;
      const parts: Uint8Array[] = [];
      for (let d = await st.read(); d !== null; d = await st.read()) parts.push(d.slice());
      return { status: Number(get(f, ":status")), get: (n) => get(f, n), body: concat(parts) };
    },
    close: () => s.destroy(),
  };
}

function get(f: string[], name: string): string | undefined {
  const all: string[] = [];
  for (let i = 0; i < f.length; i += 2) if (f[i] === name) all.push(f[i + 1]);
  return all.length === 0 ? undefined : all.join(", ");
}

/** The HTTP/1.1 + h2c gateway: compress for every route, a gzip-only one on /gz/ after it. */
async function gateway(upAddress: string) {
  const g = await startDualLoom(`
upstreams: [{ name: up, endpoints: ["${upAddress}"] }]
middleware:
  - compress: { min_length: 1KB }
routes:
  - { id: c, path: "/c/*", upstream: up }
  - id: gz
    path: /gz/*
    upstream: up
    middleware:
      - compress: { encodings: [gzip], types: ["text/*"] }
`);
  return { ...g, h2cPort: Number(new URL(g.protocols[1][1]).port) };
}

/** Runs `fn` against the upstream, the gateway and an h2c client on it, closed after it. */
async function withGateway(
  fn: (
    up: ReturnType<typeof upstream>,
    g: Awaited<ReturnType<typeof gateway>>,
    h2: Awaited<ReturnType<typeof h2c>>,
  ) => Promise<void>,
): Promise<void> {
  const up = upstream();
  const g = await gateway(up.address);
  const h2 = await h2c(g.h2cPort);
  try {
    await fn(up, g, h2);
  } finally {
    h2.close();
    up.sse.release.resolve();
    await g.close();
    await up.close();
  }
}

itest(
  "compress: gzip, br and zstd negotiated and decoded; headers (HTTP/1.1 and h2c)",
  () =>
    withGateway(async (_up, g, h2) => {
      const loom = g.loom;
      const clients: [string, (m: string, p: string, h: Record<string, string>) => Promise<Answer>][] = [
        ["HTTP/1.1", (m, p, h) => h1(loom.port, m, p, h)],
        ["h2c", (m, p, h) => h2.fetch(m, p, h)],
      ];
      for (const [proto, send] of clients) {
        for (
          const [ae, want] of [
            ["gzip", "gzip"],
            ["br", "br"],
            ["zstd", "zstd"],
            ["gzip, deflate, br, zstd", "zstd"],
            ["gzip;q=1, br;q=0.5, zstd;q=0", "gzip"],
            ["*;q=0.1, zstd;q=0", "br"],
          ]
        ) {
          const r = await send("GET", "/c/text", { "accept-encoding": ae });
          const what = `${proto} ${ae}`;
          assert.equal(r.status, 200, what);
          assert.equal(r.get("content-encoding"), want, what);
          assert.equal(r.get("content-length"), undefined, what);
          assert.equal(r.get("vary"), "Accept-Encoding", what);
          assert.equal(r.get("etag"), 'W/"v1"', what);
          assert.ok(r.body.length < TEXT.length / 4, `${what}: ${r.body.length} bytes`);
          assert.equal(await decode(want, r.body), TEXT, what);
        }
        // The route's own list (after the top-level one, which compressed already): gzip only, not twice.
        const gz = await send("GET", "/gz/text", { "accept-encoding": "br, gzip" });
        assert.equal(gz.get("content-encoding"), "br", proto);
        assert.equal(await decode("br", gz.body), TEXT, proto);
        // No Accept-Encoding: identity, but the answer still varies by it.
        const plain = await send("GET", "/c/text", {});
        assert.equal(plain.get("content-encoding"), undefined, proto);
        assert.equal(plain.get("vary"), "Accept-Encoding", proto);
        assert.equal(plain.get("etag"), '"v1"', proto);
        assert.equal(new TextDecoder().decode(plain.body), TEXT, proto);
      }
    }),
);

itest(
  "compress: HEAD, 204, 304, Range/206 and the untouched cases (HTTP/1.1 and h2c)",
  () =>
    withGateway(async (_up, g, h2) => {
      const loom = g.loom;
      const gzip = { "accept-encoding": "gzip" };
      const clients: [string, (m: string, p: string, h: Record<string, string>) => Promise<Answer>][] = [
        ["HTTP/1.1", (m, p, h) => h1(loom.port, m, p, h)],
        ["h2c", (m, p, h) => h2.fetch(m, p, h)],
      ];
      for (const [proto, send] of clients) {
        // HEAD: the headers a GET gets, no body (no length either: the compressed one is unknown).
        const head = await send("HEAD", "/c/text", gzip);
        assert.equal(head.status, 200, proto);
        assert.equal(head.get("content-encoding"), "gzip", proto);
        assert.equal(head.get("vary"), "Accept-Encoding", proto);
        assert.equal(head.get("etag"), 'W/"v1"', proto);
        assert.equal(head.get("content-length"), undefined, proto);
        assert.equal(head.body.length, 0, proto);
        const none = await send("GET", "/c/nocontent", gzip);
        assert.equal(none.status, 204, proto);
        assert.equal(none.get("content-encoding"), undefined, proto);
        assert.equal(none.body.length, 0, proto);
        // Revalidation with the weakened tag: the upstream's weak comparison gives 304, not encoded.
        const nm = await send("GET", "/c/text", { ...gzip, "if-none-match": '"v1"' });
        assert.equal(nm.status, 304, proto);
        assert.equal(nm.get("content-encoding"), undefined, proto);
        assert.equal(nm.body.length, 0, proto);
        // A Range request passes untouched, whatever the upstream answers (206 here).
        const range = await send("GET", "/c/range", { ...gzip, range: "bytes=0-99" });
        assert.equal(range.status, 206, proto);
        assert.equal(range.get("content-encoding"), undefined, proto);
        assert.equal(range.get("content-range"), `bytes 0-99/${TEXT.length}`, proto);
        assert.equal(new TextDecoder().decode(range.body), TEXT.slice(0, 100), proto);
        const ranged200 = await send("GET", "/c/text", { ...gzip, range: "bytes=0-99" });
        assert.equal(ranged200.get("content-encoding"), undefined, proto);
        assert.equal(new TextDecoder().decode(ranged200.body), TEXT, proto);
        for (const path of ["/c/png", "/c/small", "/c/notransform"]) {
          const r = await send("GET", path, gzip);
          assert.equal(r.status, 200, proto + path);
          assert.equal(r.get("content-encoding"), undefined, proto + path);
        }
        // Encoded upstream bodies keep their encoding and bytes.
        const pre = await send("GET", "/c/encoded", { "accept-encoding": "br, gzip" });
        assert.equal(pre.get("content-encoding"), "gzip", proto);
        assert.equal(await decode("gzip", pre.body), TEXT, proto);
      }
    }),
);

/** Inflates a gzip prefix that ends at a sync flush point (what a streamed gzip body has so far). */
function gunzipPrefix(data: Uint8Array): string {
  return new TextDecoder().decode(
    zlib.inflateRawSync(data.subarray(10), { finishFlush: zlib.constants.Z_SYNC_FLUSH }),
  );
}

/** The first event, gzip-compressed and flushed, while the upstream holds the second; then the rest. */
const SSE = "data: first\n\ndata: second\n\n";

itest(
  "compress: a streamed upstream response flows compressed, chunk by chunk (HTTP/1.1)",
  () =>
    withGateway(async (up, g) => {
      const c = await RawClient.connect(g.loom.port);
      try {
        await c.write("GET /c/sse HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
        await up.sse.sent.promise;
        let first = "";
        await c.until((b) => {
          const at = b.indexOf("\r\n\r\n");
          if (at < 0) return false;
          try {
            first = gunzipPrefix(dechunk(b.slice(at + 4)));
          } catch {
            return false;
          }
          return first === "data: first\n\n";
        }, 5000);
        assert.equal(first, "data: first\n\n");
        const head = parseMessage(c.buf.slice(0, c.buf.indexOf("\r\n\r\n") + 4) + "0\r\n\r\n", {})!.msg;
        assert.equal(field(head, "content-encoding"), "gzip");
        assert.equal(field(head, "transfer-encoding"), "chunked");
        up.sse.release.resolve();
        const m = await c.response({ ms: 5000 });
        assert.equal(await decode("gzip", m.body), SSE);
      } finally {
        c.close();
      }
    }),
);

itest(
  "compress: a streamed upstream response flows compressed, chunk by chunk (h2c)",
  () =>
    withGateway(async (up, _g, h2) => {
      const st = h2.open("GET", "/c/sse", { "accept-encoding": "gzip" });
      assert.equal(get(await st.response, "content-encoding"), "gzip");
      const parts: Uint8Array[] = [];
      let first = "";
      while (first !== "data: first\n\n") {
        const d = await st.read();
        assert.ok(d !== null, "stream ended before the first event");
        parts.push(d.slice());
        try {
          first = gunzipPrefix(concat(parts));
        } catch { /* more to come */ }
      }
      up.sse.release.resolve();
      for (let d = await st.read(); d !== null; d = await st.read()) parts.push(d.slice());
      assert.equal(await decode("gzip", concat(parts)), SSE);
    }),
);

/** The data of the complete chunks at the start of a chunked body (latin1 text). */
function dechunk(s: string): Uint8Array {
  const parts: number[] = [];
  let p = 0;
  for (;;) {
    const le = s.indexOf("\r\n", p);
    if (le < 0) break;
    const size = parseInt(s.slice(p, le), 16);
    if (Number.isNaN(size) || size === 0 || s.length < le + 2 + size + 2) break;
    for (let i = 0; i < size; i++) parts.push(s.charCodeAt(le + 2 + i));
    p = le + 2 + size + 2;
  }
  return new Uint8Array(parts);
}

itest(
  "compress: curl --compressed decodes what Loom sends (HTTP/1.1 and h2c prior knowledge)",
  () =>
    withGateway(async (_up, g) => {
      for (
        const [proto, url, extra] of [
          ["HTTP/1.1", g.loom.url("/c/text"), []],
          ["h2c", `http://127.0.0.1:${g.h2cPort}/c/text`, ["--http2-prior-knowledge"]],
        ] as const
      ) {
        for (const ae of [null, "gzip", "br", "zstd"]) {
          const args = ["-sS", "--compressed", "-D", "-", "-o", "/dev/stdout", ...extra, url];
          // curl offers every coding it decodes (zstd first here); a header narrows it.
          if (ae !== null) args.push("-H", `accept-encoding: ${ae}`);
          const out = await new Deno.Command("curl", { args, stdout: "piped", stderr: "piped" }).output();
          const text = new TextDecoder().decode(out.stdout);
          assert.ok(out.success, new TextDecoder().decode(out.stderr));
          const at = text.indexOf("\r\n\r\n");
          const head = text.slice(0, at).toLowerCase();
          assert.match(head, new RegExp(`content-encoding: ${ae ?? "zstd"}`), `${proto} ${ae}`);
          assert.equal(text.slice(at + 4), TEXT, `${proto} ${ae}`);
        }
      }
    }),
  { needs: ["curl"] },
);

itest("compress: on an HTTP/3 listener (the writer-level filter applies there too)", async () => {
  const up = upstream();
  try {
    await withH3Loom(
      `upstreams: [{ name: up, endpoints: ["${up.address}"] }]
middleware: [{ compress: {} }]
routes: [{ id: c, path: "/c/*", upstream: up }]`,
      async (c) => {
        for (const ae of ["gzip", "br", "zstd"]) {
          const r = await c.request(GET("/c/text", ["accept-encoding", ae]));
          assert.equal(get(r.fields, ":status"), "200");
          assert.equal(get(r.fields, "content-encoding"), ae);
          assert.equal(get(r.fields, "vary"), "Accept-Encoding");
          assert.equal(await decode(ae, r.bytes), TEXT, ae);
        }
        const headFields = GET("/c/text", ["accept-encoding", "gzip"]);
        headFields[1] = "HEAD";
        const head = await c.request(headFields);
        assert.equal(get(head.fields, "content-encoding"), "gzip");
        assert.equal(head.bytes.length, 0);
      },
    );
  } finally {
    await up.close();
  }
}, { needs: ["openssl"] });
