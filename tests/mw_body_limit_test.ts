/**
 * The body_limit middleware through a running gateway, on HTTP/1.1 and h2c
 * clients and HTTP/1.1 and h2c upstreams: Content-Length over the limit
 * refused before anything goes upstream, streamed bodies (chunked, HTTP/2
 * DATA without content-length) counted as they pass, the upstream request
 * aborted when the limit is passed mid-stream (413 to the client, or a reset
 * once the response head was out), route and top-level limits, and the
 * rejection counted in loom_rejections_total. HTTP/3 through the raw QUIC client.
 */
import assert from "node:assert/strict";
import { itest, type TestLoom } from "./helpers.ts";
import { field, RawClient } from "./http1_util.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";
import { ErrorCode } from "../src/http2/frame.ts";
import { concat } from "../src/net/bytes.ts";
import { encodeFrame, FrameType } from "../src/http3/frame.ts";
import { encodeFieldSection } from "../src/http3/qpack.ts";
import { POST, withH3Loom } from "./h3_client.ts";
import { rejections, startDualLoom } from "./mw_auth_util.ts";

/** A resolvable promise. */
function signal(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

/** What both upstreams record. */
interface Seen {
  /** Requests whose head arrived. */
  started: number;
  /** How their body reads ended: "complete:<bytes>" or "aborted". */
  bodies: string[];
  /** Resolves at the next request head. */
  next: ReturnType<typeof signal>;
}

const EARLY = new TextEncoder().encode("early answer\n");

/**
 * The HTTP/1.1 upstream (Deno.serve): `/early` answers at once with a body it
 * keeps open, others read the whole request body first and answer `got:<bytes>`.
 */
function h1Upstream(seen: Seen) {
  const readBody = async (req: Request): Promise<number> => {
    try {
      const n = (await req.arrayBuffer()).byteLength;
      seen.bodies.push(`complete:${n}`);
      return n;
    } catch {
      seen.bodies.push("aborted");
      return -1;
    }
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    seen.started++;
    seen.next.resolve();
    if (new URL(req.url).pathname.endsWith("/early")) {
      // The answer's body stays open until the request body ended (so the server can shut down then).
      return new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(EARLY);
            await readBody(req);
            c.close();
          },
        }),
      );
    }
    return new Response(`got:${await readBody(req)}`);
  });
  return { address: `127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

/**
 * The same behaviour as an h2c upstream on Loom's own HTTP/2 server side,
 * which shows how a request stream ended: "aborted" is a RST_STREAM.
 */
function h2Upstream(seen: Seen) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<H2Connection>();
  const onStream = async (s: H2Stream) => {
    seen.started++;
    seen.next.resolve();
    const early = s.headers[s.headers.indexOf(":path") + 1].endsWith("/early");
    if (early) {
      s.respond([":status", "200"], false);
      await s.write(EARLY).catch(() => {});
    }
    let n = 0;
    try {
      for (let d = await s.read(); d !== null; d = await s.read()) n += d.length;
      seen.bodies.push(`complete:${n}`);
    } catch {
      seen.bodies.push(s.rstCode === ErrorCode.CANCEL ? "aborted" : `failed:${s.rstCode}`);
      return;
    }
    if (!early) {
      s.respond([":status", "200"], false);
      await s.write(new TextEncoder().encode(`got:${n}`)).then(() => s.end(null)).catch(() => {});
    }
  };
  (async () => {
    for await (const conn of listener) {
      const h2 = H2Connection.server(conn, { onStream: (s) => void onStream(s) });
      conns.add(h2);
      h2.closed.then(() => conns.delete(h2));
    }
  })().catch(() => {/* listener closed */});
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    close: () => {
      listener.close();
      for (const c of conns) c.destroy();
    },
  };
}

/** Both upstreams, recording into one {@linkcode Seen}. */
function upstream() {
  const seen: Seen = { started: 0, bodies: [], next: signal() };
  const h1 = h1Upstream(seen);
  const h2 = h2Upstream(seen);
  return {
    seen,
    h1: h1.address,
    h2: h2.address,
    close: async () => {
      h2.close();
      await h1.close();
    },
  };
}

/** The HTTP/1.1 + h2c gateway: a 64 KiB top-level limit, 1 KiB on two routes (HTTP/1.1 and h2c upstreams). */
async function gateway(up: { h1: string; h2: string }) {
  const g = await startDualLoom(`
upstreams:
  - { name: up, endpoints: ["${up.h1}"] }
  - { name: up2, protocol: h2c, endpoints: ["${up.h2}"] }
  - { name: upr, endpoints: ["${up.h1}"], retry: { max_retries: 1 } }
middleware:
  - body_limit: { max: 64KB }
routes:
  - { id: small, path: "/small/*", upstream: up, middleware: [{ body_limit: { max: 1KB } }] }
  - { id: h2up, path: "/h2up/*", upstream: up2, middleware: [{ body_limit: { max: 1KB } }] }
  - { id: big, path: "/big/*", upstream: up }
  - { id: retry, path: "/retry/*", upstream: upr, middleware: [{ body_limit: { max: 1KB } }] }
`);
  return { ...g, h2cPort: Number(new URL(g.protocols[1][1]).port) };
}

/** body_limit refusals counted on `route`. */
async function refused(loom: TestLoom, route: string): Promise<number> {
  return (await rejections(loom.admin("/metrics"), "body_limit")).get(`${route}/too_large`) ?? 0;
}

/** Runs `fn` against both upstreams and the gateway, closed after it. */
async function withGateway(
  fn: (up: ReturnType<typeof upstream>, g: Awaited<ReturnType<typeof gateway>>) => Promise<void>,
): Promise<void> {
  const up = upstream();
  const g = await gateway(up);
  try {
    await fn(up, g);
  } finally {
    await g.close();
    await up.close();
  }
}

/** Waits (up to 2 s) for the upstream to record how a body read after the `before`-th ended; returns those. */
async function bodiesSince(seen: Seen, before: number): Promise<string[]> {
  for (let i = 0; i < 100 && seen.bodies.length === before; i++) await new Promise((r) => setTimeout(r, 20));
  return seen.bodies.slice(before);
}

function chunk(n: number): string {
  return n.toString(16) + "\r\n" + "a".repeat(n) + "\r\n";
}

/** h2c on Loom's own HTTP/2 client: a POST whose body is written by the test (no content-length). */
async function h2c(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const s = H2Connection.client(conn);
  await s.ready;
  return {
    post: (path: string, headers: string[] = []) =>
      s.request(
        [":method", "POST", ":scheme", "http", ":authority", "localhost", ":path", path, ...headers],
        false,
      ),
    close: () => s.destroy(),
  };
}

function status(f: string[]): string {
  return f[f.indexOf(":status") + 1];
}

itest(
  "body_limit: Content-Length over the limit is a 413 before anything goes upstream (HTTP/1.1, h2c)",
  () =>
    withGateway(async (up, g) => {
      const loom = g.loom;
      for (const [proto, base, client] of g.protocols) {
        const post = (path: string, n: number) =>
          fetch(base + path, { method: "POST", body: new Uint8Array(n), client });
        const ok = await post("/small/x", 1024);
        assert.equal(await ok.text(), "got:1024", proto);
        for (const [path, n] of [["/small/x", 1025], ["/h2up/x", 1025], ["/big/x", 64 * 1024 + 1]] as const) {
          const before = up.seen.started;
          const r = await post(path, n);
          assert.equal(r.status, 413, `${proto} ${path}`);
          const body = await r.json();
          assert.equal(body.error, `request body larger than ${path === "/big/x" ? 65536 : 1024} bytes`);
          assert.equal(up.seen.started, before, `${proto} ${path}: nothing went upstream`);
        }
        // The top-level limit alone holds on routes without their own; the route's is stricter elsewhere.
        assert.equal(await (await post("/big/x", 64 * 1024)).text(), "got:65536", proto);
        assert.equal(await (await post("/h2up/x", 1000)).text(), "got:1000", proto);
      }
      assert.equal(await refused(loom, "small"), 2);
      assert.equal(await refused(loom, "big"), 2);
    }),
);

itest(
  "body_limit: a chunked HTTP/1.1 body is counted as it streams; 413 and the upstream request aborted",
  () =>
    withGateway(async (up, g) => {
      const loom = g.loom;
      // Within the limit, in three chunks.
      let c = await RawClient.connect(loom.port);
      await c.write(
        "POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(500) + chunk(500) +
          chunk(24) + "0\r\n\r\n",
      );
      let m = await c.response();
      c.close();
      assert.equal(new TextDecoder().decode(m.body), "got:1024");
      // One chunk already over the limit: refused before the head goes upstream.
      let before = up.seen.started;
      c = await RawClient.connect(loom.port);
      await c.write(
        "POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(2000) + "0\r\n\r\n",
      );
      m = await c.response();
      c.close();
      assert.equal(m.status, 413);
      assert.equal(field(m, "connection"), "close");
      assert.equal(up.seen.started, before);
      // A retry policy keeps the body for replay before sending it: the limit holds there too.
      c = await RawClient.connect(loom.port);
      await c.write(
        "PUT /retry/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(600) + chunk(600) +
          "0\r\n\r\n",
      );
      m = await c.response();
      c.close();
      assert.equal(m.status, 413);
      assert.equal(up.seen.started, before);
      // Past the limit after the upstream request started: aborted upstream, 413 here.
      for (const path of ["/small/x", "/h2up/x"]) {
        before = up.seen.bodies.length;
        up.seen.next = signal();
        c = await RawClient.connect(loom.port);
        await c.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` + chunk(512));
        await up.seen.next.promise;
        await c.write(chunk(1024) + "0\r\n\r\n");
        m = await c.response();
        c.close();
        assert.equal(m.status, 413, path);
        assert.match(new TextDecoder().decode(m.body), /request body larger than 1024 bytes/);
        assert.deepEqual(await bodiesSince(up.seen, before), ["aborted"], path);
      }
      assert.equal(await refused(loom, "small"), 2);
      assert.equal(await refused(loom, "h2up"), 1);
      assert.equal(await refused(loom, "retry"), 1);
    }),
);

