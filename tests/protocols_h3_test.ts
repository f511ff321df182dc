/**
 * HTTP/3 at the edge with an independent client: ngtcp2's `gtlsclient`
 * (Debian ngtcp2-client; nghttp3 for HTTP/3 and QPACK) through the http3
 * listener (Deno.QuicEndpoint + src/http3) to an HTTP/1.1 upstream.
 * gtlsclient does not verify the server certificate, so the test CA only
 * gives the listener a realistic chain. A small Deno.connectQuic client
 * (which does verify it) sends what gtlsclient cannot: custom, oversized,
 * malformed and dynamic-table header sections; it also watches for GOAWAY.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, type TestLoom, writeConfig } from "./helpers.ts";
import { TestCa } from "./tls_util.ts";
import { postReload } from "./gateway_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";
import { decodeSettings, decodeSingleVarint, encodeFrame, FrameType } from "../src/http3/frame.ts";
import { GET, h3Client } from "./h3_client.ts";

const GTLSCLIENT = "/usr/bin/gtlsclient";

/** Runs gtlsclient against 127.0.0.1:port; `uris` are paths. Killed after 20 s. */
async function gtls(
  port: number,
  uris: string[],
  extra: string[] = [],
): Promise<{ ok: boolean; out: string }> {
  const args = [
    "--exit-on-all-streams-close",
    "--no-quic-dump",
    "--timeout=10s",
    ...extra,
    "127.0.0.1",
    String(port),
    ...uris.map((u) => `https://localhost:${port}${u}`),
  ];
  const child = new Deno.Command(GTLSCLIENT, { args, stdout: "piped", stderr: "piped" }).spawn();
  const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const o = await child.output();
  clearTimeout(t);
  return { ok: o.success, out: new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr) };
}

/** `[:status: N]` lines of a gtlsclient run, per stream id. */
function statuses(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const x of out.matchAll(/stream (0x[0-9a-f]+) \[:status: (\d+)\]/g)) m.set(x[1], x[2]);
  return m;
}

interface Fixture {
  loom: TestLoom;
  up: TestUpstream;
  h3Port: number;
  dir: string;
  close(): Promise<void>;
}

/** Loom with an http3 listener routing /echo/* and /hdr/* to an HTTP/1.1 upstream (no route elsewhere). */
async function fixture(): Promise<Fixture> {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const cert = await ca.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
  const up = startUpstream(async (req) => {
    const u = new URL(req.url);
    if (u.pathname.startsWith("/hdr")) {
      // What the gateway told the upstream about the client hop.
      return Response.json({
        proto: req.headers.get("x-forwarded-proto"),
        via: req.headers.get("via"),
        path: u.pathname,
      });
    }
    const body = new Uint8Array(await req.arrayBuffer());
    return new Response(body, {
      headers: { "x-method": req.method, "x-body-length": String(body.length), "x-path": u.pathname },
    });
  });
  const h3Port = freePort();
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }
    http2: { max_concurrent_streams: 20, max_header_list_size: 16KB }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: echo, path: "/echo/*", upstream: up }
  - { id: hdr, path: "/hdr/*", upstream: up }
