/**
 * MurmurHash3 (x86, 32-bit) over the UTF-16 code units of a string range.
 *
 * Hashing code units directly (two per 32-bit block) avoids encoding the key to
 * bytes on every request. The values therefore differ from byte-oriented
 * murmur3 implementations, which is fine: they only need to agree between
 * Loom's own isolates and instances.
 *
 * @module
 */

/** The 32-bit (unsigned) murmur3 hash of `s[start, end)`. */
export function murmur3(s: string, start = 0, end: number = s.length, seed = 0): number {
  let h = seed | 0;
  let i = start;
  const blocksEnd = start + ((end - start) & ~1);
  for (; i < blocksEnd; i += 2) {
    let k = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < end) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  // Length in bytes of the UTF-16 data, as the reference mixes in byte counts.
  h ^= (end - start) * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
