/**
 * Byte-level reading and writing of WebAssembly binaries for the rewriter
 * (binary.ts): LEB128 integers, names, and a growing output buffer. Every
 * malformed or truncated input raises {@link WasmLoadError}.
 *
 * @module
 */

/** Raised for modules we cannot (or must not) load. */
export class WasmLoadError extends Error {}

/** Reads a module's bytes from `pos` to `end`: bytes and LEB128 integers. */
export class Reader {
  pos: number;
  constructor(readonly b: Uint8Array, pos = 0, readonly end = b.length) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) throw new WasmLoadError("unexpected end of module");
    return this.b[this.pos++];
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
      if (shift > 35) throw new WasmLoadError("LEB128 too long");
    }
  }
  /** Skips any LEB128 (signed or unsigned, up to 64 bits). */
  skipLeb(): void {
    while (this.byte() & 0x80) { /* continuation */ }
  }
  skip(n: number): void {
    this.pos += n;
    if (this.pos > this.end) throw new WasmLoadError("unexpected end of module");
  }
}

/** A growing byte buffer: bytes and LEB128 integers. */
export class Writer {
  buf = new Uint8Array(1024);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Copies src[from, to): a loop for short runs (no subarray object), `set` for long ones. */
  range(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    this.ensure(n);
    if (n > 64) this.buf.set(src.subarray(from, to), this.len);
    else for (let i = 0; i < n; i++) this.buf[this.len + i] = src[from + i];
    this.len += n;
  }
  u32(v: number): void {
    do {
      let byte = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) byte |= 0x80;
      this.byte(byte);
    } while (v !== 0);
  }
  /** Signed LEB128 (i32.const immediates). */
  s32(v: number): void {
    v |= 0;
    for (;;) {
      const byte = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
        this.byte(byte);
        return;
      }
      this.byte(byte | 0x80);
    }
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u32(b.length);
    this.bytes(b);
  }
  done(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
