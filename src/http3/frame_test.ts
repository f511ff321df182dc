import { concat } from "../net/bytes.ts";
import assert from "node:assert/strict";
import {
  decodeSettings,
  decodeSingleVarint,
  encodeFrame,
  encodeGoaway,
  encodeSettings,
  FrameType,
  H3Error,
  H3ProtocolError,
  Setting,
  StreamReader,
} from "./frame.ts";
import { encodeVarint } from "./varint.ts";

/** A source handing out `data` in pieces of `size` bytes (frames split at every boundary). */
function source(data: Uint8Array, size: number) {
  let pos = 0;
  return () => {
    if (pos >= data.length) return Promise.resolve(null);
    const c = data.slice(pos, pos + size);
    pos += size;
    return Promise.resolve(c);
  };
}

Deno.test("frame: SETTINGS round-trip; duplicates and HTTP/2 ids rejected", () => {
  const f = encodeSettings(
    new Map([[Setting.QPACK_MAX_TABLE_CAPACITY, 0], [Setting.QPACK_BLOCKED_STREAMS, 0]]),
  );
  assert.deepEqual([...f], [0x04, 0x04, 0x01, 0x00, 0x07, 0x00]);
  assert.deepEqual(decodeSettings(f.subarray(2)), new Map([[1, 0], [7, 0]]));
  // Unknown (e.g. GREASE 0x1f*N+0x21) ids are kept, and ignored by the caller.
  assert.deepEqual(decodeSettings(concat([encodeVarint(0x21), encodeVarint(5)])), new Map([[0x21, 5]]));
  const err = (p: Uint8Array, code: number) =>
    assert.throws(() => decodeSettings(p), (e) => e instanceof H3ProtocolError && e.code === code);
  err(new Uint8Array([1, 0, 1, 0]), H3Error.SETTINGS_ERROR);
  err(new Uint8Array([2, 0]), H3Error.SETTINGS_ERROR);
  err(new Uint8Array([1]), H3Error.FRAME_ERROR);
});

Deno.test("frame: GOAWAY and single-varint payloads", () => {
  const g = encodeGoaway(400);
  assert.deepEqual([...g], [0x07, 0x02, 0x41, 0x90]);
  assert.equal(decodeSingleVarint(g.subarray(2)), 400);
  assert.throws(() => decodeSingleVarint(new Uint8Array([1, 2])), H3ProtocolError);
});

Deno.test("frame: StreamReader parses frames split at every byte", async () => {
  const body = new TextEncoder().encode("hello, http/3");
  const wire = concat([
    encodeFrame(FrameType.HEADERS, new Uint8Array([0, 0, 0xd1])),
    encodeFrame(0x21, new Uint8Array(3)), // a reserved type, skipped by callers
    encodeFrame(FrameType.DATA, body),
  ]);
  for (const size of [1, 2, 3, 7, wire.length]) {
    const r = new StreamReader(source(wire, size));
    assert.deepEqual(await r.frameHeader(), { type: 1, length: 3 });
    assert.deepEqual([...await r.exact(3)], [0, 0, 0xd1]);
    assert.deepEqual(await r.frameHeader(), { type: 0x21, length: 3 });
    await r.skip(3);
    const h = await r.frameHeader();
    assert.deepEqual(h, { type: 0, length: body.length });
    const parts: Uint8Array[] = [];
    for (let left = h!.length; left > 0;) {
      const c = await r.upTo(left);
      parts.push(c.slice());
      left -= c.length;
    }
    assert.deepEqual(concat(parts), body);
    assert.equal(await r.frameHeader(), null);
    assert.equal(await r.atEnd(), true);
  }
});

Deno.test("frame: a stream ending inside a frame is H3_FRAME_ERROR", async () => {
  const wire = encodeFrame(FrameType.DATA, new Uint8Array(10)).subarray(0, 6);
  const r = new StreamReader(source(wire, 2));
  const h = await r.frameHeader();
  await assert.rejects(
    r.exact(h!.length),
    (e) => e instanceof H3ProtocolError && e.code === H3Error.FRAME_ERROR,
  );
  const r2 = new StreamReader(source(new Uint8Array([0x40]), 1));
  await assert.rejects(r2.varint(), H3ProtocolError);
});
