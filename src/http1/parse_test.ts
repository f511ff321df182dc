import assert from "node:assert/strict";
import {
  findHeadEnd,
  hasBareCr,
  type ParsedRequest,
  type ParsedResponse,
  parseRequestHead,
  parseResponseHead,
} from "./parse.ts";

function bytes(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

function req(s: string) {
  const b = bytes(s);
  const end = findHeadEnd(b, 0, b.length);
  if (end < 0) return { end };
  return { end, head: parseRequestHead(b, 0, end) };
}

const H = "Host: a\r\n";

Deno.test("findHeadEnd: complete, incomplete and bare-LF heads", () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27],
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", 27],
    ["GET / HTTP/1.1\r\nHost: a\r\n", -1],
    ["GET / HTTP/1.1\r\nHost: a\r\n\r", -1],
    ["GET / HTTP/1.1", -1],
    ["GET / HTTP/1.1\nHost: a\r\n\r\n", -2],
    ["GET / HTTP/1.1\r\nHost: a\n\r\n", -2],
    ["\n", -2],
  ];
  for (const [s, want] of cases) assert.equal(findHeadEnd(bytes(s), 0, s.length), want, JSON.stringify(s));
  // Offsets inside a larger buffer.
  const b = bytes("XXGET / HTTP/1.1\r\n\r\nYY");
  assert.equal(findHeadEnd(b, 2, b.length), 20);
});

Deno.test("hasBareCr: a CR followed by anything but LF; a final CR may still get its LF", () => {
  const cases: [string, boolean][] = [
    ["GET / HTTP/1.1\r\nHost: a\r\n", false],
    ["GET / HTTP/1.1\r", false],
    ["GET / HTTP/1.1\r\nHost: a\r\r", true],
    ["GET / HTTP/1.1\rHost", true],
    ["\r\r\n", true],
    ["", false],
  ];
  for (const [s, want] of cases) assert.equal(hasBareCr(bytes(s), 0, s.length), want, JSON.stringify(s));
  // Only [from, to) counts: stale bytes after `to` are ignored.
  const b = bytes("XX\r\nab\rZ");
  assert.equal(hasBareCr(b, 2, 7), false);
  assert.equal(hasBareCr(b, 2, 8), true);
  assert.equal(hasBareCr(bytes("\rX\r\n"), 1, 4), false);
});

Deno.test("parseRequestHead: valid heads", () => {
  type Want =
    & Partial<
      Pick<
        ParsedRequest,
        | "method"
        | "target"
        | "host"
        | "contentLength"
        | "chunked"
        | "minor"
        | "close"
        | "upgrade"
        | "expectContinue"
      >
    >
    & { fields?: [string, string][] };
  const cases: [string, Want][] = [
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", {
      method: "GET",
      target: "/",
      host: "a",
      contentLength: -1,
      chunked: false,
      minor: 1,
      close: false,
    }],
    ["GET /p?q=1 HTTP/1.0\r\n\r\n", { target: "/p?q=1", host: undefined, minor: 0, close: true }],
    ["GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", { minor: 0, close: false }],
    ["GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { close: true }],
    ["GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n", { close: true }],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", { contentLength: 42 }],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length:   7  \r\n\r\n", { contentLength: 7 }],
    ["POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", { contentLength: 0 }],
    ["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", {
      chunked: true,
      contentLength: -1,
    }],
    ["POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\n\r\n", { chunked: true }],
    ["GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", {
      upgrade: "websocket",
    }],
    ["GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", { upgrade: undefined }],
    ["POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", {
      expectContinue: true,
    }],
    ["POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", { expectContinue: false }],
    ["GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", { host: "[::1]:8080" }],
    ["GET / HTTP/1.1\r\nHost: xn--bcher-kva.example:443\r\n\r\n", { host: "xn--bcher-kva.example:443" }],
    ["GET / HTTP/1.1\r\nHost:\r\n\r\n", { host: "" }],
    ["GET / HTTP/1.2\r\nHost: a\r\n\r\n", { minor: 1 }],
    ["OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", { method: "OPTIONS", target: "*" }],
    ["GET http://x.example/p HTTP/1.1\r\nHost: a\r\n\r\n", { target: "http://x.example/p" }],
    [
      "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp: \t v a l \t\r\nX-Hi: caf\xe9\r\n\r\n",
      { fields: [["Host", "a"], ["X-Empty", ""], ["X-Sp", "v a l"], ["X-Hi", "caf\xe9"]] },
    ],
  ];
  for (const [s, want] of cases) {
    const { head } = req(s);
    assert.ok(head && !head.error, `${JSON.stringify(s)}: ${JSON.stringify(head)}`);
    const h = head as ParsedRequest;
    for (const [k, v] of Object.entries(want)) {
      if (k === "fields") assert.deepEqual(h.headers.entries(), v, JSON.stringify(s));
      else assert.deepEqual(h[k as keyof ParsedRequest], v, `${k} of ${JSON.stringify(s)}`);
    }
    // keys are lower-case, names keep their case
    for (let i = 0; i < h.headers.size; i++) {
      assert.equal(h.headers.keys[i], h.headers.names[i].toLowerCase());
    }
  }
});