itest(
  "body_limit: an h2c body without content-length is counted as it streams; 413 and the upstream aborted",
  () =>
    withGateway(async (up, g) => {
      const loom = g.loom;
      const h2 = await h2c(g.h2cPort);
      try {
        // Within the top-level limit, streamed.
        let st = h2.post("/big/x");
        for (let i = 0; i < 8; i++) await st.write(new Uint8Array(8000));
        await st.end();
        assert.equal(status(await st.response), "200");
        let body = "";
        for (let d = await st.read(); d !== null; d = await st.read()) body += new TextDecoder().decode(d);
        assert.equal(body, "got:64000");
        // Past the route's limit once the upstream request started, for an HTTP/1.1 and an h2c upstream.
        for (const path of ["/small/x", "/h2up/x"]) {
          const before = up.seen.bodies.length;
          up.seen.next = signal();
          st = h2.post(path);
          await st.write(new Uint8Array(512));
          await up.seen.next.promise;
          await st.write(new Uint8Array(1024));
          const f = await st.response;
          assert.equal(status(f), "413", path);
          body = "";
          for (let d = await st.read(); d !== null; d = await st.read()) body += new TextDecoder().decode(d);
          assert.match(body, /request body larger than 1024 bytes/, path);
          assert.deepEqual(await bodiesSince(up.seen, before), ["aborted"], path);
        }
        assert.equal(await refused(loom, "small"), 1);
        assert.equal(await refused(loom, "h2up"), 1);
      } finally {
        h2.close();
      }
    }),
);