`);
  return {
    loom,
    up,
    h3Port,
    dir,
    close: async () => {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

itest(
  "http3 listener: GET through gtlsclient; the request context says HTTP/3 (Via, X-Forwarded-Proto)",
  async () => {
    const f = await fixture();
    try {
      const r = await gtls(f.h3Port, ["/hdr/one"]);
      assert.ok(r.ok, r.out);
      assert.match(r.out, /Negotiated ALPN is h3/);
      assert.match(r.out, /\[:status: 200\]/, r.out);
      assert.match(r.out, /"proto":"https"/, r.out);
      assert.match(r.out, /"via":"3 loom"/, r.out);
      // The response's Via names the version of the response Loom received (RFC 9110 7.6.3): the upstream's.
      assert.match(r.out, /\[via: 1\.1 loom\]/, r.out);
    } finally {
      await f.close();
    }
  },
  { needs: ["openssl", "gtlsclient"] },
);

itest(
  "http3 listener: POST of 1 MiB is echoed back byte for byte",
  async () => {
    const f = await fixture();
    try {
      const data = crypto.getRandomValues(new Uint8Array(65536));
      const body = new Uint8Array(1024 * 1024);
      for (let i = 0; i < 16; i++) body.set(data, i * 65536);
      body[12345] ^= 0x5a; // not a pure repetition
      const src = `${f.dir}/body.bin`;
      Deno.writeFileSync(src, body);
      const down = `${f.dir}/down`;
      Deno.mkdirSync(down);
      const r = await gtls(f.h3Port, ["/echo/big.bin"], [
        "-m",
        "POST",
        "-d",
        src,
        "--download",
        down,
        "--no-http-dump",
      ]);
      assert.ok(r.ok, r.out);
      assert.match(r.out, /\[:status: 200\]/, r.out);
      assert.match(r.out, /\[x-method: POST\]/);
      assert.match(r.out, /\[x-body-length: 1048576\]/);
      const got = Deno.readFileSync(`${down}/big.bin`);
      assert.equal(got.length, body.length);
      assert.deepEqual(got, body);
    } finally {
      await f.close();
    }
  },
  { needs: ["openssl", "gtlsclient"] },
);

itest(
  "http3 listener: no route is 404; concurrent requests on one connection all answered",
  async () => {
    const f = await fixture();
    try {
      const nf = await gtls(f.h3Port, ["/nowhere"]);
      assert.ok(nf.ok, nf.out);
      assert.match(nf.out, /\[:status: 404\]/, nf.out);
      // 30 requests (more than max_concurrent_streams 20: QUIC stream credit makes the rest wait).
      const uris = Array.from({ length: 30 }, (_, i) => `/echo/c${i}`);
      const r = await gtls(f.h3Port, uris, ["--no-http-dump"]);
      assert.ok(r.ok, r.out);
      const st = statuses(r.out);
      assert.equal(st.size, 30, r.out);
      for (const s of st.values()) assert.equal(s, "200");
      for (let i = 0; i < 30; i++) assert.match(r.out, new RegExp(`\\[x-path: /echo/c${i}\\]`));
      assert.ok(f.up.seen.length >= 30);
    } finally {
      await f.close();
    }
  },
  { needs: ["openssl", "gtlsclient"] },
);

/** A raw HTTP/1.1 upstream answering with a chunked body and a trailer (Deno.serve cannot send trailers). */
function trailerUpstream(): { address: string; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) {
      (async () => {
        await c.read(new Uint8Array(65536));
        await c.write(new TextEncoder().encode(
          "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n" +
            "5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n",
        ));
        c.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return { address: `127.0.0.1:${(l.addr as Deno.NetAddr).port}`, close: () => l.close() };
}

itest(
  "http3 listener: upstream trailers reach the client as a trailing HEADERS frame",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const up = trailerUpstream();
    const h3Port = freePort();
    const loom = await startLoom(`
listeners:
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: all, path: "/*", upstream: up }
`);
    try {
      const r = await gtls(h3Port, ["/t"]);
      assert.ok(r.ok, r.out);
      assert.match(r.out, /\[:status: 200\]/, r.out);
      assert.match(r.out, /body 5 bytes/);
      assert.match(r.out, /trailers started\n.*\[x-checksum: abc123\]\n.*trailers ended/, r.out);
      assert.match(r.out, /HTTP stream 0 closed with error code 256/); // H3_NO_ERROR
    } finally {
      await loom.close();
      up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "gtlsclient"] },
);

itest(
  "http3 listener: 431 over the header limit, 400 for malformed requests, QPACK dynamic refs close the connection",
  async () => {
    const f = await fixture();
    try {
      const c = await h3Client(f.h3Port, Deno.readTextFileSync(`${f.dir}/ca.pem`));
      const ok = await c.request(GET("/hdr/x", ["x-small", "1"]));
      assert.equal(ok.fields[1], "200");
      // The listener's http2.max_header_list_size (16KB) applies to HTTP/3 field sections too.
      const big = await c.request(GET("/hdr/x", ["x-big", "a".repeat(20_000)]));
      assert.equal(big.fields[1], "431");
      const before = f.up.seen.length;
      for (
        const bad of [
          GET("/hdr/x", ["X-Upper", "1"]), // upper-case name
          GET("/hdr/x", ["connection", "close"]), // connection-specific
          [":method", "GET", ":scheme", "https", ":authority", "localhost"], // no :path
          [":method", "GET", ":scheme", "https", ":path", "/", ":status", "200"], // response pseudo-header
          ["x-a", "1", ":method", "GET", ":scheme", "https", ":authority", "l", ":path", "/"], // pseudo after regular
        ]
      ) {
        const r = await c.request(bad);
        assert.equal(r.fields[1], "400", JSON.stringify(bad));
        assert.match(r.body, /malformed request/);
      }
      assert.equal(f.up.seen.length, before, "malformed requests never reach the upstream");
      // The server's control stream opened with SETTINGS: QPACK table capacity 0, no blocked streams.
      assert.equal(c.serverFrames[0].type, FrameType.SETTINGS);
      assert.deepEqual(decodeSettings(c.serverFrames[0].payload), new Map([[0x01, 0], [0x07, 0]]));
      // An indexed field line into the dynamic table: connection error QPACK_DECOMPRESSION_FAILED (0x200).
      await assert.rejects(c.request([], encodeFrame(FrameType.HEADERS, new Uint8Array([0, 0, 0x80]))));
      const closed = await c.conn.closed;
      assert.equal(closed.closeCode, 0x200);
    } finally {
      await f.close();
    }
  },
  { needs: ["openssl"] },
);

itest(
  "http3 listener: shutdown sends GOAWAY and lets the request in flight finish",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const up = startUpstream(async () => {
      await new Promise((r) => setTimeout(r, 400));
      return new Response("slow but complete");
    });
    const h3Port = freePort();
    const loom = await startLoom(`
