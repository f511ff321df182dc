import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";

const enc = new TextEncoder();

/**
 * A raw upstream that answers one request per connection with keep-alive
 * framing, then closes the socket: every pooled connection goes stale.
 */
function oneShotUpstream() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const requests: string[] = [];
  let closedWaiters: (() => void)[] = [];
  const closed = () => new Promise<void>((r) => closedWaiters.push(r));
  (async () => {
    for await (const conn of listener) {
      accepted++;
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        while (!text.includes("\r\n\r\n")) {
          const n = await conn.read(buf).catch(() => null);
          if (n === null) break;
          text += new TextDecoder().decode(buf.subarray(0, n));
        }
        requests.push(text.split("\r\n")[0]);
        await conn.write(enc.encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).catch(() => {});
        conn.close();
        const ws = closedWaiters;
        closedWaiters = [];
        ws.forEach((w) => w());
      })();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    requests,
    closed,
    close: () => listener.close(),
  };
}

itest("pool: a stale kept-alive connection is retried on a fresh one for GET, never for POST", async () => {
  const up = oneShotUpstream();
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: up
    endpoints: ["127.0.0.1:${up.port}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
  try {
    let closed = up.closed();
    let res = await fetch(loom.url("/first"));
    assert.equal(await res.text(), "ok");
    await closed; // the pooled connection is now stale

    closed = up.closed();
    res = await fetch(loom.url("/second"));
    assert.equal(res.status, 200, "GET on a stale connection is retried transparently");
    assert.equal(await res.text(), "ok");
    assert.equal(up.accepted, 2, "the retry used a fresh connection");
    await closed;

    res = await fetch(loom.url("/post"), { method: "POST", body: "payload" });
    assert.equal(res.status, 502, "a POST is never replayed");
    await res.body?.cancel();
    assert.ok(!up.requests.some((r) => r.startsWith("POST")), "the POST never reached a fresh connection");
    assert.equal(up.accepted, 2);
  } finally {
    await loom.close();
    up.close();
  }
});
