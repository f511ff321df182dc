/**
 * gRPC-Web through the gateway, translated to gRPC towards a python grpcio
 * upstream: binary and text flavours, over HTTP/1.1 and HTTP/2 (h2c
 * listener), hand-built frames over fetch; trailers arrive as the flagged
 * last frame; CORS preflight and exposed headers for browsers.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { startGrpcServer } from "./grpc_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function frame(payload: Uint8Array, flags = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/** Splits a gRPC-Web body into messages and the trailer block. */
function parseFrames(body: Uint8Array): { messages: string[]; trailers: Record<string, string> } {
  const messages: string[] = [];
  const trailers: Record<string, string> = {};
  let o = 0;
  while (o + 5 <= body.length) {
    const flags = body[o];
    const len = new DataView(body.buffer, body.byteOffset + o + 1, 4).getUint32(0);
    const payload = body.subarray(o + 5, o + 5 + len);
    o += 5 + len;
    if (flags & 0x80) {
      for (const line of dec.decode(payload).split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) trailers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
    } else messages.push(dec.decode(payload));
  }
  return { messages, trailers };
}

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

itest("grpc-web: binary and text, HTTP/1.1 and HTTP/2, trailers in the body, CORS", async () => {
  const up = await startGrpcServer(freePort());
  const h2Port = freePort();
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
  - name: h2
    address: "127.0.0.1:${h2Port}"
    protocol: h2c
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
`);
  const h2client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    for (
      const [base, client] of [[loom.url(""), undefined], [`http://127.0.0.1:${h2Port}`, h2client]] as const
    ) {
      // Binary, unary.
      const r1 = await fetch(`${base}/test.Echo/Unary`, {
        method: "POST",
        client,
        headers: {
          "content-type": "application/grpc-web+proto",
          "x-grpc-web": "1",
          origin: "https://app.example",
        },
        body: frame(enc.encode("web")),
      });
      assert.equal(r1.status, 200);
      assert.equal(r1.headers.get("content-type"), "application/grpc-web+proto");
      assert.equal(r1.headers.get("access-control-allow-origin"), "https://app.example");
      assert.match(r1.headers.get("access-control-expose-headers") ?? "", /grpc-status/);
      const p1 = parseFrames(new Uint8Array(await r1.arrayBuffer()));
      assert.deepEqual(p1.messages, ["echo:web"]);
      assert.equal(p1.trailers["grpc-status"], "0");
      assert.equal(p1.trailers["x-trailer"], "t1");
      // Text, server streaming (base64 in, base64 out).
      const r2 = await fetch(`${base}/test.Echo/ServerStream`, {
        method: "POST",
        client,
        headers: { "content-type": "application/grpc-web-text", "x-grpc-web": "1" },
        body: b64(frame(enc.encode("3"))),
      });
      assert.equal(r2.headers.get("content-type"), "application/grpc-web-text");
      const p2 = parseFrames(unb64(await r2.text()));
      assert.deepEqual(p2.messages, ["msg-0", "msg-1", "msg-2"]);
      assert.equal(p2.trailers["x-sent"], "3");
      // An upstream error: trailers-only becomes grpc-status in the response head.
      const r3 = await fetch(`${base}/test.Echo/Fail`, {
        method: "POST",
        client,
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: frame(new Uint8Array(0)),
      });
      assert.equal(r3.status, 200);
      assert.equal(r3.headers.get("grpc-status"), "5");
      assert.equal(r3.headers.get("grpc-message"), "no such thing");
      await r3.body?.cancel();
      // Unrouted method: a gateway error as a gRPC status.
      const r4 = await fetch(`${base}/test.Nope/X`, {
        method: "POST",
        client,
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: frame(new Uint8Array(0)),
      });
      assert.equal(r4.status, 200);
      assert.equal(r4.headers.get("grpc-status"), "12");
      await r4.body?.cancel();
    }
    // The grpc-status sent, read from the trailer frame (binary and text) or the head (trailers-only).
    const metrics = await (await fetch(loom.admin("/metrics"))).text();
    const grpc = (route: string, grpc_status: string) =>
      metricValue(metrics, "loom_grpc_responses_total", { route, grpc_status });
    assert.equal(grpc("echo", "0"), 4, metrics);
    assert.equal(grpc("echo", "5"), 2, metrics);
    assert.equal(grpc("", "12"), 2, metrics);
    assert.equal(grpc("echo", "none"), 0, metrics);
    // CORS preflight from a browser.
    const pre = await fetch(loom.url("/test.Echo/Unary"), {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
      },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /x-grpc-web/);
    await pre.body?.cancel();
  } finally {
    h2client.close();
    await loom.close();
    await up.close();
  }
}, { needs: ["python3 grpc"] });
