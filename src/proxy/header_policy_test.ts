/**
 * The upstream header policy, table-driven: every case runs through every
 * pair of client protocol (HTTP/1.1, HTTP/2, HTTP/3) and upstream protocol
 * (HTTP/1.1, h2c, h2, gRPC): policy, hooks, then the serialiser of that
 * upstream, its output parsed back and compared protocol-independently.
 */
import assert from "node:assert/strict";
import {
  applyUpstreamHooks,
  connectionTokens,
  copyResponseHead,
  filterResponseHeaders,
  h2RequestFields,
  http1RequestHead,
  http1UpstreamHead,
  upstreamAuthority,
  type UpstreamRequestHead,
  upstreamRequestHead,
} from "./header_policy.ts";
import { HeaderList } from "../core/headers.ts";
import { type GrpcKind, RequestContext } from "../core/context.ts";
import type { PhaseHooks } from "../core/middleware.ts";
import { type BodyReader, EMPTY_BODY, type ResponseWriter } from "../core/body.ts";
import { CidrSet } from "../net/cidr.ts";
import { type ParsedResponse, parseResponseHead } from "../http1/parse.ts";

const CLIENTS = ["HTTP/1.1", "HTTP/2", "HTTP/3"] as const;
const UPSTREAMS = ["http1", "h2c", "h2", "grpc"] as const;
type Client = typeof CLIENTS[number];
type Upstream = typeof UPSTREAMS[number];
const VIA: Record<Client, string> = { "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/3": "3" };

/** One request as a client protocol delivers it to the policy. */
interface Req {
  fields?: [string, string][];
  method?: string;
  ip?: string;
  authority?: string;
  scheme?: "http" | "https";
  /** Loom's request id (the gateway's verdict on the client's). */
  id?: string;
  bodyLength?: number;
  grpc?: GrpcKind;
  hooks?: PhaseHooks;
}

interface RouteOpts {
  preserveHost?: boolean;
  hostRewrite?: string;
  endpoint?: [string, number];
  trusted?: string[];
}

function context(client: Client, r: Req): RequestContext {
  const body: BodyReader = r.bodyLength === undefined
    ? EMPTY_BODY
    : { length: r.bodyLength, trailers: null, read: () => Promise.resolve(null) };
  const ctx = new RequestContext(
    r.method ?? "GET",
    "/client/path",
    r.authority ?? "gw.example",
    r.scheme ?? "https",
    client,
    HeaderList.from(r.fields ?? []),
    body,
    {} as ResponseWriter,
    r.ip ?? "192.0.2.1",
    40000,
    "test",
  );
  ctx.id = r.id ?? "loom-id-1";
  ctx.grpc = r.grpc ?? 0;
  ctx.hooks = r.hooks ?? null;
  return ctx;
}

/** What an upstream received, protocol-independently. */
interface Sent {
  method: string;
  target: string;
  authority: string;
  /** [lower-case name, value] in order, framing (content-length, transfer-encoding) and grpc-timeout aside. */
  fields: [string, string][];
  /** Framing fields as sent ("content-length: 5", "transfer-encoding: chunked", or none). */
  framing: string[];
  grpcTimeout: string | undefined;
  /** The serialised form, for checks of one protocol. */
  raw: string | string[];
}

const FRAMING = new Set(["content-length", "transfer-encoding"]);