listeners:
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: all, path: "/*", upstream: up }
`);
    try {
      const c = await h3Client(h3Port, Deno.readTextFileSync(ca.cert));
      const inFlight = c.request(GET("/slow"));
      await new Promise((r) => setTimeout(r, 100));
      const shutdown = loom.close();
      const res = await inFlight;
      assert.equal(res.fields[1], "200");
      assert.equal(res.body, "slow but complete");
      const goaway = c.serverFrames.find((x) => x.type === FrameType.GOAWAY);
      assert.ok(goaway !== undefined, "GOAWAY on the control stream");
      // The in-flight request was stream 0: the GOAWAY names the next one (4) as the first not served.
      assert.equal(decodeSingleVarint(goaway.payload), 4);
      const closed = await c.conn.closed;
      assert.equal(closed.closeCode, 0x100); // H3_NO_ERROR
      await shutdown;
    } finally {
      await loom.close().catch(() => {});
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

itest("http3 listener: idle_timeout closes a connection without requests (QUIC idle timeout)", async () => {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
  const h3Port = freePort();
  const loom = await startLoom(`
listeners:
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }
    idle_timeout: 300ms
upstreams:
  - name: up
    endpoints: ["127.0.0.1:9"]
routes:
  - { id: all, path: "/*", upstream: up }
`);
  try {
    const c = await h3Client(h3Port, Deno.readTextFileSync(ca.cert));
    const t0 = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      c.conn.closed.then(() => "closed", () => "closed"),
      new Promise((r) => timer = setTimeout(() => r("still open"), 5000)),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "closed");
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    await loom.close();
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });

itest(
  "http3 listener: renewed certificate files are picked up on reload; open connections keep working",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const oldCert = await ca.leaf("old", "old.test", ["DNS:old.test"]);
    const newCert = await ca.leaf("new", "localhost", ["DNS:localhost"]);
    const certFile = `${dir}/live.pem`, keyFile = `${dir}/live.key`;
    Deno.copyFileSync(oldCert.cert, certFile);
    Deno.copyFileSync(oldCert.key, keyFile);
    const up = startUpstream(() => new Response("ok"));
    const h3Port = freePort();
    const loom = await startLoom(`
