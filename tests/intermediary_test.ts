/**
 * RFC 9110 intermediary rules of the gateway itself (issue 18 item 2), through
 * a running Loom with an HTTP/1.1 and an h2c listener and raw upstreams that
 * record every byte: TRACE refused with 405 + Allow unless the route allows it,
 * Max-Forwards on TRACE and OPTIONS (0 answered by Loom, else decremented),
 * `Upgrade: h2c` never passed upstream, a 101 nobody asked for never opens a
 * tunnel, and `Content_Length` / `Transfer_Encoding` look-alikes dropped.
 */
import assert from "node:assert/strict";
import { field, fieldValues, type Message, RawClient, rawRequest } from "./http1_util.ts";
import { itest, type TestLoom } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";
import { type RawUpstream, startUpstream } from "./upstream.ts";
import { H2Connection } from "../src/http2/connection.ts";
import { forwardedUpgrade } from "../src/listeners/http1.ts";
import { upgradeAnswered } from "../src/proxy/exchange.ts";

interface Setup {
  loom: TestLoom;
  /** The h2c listener's port, and an HTTP/2 (prior knowledge) fetch client. */
  h2Port: number;
  h2: Deno.HttpClient;
  /** Records every request; answers 200 "ok". */
  up: RawUpstream;
  /** Answers every request with `101 Switching Protocols` (Upgrade: h2c). */
  switcher: RawUpstream;
  close(): Promise<void>;
}

async function setup(): Promise<Setup> {
  const up = startUpstream({ raw: true });
  const switcher = startUpstream({
    raw: async (c) => {
      if (await c.nextRequest() === null) return c.close();
      await c.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nTUNNEL");
    },
  });
  const dual = await startDualLoom(`
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
  - { name: switcher, endpoints: ["${switcher.address}"] }
routes:
  - { id: traced, path: "/traced/*", upstream: up, allow_trace: true }
  - { id: some, path: "/some/*", upstream: up, methods: [GET, POST, OPTIONS, TRACE] }
  - { id: switch, path: "/switch/*", upstream: switcher }
  - { id: all, path: "/*", upstream: up }
`);
  const [, h2Base, h2] = dual.protocols[1];
  return {
    loom: dual.loom,
    h2Port: Number(new URL(h2Base).port),
    h2: h2!,
    up,
    switcher,
    close: async () => {
      await dual.close();
      up.close();
      switcher.close();
    },
  };
}

/** An integration test on its own {@linkcode setup}, closed after it. */
function stest(name: string, fn: (s: Setup) => Promise<void>): void {
  itest(name, async () => {
    const s = await setup();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  });
}

/** The last request the upstream received after `before` requests, or undefined. */
function newRequest(up: RawUpstream, before: number): Message | undefined {
  return up.requests.length > before ? up.requests[up.requests.length - 1] : undefined;
}

/** One HTTP/2 request over a fresh h2c connection: status, fields and body text. */
async function h2Request(
  port: number,
  method: string,
  path: string,
  extra: string[] = [],
): Promise<{ status: number; fields: string[]; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const session = H2Connection.client(conn);
  try {
    await session.ready;
    const s = session.request(
      [":method", method, ":scheme", "http", ":path", path, ":authority", `127.0.0.1:${port}`, ...extra],
      true,
    );
    const fields = await s.response;
    let body = "";
    for (;;) {
      const d = await s.read();
      if (d === null) break;
      body += new TextDecoder().decode(d);
    }
    return { status: Number(fields[fields.indexOf(":status") + 1]), fields, body };
  } finally {
    session.destroy();
  }
}

/** OPTIONS with `Max-Forwards: hops` over the h2c listener (fetch); the body is dropped. */
async function h2Options(s: Setup, path: string, hops: string): Promise<Response> {
  const res = await fetch(`http://127.0.0.1:${s.h2Port}${path}`, {
    method: "OPTIONS",
    headers: { "max-forwards": hops },
    client: s.h2,
  });
  await res.body?.cancel();
  return res;
}