/** Policy → hooks → serialiser for `up`; the result parsed back. */
function send(client: Client, up: Upstream, r: Req, o: RouteOpts = {}): Sent {
  const ctx = context(client, { ...r, grpc: up === "grpc" ? r.grpc ?? 1 : r.grpc });
  const secure = up === "h2";
  const [host, port] = o.endpoint ?? ["10.0.0.5", 8080];
  const authority = upstreamAuthority(
    ctx,
    { preserveHost: o.preserveHost ?? false, hostRewrite: o.hostRewrite },
    host,
    port,
    secure,
  );
  const trusted = o.trusted !== undefined ? new CidrSet(o.trusted) : null;
  const target = "/up/path?q=1";
  const pairs: [string, string][] = [];
  let method = "", path = "", auth = "";
  let raw: string | string[];
  if (up === "http1") {
    const text = raw = http1UpstreamHead(ctx, target, authority, trusted);
    if (ctx.hooks === null) {
      // The fast path (no hooks) writes what the field list would serialise to.
      assert.equal(text, http1RequestHead(ctx, upstreamRequestHead(ctx, target, authority, trusted)));
    }
    assert.ok(text.endsWith("\r\n\r\n"));
    const lines = text.slice(0, -4).split("\r\n");
    [method, path] = lines[0].split(" ");
    assert.equal(lines[0].split(" ")[2], "HTTP/1.1");
    for (const l of lines.slice(1)) {
      const c = l.indexOf(": ");
      const k = l.slice(0, c).toLowerCase(), v = l.slice(c + 2);
      if (k === "host") auth = v;
      else pairs.push([k, v]);
    }
  } else {
    const head = upstreamRequestHead(ctx, target, authority, trusted);
    applyUpstreamHooks(ctx, head);
    const f = raw = h2RequestFields(ctx, head, secure, up === "grpc" ? "99m" : null);
    for (let i = 0; i < f.length; i += 2) {
      const k = f[i], v = f[i + 1];
      assert.equal(k, k.toLowerCase(), "HTTP/2 field names are lower-case");
      if (k === ":method") method = v;
      else if (k === ":path") path = v;
      else if (k === ":authority") auth = v;
      else if (k === ":scheme") assert.equal(v, secure ? "https" : "http");
      else {
        assert.notEqual(k[0], ":", "pseudo-fields come first");
        pairs.push([k, v]);
      }
    }
    assert.deepEqual(f.slice(0, 8).filter((_, i) => i % 2 === 0), [
      ":method",
      ":scheme",
      ":authority",
      ":path",
    ]);
  }
  return {
    method,
    target: path,
    authority: auth,
    fields: pairs.filter(([k]) => !FRAMING.has(k) && k !== "grpc-timeout"),
    framing: pairs.filter(([k]) => FRAMING.has(k)).map(([k, v]) => k + ": " + v),
    grpcTimeout: pairs.find(([k]) => k === "grpc-timeout")?.[1],
    raw,
  };
}

/** Runs `check` for every (client, upstream) pair, naming the pair on failure. */
function everyPair(check: (client: Client, up: Upstream) => void): void {
  for (const client of CLIENTS) {
    for (const up of UPSTREAMS) {
      try {
        check(client, up);
      } catch (e) {
        (e as Error).message = `[${client} client → ${up} upstream] ${(e as Error).message}`;
        throw e;
      }
    }
  }
}

const TE_TRAILERS: [string, string] = ["te", "trailers"];

/** Loom's forwarding block for the defaults of `context` (client 192.0.2.1, https, gw.example). */
function loomBlock(client: Client, up: Upstream, o: { xff?: string; fwd?: string; via?: string } = {}) {
  const out: [string, string][] = [
    ["x-forwarded-for", o.xff ?? "192.0.2.1"],
    ["x-forwarded-proto", "https"],
    ["x-forwarded-host", "gw.example"],
    ["forwarded", o.fwd ?? "for=192.0.2.1;proto=https;host=gw.example"],
    ["via", o.via ?? `${VIA[client]} loom`],
    ["x-request-id", "loom-id-1"],
  ];
  if (up === "grpc") out.push(TE_TRAILERS);
  return out;
}

/** Forwarding fields as a client (or a proxy in front of Loom) sends them. */
const FORWARDED_BY_CLIENT: [string, string][] = [
  ["X-Forwarded-For", "203.0.113.1"],
  ["X-Forwarded-For", "203.0.113.2"],
  ["X-Forwarded-Proto", "http"],
  ["X-Forwarded-Host", "spoof.example"],
  ["Forwarded", "for=203.0.113.1"],
];

/** The table: a request, route options, and the fields every pair must send (in order). */
interface Case {
  name: string;
  req: Req;
  route?: RouteOpts;
  want: (client: Client, up: Upstream) => [string, string][];
}

