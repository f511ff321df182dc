import assert from "node:assert/strict";
import { encodeGrpcMessage, grpcKindOf, grpcStatusForHttp } from "./grpc_reply.ts";

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
