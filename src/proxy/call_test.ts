import assert from "node:assert/strict";
import { ConnectionPool } from "../upstream/pool.ts";
import { call, type CallRequest } from "./call.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * A raw HTTP/1.1 server on loopback: `answer(n, head)` gives the bytes for the
 * n-th request on a connection (null = close without answering); it records
 * each request head.
 */
function rawServer(answer: (n: number, head: string) => string | null, closeAfter = Infinity) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: string[] = [];
  let connections = 0;
  const serve = async (conn: Deno.Conn) => {
    connections++;
    const buf = new Uint8Array(64 * 1024);
    let have = "";
    try {
      for (let n = 0; n < closeAfter; n++) {
        let end = -1;
        while ((end = have.indexOf("\r\n\r\n")) === -1) {
          const r = await conn.read(buf);
          if (r === null) return;
          have += dec.decode(buf.subarray(0, r));
        }
        const head = have.slice(0, end + 4);
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        while (have.length < end + 4 + len) {
          const r = await conn.read(buf);
          if (r === null) return;
          have += dec.decode(buf.subarray(0, r));
        }
        heads.push(have.slice(0, end + 4 + len));
        have = have.slice(end + 4 + len);
        const out = answer(n, head);
        if (out === null) return;
        await conn.write(enc.encode(out));
      }
    } catch {
      /* peer gone */
    } finally {
      conn.close();
    }
  };
  (async () => {
    for await (const c of listener) serve(c);
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    heads,
    get connections() {
      return connections;
    },
    pool: () =>
      new ConnectionPool("127.0.0.1", port, { max_idle: 4, idle_timeout: 10_000, max_connections: 0 }),
    close: () => listener.close(),
  };
}

const req = (over: Partial<CallRequest> = {}): CallRequest => ({
  method: "POST",
  path: "/check?x=1",
  authority: "auth.test",
  headers: [["x-a", "1"], ["connection", "close"], ["te", "trailers"]],
  body: enc.encode("hello"),
  ...over,
});

Deno.test("call: request head and body, chunked answer with trailers after a 100, connection kept", async () => {
  const s = rawServer(() =>
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-b: 2\r\ntransfer-encoding: chunked\r\n\r\n" +
    "3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 9\r\n\r\n"
  );
  const pool = s.pool();
  try {
    for (let i = 0; i < 3; i++) {
      const r = await call(pool, req(), 2000);
      assert.equal(r.status, 201);
      assert.equal(dec.decode(r.body), "abcde");
      assert.deepEqual(r.headers, [["x-b", "2"]]); // framing fields dropped
      assert.deepEqual(r.trailers, [["x-t", "9"]]);
    }
    assert.equal(s.connections, 1);
    const head = s.heads[0];
    assert.match(
      head,
      /^POST \/check\?x=1 HTTP\/1\.1\r\nhost: auth\.test\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello$/,
    );
  } finally {
    pool.close();
    s.close();
  }
});

Deno.test("call: a kept-alive connection the upstream closed is retried once on a fresh one", async () => {
  // Answers once per connection, then closes without saying so.
  const s = rawServer(() => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 1);
  const pool = s.pool();
  try {
    for (let i = 0; i < 3; i++) {
      const r = await call(pool, req({ method: "GET", body: new Uint8Array(0) }), 2000);
      assert.equal(dec.decode(r.body), "ok");
    }
    assert.equal(s.connections, 3);
    assert.doesNotMatch(s.heads[0], /content-length/); // GET without a body
  } finally {
    pool.close();
    s.close();
  }
});

Deno.test("call: close-delimited body; timeout; invalid method or target refused", async () => {
  const closing = rawServer(() => "HTTP/1.0 200 OK\r\n\r\nuntil close", 1);
  const slow = rawServer(() => "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart");
  const [p1, p2] = [closing.pool(), slow.pool()];
  try {
    const r = await call(p1, req({ method: "GET", body: new Uint8Array(0) }), 2000);
    assert.equal(dec.decode(r.body), "until close");
    await assert.rejects(call(p2, req(), 100), /timed out/);
    await assert.rejects(call(p2, req({ method: "GET X" }), 100), /invalid method/);
    await assert.rejects(call(p2, req({ path: "/a b" }), 100), /invalid :path/);
  } finally {
    p1.close();
    p2.close();
    closing.close();
    slow.close();
  }
});
