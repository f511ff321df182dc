/**
 * Request smuggling and malformed-message shapes, sent as raw bytes through a
 * real gateway: each must be answered with the right error status, the
 * connection must be closed, and the upstream (a raw TCP server recording
 * every byte) must receive nothing.
 */
import assert from "node:assert/strict";
import { btest, type Message, RawClient, rawRequest } from "./http1_util.ts";
import { startUpstream } from "./upstream.ts";
import { startLoom, yamlOf } from "./helpers.ts";

const H = "Host: a\r\n";
const post = (fields: string, body = "") => `POST / HTTP/1.1\r\n${H}${fields}\r\n${body}`;
const get = (fields: string) => `GET / HTTP/1.1\r\n${fields}\r\n`;

/** [name, request bytes, expected status]. */
const CASES: [string, string, number][] = [
  // Framing conflicts
  ["CL + TE", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400],
  ["TE + CL", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400],
  ["CL + TE (lower case)", post("content-length: 0\r\ntransfer-encoding: chunked\r\n", "0\r\n\r\n"), 400],
  ["duplicate CL, same value", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 400],
  ["duplicate CL, different values", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400],
  ["CL list 5, 5", post("Content-Length: 5, 5\r\n", "hello"), 400],
  ["CL list 5,5", post("Content-Length: 5,5\r\n", "hello"), 400],
  ["CL +5", post("Content-Length: +5\r\n", "hello"), 400],
  ["CL -5", post("Content-Length: -5\r\n", "hello"), 400],
  ["CL empty", post("Content-Length: \r\n", "hello"), 400],
  ["CL hex", post("Content-Length: 0x5\r\n", "hello"), 400],
  ["CL with inner space", post("Content-Length: 1 0\r\n", "hello12345"), 400],
  ["CL too many digits", post("Content-Length: 1234567890123456\r\n", "x"), 400],
  // Transfer-Encoding other than exactly chunked
  ["TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501],
  ["TE chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), 501],
  ["TE chunked, chunked", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 501],
  ["TE xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 501],
  ["TE chunkedx", post("Transfer-Encoding: chunkedx\r\n", "0\r\n\r\n"), 501],
  ["TE identity", post("Transfer-Encoding: identity\r\n", "hello"), 501],
  ['TE "chunked" quoted', post('Transfer-Encoding: "chunked"\r\n', "0\r\n\r\n"), 501],
  ["TE space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), 400],
  ["TE as folded continuation", post("X-A: b\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400],
  ["TE with leading SP line", `POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n${H}\r\n0\r\n\r\n`, 400],
  ["TE vertical tab", post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), 400],
  ["TE form feed", post("Transfer-Encoding: chunked\x0c\r\n", "0\r\n\r\n"), 400],
  [
    "TE duplicate header",
    post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
    400,
  ],
  ["TE in HTTP/1.0", `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  // Line structure
  ["obs-fold SP", get(`${H}X-A: b\r\n c\r\n`), 400],
  ["obs-fold HTAB", get(`${H}X-A: b\r\n\tc\r\n`), 400],
  ["bare LF after request line", `GET / HTTP/1.1\n${H}\r\n`, 400],
  ["bare LF after a header", `GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n`, 400],
  ["bare LF as final empty line", `GET / HTTP/1.1\r\n${H}\n`, 400],
  ["bare LF only", `GET / HTTP/1.1\n${H}\n`, 400],
  ["bare CR inside a value", get(`${H}X-A: a\rb\r\n`), 400],
  ["bare CR ending a value", get(`${H}X-A: a\r\r\n`), 400],
  ["bare CR in the request line", `GET /\r HTTP/1.1\r\n${H}\r\n`, 400],
  ["bare CR before the version CRLF", `GET / HTTP/1.1\r\r\n${H}\r\n`, 400],
  // A head with a bare CR that never ends with CRLFCRLF: 400 at once, not after read_header_timeout.
  ["bare CR line endings only", `GET / HTTP/1.1\r${H.replace("\r\n", "\r")}\r`, 400],
  ["bare CR line endings after the request line", `GET / HTTP/1.1\r\nHost: a\rX-A: b\r\r`, 400],
  ["bare CR in a value, head unfinished", `GET / HTTP/1.1\r\n${H}X-A: a\rb`, 400],
  ["CR CR LF as the final empty line", `GET / HTTP/1.1\r\n${H}\r\r\n`, 400],
  // Control bytes
  ["NUL in a header value", get(`${H}X-A: a\x00b\r\n`), 400],
  ["SOH in a header value", get(`${H}X-A: a\x01b\r\n`), 400],
  ["DEL in a header value", get(`${H}X-A: a\x7fb\r\n`), 400],
  ["ESC in a header value", get(`${H}X-A: \x1b[31m\r\n`), 400],
  ["NUL in the target", `GET /a\x00b HTTP/1.1\r\n${H}\r\n`, 400],
  ["control byte in the target", `GET /a\x01b HTTP/1.1\r\n${H}\r\n`, 400],
  ["DEL in the target", `GET /a\x7f HTTP/1.1\r\n${H}\r\n`, 400],
  ["HTAB in the target", `GET /a\tb HTTP/1.1\r\n${H}\r\n`, 400],
  ["NUL in a header name", get(`${H}X-\x00A: b\r\n`), 400],
  // Header names
  ["SP before colon", get(`Host : a\r\n`), 400],
  ["HTAB before colon", get(`${H}X-A\t: b\r\n`), 400],
  ["empty header name", get(`${H}: b\r\n`), 400],
  ["no colon", get(`${H}X-A b\r\n`), 400],
  ["non-token header name", get(`${H}X(A): b\r\n`), 400],
  // Host
  ["missing Host on HTTP/1.1", `GET / HTTP/1.1\r\nX-A: b\r\n\r\n`, 400],
  ["duplicate Host, same value", get(`${H}${H}`), 400],
  ["duplicate Host, different values", get(`${H}Host: b\r\n`), 400],
  ["invalid Host: space", get(`Host: a b\r\n`), 400],
  ["invalid Host: slash", get(`Host: a/b\r\n`), 400],
  ["invalid Host: userinfo", get(`Host: user@a\r\n`), 400],
  ["invalid Host: unclosed IPv6 literal", get(`Host: [::1\r\n`), 400],
  ["invalid Host: port letters", get(`Host: a:80x\r\n`), 400],
  ["invalid Host: port too long", get(`Host: a:123456\r\n`), 400],
  ["invalid Host: backslash", get(`Host: a\\b\r\n`), 400],
  // Chunked bodies (head is valid; the body framing is not)
  ["chunk size zz", post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"), 400],
  [
    "chunk size 13 hex digits",
    post("Transfer-Encoding: chunked\r\n", "0000000000005\r\nhello\r\n0\r\n\r\n"),
    400,
  ],
  ["chunk size huge", post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk size negative", post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk size 0x prefix", post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk size empty", post("Transfer-Encoding: chunked\r\n", "\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk size trailing SP", post("Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk size bare LF", post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), 400],
  ["missing CRLF after chunk data", post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"), 400],
  ["chunk data longer than size", post("Transfer-Encoding: chunked\r\n", "3\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk-ext with NUL", post("Transfer-Encoding: chunked\r\n", "5;a=\x00\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk-ext with bare CR", post("Transfer-Encoding: chunked\r\n", "5;a=\rb\r\nhello\r\n0\r\n\r\n"), 400],
  ["chunk-ext with ESC", post("Transfer-Encoding: chunked\r\n", "5;a=\x1b\r\nhello\r\n0\r\n\r\n"), 400],
  ["last chunk with bad trailer", post("Transfer-Encoding: chunked\r\n", "0\r\nX A: b\r\n\r\n"), 400],
  [
    "last chunk with folded trailer",
    post("Transfer-Encoding: chunked\r\n", "0\r\nX-A: b\r\n c\r\n\r\n"),
    400,
  ],
  // Request line
  ["request line without version", `GET /\r\n${H}\r\n`, 400],
  ["double SP after method", `GET  / HTTP/1.1\r\n${H}\r\n`, 400],
  ["SP in target", `GET /a b HTTP/1.1\r\n${H}\r\n`, 400],
  ["trailing SP after version", `GET / HTTP/1.1 \r\n${H}\r\n`, 400],
  ["leading SP", ` GET / HTTP/1.1\r\n${H}\r\n`, 400],
  ["non-token method", `G@T / HTTP/1.1\r\n${H}\r\n`, 400],
  ["lower-case version", `GET / http/1.1\r\n${H}\r\n`, 400],
  ["version HTTP/1", `GET / HTTP/1\r\n${H}\r\n`, 400],
  ["version HTTP/1.10", `GET / HTTP/1.10\r\n${H}\r\n`, 400],
  ["version HTTP/3 (no minor: malformed)", `GET / HTTP/3\r\n${H}\r\n`, 400],
  ["relative target", `GET foo HTTP/1.1\r\n${H}\r\n`, 400],
  ["absolute target with userinfo", `GET http://u@a/ HTTP/1.1\r\n${H}\r\n`, 400],
  ["HTAB as separator", `GET\t/ HTTP/1.1\r\n${H}\r\n`, 400],
  // Versions and methods
  ["HTTP/2.0", `GET / HTTP/2.0\r\n${H}\r\n`, 505],
  ["HTTP/3.0", `GET / HTTP/3.0\r\n${H}\r\n`, 505],
  ["HTTP/0.9 style version", `GET / HTTP/0.9\r\n${H}\r\n`, 505],
  ["CONNECT authority-form", `CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n`, 501],
  ["CONNECT origin-form", `CONNECT /x HTTP/1.1\r\n${H}\r\n`, 501],
  ["CONNECT absolute-form", `CONNECT http://a/ HTTP/1.1\r\n${H}\r\n`, 501],
  // Size limits and expectations
  ["oversized head", get(`${H}X-Big: ${"a".repeat(70 * 1024)}\r\n`), 431],
  ["too many header fields", get(H + Array.from({ length: 120 }, (_, i) => `X-${i}: v\r\n`).join("")), 431],
  ["unsupported expectation", post("Expect: 200-ok\r\nContent-Length: 5\r\n", "hello"), 417],
];

btest(
  "http1 strict: smuggling and malformed shapes are rejected and never reach the upstream",
  60_000,
  async (t) => {
    const up = startUpstream({ raw: true });
    const loom = await startLoom(yamlOf({ endpoints: [up.address] }));
    const totalReceived = () => up.raw.reduce((n, s) => n + s.length, 0);
    try {
      for (const [name, req, status] of CASES) {
        await t.step(`${status} ${name}`, async () => {
          const before = totalReceived(), beforeReqs = up.requests.length;
          const { res, close, text } = await rawRequest(loom.port, req);
          assert.ok(res !== null, `no response: ${JSON.stringify(text)}`);
          assert.equal((res as Message).status, status, (res as Message).raw);
          assert.match((res as Message).raw, /\r\nconnection: close\r\n/i);
          assert.notEqual(close, "timeout", "the connection must be closed after a framing error");
          assert.equal(up.requests.length, beforeReqs, "a request reached the upstream");
          assert.equal(totalReceived(), before, `upstream received bytes: ${JSON.stringify(up.raw.at(-1))}`);
        });
      }
      await t.step("controls: valid framing shapes do reach the upstream", async () => {
        const ok: [string, string][] = [
          ["chunked", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")],
          ["Chunked (case-insensitive)", post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")],
          ["TE with OWS", post("Transfer-Encoding: \t chunked \t\r\n", "5\r\nhello\r\n0\r\n\r\n")],
          ["CL with OWS", post("Content-Length:  5 \r\n", "hello")],
          ["leading empty line", `\r\nGET / HTTP/1.1\r\n${H}\r\n`],
          ["HTTP/1.0 without Host", `GET / HTTP/1.0\r\n\r\n`],
          ["IPv6 literal Host", get(`Host: [::1]:8080\r\n`)],
          ["empty Host", get(`Host:\r\n`)],
          ["obs-text in a value", get(`${H}X-A: caf\xe9\r\n`)],
        ];
        for (const [name, req] of ok) {
          const before = up.requests.length;
          const { res } = await rawRequest(loom.port, req, 3000, false);
          assert.equal(res?.status, 200, `${name}: ${res?.raw}`);
          assert.equal(up.requests.length, before + 1, name);
          const seen = up.requests[before];
          if (req.startsWith("POST")) assert.equal(new TextDecoder().decode(seen.body), "hello", name);
        }
      });
    } finally {
      await loom.close();
      up.close();
    }
  },
);

btest(
  "http1 strict: a bare CR is answered 400 at once, also when its LF is awaited over reads",
  20_000,
  async () => {
    const up = startUpstream({ raw: true });
    const loom = await startLoom(
      yamlOf({ endpoints: [up.address], listener: { read_header_timeout: "10s" } }),
    );
    try {
      // Split after a CR: fine until the next read shows what follows it.
      for (
        const [first, second, status] of [
          ["GET / HTTP/1.1\r", "\nHost: a\r\n\r\n", 200],
          ["GET / HTTP/1.1\r\nHost: a\r", "X-A: b", 400],
          ["GET / HTTP/1.1\r\nHost: a\r\nX-A: b", "\rc", 400],
        ] as const
      ) {
        const c = await RawClient.connect(loom.port);
        try {
          const t0 = Date.now();
          await c.write(first);
          await new Promise((r) => setTimeout(r, 100));
          await c.write(second);
          const res = await c.response({ ms: 2000 });
          assert.equal(res.status, status, JSON.stringify(first + second) + res.raw);
          assert.ok(Date.now() - t0 < 1500, `answered after ${Date.now() - t0} ms`);
          if (status === 400) assert.equal(await c.waitClose(2000), "eof");
        } finally {
          c.close();
        }
      }
      assert.equal(up.requests.length, 1);
    } finally {
      await loom.close();
      up.close();
    }
  },
);
