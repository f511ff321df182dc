import assert from "node:assert/strict";
import {
  encodeGrpcMessage,
  formatGrpcTimeout,
  grpcKindOf,
  grpcStatusForHttp,
  grpcStatusLabel,
  parseGrpcTimeout,
  watchGrpcStatus,
} from "./grpc.ts";
import { EMPTY_BODY, type ResponseWriter } from "../core/body.ts";
import { type GrpcKind, RequestContext } from "../core/context.ts";
import { Base64Decoder, Base64Encoder, trailerFrame } from "./grpc_web.ts";
import { HeaderList } from "../core/headers.ts";
import { nameMatches } from "../listeners/tls.ts";

Deno.test("grpcKindOf: native, web, web-text, others", () => {
  assert.equal(grpcKindOf("application/grpc"), 1);
  assert.equal(grpcKindOf("application/grpc+proto"), 1);
  assert.equal(grpcKindOf("application/grpc;charset=utf-8"), 1);
  assert.equal(grpcKindOf("application/grpc-web"), 2);
  assert.equal(grpcKindOf("application/grpc-web+proto"), 2);
  assert.equal(grpcKindOf("application/grpc-web-text"), 3);
  assert.equal(grpcKindOf("application/grpcx"), 0);
  assert.equal(grpcKindOf("application/json"), 0);
  assert.equal(grpcKindOf(undefined), 0);
});

Deno.test("grpc-timeout: parse every unit, reject junk, format back", () => {
  assert.equal(parseGrpcTimeout("1H"), 3_600_000);
  assert.equal(parseGrpcTimeout("2M"), 120_000);
  assert.equal(parseGrpcTimeout("3S"), 3000);
  assert.equal(parseGrpcTimeout("250m"), 250);
  assert.equal(parseGrpcTimeout("1500u"), 2);
  assert.equal(parseGrpcTimeout("1000000n"), 1);
  for (const bad of [undefined, "", "5", "x5m", "-1m", "123456789m", "5x"]) {
    assert.equal(parseGrpcTimeout(bad), -1);
  }
  assert.equal(formatGrpcTimeout(1234.5), "1234m");
  assert.equal(formatGrpcTimeout(0), "1m");
  assert.equal(formatGrpcTimeout(200_000_000), "200000S");
});

Deno.test("gateway errors map onto gRPC statuses; grpc-message is percent-encoded", () => {
  assert.equal(grpcStatusForHttp(404), 12);
  assert.equal(grpcStatusForHttp(503), 14);
  assert.equal(grpcStatusForHttp(502), 14);
  assert.equal(grpcStatusForHttp(504), 4);
  assert.equal(grpcStatusForHttp(429), 8);
  assert.equal(grpcStatusForHttp(401), 16);
  assert.equal(grpcStatusForHttp(403), 7);
  assert.equal(grpcStatusForHttp(500), 2);
  assert.equal(encodeGrpcMessage("100% ok\nné"), "100%25 ok%0An%C3%A9");
});

Deno.test("gRPC-Web text: base64 streaming survives any chunking and padded segments", () => {
  const data = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
  for (const step of [1, 2, 3, 5, 64, 1000]) {
    const e = new Base64Encoder();
    let text = "";
    for (let i = 0; i < data.length; i += step) {
      text += new TextDecoder().decode(e.push(data.subarray(i, i + step)));
    }
    text += new TextDecoder().decode(e.flush());
    assert.equal(text, btoa(String.fromCharCode(...data)));
    const d = new Base64Decoder();
    const out: number[] = [];
    const bytes = new TextEncoder().encode(text);
    for (let i = 0; i < bytes.length; i += step) out.push(...d.push(bytes.subarray(i, i + step)));
    assert.deepEqual(new Uint8Array(out), data);
  }
  // Two padded segments back to back (clients may send each message separately encoded).
  const d = new Base64Decoder();
  assert.deepEqual([...d.push(new TextEncoder().encode(btoa("a") + btoa("bc")))], [97, 98, 99]);
});

Deno.test("gRPC-Web trailer frame: flag 0x80, lower-case name: value lines", () => {
  const f = trailerFrame(HeaderList.from([["grpc-status", "0"], ["x-a", "b"]]));
  assert.equal(f[0], 0x80);
  assert.equal(new TextDecoder().decode(f.subarray(5)), "grpc-status: 0\r\nx-a: b\r\n");
  assert.equal(new DataView(f.buffer).getUint32(1), f.length - 5);
});

Deno.test("SNI wildcard names cover exactly one label", () => {
  assert.ok(nameMatches("*.example.com", "api.example.com"));
  assert.ok(!nameMatches("*.example.com", "example.com"));
  assert.ok(!nameMatches("*.example.com", "a.b.example.com"));
  assert.ok(nameMatches("example.com", "example.com"));
});

/** A gRPC request context whose response goes nowhere. */
function grpcCtx(kind: GrpcKind): RequestContext {
  const sink: ResponseWriter = {
    headSent: false,
    writeHead() {},
    write: () => Promise.resolve(),
    end: () => Promise.resolve(),
    abort() {},
  };
  const ctx = new RequestContext(
    "POST",
    "/s/M",
    "h",
    "http",
    "HTTP/2",
    new HeaderList(),
    EMPTY_BODY,
    sink,
    "",
    0,
    "l",
  );
  ctx.grpc = kind;
  watchGrpcStatus(ctx);
  return ctx;
}

Deno.test("watchGrpcStatus: status from trailers, a trailers-only head, gRPC-Web frames (binary, text)", async () => {
  const t = (code: string) => HeaderList.from([["grpc-status", code], ["grpc-message", "m"]]);
  const native = grpcCtx(1);
  assert.equal(grpcStatusLabel(native), "none");
  native.res.writeHead(200, new HeaderList(), -1);
  await native.res.end(t("7"));
  assert.equal(grpcStatusLabel(native), "7");

  const only = grpcCtx(1);
  only.res.writeHead(200, t("14"), 0);
  assert.equal(grpcStatusLabel(only), "14");

  const web = grpcCtx(2);
  await web.res.write(new Uint8Array([0, 0, 0, 0, 1, 0x80])); // a message starting with 0x80: not a trailer frame
  assert.equal(grpcStatusLabel(web), "none");
  await web.res.write(trailerFrame(t("5")));
  assert.equal(grpcStatusLabel(web), "5");

  const text = grpcCtx(3);
  const enc = new Base64Encoder();
  enc.push(new Uint8Array([0, 0, 0, 0, 1, 9])); // leaves 0 bytes pending; next run starts at the frame
  enc.push(new Uint8Array([0, 0, 0, 0, 1])); // 2 bytes of a message pending in the encoder
  const tail = enc.push(trailerFrame(t("0")));
  const flushed = enc.flush();
  const last = new Uint8Array(tail.length + flushed.length);
  last.set(tail);
  last.set(flushed, tail.length);
  await text.res.write(last);
  assert.equal(grpcStatusLabel(text), "0");

  const odd = grpcCtx(1);
  odd.res.writeHead(200, t("99"), 0);
  assert.equal(grpcStatusLabel(odd), "other");
});
