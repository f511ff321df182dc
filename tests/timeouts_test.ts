/**
 * Listener timeouts and limits, configured per listener in YAML with short
 * values: read_header_timeout (slowloris), idle_timeout, body_timeout,
 * max_connections, max_header_bytes; and the upstream-side per-try / route
 * timeouts that turn into 504.
 */
import assert from "node:assert/strict";
import { btest, deferred, field, RawClient, rawRequest } from "./http1_util.ts";
import { startLoom, yamlOf } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";

const HEAD = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/**
 * Sends `data` (a request that stops short) on a new connection, after a complete request answered 200
 * when `after200` is given: a 408 with Connection: close must come after the listener's 300 ms timeout,
 * then the close, nothing else.
 */
async function expect408(port: number, data: string, after200?: string): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    if (after200 !== undefined) {
      await c.write(after200);
      assert.equal((await c.response()).status, 200);
    }
    const t0 = Date.now();
    await c.write(data);
    const res = await c.response({ ms: 3000 });
    const elapsed = Date.now() - t0;
    assert.equal(res.status, 408, `${JSON.stringify(data)}: ${res.raw}`);
    assert.equal(field(res, "connection"), "close");
    assert.equal(JSON.parse(new TextDecoder().decode(res.body)).status, 408);
    assert.ok(elapsed >= 250 && elapsed < 1500, `408 after ${elapsed} ms`);
    assert.equal(await c.waitClose(2000), "eof");
    assert.equal(c.buf, "", "nothing after the 408");
  } finally {
    c.close();
  }
}