const CASES: Case[] = [
  {
    name: "end-to-end fields kept in order, duplicates kept",
    req: { fields: [["Accept", "a"], ["X-Keep", "k"], ["accept", "b"], ["Cookie", "c=1; d=2"]] },
    want: (
      c,
      u,
    ) => [["accept", "a"], ["x-keep", "k"], ["accept", "b"], ["cookie", "c=1; d=2"], ...loomBlock(c, u)],
  },
  {
    name: "hop-by-hop and Connection-listed fields dropped",
    req: {
      fields: [
        ["Host", "gw.example"],
        ["Connection", "keep-alive, X-Secret"],
        ["connection", "X-Two"],
        ["Keep-Alive", "timeout=1"],
        ["Proxy-Connection", "keep-alive"],
        ["Transfer-Encoding", "chunked"],
        ["Content-Length", "5"],
        ["Upgrade", "h2c"],
        ["HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"],
        ["TE", "gzip"],
        ["X-Secret", "1"],
        ["X-Two", "2"],
        ["X-Keep", "k"],
      ],
    },
    want: (c, u) => [["x-keep", "k"], ...loomBlock(c, u)],
  },
  {
    name: "Content_Length / Transfer_Encoding look-alikes dropped in any case; other underscores kept",
    req: {
      fields: [
        ["Transfer_Encoding", "chunked"],
        ["content_length", "50"],
        ["CONTENT_LENGTH", "7"],
        ["transfer_ENCODING", "gzip"],
        ["X_Other", "kept"],
        ["Content_Type", "text/plain"],
      ],
    },
    want: (c, u) => [["x_other", "kept"], ["content_type", "text/plain"], ...loomBlock(c, u)],
  },
  {
    name: "TE only as trailers, when the client asked for them",
    req: { fields: [["TE", "deflate;q=0.5, trailers, gzip"], ["X-A", "1"]] },
    want: (
      c,
      u,
    ) => [["x-a", "1"], ...loomBlock(c, u), ...(u === "grpc" ? [] : [TE_TRAILERS])],
  },
  {
    name: "an untrusted client's X-Forwarded-*, Forwarded replaced; Via appended to",
    req: { fields: [...FORWARDED_BY_CLIENT, ["Via", "1.0 a"], ["Via", "1.1 b"]] },
    want: (c, u) => loomBlock(c, u, { via: `1.0 a, 1.1 b, ${VIA[c]} loom` }),
  },
  {
    name: "a trusted proxy's X-Forwarded-For and Forwarded appended to; -Proto/-Host still replaced",
    req: { fields: FORWARDED_BY_CLIENT },
    route: { trusted: ["192.0.2.0/24"] },
    want: (c, u) =>
      loomBlock(c, u, {
        xff: "203.0.113.1, 203.0.113.2, 192.0.2.1",
        fwd: "for=203.0.113.1, for=192.0.2.1;proto=https;host=gw.example",
      }),
  },
  {
    name: "trusted_proxies not matching the client: replaced",
    req: { fields: [["X-Forwarded-For", "203.0.113.1"], ["Forwarded", "for=203.0.113.1"]] },
    route: { trusted: ["10.0.0.0/8", "2001:db8::/32"] },
    want: (c, u) => loomBlock(c, u),
  },
  {
    name: "a trusted proxy's fields listed in Connection are dropped all the same",
    req: {
      fields: [["Connection", "X-Forwarded-For, Via"], ["X-Forwarded-For", "203.0.113.1"], ["Via", "1.1 a"]],
    },
    route: { trusted: ["192.0.2.1"] },
    want: (c, u) => loomBlock(c, u),
  },
  {
    name: "IPv6 client: bracketed and quoted in Forwarded, plain in X-Forwarded-For",
    req: { ip: "2001:db8::1", authority: "" },
    want: (c, u) => [
      ["x-forwarded-for", "2001:db8::1"],
      ["x-forwarded-proto", "https"],
      ["forwarded", 'for="[2001:db8::1]";proto=https'],
      ["via", `${VIA[c]} loom`],
      ["x-request-id", "loom-id-1"],
      ...(u === "grpc" ? [TE_TRAILERS] : []),
    ],
  },
  {
    name: "a client id Loom rejected is never forwarded: Loom's id instead",
    req: { fields: [["X-Request-ID", "bad id"]], id: "gen-2" },
    want: (c, u) => loomBlock(c, u).map(([k, v]) => [k, k === "x-request-id" ? "gen-2" : v]),
  },
  {
    name: "a client id Loom accepted is sent once, even when the client sent two",
    req: { fields: [["X-Request-ID", "client-1"], ["x-request-id", "client-2"]], id: "client-1" },
    want: (c, u) => loomBlock(c, u).map(([k, v]) => [k, k === "x-request-id" ? "client-1" : v]),
  },
  {
    name: "without a gateway id the client's passes",
    req: { fields: [["X-Request-ID", "as-is"]], id: "" },
    want: (c, u) => [["x-request-id", "as-is"], ...loomBlock(c, u).filter(([k]) => k !== "x-request-id")],
  },
];

