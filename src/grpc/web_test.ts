import assert from "node:assert/strict";
import { HeaderList } from "../core/headers.ts";
import { Base64Decoder, Base64Encoder, trailerFrame, trailerFrameStatus } from "./web.ts";

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
  assert.equal(trailerFrameStatus(f, 0), "0");
  const after = new Uint8Array([9, 9, ...f]);
  assert.equal(trailerFrameStatus(after, 2), "0");
  assert.equal(trailerFrameStatus(after, 1), undefined); // not a frame start
  assert.equal(trailerFrameStatus(f.subarray(0, f.length - 1), 0), undefined); // cut short
  assert.equal(trailerFrameStatus(new Uint8Array([0x80, 0, 0, 0]), 0), undefined); // prefix cut short
});