listeners:
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${certFile}", key_file: "${keyFile}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: all, path: "/*", upstream: up }
`);
    const connect = (serverName: string): Promise<Deno.QuicConn> =>
      Deno.connectQuic<false>({
        hostname: "127.0.0.1",
        port: h3Port,
        serverName,
        alpnProtocols: ["h3"],
        caCerts: [Deno.readTextFileSync(ca.cert)],
      });
    try {
      const before = await h3Client(h3Port, Deno.readTextFileSync(ca.cert)).catch(() => null);
      assert.equal(before, null, "the old certificate does not name localhost");
      const old = await h3Client(h3Port, Deno.readTextFileSync(ca.cert), "old.test");
      Deno.copyFileSync(newCert.cert, certFile);
      Deno.copyFileSync(newCert.key, keyFile);
      const res = await fetch(loom.admin("/reload"), { method: "POST", headers: { "X-Loom-Admin": "1" } });
      assert.equal(res.status, 200, await res.text());
      const c = await h3Client(h3Port, Deno.readTextFileSync(ca.cert));
      assert.equal((await c.request(GET("/x"))).fields[1], "200");
      await assert.rejects(connect("old.test"), "new handshakes get the new certificate");
      // The connection made before the reload is still served.
      assert.equal((await old.request(GET("/y"))).fields[1], "200");
      old.conn.close();
      c.conn.close();
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);

itest(
  "http3 listener: a reload that changes the listener reuses its UDP socket; old connections drain",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const up = startUpstream(async (req) => {
      if (new URL(req.url).pathname === "/slow") await new Promise((r) => setTimeout(r, 500));
      return new Response("ok");
    });
    const h3Port = freePort();
    const config = (idle: string) => `
listeners:
  - name: h3
    address: "127.0.0.1:${h3Port}"
    protocol: http3
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }
    idle_timeout: ${idle}
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - { id: all, path: "/*", upstream: up }
`;
    const loom = await startLoom(config("60s"));
    try {
      const old = await h3Client(h3Port, Deno.readTextFileSync(ca.cert));
      const inFlight = old.request(GET("/slow"));
      await new Promise((r) => setTimeout(r, 100));
      Deno.writeTextFileSync(loom.configPath, config("30s"));
      const res = await fetch(loom.admin("/reload"), { method: "POST", headers: { "X-Loom-Admin": "1" } });
      const body = await res.text();
      assert.equal(res.status, 200, body);
      assert.doesNotMatch(body, /AddrInUse|in use/i);
      // The request in flight on the replaced listener finishes; new connections reach the new one.
      assert.equal((await inFlight).fields[1], "200");
      const fresh = await h3Client(h3Port, Deno.readTextFileSync(ca.cert));
      assert.equal((await fresh.request(GET("/x"))).fields[1], "200");
      const r = await gtls(h3Port, ["/y"]);
      assert.match(r.out, /\[:status: 200\]/, r.out);
      fresh.conn.close();
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "gtlsclient"] },
);

itest(
  "http3 listener: TLS listeners advertise it with Alt-Svc (same port first), and stop after a reload removes it",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const up = startUpstream(() => new Response("ok"));
    const h2Port = freePort();
    const tls = `tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" }`;
    const listeners = (h3: boolean) =>
      `listeners:
  - { name: fast, address: "127.0.0.1:\${PORT}", protocol: https, ${tls} }
  - name: h2
    address: "127.0.0.1:${h2Port}"
    protocol: https
    tls: { cert_file: "${cert.cert}", key_file: "${cert.key}", alpn: [h2, http/1.1] }
` + (h3 ? `  - { name: quic, address: "127.0.0.1:${h2Port}", protocol: http3, ${tls} }\n` : "");
    const rest = `upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: r, path: /*, upstream: up }]
`;
    const loom = await startLoom(listeners(true) + rest);
    const altSvc = async (port: number, http2: boolean) => {
      const args = ["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-", "--cacert", ca.cert];
      args.push(http2 ? "--http2" : "--http1.1", "--resolve", `localhost:${port}:127.0.0.1`);
      const out = await new Deno.Command("curl", {
        args: [...args, `https://localhost:${port}/x`],
        stdout: "piped",
      })
        .output();
      const head = new TextDecoder().decode(out.stdout);
      return head.match(/^alt-svc: (.*)\r$/im)?.[1] ?? null;
    };
    try {
      // The h2 listener shares its port number with the HTTP/3 one; the fast path gets the only HTTP/3 port.
      assert.equal(await altSvc(h2Port, true), `h3=":${h2Port}"; ma=86400`);
      assert.equal(await altSvc(h2Port, false), `h3=":${h2Port}"; ma=86400`);
      assert.equal(await altSvc(loom.port, false), `h3=":${h2Port}"; ma=86400`);
      writeConfig(loom, listeners(false) + rest);
      assert.equal((await postReload(loom)).status, 200);
      assert.equal(await altSvc(loom.port, false), null);
      assert.equal(await altSvc(h2Port, true), null);
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);
