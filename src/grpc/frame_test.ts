import assert from "node:assert/strict";
import { grpcFrame, grpcFrameLength } from "./frame.ts";

Deno.test("gRPC frames: flag, big-endian length, payload; the length reads back once the prefix is whole", () => {
  const f = grpcFrame(new Uint8Array([1, 2, 3]), 0x80);
  assert.deepEqual([...f], [0x80, 0, 0, 0, 3, 1, 2, 3]);
  assert.equal(grpcFrameLength(f, 0), 3);
  assert.equal(grpcFrameLength(f.subarray(0, 4), 0), -1);
  assert.equal(grpcFrameLength(grpcFrame(new Uint8Array(0x10203)), 0), 0x10203);
  assert.equal(grpcFrameLength(new Uint8Array([7, 0, 0xff, 0xff, 0xff, 0xff]), 1), 0xffffffff);
});
