/**
 * The upstream header policy through a running gateway: the same client
 * request, sent by an HTTP/1.1 client and by an HTTP/2 (h2c) client, to an
 * HTTP/1.1 upstream, an h2c upstream, an h2 (TLS) upstream and as gRPC-Web /
 * gRPC to an h2c upstream, once with the client untrusted and once with it in
 * `trusted_proxies`. Every upstream must see the same forwarding fields (Via
 * naming the client's version), and every client the same response rule.
 * (The unit table in src/proxy/header_policy_test.ts covers HTTP/3 clients and
 * the exact field lists.)
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, type TestLoom } from "./helpers.ts";
import { type RawUpstream, startH2Upstream, startUpstream } from "./upstream.ts";
import { fieldValues, rawRequest } from "./http1_util.ts";
import { TestCa } from "./tls_util.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";

const enc = new TextEncoder();
const GRPC_FRAME = new Uint8Array([0, 0, 0, 0, 2, 104, 105]); // one message, "hi"

/** An HTTP/2 upstream (h2c, or h2 over TLS) recording each request's fields. */
function h2Upstream(tls?: { cert: string; key: string }) {
  const seen: string[][] = [];
  const up = startH2Upstream((s: H2Stream) => {
    seen.push(s.headers);
    const grpc = s.headers.includes("application/grpc+proto");
    (async () => {
      while (await s.read() !== null) { /* drain the request body */ }
      if (grpc) {
        s.respond([":status", "200", "content-type", "application/grpc", "via", "2 up"], false);
        await s.write(GRPC_FRAME);
        await s.end(["grpc-status", "0"]);
      } else {
        s.respond([":status", "200", "via", "2 up", "x-up", "1"], false);
        await s.write(enc.encode("ok"));
        await s.end();
      }
    })().catch(() => {/* reset by the peer */});
  }, tls);
  return { ...up, seen };
}

/** The request every client sends (HTTP/2 clients may not send connection-specific fields). */
const SENT: [string, string][] = [
  ["x-forwarded-for", "203.0.113.9"],
  ["x-forwarded-proto", "https"],
  ["x-forwarded-host", "spoof.example"],
  ["forwarded", "for=203.0.113.9"],
  ["via", "1.1 edge"],
  ["x-request-id", "bad id"],
  ["te", "trailers"],
  ["x-keep", "k"],
];
/** What only the HTTP/1.1 client adds: hop-by-hop fields that must not cross. */
const H1_ONLY: [string, string][] = [["Connection", "X-Secret, keep-alive"], ["X-Secret", "s"], [
  "Keep-Alive",
  "timeout=5",
]];

type Client = "h1" | "h2";
type Up = "h1" | "h2c" | "h2" | "grpc";

interface Exchange {
  /** What the upstream received: lower-case [name, value], pseudo-fields aside. */
  fields: [string, string][];
  authority: string;
  /** The client's response Via. */
  via: string | undefined;
  status: number;
  responseFields: [string, string][];
}

/** One request from `client` through `loom` to the route of `up`. */
async function exchange(
  loom: TestLoom,
  h2cPort: number,
  client: Client,
  up: Up,
  ups: {
    h1: RawUpstream;
    h2c: ReturnType<typeof h2Upstream>;
    h2: ReturnType<typeof h2Upstream>;
  },
): Promise<Exchange> {
  const path = up === "grpc" ? "/test.Svc/Call" : `/${up}/x`;
  const grpc = up === "grpc";
  const before = { h1: ups.h1.requests.length, h2c: ups.h2c.seen.length, h2: ups.h2.seen.length };
  let status = 0;
  let responseFields: [string, string][];
  if (client === "h1") {
    // gRPC over HTTP/1.1 is gRPC-Web: Loom translates it to gRPC upstream.
    const lines = [`${grpc ? "POST" : "GET"} ${path} HTTP/1.1`, "Host: gw.test"];
    for (const [k, v] of [...SENT, ...H1_ONLY]) lines.push(`${k}: ${v}`);
    if (grpc) lines.push("Content-Type: application/grpc-web+proto", "X-Grpc-Web: 1", "Content-Length: 7");
    lines.push("Connection: close", "", "");
    const data = grpc
      ? new Uint8Array([...enc.encode(lines.join("\r\n")), ...GRPC_FRAME])
      : lines.join("\r\n");
    const { res } = await rawRequest(loom.port, data);
    assert.ok(res !== null, "a response");
    status = res.status;
    responseFields = res.fields.map(([k, v]) => [k.toLowerCase(), v]);
  } else {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h2cPort });
    const h2 = H2Connection.client(conn);
    try {
      const f = [":method", grpc ? "POST" : "GET", ":scheme", "http", ":authority", "gw.test", ":path", path];
      for (const [k, v] of SENT) f.push(k, v);
      if (grpc) f.push("content-type", "application/grpc+proto");
      const s = h2.request(f, !grpc);
      if (grpc) {
        await s.write(GRPC_FRAME);
        await s.end(null);
      }
      const head = await s.response;
      while (await s.read() !== null) { /* drain */ }
      status = Number(head[1]);
      responseFields = [];
      for (let i = 0; i < head.length; i += 2) {
        if (head[i][0] !== ":") responseFields.push([head[i], head[i + 1]]);
      }
    } finally {
      h2.destroy();
    }
  }
  let fields: [string, string][] = [];
  let authority = "";
  if (up === "h1") {
    assert.equal(ups.h1.requests.length, before.h1 + 1, "one request upstream");
    for (const [k, v] of ups.h1.requests[before.h1].fields) {
      if (k.toLowerCase() === "host") authority = v;
      else fields.push([k.toLowerCase(), v]);
    }
  } else {
    const srv = up === "h2" ? ups.h2 : ups.h2c;
    assert.equal(srv.seen.length, (up === "h2" ? before.h2 : before.h2c) + 1, "one request upstream");
    const f = srv.seen[srv.seen.length - 1];
    for (let i = 0; i < f.length; i += 2) {
      if (f[i] === ":authority") authority = f[i + 1];
      else if (f[i][0] !== ":") fields.push([f[i], f[i + 1]]);
    }
  }
  fields = fields.filter(([k]) => k !== "content-length" && k !== "grpc-timeout" && k !== "content-type");
  const via = responseFields.filter(([k]) => k === "via").map(([, v]) => v).join(", ") || undefined;
  return { fields, authority, via, status, responseFields };
}