function h2Field(fields: string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

stest("intermediary: TRACE is refused with 405 and Allow unless the route allows it", async (s) => {
  const before = s.up.requests.length;
  const { res } = await rawRequest(s.loom.port, {
    method: "TRACE",
    target: "/x",
    headers: { Cookie: "sid=secret" },
  });
  assert.equal(res?.status, 405, res?.raw);
  assert.equal(field(res!, "allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  assert.doesNotMatch(res!.raw, /secret/);
  // A route that lists TRACE among its methods but does not allow it: Allow lists the others.
  const some = await rawRequest(s.loom.port, { method: "TRACE", target: "/some/x" });
  assert.equal(some.res?.status, 405);
  assert.equal(field(some.res!, "allow"), "GET, POST, OPTIONS");
  assert.equal(s.up.requests.length, before, "a TRACE reached the upstream");

  // allow_trace: forwarded (without Max-Forwards, as sent).
  const fwd = await rawRequest(s.loom.port, { method: "TRACE", target: "/traced/x" });
  assert.equal(fwd.res?.status, 200, fwd.res?.raw);
  const seen = newRequest(s.up, before);
  assert.match(seen?.start ?? "", /^TRACE \/traced\/x HTTP\/1\.1$/);
  assert.equal(field(seen!, "max-forwards"), undefined);

  // HTTP/2: the same refusal.
  const h2 = await h2Request(s.h2Port, "TRACE", "/x", ["cookie", "sid=secret"]);
  assert.equal(h2.status, 405);
  assert.equal(h2Field(h2.fields, "allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  assert.equal(s.up.requests.length, before + 1);
});

stest(
  "intermediary: Max-Forwards 0 on TRACE and OPTIONS is answered by Loom, others decremented",
  async (s) => {
    const before = s.up.requests.length;
    // TRACE, allowed, Max-Forwards: 0: Loom's message/http echo, credentials redacted.
    const echo = await rawRequest(s.loom.port, {
      method: "TRACE",
      target: "/traced/a?b=c",
      headers: {
        "Max-Forwards": "0",
        Cookie: "sid=secret",
        Authorization: "Bearer tok3n",
        "X-Api-Key": "k3y",
        "X-Plain": "shown",
      },
    });
    assert.equal(echo.res?.status, 200, echo.res?.raw);
    assert.equal(field(echo.res!, "content-type"), "message/http");
    const body = new TextDecoder().decode(echo.res!.body);
    assert.match(body, /^TRACE \/traced\/a\?b=c HTTP\/1\.1\r\nHost: 127\.0\.0\.1\r\n/);
    assert.match(body, /\r\nX-Plain: shown\r\n/);
    assert.match(body, /\r\nCookie: \[REDACTED\]\r\n/);
    assert.match(body, /\r\nAuthorization: \[REDACTED\]\r\n/);
    assert.match(body, /\r\nMax-Forwards: 0\r\n/);
    assert.ok(body.endsWith("\r\n\r\n"), JSON.stringify(body));
    assert.doesNotMatch(body, /secret|tok3n|k3y/);

    // OPTIONS, Max-Forwards: 0: 200 with the route's methods, no body.
    const opt = await rawRequest(s.loom.port, {
      method: "OPTIONS",
      target: "/some/a",
      headers: { "Max-Forwards": "0" },
    });
    assert.equal(opt.res?.status, 200, opt.res?.raw);
    assert.equal(field(opt.res!, "allow"), "GET, POST, OPTIONS");
    assert.equal(field(opt.res!, "content-length"), "0");
    const traced = await rawRequest(s.loom.port, {
      method: "OPTIONS",
      target: "/traced/a",
      headers: { "Max-Forwards": "0" },
    });
    assert.equal(field(traced.res!, "allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE");
    // OPTIONS * asks about Loom itself.
    const star = await rawRequest(
      s.loom.port,
      `OPTIONS * HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(star.res?.status, 200, star.res?.raw);
    assert.equal(field(star.res!, "allow"), "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    assert.equal(s.up.requests.length, before, "Max-Forwards: 0 must not be forwarded");

    // Other values are decremented on the way upstream (TRACE and OPTIONS only).
    const cases: [string, string, string][] = [
      ["TRACE", "/traced/b", "4"],
      ["OPTIONS", "/b", "4"],
      ["GET", "/b", "5"],
    ];
    for (const [method, target, want] of cases) {
      const n = s.up.requests.length;
      const { res } = await rawRequest(s.loom.port, { method, target, headers: { "Max-Forwards": "5" } });
      assert.equal(res?.status, 200, `${method}: ${res?.raw}`);
      assert.deepEqual(fieldValues(newRequest(s.up, n)!, "max-forwards"), [want], method);
    }
    // Not a number: left alone.
    const n = s.up.requests.length;
    await rawRequest(s.loom.port, { method: "OPTIONS", target: "/b", headers: { "Max-Forwards": "x1" } });
    assert.deepEqual(fieldValues(newRequest(s.up, n)!, "max-forwards"), ["x1"]);
  },
);

stest("intermediary: TRACE and Max-Forwards over HTTP/2 (h2c listener)", async (s) => {
  const before = s.up.requests.length;
  const echo = await h2Request(s.h2Port, "TRACE", "/traced/a", [
    "max-forwards",
    "0",
    "cookie",
    "sid=secret",
    "authorization",
    "Basic dTpw",
    "x-plain",
    "shown",
  ]);
  assert.equal(echo.status, 200);
  assert.equal(h2Field(echo.fields, "content-type"), "message/http");
  assert.match(
    echo.body,
    new RegExp(`^TRACE /traced/a HTTP/2\\.0\\r\\nhost: 127\\.0\\.0\\.1:${s.h2Port}\\r\\n`),
  );
  assert.match(echo.body, /\r\nx-plain: shown\r\n/);
  assert.match(echo.body, /\r\ncookie: \[REDACTED\]\r\n/);
  assert.doesNotMatch(echo.body, /secret|dTpw/);

  const opt = await h2Options(s, "/some/a", "0");
  assert.equal(opt.status, 200);
  assert.equal(opt.headers.get("allow"), "GET, POST, OPTIONS");
  assert.equal(s.up.requests.length, before);

  assert.equal((await h2Options(s, "/b", "2")).status, 200);
  assert.deepEqual(fieldValues(newRequest(s.up, before)!, "max-forwards"), ["1"]);
  const trace = await h2Request(s.h2Port, "TRACE", "/traced/b", ["max-forwards", "1"]);
  assert.equal(trace.status, 200);
  assert.match(newRequest(s.up, before + 1)?.start ?? "", /^TRACE \/traced\/b /);
  assert.deepEqual(fieldValues(newRequest(s.up, before + 1)!, "max-forwards"), ["0"]);
});

stest("intermediary: Upgrade: h2c is not passed upstream; the request goes on as HTTP/1.1", async (s) => {
  const c = await RawClient.connect(s.loom.port);
  try {
    const before = s.up.requests.length;
    await c.write(
      "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    const res = await c.response();
    assert.equal(res.status, 200, res.raw);
    assert.equal(field(res, "upgrade"), undefined);
    const seen = newRequest(s.up, before)!;
    assert.equal(field(seen, "upgrade"), undefined, seen.start);
    assert.equal(field(seen, "http2-settings"), undefined);
    assert.doesNotMatch(field(seen, "connection") ?? "", /upgrade/i);
    // Still an HTTP/1.1 keep-alive connection.
    await c.write("GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal((await c.response()).status, 200);
    assert.equal(s.up.requests.length, before + 2);
    // Only the HTTP/2 tokens go: another protocol of the list is still asked for.
    assert.equal(forwardedUpgrade("h2c"), undefined);
    assert.equal(forwardedUpgrade("H2C, HTTP/2.0"), undefined);
    assert.equal(forwardedUpgrade("websocket, h2c"), "websocket");
    assert.equal(forwardedUpgrade("websocket"), "websocket");
  } finally {
    c.close();
  }
});

stest("intermediary: a 101 that answers no upgrade Loom forwarded is a 502, never a tunnel", async (s) => {
  // A plain GET, and an h2c upgrade Loom did not forward: the 101 is refused.
  const plain = await rawRequest(s.loom.port, { target: "/switch/a" });
  assert.equal(plain.res?.status, 502, plain.res?.raw);
  assert.doesNotMatch(plain.text, /TUNNEL|Switching/);
  const h2c = await rawRequest(s.loom.port, {
    target: "/switch/b",
    headers: { Connection: "Upgrade, HTTP2-Settings", Upgrade: "h2c", "HTTP2-Settings": "AAMAAABk" },
  });
  assert.equal(h2c.res?.status, 502, h2c.res?.raw);
  assert.doesNotMatch(h2c.text, /TUNNEL/);
  // A WebSocket upgrade answered with a switch to another protocol.
  const ws = await rawRequest(s.loom.port, {
    target: "/switch/c",
    headers: {
      Connection: "Upgrade",
      Upgrade: "websocket",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version": "13",
    },
  });
  assert.equal(ws.res?.status, 502, ws.res?.raw);
  assert.doesNotMatch(ws.text, /TUNNEL/);
  assert.ok(upgradeAnswered("websocket", "WebSocket"));
  assert.ok(!upgradeAnswered("websocket", "h2c"));
  assert.ok(!upgradeAnswered("websocket", undefined));
});

stest(
  "intermediary: Content_Length / Transfer_Encoding look-alikes are dropped on the way upstream",
  async (s) => {
    const before = s.up.requests.length;
    const { res } = await rawRequest(
      s.loom.port,
      "POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\ncontent_length: 50\r\n" +
        "CONTENT_LENGTH: 7\r\ntransfer_ENCODING: chunked\r\nX_Other: kept\r\nConnection: close\r\n\r\nhello",
    );
    assert.equal(res?.status, 200, res?.raw);
    const seen = newRequest(s.up, before)!;
    const names = seen.fields.map(([n]) => n.toLowerCase());
    assert.ok(
      !names.includes("transfer_encoding") && !names.includes("content_length"),
      seen.fields.join("|"),
    );
    assert.deepEqual(fieldValues(seen, "content-length"), ["5"]);
    assert.equal(field(seen, "x_other"), "kept");
    assert.equal(new TextDecoder().decode(seen.body), "hello");
    const raw = s.up.raw.at(-1) ?? "";
    assert.doesNotMatch(raw, /_encoding|_length/i);

    // The same over HTTP/2.
    const r = await fetch(`http://127.0.0.1:${s.h2Port}/l2`, {
      method: "POST",
      body: "hey",
      headers: { "transfer_encoding": "chunked", "content_length": "9", "x_other": "kept" },
      client: s.h2,
    });
    await r.body?.cancel();
    assert.equal(r.status, 200);
    const seen2 = newRequest(s.up, before + 1)!;
    const names2 = seen2.fields.map(([n]) => n.toLowerCase());
    assert.ok(
      !names2.includes("transfer_encoding") && !names2.includes("content_length"),
      names2.join(","),
    );
    assert.equal(field(seen2, "x_other"), "kept");
    assert.equal(new TextDecoder().decode(seen2.body), "hey");
  },
);
