/**
 * Byte-array helpers shared by the protocol code (HTTP/2, HTTP/3, gRPC, the
 * Proxy-Wasm host).
 *
 * @module
 */

/** Concatenates byte arrays into a new one (one copy of each part). */
export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
