/**
 * HPACK header compression for HTTP/2 (RFC 7541).
 *
 * Header fields travel as flat `[name0, value0, name1, value1, ...]` arrays of
 * byte strings (one char per byte) so a block costs one array, not one object
 * per field. Both directions keep their dynamic table in a ring buffer with
 * size accounting; the encoder also indexes it with maps so that encoding is
 * O(fields) rather than a scan of the table per field.
 */
import { Buffer } from "node:buffer";
import { huffmanDecodeRange, huffmanEncodedLength, huffmanEncodeInto } from "./huffman.ts";

/** A header block could not be decoded (connection error COMPRESSION_ERROR), or was too large. */
export class HpackError extends Error {
  override name = "HpackError";
}

/** RFC 7541 Appendix A, index 1 first. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_LEN = STATIC_TABLE.length;
const STATIC_NAMES: string[] = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES: string[] = STATIC_TABLE.map((e) => e[1]);

/** Static-table facts about one name: its first index and the indexes of its non-empty values. */
interface StaticName {
  index: number;
  values: Map<string, number> | null;
}
const STATIC_BY_NAME = new Map<string, StaticName>();
for (let i = 0; i < STATIC_LEN; i++) {
  const [name, value] = STATIC_TABLE[i];
  let e = STATIC_BY_NAME.get(name);
  if (!e) STATIC_BY_NAME.set(name, e = { index: i + 1, values: null });
  // Empty static values are placeholders for the name; a real empty value is
  // rare enough that matching it is not worth a special case.
  if (value !== "") (e.values ??= new Map()).set(value, i + 1);
}

/** The slots of a table that never had an entry (shared, never written: grow() replaces it first). */
const NO_ENTRIES: string[] = [];

/** Bytes an entry counts against the table size (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;
/** Default SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2). */
const DEFAULT_TABLE_SIZE = 4096;
/**
 * The encoder never uses more than this much table even if the peer allows more:
 * the table is per connection, and beyond a few KiB the compression gain is small.
 */
const ENCODER_TABLE_CAP = 65536;

/**
 * Dynamic table (RFC 7541 §2.3.2, §4) as a ring buffer: index 1 is the newest
 * entry. `inserted` counts all insertions ever, so `inserted - 1` is the absolute
 * number of the newest entry and `inserted - count` that of the oldest.
 */
class DynamicTable {
  // Empty until the first insertion: many connections never index a field.
  names: string[] = NO_ENTRIES;
  values: string[] = NO_ENTRIES;
  mask = 0;
  /** Slot of the next insertion. */
  tail = 0;
  count = 0;
  size = 0;
  maxSize: number;
  inserted = 0;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  /** Name of relative index `i` (1 = newest); the caller checked 1 <= i <= count. */
  name(i: number): string {
    return this.names[(this.tail - i) & this.mask];
  }

  value(i: number): string {
    return this.values[(this.tail - i) & this.mask];
  }

  setMaxSize(n: number): void {
    this.maxSize = n;
    this.evictTo(n);
  }

  /** Adds an entry, evicting first; an entry larger than the table empties it (RFC 7541 §4.4). */
  add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.maxSize) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.maxSize - size);
    if (this.count === this.names.length) this.grow();
    this.names[this.tail] = name;
    this.values[this.tail] = value;
    this.tail = (this.tail + 1) & this.mask;
    this.count++;
    this.size += size;
    this.inserted++;
  }

  private evictTo(limit: number): void {
    while (this.size > limit) {
      const slot = (this.tail - this.count) & this.mask;
      const name = this.names[slot], value = this.values[slot];
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      this.onEvict(name, value, this.inserted - this.count);
      // Drop references so evicted strings can be collected.
      this.names[slot] = this.values[slot] = "";
      this.count--;
    }
  }

  /** Hook for the encoder's lookup maps; `abs` is the evicted entry's absolute number. */
  protected onEvict(_name: string, _value: string, _abs: number): void {}

  private grow(): void {
    const n = this.names.length === 0 ? 8 : this.names.length;
    const names: string[] = new Array(n * 2).fill("");
    const values: string[] = new Array(n * 2).fill("");
    for (let i = 0; i < this.count; i++) {
      const slot = (this.tail - this.count + i) & this.mask;
      names[i] = this.names[slot];
      values[i] = this.values[slot];
    }
    this.names = names;
    this.values = values;
    this.mask = n * 2 - 1;
    this.tail = this.count;
  }
}

/** Encoder lookup for one name in the dynamic table. */
interface DynName {
  /** Absolute number of the newest entry with this name. */
  latest: number;
  /** Value → absolute number of its newest entry. */
  values: Map<string, number>;
}

/** Dynamic table plus name/value maps that follow insertions and evictions. */
class EncoderTable extends DynamicTable {
  byName = new Map<string, DynName>();

