/**
 * body_timeout on HTTP/2 and HTTP/3 request streams, as on HTTP/1.1
 * (tests/timeouts_test.ts): an upload that stalls before the response began
 * is answered `408 Request Timeout` and the request is aborted upstream; a
 * stream whose answer already started may keep a quiet upload (bidirectional
 * streams); the connection's other streams go on.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { H2Connection } from "../src/http2/connection.ts";
import { concat } from "../src/net/bytes.ts";
import { encodeFrame, FrameType } from "../src/http3/frame.ts";
import { encodeFieldSection } from "../src/http3/qpack.ts";
import { h3Listener, POST } from "./h3_client.ts";
import { startLoom } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";

/** An upstream that reads the whole request body, then answers; reports each body's fate. */
function bodyReader() {
  const fates: string[] = [];
  let seen: (() => void) | null = null;
  const up = startUpstream(async (req) => {
    try {
      const body = await req.text();
      fates.push("complete");
      return new Response("got:" + body);
    } catch {
      fates.push("aborted");
      return new Response("late");
    } finally {
      seen?.();
    }
  });
  return {
    up,
    fates,
    /** Resolves once `n` bodies ended either way. */
    until(n: number): Promise<void> {
      if (fates.length >= n) return Promise.resolve();
      return new Promise((r) => seen = () => fates.length >= n && r());
    },
  };
}

/** A decoded h2 response: status, body text, and whether the stream was reset. */
async function h2Answer(s: ReturnType<H2Connection["request"]>) {
  const f = await s.response;
  const parts: Uint8Array[] = [];
  for (let d = await s.read(); d !== null; d = await s.read()) parts.push(d);
  return { status: f[f.indexOf(":status") + 1], body: new TextDecoder().decode(concat(parts)) };
}

itest("h2c: a request body stalled beyond body_timeout gets 408; the upstream sees the abort", async () => {
  const b = bodyReader();
  const loom = await startLoom(`listeners:
  - { name: h2c, address: "127.0.0.1:\${PORT}", protocol: h2c, body_timeout: 300ms }
upstreams: [{ name: up, endpoints: ["${b.up.address}"] }]
routes: [{ id: r, path: "/*", upstream: up }]`);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
  const h2 = H2Connection.client(conn);
  try {
    await h2.ready;
    const post = (cl: string) =>
      h2.request([
        ":method",
        "POST",
        ":scheme",
        "http",
        ":authority",
        "localhost",
        ":path",
        "/x",
        "content-length",
        cl,
      ], false);
    // Part of the body, then nothing.
    const stalled = post("100");
    await stalled.write(new TextEncoder().encode("0123456789"));
    // Head only: the timeout runs before the first DATA too.
    const empty = post("5");
    // A second stream on the same connection is served meanwhile.
    const ok = post("5");
    await ok.write(new TextEncoder().encode("hello"));
    await ok.end();
    assert.deepEqual(await h2Answer(ok), { status: "200", body: "got:hello" });
    for (const s of [stalled, empty]) {
      const a = await h2Answer(s);
      assert.equal(a.status, "408");
      assert.equal(JSON.parse(a.body).status, 408);
    }
    // The head-only request never went upstream (nothing to send yet), as on HTTP/1.1.
    await b.until(2);
    assert.deepEqual(b.fates.toSorted(), ["aborted", "complete"]);
    // The connection is still usable.
    const again = post("2");
    await again.write(new TextEncoder().encode("hi"));
    await again.end();
    assert.deepEqual(await h2Answer(again), { status: "200", body: "got:hi" });
    const m = await (await fetch(loom.admin("/metrics"))).text();
    assert.match(m, /loom_requests_total\{[^}]*status="408"[^}]*\} 2\b/);
  } finally {
    h2.destroy();
    await loom.close();
    await b.up.close();
  }
});

itest(
  "h2c: once the response began, a quiet upload is not cut by body_timeout (bidirectional streams)",
  async () => {
    const enc = new TextEncoder();
    // The upstream answers at once, then reads the whole request body and ends with it.
    const up = startUpstream((req) =>
      new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(enc.encode("head "));
            c.enqueue(enc.encode("got:" + await req.text()));
            c.close();
          },
        }),
      )
    );
    const loom = await startLoom(`listeners:
  - { name: h2c, address: "127.0.0.1:\${PORT}", protocol: h2c, body_timeout: 200ms }
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: r, path: "/*", upstream: up }]`);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
    const h2 = H2Connection.client(conn);
    try {
      await h2.ready;
      const s = h2.request(
        [":method", "POST", ":scheme", "http", ":authority", "localhost", ":path", "/x"],
        false,
      );
      await s.write(enc.encode("part1 "));
      const f = await s.response;
      assert.equal(f[f.indexOf(":status") + 1], "200");
      assert.equal(new TextDecoder().decode((await s.read())!), "head ");
      // Quiet for well over body_timeout (several of the deadline sweeper's rounds), then the rest.
      await new Promise((r) => setTimeout(r, 700));
      await s.write(enc.encode("part2"));
      await s.end();
      const rest: Uint8Array[] = [];
      for (let d = await s.read(); d !== null; d = await s.read()) rest.push(d);
      assert.equal(new TextDecoder().decode(concat(rest)), "got:part1 part2");
    } finally {
      h2.destroy();
      await loom.close();
      await up.close();
    }
  },
);

itest("h3: a request body stalled beyond body_timeout gets 408; the upstream sees the abort", async () => {
  const b = bodyReader();
  const h3 = await h3Listener();
  const loom = await startLoom(`listeners:
${h3.yaml.replace(/ }$/, ", body_timeout: 300ms }")}
upstreams: [{ name: up, endpoints: ["${b.up.address}"] }]
routes: [{ id: r, path: "/*", upstream: up }]`);
  const c = await h3.client();
  try {
    const head = encodeFrame(FrameType.HEADERS, encodeFieldSection(POST("/x", ["content-length", "100"])));
    const a = await c.request([], concat([head, encodeFrame(FrameType.DATA, new Uint8Array(10))]), true);
    assert.equal(a.fields[a.fields.indexOf(":status") + 1], "408");
    assert.equal(JSON.parse(a.body).status, 408);
    await b.until(1);
    assert.deepEqual(b.fates, ["aborted"]);
  } finally {
    c.conn.close();
    await loom.close();
    h3.remove();
    await b.up.close();
  }
}, { needs: ["openssl"] });
