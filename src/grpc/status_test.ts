import assert from "node:assert/strict";
import { EMPTY_BODY, type ResponseWriter } from "../core/body.ts";
import { type GrpcKind, RequestContext } from "../core/context.ts";
import { HeaderList } from "../core/headers.ts";
import { grpcStatusLabel, watchGrpcStatus } from "./status.ts";
import { Base64Encoder, trailerFrame } from "./web.ts";

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