  insert(name: string, value: string): void {
    this.add(name, value);
    // add() may have emptied the table instead (entry too large); the caller avoids that.
    if (this.count === 0) return;
    const abs = this.inserted - 1;
    const e = this.byName.get(name);
    if (e) {
      e.latest = abs;
      e.values.set(value, abs);
    } else this.byName.set(name, { latest: abs, values: new Map([[value, abs]]) });
  }

  protected override onEvict(name: string, value: string, abs: number): void {
    const e = this.byName.get(name);
    if (!e) return;
    // Eviction is oldest first: if the newest entry of this name goes, all of them are gone.
    if (e.latest === abs) this.byName.delete(name);
    else if (e.values.get(value) === abs) e.values.delete(value);
  }
}

// Representations (RFC 7541 §6.2): first-byte pattern and prefix bits.
const INDEXED = 0x80; // 7-bit prefix
const INCREMENTAL = 0x40; // 6-bit prefix
const WITHOUT_INDEXING = 0x00; // 4-bit prefix
const NEVER_INDEXED = 0x10; // 4-bit prefix
const SIZE_UPDATE = 0x20; // 5-bit prefix

const MODE_INDEX = 0;
const MODE_WITHOUT = 1;
const MODE_NEVER = 2;

/**
 * Fields that are not indexed. Never-indexed ones are secrets: besides keeping
 * them out of the table, the flag tells intermediaries not to index them either
 * (RFC 7541 §7.1.3). The others change with nearly every message, so indexing
 * them would only evict useful entries.
 */
const NAME_MODE = new Map<string, number>([
  ["authorization", MODE_NEVER],
  ["proxy-authorization", MODE_NEVER],
  ["set-cookie", MODE_NEVER],
  [":path", MODE_WITHOUT],
  ["content-length", MODE_WITHOUT],
  ["content-range", MODE_WITHOUT],
  ["range", MODE_WITHOUT],
  ["date", MODE_WITHOUT],
  ["expires", MODE_WITHOUT],
  ["age", MODE_WITHOUT],
  ["etag", MODE_WITHOUT],
  ["if-none-match", MODE_WITHOUT],
  ["last-modified", MODE_WITHOUT],
  ["if-modified-since", MODE_WITHOUT],
  ["if-unmodified-since", MODE_WITHOUT],
  ["location", MODE_WITHOUT],
  ["x-request-id", MODE_WITHOUT],
  ["x-correlation-id", MODE_WITHOUT],
  ["x-amzn-trace-id", MODE_WITHOUT],
  ["x-b3-traceid", MODE_WITHOUT],
  ["x-b3-spanid", MODE_WITHOUT],
  ["x-b3-parentspanid", MODE_WITHOUT],
  ["traceparent", MODE_WITHOUT],
  ["tracestate", MODE_WITHOUT],
  ["grpc-timeout", MODE_WITHOUT],
  ["sec-websocket-key", MODE_WITHOUT],
  ["sec-websocket-accept", MODE_WITHOUT],
]);
/**
 * Short cookies have little entropy, so an attacker who shares the connection
 * could guess them by watching compressed sizes (RFC 7541 §7.1.3); long ones are
 * worth indexing because browsers resend them on every request.
 */
const COOKIE_MIN_INDEXED = 20;

const EMPTY = new Uint8Array(0);

// Encoded blocks are carved out of a shared slab because allocating an ArrayBuffer
// costs about a microsecond in Deno whatever its size, as much as encoding a whole
// warm block; a view costs a few nanoseconds. Slab space is never reused, so a
// block's bytes stay valid for as long as the caller holds them.
const SLAB_SIZE = 16384;
/** Blocks that may exceed this get their own buffer, so the slab is not wasted on them. */
const SLAB_MAX_BLOCK = 2048;
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

/** Encodes header blocks for one direction of one connection. */
export class HpackEncoder {
  private table: EncoderTable;
  /** Output of the block being encoded: the shared slab, or a private buffer for a large block. */
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  /** Smallest and last size requested since the previous block; -1 when none is pending. */
  private pendingMin = -1;
  private pendingLast = -1;

  /** `maxTableSize`: the peer's SETTINGS_HEADER_TABLE_SIZE (default 4096). */
  constructor(maxTableSize: number = DEFAULT_TABLE_SIZE) {
    this.table = new EncoderTable(Math.min(maxTableSize, ENCODER_TABLE_CAP));
  }

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE changed: a dynamic table size update is emitted at the start of
   * the next block.
   */
  setMaxTableSize(n: number): void {
    n = Math.min(n, ENCODER_TABLE_CAP);
    // Several changes between blocks: RFC 7541 §4.2 wants the smallest one
    // signalled (so the peer evicts what we evicted) and then the final one.
    this.pendingMin = this.pendingMin < 0 ? n : Math.min(this.pendingMin, n);
    this.pendingLast = n;
  }

