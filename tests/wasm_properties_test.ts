/**
 * Connection, destination and xds properties as Envoy encodes them (strings
 * raw, integers 8-byte little-endian, booleans one byte), read by a plugin
 * that echoes them as hex into response headers, over an mTLS listener
 * (HTTP/1.1 and HTTP/2) and a plain one.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { RawClient } from "./http1_util.ts";
import { curl, TestCa } from "./tls_util.ts";
import { PLUGINS } from "./wasm_util.ts";
import { startUpstream } from "./upstream.ts";

const enc = new TextEncoder();
const PATHS = [
  "connection.mtls",
  "connection.subject_peer_certificate",
  "connection.uri_san_peer_certificate",
  "connection.dns_san_peer_certificate",
  "connection.requested_server_name",
  "destination.address",
  "destination.port",
  "xds.route_name",
  "xds.cluster_name",
  "xds.node",
  "route_name",
];

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
const s = (v: string) => hex(enc.encode(v));
function i64(n: number): string {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(n), true);
  return hex(b);
}

/** x-prop-<a+i> of a header dump, by property path. */
function props(dump: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of dump.split(/\r?\n/)) {
    const m = /^x-prop-([a-z]):\s?(.*)$/i.exec(line);
    if (m) out[PATHS[m[1].toLowerCase().charCodeAt(0) - 97]] = m[2].trim();
  }
  return out;
}

itest(
  "wasm properties: connection.*, destination.* and xds.* over mTLS (HTTP/1.1, HTTP/2)",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const server = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const alice = await ca.leaf("alice", "alice", ["DNS:alice.example", "URI:spiffe://loom/alice"]);
    const up = startUpstream(() => new Response("ok"));
    const plugin = JSON.stringify({
      name: "props",
      path: PLUGINS + "props.wasm",
      phase: "on_response_headers",
      config: PATHS.join("\n"),
    });
    const loom = await startLoom(`
listeners:
  - name: mtls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls:
      cert_file: "${server.cert}"
      key_file: "${server.key}"
      client_auth: require
      client_ca_file: "${ca.cert}"
upstreams: [{ name: app, endpoints: ["${up.address}"] }]
routes: [{ id: p, path: /p/*, upstream: app, plugins: [props] }]
plugins: [${plugin}]
`);
    try {
      const base = ["--cacert", ca.cert, "--resolve", `localhost:${loom.port}:127.0.0.1`];
      const cert = ["--cert", alice.cert, "--key", alice.key];
      const url = `https://localhost:${loom.port}/p/x`;
      for (const proto of ["--http1.1", "--http2"]) {
        const r = await curl([...base, ...cert, proto, "-D", "-", "-o", "/dev/null", url]);
        assert.ok(r.ok, r.stderr);
        assert.deepEqual(props(r.stdout), {
          "connection.mtls": "01",
          "connection.subject_peer_certificate": s("CN=alice"),
          "connection.uri_san_peer_certificate": s("spiffe://loom/alice"),
          "connection.dns_san_peer_certificate": s("alice.example"),
          "connection.requested_server_name": s("localhost"),
          "destination.address": s(`127.0.0.1:${loom.port}`),
          "destination.port": i64(loom.port),
          "xds.route_name": s("p"),
          "xds.cluster_name": s("app"),
          "xds.node": "none",
          "route_name": s("p"),
        }, proto);
      }
    } finally {
      await loom.close();
      await up.close();
    }
  },
  { needs: ["openssl", "curl"] },
);

itest("wasm properties: a plain listener has no mTLS, no peer certificate, its own destination", async () => {
  const up = startUpstream(() => new Response("ok"));
  const plugin = JSON.stringify({
    name: "props",
    path: PLUGINS + "props.wasm",
    phase: "on_response_headers",
    config: PATHS.join("\n"),
  });
  const loom = await startLoom(`
listeners:
  - name: plain
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams: [{ name: app, endpoints: ["${up.address}"] }]
routes: [{ id: p, path: /p/*, upstream: app, plugins: [props] }]
plugins: [${plugin}]
`);
  try {
    const c = await RawClient.connect(loom.port);
    let dump: string;
    try {
      await c.write("GET /p/x HTTP/1.1\r\nHost: example.test:8080\r\n\r\n");
      dump = (await c.response()).fields.map(([k, v]) => `${k}: ${v}`).join("\n");
    } finally {
      c.close();
    }
    assert.deepEqual(props(dump), {
      "connection.mtls": "00",
      "connection.subject_peer_certificate": "none",
      "connection.uri_san_peer_certificate": "none",
      "connection.dns_san_peer_certificate": "none",
      "connection.requested_server_name": "none",
      // The listener's address, not the Host header.
      "destination.address": s(`127.0.0.1:${loom.port}`),
      "destination.port": i64(loom.port),
      "xds.route_name": s("p"),
      "xds.cluster_name": s("app"),
      "xds.node": "none",
      "route_name": s("p"),
    });
  } finally {
    await loom.close();
    await up.close();
  }
});
