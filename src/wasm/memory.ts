/**
 * A VM's view of its guest's linear memory, as the host functions use it:
 * bounds-checked reads, string decoding, little-endian writes, and `give`,
 * which hands host data to the guest through the guest's own allocator.
 *
 * Views are re-created per access: `memory.grow` detaches the old buffer.
 *
 * @module
 */
import type { CallClock } from "./timeslice.ts";

const dec = new TextDecoder();

/** Guest memory and allocator of one VM (attached once the instance exists). */
export class GuestMemory {
  private memory!: WebAssembly.Memory;
  private alloc!: (size: number) => number;

  /** `clock` counts the nested allocator calls (their loops must never yield). */
  constructor(private readonly clock: CallClock) {}

  /** Binds the instance's memory and allocator (host functions are created before the instance). */
  attach(memory: WebAssembly.Memory, alloc: (size: number) => number): void {
    this.memory = memory;
    this.alloc = alloc;
  }

  /** The whole memory as bytes. */
  u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }

  /** The whole memory as a DataView. */
  view(): DataView {
    return new DataView(this.memory.buffer);
  }

  /** `len` bytes at `ptr` (a view, not a copy); RangeError past the end (a trap for the VM). */
  read(ptr: number, len: number): Uint8Array {
    ptr >>>= 0, len >>>= 0;
    const m = this.u8();
    if (ptr + len > m.length) throw new RangeError("out of bounds");
    return m.subarray(ptr, ptr + len);
  }

  /** UTF-8 text at `ptr`. */
  str(ptr: number, len: number): string {
    const b = this.read(ptr, len);
    // Header names and values are short and ASCII: building the string directly beats TextDecoder.
    if (b.length <= 64) {
      let out = "";
      for (let i = 0; i < b.length; i++) {
        const c = b[i];
        if (c >= 0x80) return dec.decode(b);
        out += String.fromCharCode(c);
      }
      return out;
    }
    return dec.decode(b);
  }

  /** Writes a little-endian u32 at `ptr`. */
  setU32(ptr: number, v: number): void {
    new DataView(this.memory.buffer).setUint32(ptr >>> 0, v >>> 0, true);
  }

  /** Writes a little-endian u64 at `ptr`. */
  setU64(ptr: number, v: bigint): void {
    new DataView(this.memory.buffer).setBigUint64(ptr >>> 0, v, true);
  }

  /** Copies `data` into guest memory (via its allocator) and writes ptr/size. */
  give(data: Uint8Array, ptrPtr: number, sizePtr: number): void {
    let p = 0;
    if (data.length > 0) {
      // A nested call: its loops must never yield (JS frames are on the stack).
      this.clock.depth++;
      try {
        p = this.alloc(data.length) >>> 0;
      } finally {
        this.clock.depth--;
      }
      if (p === 0) throw new Error("plugin allocator returned NULL");
      this.u8().set(data, p);
    }
    this.setU32(ptrPtr, p);
    this.setU32(sizePtr, data.length);
  }
}