itest(
  "body_limit: passed after the response head went out: the response is reset (HTTP/1.1, h2c)",
  () =>
    withGateway(async (_up, g) => {
      const loom = g.loom;
      const h2 = await h2c(g.h2cPort);
      try {
        // HTTP/1.1: the chunked response ends without its last chunk.
        const c = await RawClient.connect(loom.port);
        await c.write(
          "POST /small/early HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(512),
        );
        await c.until((b) => b.includes("early answer"), 5000);
        assert.match(c.buf, /^HTTP\/1\.1 200 /);
        await c.write(chunk(1024) + "0\r\n\r\n");
        const end = await c.waitClose(5000);
        assert.notEqual(end, "timeout");
        assert.ok(!c.buf.includes("\r\n0\r\n\r\n"), "no last chunk: " + JSON.stringify(c.buf));
        c.close();
        // h2c: the stream is reset.
        for (const path of ["/small/early", "/h2up/early"]) {
          const st = h2.post(path);
          await st.write(new Uint8Array(512));
          assert.equal(status(await st.response), "200", path);
          assert.match(new TextDecoder().decode((await st.read())!), /early answer/);
          await st.write(new Uint8Array(1024)).catch(() => {});
          await assert.rejects(
            (async () => {
              while ((await st.read()) !== null) { /* until the reset */ }
            })(),
            path,
          );
        }
      } finally {
        h2.close();
      }
    }),
);

itest("body_limit: on an HTTP/3 listener, by content-length and while DATA streams", async () => {
  const up = upstream();
  /** A POST as raw HTTP/3 frames: HEADERS (with `extra` fields), then one DATA frame per size. */
  const post = (sizes: number[], extra: string[] = []) =>
    concat([
      encodeFrame(
        FrameType.HEADERS,
        encodeFieldSection(POST("/small/x", extra)),
      ),
      ...sizes.map((n) => encodeFrame(FrameType.DATA, new Uint8Array(n))),
    ]);
  try {
    await withH3Loom(
      `upstreams: [{ name: up, endpoints: ["${up.h1}"] }]
routes: [{ id: small, path: "/small/*", upstream: up, middleware: [{ body_limit: { max: 1KB } }] }]`,
      async (c, loom) => {
        const ok = await c.request([], post([500, 500]));
        assert.equal(ok.fields[1], "200");
        assert.equal(ok.body, "got:1000");
        const streamed = await c.request([], post([512, 1024]));
        assert.equal(streamed.fields[1], "413");
        assert.match(streamed.body, /request body larger than 1024 bytes/);
        const before = up.seen.started;
        const declared = await c.request([], post([2000], ["content-length", "2000"]));
        assert.equal(declared.fields[1], "413");
        assert.equal(up.seen.started, before, "nothing went upstream");
        assert.equal(await refused(loom, "small"), 2);
      },
    );
  } finally {
    await up.close();
  }
}, { needs: ["openssl"] });