const ID = /^[0-9a-f]{16}-[0-9a-f]+$/;

itest(
  "header policy end to end: HTTP/1.1 and HTTP/2 clients × HTTP/1.1, h2c, h2 and gRPC upstreams, trusted or not",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const backend = await ca.leaf("backend", "backend.test", ["DNS:backend.test"]);
    const h1 = startUpstream({
      raw: async (c) => {
        for (;;) {
          const req = await c.nextRequest();
          if (req === null) return c.close();
          await c.write(
            "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nVia: 1.1 up\r\nContent-Length: 2\r\n\r\nok",
          );
        }
      },
    });
    const h2c = h2Upstream();
    const h2 = h2Upstream(backend);
    const ups = { h1, h2c, h2 };
    const config = (trusted: string) => {
      const h2cPort = freePort();
      return {
        h2cPort,
        yaml: `
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2cPort}", protocol: h2c }
${trusted}
upstreams:
  - { name: h1, endpoints: ["${h1.address}"] }
  - { name: h2c, protocol: h2c, endpoints: ["127.0.0.1:${h2c.port}"] }
  - name: h2
    protocol: h2
    endpoints: ["127.0.0.1:${h2.port}"]
    tls: { ca_file: "${ca.cert}", server_name: backend.test }
routes:
  - { id: h1, path: "/h1/*", upstream: h1 }
  - { id: h2c, path: "/h2c/*", upstream: h2c }
  - { id: h2, path: "/h2/*", upstream: h2, preserve_host: false }
  - { id: grpc, path: "/test.Svc/*", upstream: h2c, host_rewrite: grpc.internal }
`,
      };
    };
    const plain = config("");
    const trusting = config('trusted_proxies: ["127.0.0.0/8", "2001:db8::/32"]');
    const looms = [await startLoom(plain.yaml), await startLoom(trusting.yaml)];
    try {
      for (const [li, loom] of looms.entries()) {
        const trusted = li === 1;
        const h2cPort = trusted ? trusting.h2cPort : plain.h2cPort;
        for (const client of ["h1", "h2"] as const) {
          for (const up of ["h1", "h2c", "h2", "grpc"] as const) {
            const pair = `${client} client → ${up} upstream${trusted ? ", trusted" : ""}`;
            const x = await exchange(loom, h2cPort, client, up, ups);
            assert.equal(x.status, 200, pair);
            // Host / :authority: the client's (preserve_host, the default), the endpoint's, host_rewrite.
            const authority = up === "h2"
              ? `127.0.0.1:${h2.port}`
              : up === "grpc"
              ? "grpc.internal"
              : "gw.test";
            assert.equal(x.authority, authority, `${pair}: Host / :authority`);
            const ids = x.fields.filter(([k]) => k === "x-request-id").map(([, v]) => v);
            assert.equal(ids.length, 1, `${pair}: one x-request-id`);
            assert.match(ids[0], ID, `${pair}: Loom's id, never the rejected "bad id"`);
            const fwd = "for=127.0.0.1;proto=http;host=gw.test";
            assert.deepEqual(x.fields.filter(([k]) => k !== "x-request-id"), [
              ["x-keep", "k"],
              ["x-forwarded-for", trusted ? "203.0.113.9, 127.0.0.1" : "127.0.0.1"],
              ["x-forwarded-proto", "http"],
              ["x-forwarded-host", "gw.test"],
              ["forwarded", trusted ? "for=203.0.113.9, " + fwd : fwd],
              ["via", `1.1 edge, ${client === "h1" ? "1.1" : "2"} loom`],
              ["te", "trailers"],
            ], pair);
            // The response rule: hop-by-hop and Connection-listed fields out, Via names the upstream's version.
            assert.equal(x.via, up === "h1" ? "1.1 up, 1.1 loom" : "2 up, 2 loom", `${pair}: response Via`);
            const names = x.responseFields.map(([k]) => k);
            assert.ok(!names.includes("x-hop") && !names.includes("keep-alive"), `${pair}: ${names}`);
          }
        }
      }
      // A client id Loom accepts goes upstream as it is, once, over HTTP/1.1 and HTTP/2 upstreams alike.
      for (const up of ["h1", "h2c"] as const) {
        const { res } = await rawRequest(looms[0].port, {
          target: `/${up}/id`,
          headers: { "X-Request-ID": "client-id-7" },
        });
        assert.equal(res?.status, 200);
        const got = up === "h1"
          ? fieldValues(h1.requests[h1.requests.length - 1], "x-request-id")
          : h2c.seen[h2c.seen.length - 1].filter((_, i, f) => i % 2 === 1 && f[i - 1] === "x-request-id");
        assert.deepEqual(got, ["client-id-7"], up);
      }
    } finally {
      for (const l of looms) await l.close();
      h1.close();
      await h2c.close();
      await h2.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