for (const tc of CASES) {
  Deno.test(`header policy, every protocol pair: ${tc.name}`, () => {
    everyPair((client, up) => {
      const s = send(client, up, tc.req, tc.route);
      assert.equal(s.method, "GET");
      assert.equal(s.target, "/up/path?q=1");
      assert.deepEqual(s.fields, tc.want(client, up));
      assert.equal(s.grpcTimeout, up === "grpc" ? "99m" : undefined);
    });
  });
}

Deno.test("header policy, every protocol pair: Host / :authority from host_rewrite, preserve_host or the endpoint", () => {
  everyPair((client, up) => {
    const secure = up === "h2";
    const a = (o: RouteOpts, authority?: string) => send(client, up, { authority }, o).authority;
    assert.equal(a({ hostRewrite: "api.internal", preserveHost: true }), "api.internal");
    assert.equal(a({ preserveHost: true }), "gw.example");
    assert.equal(a({ preserveHost: true }, ""), "10.0.0.5:8080", "no client authority: the endpoint's");
    assert.equal(a({}), "10.0.0.5:8080");
    assert.equal(a({ endpoint: ["api.internal", 80] }), secure ? "api.internal:80" : "api.internal");
    assert.equal(a({ endpoint: ["api.internal", 443] }), secure ? "api.internal" : "api.internal:443");
    assert.equal(a({ endpoint: ["::1", 80] }), secure ? "[::1]:80" : "[::1]");
    assert.equal(a({ endpoint: ["fd00::2", 9000] }), "[fd00::2]:9000");
  });
});

Deno.test("header policy, every protocol pair: body framing is the serialiser's", () => {
  everyPair((client, up) => {
    const framing = (method: string, bodyLength?: number) =>
      send(client, up, { method, bodyLength, fields: [["Content-Length", "999"]] }).framing;
    assert.deepEqual(framing("GET"), []);
    assert.deepEqual(framing("POST", 0), ["content-length: 0"]);
    assert.deepEqual(framing("PUT", 5), ["content-length: 5"]);
    assert.deepEqual(framing("POST", -1), up === "http1" ? ["transfer-encoding: chunked"] : []);
  });
});

Deno.test("header policy, every protocol pair: upstream_request hooks see the policy's head and edit it", () => {
  const seen: UpstreamRequestHead[] = [];
  const hooks: PhaseHooks = {
    upstreamRequest: [
      (_ctx, head) => {
        seen.push({ ...head, headers: head.headers.clone() });
        head.headers.set("X-Hooked", "yes");
        head.headers.delete("x-drop");
        // Framing and connection fields belong to the serialisers: these never go out.
        head.headers.append("Content-Length", "12");
        head.headers.append("Connection", "close");
        head.headers.append("Host", "evil.example");
      },
      (_ctx, head) => {
        head.authority = "rewritten.internal";
        head.target = "/hooked";
        head.method = "PUT";
      },
    ],
    response: null,
    responseBody: null,
    log: null,
  };
  everyPair((client, up) => {
    seen.length = 0;
    const s = send(client, up, {
      hooks,
      fields: [["X-Drop", "1"], ["X-Keep", "k"], ["Connection", "x-gone"]],
    });
    assert.equal(seen.length, 1, "hooks run once per upstream request");
    assert.equal(seen[0].method, "GET");
    assert.equal(seen[0].target, "/up/path?q=1");
    assert.equal(seen[0].authority, "10.0.0.5:8080");
    assert.deepEqual(seen[0].headers.keys.slice(0, 2), ["x-drop", "x-keep"], "hooks get the policy's fields");
    assert.equal(seen[0].headers.get("connection"), undefined);
    assert.equal(s.method, "PUT");
    assert.equal(s.target, "/hooked");
    assert.equal(s.authority, "rewritten.internal");
    assert.deepEqual(s.fields, [["x-keep", "k"], ...loomBlock(client, up), ["x-hooked", "yes"]]);
    assert.deepEqual(s.framing, ["content-length: 0"], "PUT from a hook: Loom's framing, not the hook's");
  });
});

