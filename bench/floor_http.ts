/**
 * What the floor proxies (bench/floor_proxy.ts on Deno's sockets,
 * bench/ffi_floor_proxy.ts on libc's through FFI) know of HTTP: where a
 * response ends and whether a request asks to close. The same code in both, so
 * that they differ only in their socket I/O.
 *
 * @module
 */
const latin1 = new TextDecoder("latin1");

/**
 * The response's total length once its head is in `buf[0, got)`, else -1.
 * Only the head is decoded (the body can be most of what was read).
 */
export function responseLength(buf: Uint8Array, got: number): number {
  let end = -1;
  for (let i = 3; i < got; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) {
      end = i - 3;
      break;
    }
  }
  if (end === -1) return -1;
  const m = /\r\ncontent-length: *(\d+)/i.exec(latin1.decode(buf.subarray(0, end)));
  return end + 4 + (m === null ? 0 : Number(m[1]));
}

/**
 * `Connection: close` in the request (searched as "close\r" in its `n` bytes).
 * A loop, not `indexOf`: that scans the whole 16 KiB buffer when no 'c' follows
 * (measured: 15-20 % of the proxy's CPU, about 4 µs per request).
 */
export function asksClose(req: Uint8Array, n: number): boolean {
  for (let i = 0; i + 5 < n; i++) {
    if (
      req[i] === 99 && req[i + 1] === 108 && req[i + 2] === 111 && req[i + 3] === 115 &&
      req[i + 4] === 101 && req[i + 5] === 13
    ) {
      return true;
    }
  }
  return false;
}