btest("timeouts: slowloris head trickled past read_header_timeout is closed", 10_000, async () => {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({
    endpoints: [up.address],
    listener: { read_header_timeout: "300ms", idle_timeout: "5s" },
  }));
  const c = await RawClient.connect(loom.port);
  try {
    const t0 = Date.now();
    // One byte every 50 ms: each byte would reset a per-read timer; the head deadline must not move.
    let closedAt = 0;
    for (const ch of "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + "a".repeat(200)) {
      try {
        await c.write(ch);
      } catch {
        break;
      }
      const kind = await c.waitClose(50);
      if (kind !== "timeout") {
        closedAt = Date.now();
        break;
      }
    }
    assert.ok(closedAt > 0, "the connection stayed open");
    assert.match(c.buf, /^HTTP\/1\.1 408 /, "a started head that timed out is answered 408");
    const elapsed = closedAt - t0;
    assert.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed} ms`);
    assert.equal(up.seen.length, 0);
  } finally {
    c.close();
    await loom.close();
    await up.close();
  }
});

btest(
  "timeouts: idle keep-alive connection is closed after idle_timeout, busy one is not",
  10_000,
  async () => {
    const up = startUpstream();
    const loom = await startLoom(yamlOf({
      endpoints: [up.address],
      listener: { idle_timeout: "300ms", read_header_timeout: "5s" },
    }));
    const c = await RawClient.connect(loom.port);
    try {
      // Requests 200 ms apart keep the connection (each resets the idle timer).
      for (let i = 0; i < 3; i++) {
        await c.write(HEAD);
        assert.equal((await c.response()).status, 200);
        assert.equal(await c.waitClose(200), "timeout", "closed while requests kept coming");
      }
      const t0 = Date.now();
      const kind = await c.waitClose(3000);
      const elapsed = Date.now() - t0;
      assert.equal(kind, "eof");
      assert.equal(c.buf, "", "an idle connection is closed without a 408");
      assert.ok(elapsed < 1000, `idle close took ${elapsed + 200} ms`);
      assert.equal(up.seen.length, 3);
    } finally {
      c.close();
      await loom.close();
      await up.close();
    }
  },
);

btest("timeouts: a fresh connection that never sends is closed after idle_timeout", 10_000, async () => {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({ endpoints: [up.address], listener: { idle_timeout: "300ms" } }));
  const c = await RawClient.connect(loom.port);
  try {
    const t0 = Date.now();
    assert.equal(await c.waitClose(3000), "eof");
    assert.ok(Date.now() - t0 < 1500);
    assert.equal(c.buf, "", "an idle connection that sent nothing gets no answer");
  } finally {
    c.close();
    await loom.close();
    await up.close();
  }
});

btest(
  "timeouts: request body stalled mid-way beyond body_timeout gets 408 and the close, upstream sees the abort",
  10_000,
  async () => {
    const upstreamDone = deferred<string>();
    const up = startUpstream(async (req) => {
      try {
        await req.arrayBuffer();
        upstreamDone.resolve("complete");
      } catch {
        upstreamDone.resolve("aborted");
      }
      return new Response("ok");
    });
    const loom = await startLoom(yamlOf({
      endpoints: [up.address],
      listener: { body_timeout: "300ms", read_header_timeout: "5s", idle_timeout: "5s" },
    }));
    try {
      await expect408(loom.port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
      await expect408(
        loom.port,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
      );
      assert.equal(await upstreamDone.promise, "aborted");
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

btest("timeouts: body_timeout applies before the first body byte too", 10_000, async () => {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yamlOf({
    endpoints: [up.address],
    listener: { body_timeout: "300ms", read_header_timeout: "5s", idle_timeout: "5s" },
  }));
  try {
    // Head only; the body never comes.
    await expect408(loom.port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
    assert.equal(up.requests.length, 0);
  } finally {
    await loom.close();
    up.close();
  }
});

btest(
  "timeouts: body_timeout does not cut a slow upstream answer after the body was sent",
  10_000,
  async () => {
    const up = startUpstream(async (req) => {
      const body = await req.text();
      await new Promise((r) => setTimeout(r, 800));
      return new Response("got:" + body);
    });
    const loom = await startLoom(yamlOf({
      endpoints: [up.address],
      listener: { body_timeout: "200ms", read_header_timeout: "5s", idle_timeout: "5s" },
    }));
    try {
      const res = await fetch(loom.url("/"), { method: "POST", body: "hello" });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "got:hello");
      // Chunked too.
      const res2 = await fetch(loom.url("/"), {
        method: "POST",
        body: new Blob(["hel", "lo"]).stream(),
      });
      assert.equal(res2.status, 200);
      assert.equal(await res2.text(), "got:hello");
    } finally {
      await loom.close();
      await up.close();
    }
  },
);

btest("timeouts: max_connections: the extra connection gets 503 and close", 10_000, async () => {
  const up = startUpstream();
  const loom = await startLoom(yamlOf({ endpoints: [up.address], listener: { max_connections: 2 } }));
  const held: RawClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await RawClient.connect(loom.port);
      held.push(c);
      await c.write(HEAD);
      assert.equal((await c.response()).status, 200); // accepted and registered
    }
    const { res, close } = await rawRequest(loom.port, HEAD);
    assert.equal(res?.status, 503, res?.raw);
    assert.equal(field(res!, "connection"), "close");
    assert.equal(new TextDecoder().decode(res!.body).trim().length > 0, true);
    assert.equal(Number(field(res!, "content-length")), res!.body.length, "Content-Length matches the body");
    assert.ok(JSON.parse(new TextDecoder().decode(res!.body)).status === 503);
    assert.notEqual(close, "timeout");
    // Freeing a slot lets the next connection in.
    held.pop()!.close();
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) {
      const r = await rawRequest(loom.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      ok = r.res?.status === 200;
      if (!ok) await new Promise((r) => setTimeout(r, 25)); // the gateway notices the close asynchronously
    }
    assert.ok(ok, "a slot freed by a closed connection is reused");
  } finally {
    for (const c of held) c.close();
    await loom.close();
    await up.close();
  }
});

btest("timeouts: max_header_bytes is enforced even when the head arrives in one read", 10_000, async () => {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yamlOf({ endpoints: [up.address], listener: { max_header_bytes: 4096 } }));
  try {
    const small = await rawRequest(
      loom.port,
      `GET / HTTP/1.1\r\nHost: a\r\nX-A: ${"a".repeat(3000)}\r\n\r\n`,
      3000,
      false,
    );
    assert.equal(small.res?.status, 200);
    for (const size of [5000, 10_000, 15_000, 40_000]) {
      const { res, close } = await rawRequest(
        loom.port,
        `GET / HTTP/1.1\r\nHost: a\r\nX-A: ${"a".repeat(size)}\r\n\r\n`,
      );
      assert.equal(res?.status, 431, `head of ${size} bytes: ${res?.raw}`);
      assert.notEqual(close, "timeout");
    }
    assert.equal(up.requests.length, 1);
  } finally {
    await loom.close();
    up.close();
  }
});

btest("timeouts: upstream slower than per_try_timeout gives 504 JSON", 10_000, async () => {
  const release = deferred();
  const up = startUpstream(async () => {
    await release.promise;
    return new Response("late");
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address], route: { per_try_timeout: "300ms" } }));
  try {
    const t0 = Date.now();
    const res = await fetch(loom.url("/slow"));
    const elapsed = Date.now() - t0;
    assert.equal(res.status, 504);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const j = await res.json();
    assert.equal(j.status, 504);
    assert.equal(typeof j.request_id, "string");
    assert.ok(elapsed >= 250 && elapsed < 2000, `504 after ${elapsed} ms`);
  } finally {
    release.resolve();
    await loom.close();
    await up.close();
  }
});

btest("timeouts: upstream slower than the route timeout gives 504 JSON", 10_000, async () => {
  const release = deferred();
  const up = startUpstream(async () => {
    await release.promise;
    return new Response("late");
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address], route: { timeout: "300ms" } }));
  try {
    const t0 = Date.now();
    const res = await fetch(loom.url("/slow"));
    assert.equal(res.status, 504);
    assert.equal((await res.json()).status, 504);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    release.resolve();
    await loom.close();
    await up.close();
  }
});

btest("timeouts: a stalled upstream body after the head aborts the client connection", 10_000, async () => {
  const up = startUpstream({
    raw: async (c) => {
      await c.nextRequest();
      await c.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789");
      await c.closed; // never sends the rest
    },
  });
  const loom = await startLoom(yamlOf({ endpoints: [up.address], route: { per_try_timeout: "300ms" } }));
  const c = await RawClient.connect(loom.port);
  try {
    await c.write(HEAD);
    await c.until((b) => b.includes("0123456789"));
    assert.match(c.buf, /^HTTP\/1\.1 200/);
    assert.notEqual(await c.waitClose(3000), "timeout");
    assert.ok(!c.buf.includes('"status":504'), "no second response after the head was sent");
  } finally {
    c.close();
    await loom.close();
    up.close();
  }
});

btest("timeouts: a request head started and stalled gets 408 with Connection: close", 10_000, async () => {
  const up = startUpstream({ raw: true });
  const loom = await startLoom(yamlOf({
    endpoints: [up.address],
    listener: { read_header_timeout: "300ms", idle_timeout: "5s" },
  }));
  try {
    await expect408(loom.port, "G");
    await expect408(loom.port, "GET / HTTP/1.1\r\nHost: a\r\nX-A: b");
    // After a complete exchange, a keep-alive connection that starts its next head and stalls: 408 too.
    await expect408(loom.port, "GET /next HTTP/1.1\r\n", HEAD);
    assert.equal(up.requests.length, 1);
  } finally {
    await loom.close();
    up.close();
  }
});