Deno.test("header policy: a hook that leaves a head-splitting value or a bad name fails the request", () => {
  for (
    const edit of [
      (h: UpstreamRequestHead) => h.headers.append("x-a", "1\r\nx-injected: 1"),
      (h: UpstreamRequestHead) => h.headers.append("bad name", "1"),
      (h: UpstreamRequestHead) => h.target = "/a b",
      (h: UpstreamRequestHead) => h.authority = "a\nb",
      (h: UpstreamRequestHead) => h.method = "G T",
    ]
  ) {
    const hooks: PhaseHooks = {
      upstreamRequest: [(_c, h) => edit(h)],
      response: null,
      responseBody: null,
      log: null,
    };
    assert.throws(() => send("HTTP/1.1", "http1", { hooks }), TypeError);
  }
});

Deno.test("header policy: HTTP/1.1 keeps the client's name case, re-announces an upgrade", () => {
  const ctx = context("HTTP/1.1", {
    fields: [["X-Mixed-Case", "v"], ["Connection", "Upgrade"], ["Upgrade", "websocket"]],
  });
  ctx.upgrade = "websocket";
  const text = http1UpstreamHead(ctx, "/ws", "up:1", null);
  assert.match(text, /^GET \/ws HTTP\/1\.1\r\nhost: up:1\r\nX-Mixed-Case: v\r\n/);
  assert.match(text, /\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n$/);
  assert.equal(text.match(/upgrade/gi)?.length, 2, "the client's Upgrade field itself is not copied");
});

Deno.test("header policy: gRPC-Web becomes gRPC upstream (content-type, no x-grpc-web, no length)", () => {
  for (const client of CLIENTS) {
    const s = send(client, "grpc", {
      method: "POST",
      grpc: 3,
      bodyLength: 40,
      fields: [["Content-Type", "application/grpc-web-text+proto"], ["X-Grpc-Web", "1"], [
        "grpc-timeout",
        "5S",
      ]],
    });
    assert.deepEqual(s.fields, [["content-type", "application/grpc+proto"], ...loomBlock(client, "grpc")]);
    assert.deepEqual(s.framing, [], "the decoded body's length is not the client's");
    assert.equal(s.grpcTimeout, "99m", "the time left, never the client's grpc-timeout");
  }
});

Deno.test("response rule: hop-by-hop and nominated fields dropped, Via joined and appended", () => {
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
  assert.deepEqual(connectionTokens(h), ["close", "x-hop"]);
  filterResponseHeaders(h, connectionTokens(h), "1.1", false);
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
  const h2 = HeaderList.from([["content-type", "text/plain"], ["via", "2 up"]]);
  assert.equal(connectionTokens(h2), null);
  filterResponseHeaders(h2, null, "2", false);
  assert.deepEqual(h2.entries(), [["content-type", "text/plain"], ["via", "2 up, 2 loom"]]);
});

function parsed(src: Uint8Array): ParsedResponse {
  const res = parseResponseHead(src, 0, src.length);
  if (res.error) throw new Error(res.reason);
  return res;
}

Deno.test("response rule: the HTTP/1.1 byte copy drops what the list rule drops", () => {
  const enc = new TextEncoder();
  const text =
    "HTTP/1.0 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Type: text/plain\r\n" +
    "Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-End: e\r\n\r\n";
  const src = enc.encode(text);
  const res = parsed(src);
  const dst = new Uint8Array(1024);
  const n = copyResponseHead(src, res, dst, enc.encode("via: 1.0 loom\r\n"));
  assert.equal(
    new TextDecoder().decode(dst.subarray(0, n)),
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-End: e\r\nvia: 1.0 loom\r\n",
  );
  const list = res.headers.clone();
  filterResponseHeaders(list, res.connection, "1.0", false);
  assert.deepEqual(list.entries(), [["Content-Type", "text/plain"], ["X-End", "e"], ["via", "1.0 loom"]]);
  // An upstream Via to join: the copy declines and the list rule joins it.
  const withVia = enc.encode("HTTP/1.1 200 OK\r\nVia: 1.1 up\r\n\r\n");
  const r2 = parsed(withVia);
  assert.equal(
    copyResponseHead(withVia, r2, dst, enc.encode("via: 1.1 loom\r\n")),
    -1,
  );
});