  /**
   * Encodes one header block.
   *
   * The result may be a view into a buffer shared with other blocks: use its own offset and length, not
   * its `.buffer`. A char code above 255 throws a TypeError; the table is then emptied and the next block
   * starts with size updates to 0 and back, which empty the peer's too (the failed block is never sent,
   * so the two tables would otherwise differ).
   */
  encode(fields: string[]): Uint8Array {
    // Worst case per field: a 5-byte index, two 5-byte lengths, raw strings. Two
    // size updates take at most 12 bytes.
    let bound = 12;
    for (let i = 0; i < fields.length; i++) bound += fields[i].length + 8;
    let start = 0;
    if (bound <= SLAB_MAX_BLOCK) {
      if (slabUsed + bound > SLAB_SIZE) {
        slab = new Uint8Array(SLAB_SIZE);
        slabUsed = 0;
      }
      this.buf = slab;
      start = slabUsed;
    } else this.buf = new Uint8Array(bound);
    this.pos = start;
    const table = this.table;
    try {
      if (this.pendingLast >= 0) {
        if (this.pendingMin < this.pendingLast) {
          table.setMaxSize(this.pendingMin);
          this.writeInt(SIZE_UPDATE, 5, this.pendingMin);
        }
        table.setMaxSize(this.pendingLast);
        this.writeInt(SIZE_UPDATE, 5, this.pendingLast);
        this.pendingMin = this.pendingLast = -1;
      }
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const name = fields[i], value = fields[i + 1];
        const st = STATIC_BY_NAME.get(name);
        if (st !== undefined && st.values !== null) {
          const idx = st.values.get(value);
          if (idx !== undefined) {
            this.writeInt(INDEXED, 7, idx);
            continue;
          }
        }
        let mode = NAME_MODE.get(name) ?? MODE_INDEX;
        if (name === "cookie" && value.length < COOKIE_MIN_INDEXED) mode = MODE_NEVER;
        const dyn = table.byName.get(name);
        if (mode === MODE_INDEX && dyn !== undefined) {
          const abs = dyn.values.get(value);
          if (abs !== undefined) {
            this.writeInt(INDEXED, 7, STATIC_LEN + table.inserted - abs);
            continue;
          }
        }
        // An entry bigger than the table would just empty it.
        if (mode === MODE_INDEX && name.length + value.length + ENTRY_OVERHEAD > table.maxSize) {
          mode = MODE_WITHOUT;
        }
        const nameIdx = st !== undefined
          ? st.index
          : dyn !== undefined
          ? STATIC_LEN + table.inserted - dyn.latest
          : 0;
        if (mode === MODE_INDEX) this.writeInt(INCREMENTAL, 6, nameIdx);
        else this.writeInt(mode === MODE_NEVER ? NEVER_INDEXED : WITHOUT_INDEXING, 4, nameIdx);
        if (nameIdx === 0) this.writeString(name);
        this.writeString(value);
        if (mode === MODE_INDEX) table.insert(name, value);
      }
    } catch (e) {
      const max = table.maxSize;
      table.setMaxSize(0);
      table.setMaxSize(max);
      this.pendingMin = 0;
      this.pendingLast = this.pendingLast < 0 ? max : this.pendingLast;
      this.buf = EMPTY;
      throw e;
    }
    const out = this.buf.subarray(start, this.pos);
    if (this.buf === slab) slabUsed = this.pos;
    this.buf = EMPTY;
    return out;
  }

  /** Integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the representation's pattern bits. */
  private writeInt(first: number, prefixBits: number, v: number): void {
    const buf = this.buf;
    const max = (1 << prefixBits) - 1;
    if (v < max) {
      buf[this.pos++] = first | v;
      return;
    }
    buf[this.pos++] = first | max;
    v -= max;
    while (v >= 128) {
      buf[this.pos++] = (v & 127) | 128;
      v = Math.floor(v / 128);
    }
    buf[this.pos++] = v;
  }

  /** String literal (RFC 7541 §5.2), Huffman-coded only when that is shorter. */
  private writeString(s: string): void {
    const hlen = huffmanEncodedLength(s);
    if (hlen < s.length) {
      this.writeInt(0x80, 7, hlen);
      this.pos = huffmanEncodeInto(s, this.buf, this.pos);
      return;
    }
    this.writeInt(0, 7, s.length);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i);
    this.pos = p;
  }
}

/** Largest integer accepted in a header block; anything near it is an attack anyway. */
const MAX_INT = 0x7fffffff;
/**
 * Up to this length a char-by-char loop beats the native latin1 conversion's call
 * overhead (and V8 keeps strings this short flat rather than as cons strings).
 */
