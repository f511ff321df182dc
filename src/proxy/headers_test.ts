import assert from "node:assert/strict";
import { filterResponseHeaders, upstreamRequestHead } from "./headers.ts";
import { HeaderList } from "../core/headers.ts";
import { RequestContext } from "../core/context.ts";
import { EMPTY_BODY, type ResponseWriter } from "../core/body.ts";

function ctx(
  fields: [string, string][],
  o: { ip?: string; authority?: string; scheme?: "http" | "https"; protocol?: string } = {},
) {
  return new RequestContext(
    "GET",
    "/p",
    o.authority ?? "client.example",
    o.scheme ?? "http",
    o.protocol ?? "HTTP/1.1",
    HeaderList.from(fields),
    EMPTY_BODY,
    {} as ResponseWriter,
    o.ip ?? "192.0.2.1",
    40000,
    "test",
  );
}

/** Parses the produced head into [start line, fields]. */
function parse(head: string): { start: string; fields: [string, string][] } {
  assert.ok(head.endsWith("\r\n\r\n"), "head ends with an empty line");
  const lines = head.slice(0, -4).split("\r\n");
  return {
    start: lines[0],
    fields: lines.slice(1).map((
      l,
    ) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 2)]),
  };
}

const values = (f: [string, string][], k: string) => f.filter(([n]) => n === k).map(([, v]) => v);

const base = {
  method: "GET",
  target: "/up",
  host: "client.example",
  framing: "",
  upgrade: undefined,
  requestId: "rid-1",
};

Deno.test("upstreamRequestHead: hop-by-hop and Connection-nominated fields dropped", () => {
  const c = ctx([
    ["Host", "client.example"],
    ["Connection", "keep-alive, X-Secret"],
    ["connection", "X-Two"],
    ["Keep-Alive", "timeout=1"],
    ["Proxy-Connection", "keep-alive"],
    ["Transfer-Encoding", "chunked"],
    ["Content-Length", "5"],
    ["Upgrade", "h2c"],
    ["TE", "gzip"],
    ["X-Secret", "1"],
    ["X-Two", "2"],
    ["X-Keep", "k"],
    ["Accept", "a"],
    ["Accept", "b"],
  ]);
  const { start, fields } = parse(upstreamRequestHead(c, { ...base, framing: "content-length: 5\r\n" }));
  assert.equal(start, "GET /up HTTP/1.1");
  const names = fields.map(([n]) => n);
  for (
    const n of [
      "connection",
      "keep-alive",
      "proxy-connection",
      "transfer-encoding",
      "upgrade",
      "te",
      "x-secret",
      "x-two",
    ]
  ) {
    assert.ok(!names.includes(n), n);
  }
  assert.deepEqual(values(fields, "host"), ["client.example"]);
  assert.deepEqual(values(fields, "content-length"), ["5"], "only the proxy's own framing");
  assert.deepEqual(values(fields, "x-keep"), ["k"]);
  assert.deepEqual(values(fields, "accept"), ["a", "b"], "duplicates and order kept");
});

Deno.test("upstreamRequestHead: TE kept only as trailers; Upgrade only when upgrading", () => {
  const c = ctx([["TE", "deflate;q=0.5, trailers, gzip"], ["Connection", "Upgrade"], [
    "Upgrade",
    "websocket",
  ]]);
  let f = parse(upstreamRequestHead(c, base)).fields;
  assert.deepEqual(values(f, "te"), ["trailers"]);
  assert.deepEqual(values(f, "upgrade"), []);
  f = parse(upstreamRequestHead(c, { ...base, upgrade: "websocket" })).fields;
  assert.deepEqual(values(f, "upgrade"), ["websocket"]);
  assert.deepEqual(values(f, "connection"), ["upgrade"]);
});