Deno.test("parseRequestHead: invalid heads", () => {
  const cases: [string, number][] = [
    [`POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Content-Length: 1, 1\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Content-Length: +1\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Content-Length: 1e3\r\n\r\n`, 400],
    [`POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`, 501],
    [`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n`, 501],
    [`POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n`, 501],
    [`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    [`POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X: a\rb\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X: a\x00\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X: a\x7f\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X : a\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}: a\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}X\x01: a\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\nX: a\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\n${H}${H}\r\n`, 400],
    [`GET / HTTP/1.1\r\nHost: a b\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\nHost: a:b\r\n\r\n`, 400],
    [`GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n`, 400],
    [`GET /\x00 HTTP/1.1\r\n${H}\r\n`, 400],
    [`GET  / HTTP/1.1\r\n${H}\r\n`, 400],
    [`GET / HTTP/1.1 \r\n${H}\r\n`, 400],
    [`GET / HTTPS/1.1\r\n${H}\r\n`, 400],
    [`GET / HTTP/x.1\r\n${H}\r\n`, 400],
    [`GET / HTTP/1\r\n${H}\r\n`, 400],
    [`/ HTTP/1.1\r\n${H}\r\n`, 400],
    [`GET / HTTP/2.0\r\n${H}\r\n`, 505],
    [`GET / HTTP/3.0\r\n${H}\r\n`, 505],
    [`POST / HTTP/1.1\r\n${H}Expect: nope\r\n\r\n`, 417],
  ];
  for (const [s, status] of cases) {
    const { head } = req(s);
    assert.ok(head && head.error, `accepted: ${JSON.stringify(s)}`);
    assert.equal(head.status, status, `${JSON.stringify(s)}: ${head.reason}`);
  }
});

Deno.test("parseRequestHead: field count limit gives 431", () => {
  const s = "GET / HTTP/1.1\r\nHost: a\r\n" + "X: y\r\n".repeat(10) + "\r\n";
  const b = bytes(s);
  const head = parseRequestHead(b, 0, findHeadEnd(b, 0, b.length), 5);
  assert.ok(head.error);
  assert.equal(head.status, 431);
  assert.ok(!parseRequestHead(b, 0, findHeadEnd(b, 0, b.length), 11).error);
});

Deno.test("parseResponseHead: valid and invalid status lines map to 502", () => {
  const ok = (s: string) => {
    const b = bytes(s);
    const r = parseResponseHead(b, 0, findHeadEnd(b, 0, b.length));
    assert.ok(!r.error, `${JSON.stringify(s)}: ${JSON.stringify(r)}`);
    return r as ParsedResponse;
  };
  let r = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  assert.deepEqual([r.status, r.reason, r.contentLength, r.chunked, r.minor], [200, "OK", 5, false, 1]);
  r = ok("HTTP/1.0 404 Not Found\r\n\r\n");
  assert.deepEqual([r.status, r.reason, r.minor, r.close], [404, "Not Found", 0, true]);
  r = ok("HTTP/1.1 204\r\n\r\n");
  assert.deepEqual([r.status, r.reason], [204, ""]);
  r = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-A\r\n\r\n");
  assert.deepEqual([r.chunked, r.close, r.connection], [true, true, ["close", "x-a"]]);
  for (
    const s of [
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 600 X\r\n\r\n",
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
      "HTTP/1.1 200 O\x00K\r\n\r\n",
    ]
  ) {
    const b = bytes(s);
    const r = parseResponseHead(b, 0, findHeadEnd(b, 0, b.length));
    assert.ok(r.error, `accepted: ${JSON.stringify(s)}`);
    assert.equal(r.status, 502);
  }
});

Deno.test("parseResponseHead: fields classified from bytes, the list built on first use", () => {
  const text = "HTTP/1.1 200 OK\r\nServer: nginx\r\nCONTENT-length: 3\r\nX-Pad:  a b \t\r\nvIa: 1.0 up\r\n" +
    "Keep-Alive: timeout=5\r\nContent_Length: 9\r\nHost: h\r\nte: trailers\r\nx-e: \xe9\r\n\r\n";
  const b = bytes(text);
  const r = parseResponseHead(b, 0, findHeadEnd(b, 0, b.length)) as ParsedResponse;
  assert.ok(!r.error);
  assert.equal(r.contentLength, 3);
  // 1: hop-by-hop (Host too), 2: Via; a look-alike with "_" is an ordinary field here.
  assert.deepEqual(r.hop, [0, 1, 0, 2, 1, 0, 1, 1, 0]);
  assert.equal(r.key(1), "content-length");
  assert.equal(r.key(1, false), "CONTENT-length");
  assert.deepEqual(r.headers.entries(), [
    ["Server", "nginx"],
    ["CONTENT-length", "3"],
    ["X-Pad", "a b"],
    ["vIa", "1.0 up"],
    ["Keep-Alive", "timeout=5"],
    ["Content_Length", "9"],
    ["Host", "h"],
    ["te", "trailers"],
    ["x-e", "\xe9"],
  ]);
  assert.equal(r.headers.get("via"), "1.0 up");
  assert.equal(r.headers, r.headers); // built once
});
