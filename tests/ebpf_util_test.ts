/** The tunnel peers' byte pattern and what it tells of a stream that went wrong (pure, no eBPF). */
import assert from "node:assert/strict";
import { concat } from "../src/net/bytes.ts";
import { divergence, taggedBytes } from "./ebpf_util.ts";

const TAG = 0xdeadbeef;
const want = taggedBytes(TAG, 100_003);

Deno.test("taggedBytes: 8-byte words of the tag and the word's index, cut at n", () => {
  assert.equal(want.length, 100_003);
  const v = new DataView(want.buffer);
  assert.equal(v.getUint32(8 * 17), TAG);
  assert.equal(v.getUint32(8 * 17 + 4), 17);
});

Deno.test("divergence: the same bytes give nothing to report", () => {
  assert.equal(divergence(want, TAG, want.length), "");
});

Deno.test("divergence: a range repeated, a range skipped, a cut, bytes of another stream", () => {
  // 33 bytes from offset 40,000 come again after byte 40,032.
  const repeated = concat([want.subarray(0, 40_033), want.subarray(40_000, 40_033), want.subarray(40_033)]);
  assert.equal(
    divergence(repeated, TAG, want.length),
    "at byte 40033 of 100003 the stream goes on with bytes 40000-40032 again; 100036 bytes in all",
  );
  const skipped = concat([want.subarray(0, 5_001), want.subarray(9_000)]);
  assert.match(
    divergence(skipped, TAG, want.length),
    /at byte 5001 .* the upstream's byte 9000 \(3999 skipped\)/,
  );
  assert.equal(divergence(want.subarray(0, 70), TAG, want.length), "the stream ends at byte 70 of 100003");
  const other = concat([want.subarray(0, 800), taggedBytes(1234, 64), want.subarray(800)]);
  assert.match(divergence(other, TAG, want.length), /at byte 800 .* not this tunnel's/);
  const longer = concat([want, new Uint8Array(5)]);
  assert.equal(divergence(longer, TAG, want.length), "5 bytes after the last of 100003");
});