Deno.test("upstreamRequestHead: X-Forwarded-*, Forwarded and Via", () => {
  const c = ctx([
    ["X-Forwarded-For", "203.0.113.1"],
    ["X-Forwarded-For", "203.0.113.2"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "spoof"],
    ["Forwarded", "for=203.0.113.1"],
    ["Via", "1.0 a"],
    ["Via", "1.1 b"],
  ], { scheme: "https", authority: "client.example:8443" });
  const { fields } = parse(upstreamRequestHead(c, base));
  assert.deepEqual(values(fields, "x-forwarded-for"), ["203.0.113.1, 203.0.113.2, 192.0.2.1"]);
  assert.deepEqual(values(fields, "x-forwarded-proto"), ["https"]);
  assert.deepEqual(values(fields, "x-forwarded-host"), ["client.example:8443"]);
  assert.deepEqual(values(fields, "forwarded"), [
    'for=203.0.113.1, for=192.0.2.1;proto=https;host="client.example:8443"',
  ]);
  assert.deepEqual(values(fields, "via"), ["1.0 a, 1.1 b, 1.1 loom"]);
});

Deno.test("upstreamRequestHead: IPv6 client quoted in Forwarded, plain in X-Forwarded-For", () => {
  const { fields } = parse(upstreamRequestHead(ctx([], { ip: "2001:db8::1", authority: "h" }), base));
  assert.deepEqual(values(fields, "forwarded"), ['for="[2001:db8::1]";proto=http;host=h']);
  assert.deepEqual(values(fields, "x-forwarded-for"), ["2001:db8::1"]);
  const v10 = parse(upstreamRequestHead(ctx([], { protocol: "HTTP/1.0", authority: "" }), base)).fields;
  assert.deepEqual(values(v10, "via"), ["1.0 loom"]);
  assert.deepEqual(values(v10, "x-forwarded-host"), [], "no authority, no X-Forwarded-Host");
});

Deno.test("upstreamRequestHead: X-Request-ID added, kept, replaced, never duplicated", () => {
  const ids = (fields: [string, string][], requestId: string) =>
    values(parse(upstreamRequestHead(ctx(fields), { ...base, requestId })).fields, "x-request-id");
  assert.deepEqual(ids([], "gen-1"), ["gen-1"]);
  assert.deepEqual(ids([["X-Request-ID", "client-1"]], "client-1"), ["client-1"]);
  assert.deepEqual(ids([["X-Request-ID", "bad id"]], "gen-2"), ["gen-2"]);
  assert.deepEqual(ids([["X-Request-ID", "client-1"], ["X-Request-ID", "client-2"]], "client-1"), [
    "client-1",
  ]);
  assert.deepEqual(
    ids([["X-Request-ID", "as-is"]], ""),
    ["as-is"],
    "without a gateway id the client's passes",
  );
});

Deno.test("filterResponseHeaders: hop-by-hop and nominated fields dropped, Via appended", () => {
  const h = HeaderList.from([
    ["Connection", "close, X-Hop"],
    ["X-Hop", "1"],
    ["Keep-Alive", "timeout=1"],
    ["Transfer-Encoding", "chunked"],
    ["Content-Length", "3"],
    ["Upgrade", "h2c"],
    ["Proxy-Connection", "x"],
    ["TE", "trailers"],
    ["Set-Cookie", "a=1"],
    ["Set-Cookie", "b=2"],
    ["Via", "1.1 up"],
  ]);
  filterResponseHeaders(h, ["close", "x-hop"], "1.1", false);
  assert.deepEqual(h.entries(), [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"], ["via", "1.1 up, 1.1 loom"]]);

  const up = HeaderList.from([["Connection", "Upgrade"], ["Upgrade", "websocket"], [
    "Sec-WebSocket-Accept",
    "x",
  ]]);
  filterResponseHeaders(up, ["upgrade"], "1.1", true);
  assert.deepEqual(up.entries(), [
    ["Connection", "Upgrade"],
    ["Upgrade", "websocket"],
    ["Sec-WebSocket-Accept", "x"],
    ["via", "1.1 loom"],
  ]);
});