const SHORT_STRING = 12;

/** Decodes header blocks for one direction of one connection. */
export class HpackDecoder {
  /** Set by decode(): the last block exceeded maxListSize. */
  oversized = false;
  private table: DynamicTable;
  private maxTableSize: number;
  // Per-block state, fields rather than locals so helpers need no result objects.
  private block: Uint8Array = EMPTY;
  private blockBuf: Buffer | null = null;
  private p = 0;

  /** `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096). */
  constructor(maxTableSize: number = DEFAULT_TABLE_SIZE) {
    this.maxTableSize = maxTableSize;
    this.table = new DynamicTable(maxTableSize);
  }

  /**
   * Decodes one complete header block into a flat [name, value, ...] array. Throws HpackError.
   * `maxListSize`: RFC 9113 header list size limit (sum of name+value+32 per field); when exceeded, keep
   * decoding (the dynamic table must stay in sync) but set `this.oversized = true` for this block instead
   * of throwing.
   * An oversized block's list stops before the field that crossed the limit, so a flood of
   * references to large table entries cannot balloon memory.
   */
  decode(block: Uint8Array, maxListSize: number = Infinity): string[] {
    const out: string[] = [];
    const table = this.table;
    const end = block.length;
    this.block = block;
    this.blockBuf = null;
    this.p = 0;
    this.oversized = false;
    let listSize = 0;
    let sawField = false;
    try {
      while (this.p < end) {
        const b = block[this.p];
        let name: string, value: string;
        if ((b & 0x80) !== 0) {
          const idx = this.readInt(7);
          if (idx === 0) throw new HpackError("hpack: index 0");
          if (idx <= STATIC_LEN) {
            name = STATIC_NAMES[idx - 1];
            value = STATIC_VALUES[idx - 1];
          } else {
            const rel = idx - STATIC_LEN;
            if (rel > table.count) throw new HpackError("hpack: index out of range");
            name = table.name(rel);
            value = table.value(rel);
          }
        } else if ((b & 0xe0) === SIZE_UPDATE) {
          // RFC 7541 §4.2: only at the start of a block, and within what we advertised.
          if (sawField) throw new HpackError("hpack: table size update after a header field");
          const n = this.readInt(5);
          if (n > this.maxTableSize) throw new HpackError("hpack: table size update above the limit");
          table.setMaxSize(n);
          continue;
        } else {
          // Literal: 01 incremental indexing (6-bit), 0000 without indexing / 0001 never indexed (4-bit).
          const incremental = (b & 0x40) !== 0;
          const idx = this.readInt(incremental ? 6 : 4);
          if (idx === 0) name = this.readString();
          else if (idx <= STATIC_LEN) name = STATIC_NAMES[idx - 1];
          else {
            const rel = idx - STATIC_LEN;
            if (rel > table.count) throw new HpackError("hpack: index out of range");
            name = table.name(rel);
          }
          value = this.readString();
          if (incremental) table.add(name, value);
        }
        sawField = true;
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        if (listSize > maxListSize) this.oversized = true;
        if (!this.oversized) out.push(name, value);
      }
    } finally {
      // Do not keep the caller's buffer alive until the next block.
      this.block = EMPTY;
      this.blockBuf = null;
    }
    return out;
  }

  /** Integer with an N-bit prefix at `this.p` (RFC 7541 §5.1). */
  private readInt(prefixBits: number): number {
    const block = this.block;
    const max = (1 << prefixBits) - 1;
    let v = block[this.p++] & max;
    if (v < max) return v;
    // At most 5 continuation bytes: 2^31 fits in 4 plus padding-free slack.
    for (let shift = 0; shift <= 28; shift += 7) {
      if (this.p >= block.length) throw new HpackError("hpack: truncated integer");
      const b = block[this.p++];
      v += (b & 127) * 2 ** shift;
      if (v > MAX_INT) throw new HpackError("hpack: integer overflow");
      if ((b & 128) === 0) return v;
    }
    throw new HpackError("hpack: integer too long");
  }

  /** String literal at `this.p` (RFC 7541 §5.2). */
  private readString(): string {
    const block = this.block;
    if (this.p >= block.length) throw new HpackError("hpack: truncated string");
    const huffman = (block[this.p] & 0x80) !== 0;
    const len = this.readInt(7);
    const start = this.p;
    const end = start + len;
    if (end > block.length) throw new HpackError("hpack: truncated string");
    this.p = end;
    if (huffman) return huffmanDecodeRange(block, start, end);
    if (len <= SHORT_STRING) {
      let s = "";
      for (let i = start; i < end; i++) s += String.fromCharCode(block[i]);
      return s;
    }
    // One Buffer view per block, made only when a long raw string shows up.
    this.blockBuf ??= Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    return this.blockBuf.toString("latin1", start, end);
  }
}
