/**
 * A small WebAssembly binary rewriter, run once per plugin module at load.
 *
 * Why: a plugin callback runs synchronously on the gateway's event loop, so
 * an endless loop in a plugin would stall every request of the isolate. We
 * make loops interruptible by instrumenting the code section: every `loop`
 * header decrements a fuel global, and when it reaches zero it calls the host
 * import `loom.check`, which either throws (the callback ran past its
 * deadline; the host treats that like a trap) or hands back a fresh fuel
 * chunk. Straight-line code always ends and recursion ends in a stack
 * overflow, so loop headers are the only place a check is needed.
 *
 * A check may also return 0: the host wants the callback to give the event
 * loop back (timeslice isolation). The code then calls the second import,
 * `loom.yield`, which the host backs with a JSPI `WebAssembly.Suspending`
 * function (the callback is suspended and resumed later), and continues with
 * a fresh chunk. Only the rare check path carries that branch.
 *
 * Cost: the check must be cheap where loops are tight, so the per-iteration
 * part is a counter in a fresh *local* (a register): `if ((++k & mask) == 0)`
 * calls the host every mask+1 iterations. A local restarts at 0 on every
 * call, so each function that contains a loop also decrements a *global*
 * fuel at entry and checks when it runs out: a loop that calls a looping
 * function many times is still checked every few thousand calls.
 *
 * The rewrite also caps linear memory: the declared maximum becomes
 * min(declared, memory_limit), so `memory.grow` beyond the limit returns -1
 * inside the plugin (the engine enforces it, no host call on the hot path).
 *
 * Entry points for timeslice mode: a fresh `WebAssembly.promising` call per
 * callback costs microseconds (a new JSPI stack each time), so the host
 * enters JSPI once per VM, into a generated serving loop, `loom:serve`:
 * `for (;;) { i = loom.next(); entry_i(loom.arg(0), ..., loom.arg(4)); }`.
 * `loom.next` is a JSPI Suspending import: the loop waits there, suspended,
 * until the host hands it the next callback. Every exported `proxy_on_*`
 * callback gets an entry point `loom:<name>` that calls it and hands its
 * result to the import `loom.result`; two more batch callbacks the host always
 * runs back to back (one round trip instead of several): `loom:start`
 * (on_context_create, then on_request_headers) and `loom:finish` (on_done,
 * on_log, on_delete). All entry points take five i32 parameters.
 *
 * Adding the five imports (check, yield, result, next, arg) shifts every
 * defined function index by five, so all function references are
 * renumbered: `call`, `return_call`, `ref.func`, exports, the start
 * function, element segments and constant expressions.
 * The `name` custom section (stale after renumbering) is dropped.
 *
 * @module
 */

/** Options of {@link instrument}. */
export interface InstrumentOptions {
  /** Largest linear memory in 64 KiB pages. */
  maxPages: number;
  /** Calls of loop-containing functions between two checks (the host's check returns it). */
  fuelChunk?: number;
  /** A loop checks every mask+1 iterations; mask = 2^n - 1. */
  loopMask?: number;
}

/** What {@link instrument} learned about the module. */
export interface InstrumentResult {
  bytes: Uint8Array;
  /** Loop headers instrumented. */
  loops: number;
  /** Declared initial pages of the (first) memory. */
  initialPages: number;
}

/** Default calls of loop-containing functions per check. */
export const DEFAULT_FUEL_CHUNK = 1000;
/** Default loop iterations per check (a check costs ~50 ns, an iteration ≥ 0.3 ns). */
export const DEFAULT_LOOP_MASK = 16383;

/** Raised for modules we cannot (or must not) load. */
export class WasmLoadError extends Error {}

class Reader {
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

class Writer {
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

interface Ctx {
  /** Function imports before ours: indices >= this shift by OUR_IMPORTS. */
  importedFuncs: number;
  checkFunc: number;
  yieldFunc: number;
  fuelChunk: number;
  fuelGlobal: number;
  loops: number;
  /** The loop counter local of the function being rewritten. */
  counterLocal: number;
  loopMask: number;
}

/** Our function imports: loom.check, loom.yield, loom.result, loom.next, loom.arg. */
const OUR_IMPORTS = 5;
const shiftFunc = (c: Ctx, idx: number) => idx >= c.importedFuncs ? idx + OUR_IMPORTS : idx;

/** `fuel = loom.check(); if (fuel == 0) { loom.yield(); fuel = chunk; }` */
function emitCheck(w: Writer, c: Ctx): void {
  w.byte(0x10), w.u32(c.checkFunc);
  w.byte(0x24), w.u32(c.fuelGlobal);
  w.byte(0x23), w.u32(c.fuelGlobal);
  w.byte(0x45); // i32.eqz
  w.byte(0x04), w.byte(0x40);
  w.byte(0x10), w.u32(c.yieldFunc);
  w.byte(0x41), w.s32(c.fuelChunk);
  w.byte(0x24), w.u32(c.fuelGlobal);
  w.byte(0x0b);
}

/** Reads a block type (0x40, a value type, or an s33 type index). */
function skipBlockType(r: Reader): void {
  const b = r.b[r.pos];
  if (b === 0x40 || (b >= 0x6f && b <= 0x7f) || b === 0x63 || b === 0x64) {
    r.pos++;
    if (b === 0x63 || b === 0x64) r.skipLeb(); // (ref null? ht)
    return;
  }
  r.skipLeb();
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory index
  r.skipLeb(); // offset (u32, or u64 for memory64)
}

/**
 * Copies an instruction sequence from `r` to `w` until the `end` that closes
 * depth 0 (inclusive), renumbering function references and instrumenting loops.
 */
function rewriteExpr(r: Reader, w: Writer, c: Ctx, instrumentLoops: boolean): void {
  let depth = 0;
  // Unchanged instructions are copied in runs, from `copied` up to where a change is written.
  let copied = r.pos;
  for (;;) {
    const start = r.pos;
    const op = r.byte();
    switch (op) {
      case 0x02:
      case 0x04:
      case 0x06: // try (legacy exceptions)
        skipBlockType(r);
        depth++;
        break;
      case 0x03: {
        skipBlockType(r);
        depth++;
        w.range(r.b, copied, r.pos);
        copied = r.pos;
        if (instrumentLoops) {
          // if ((++k & mask) == 0) check (emitCheck)
          w.byte(0x20), w.u32(c.counterLocal);
          w.byte(0x41), w.s32(1);
          w.byte(0x6a); // i32.add
          w.byte(0x22), w.u32(c.counterLocal); // local.tee
          w.byte(0x41), w.s32(c.loopMask);
          w.byte(0x71); // i32.and
          w.byte(0x45); // i32.eqz
          w.byte(0x04), w.byte(0x40);
          emitCheck(w, c);
          w.byte(0x0b);
          c.loops++;
        }
        continue;
      }
      case 0x0b:
        if (depth === 0) {
          w.range(r.b, copied, r.pos);
          return;
        }
        depth--;
        break;
      case 0x10:
      case 0x12:
      case 0xd2: {
        const idx = r.u32();
        w.range(r.b, copied, start);
        w.byte(op);
        w.u32(shiftFunc(c, idx));
        copied = r.pos;
        continue;
      }
      case 0x07:
      case 0x08:
      case 0x09:
      case 0x18:
      case 0x0c:
      case 0x0d:
      case 0x14:
      case 0x15:
      case 0xd4:
      case 0xd6:
      case 0x20:
      case 0x21:
      case 0x22:
      case 0x23:
      case 0x24:
      case 0x25:
      case 0x26:
      case 0x3f:
      case 0x40:
        r.u32();
        break;
      case 0x0e: {
        const n = r.u32();
        for (let i = 0; i <= n; i++) r.u32();
        break;
      }
      case 0x11:
      case 0x13:
        r.u32(), r.u32();
        break;
      case 0x1c: {
        const n = r.u32();
        for (let i = 0; i < n; i++) r.byte();
        break;
      }
      case 0x41:
      case 0x42:
        r.skipLeb();
        break;
      case 0x43:
        r.skip(4);
        break;
      case 0x44:
        r.skip(8);
        break;
      case 0xd0: {
        const b = r.b[r.pos];
        if (b >= 0x69 && b <= 0x74) r.pos++;
        else r.skipLeb();
        break;
      }
      case 0xfc: {
        const sub = r.u32();
        if (sub <= 7) break;
        if (sub === 8 || sub === 10 || sub === 12 || sub === 14) r.u32(), r.u32();
        else if (sub <= 17) r.u32();
        else throw new WasmLoadError(`unsupported instruction 0xfc ${sub}`);
        break;
      }
      case 0xfd: {
        const sub = r.u32();
        if (sub <= 11 || sub === 92 || sub === 93) skipMemarg(r);
        else if (sub === 12 || sub === 13) r.skip(16);
        else if (sub >= 21 && sub <= 34) r.byte();
        else if (sub >= 84 && sub <= 91) skipMemarg(r), r.byte();
        break;
      }
      case 0xfe: {
        const sub = r.u32();
        if (sub === 3) r.byte();
        else skipMemarg(r);
        break;
      }
      default:
        if (op >= 0x28 && op <= 0x3e) skipMemarg(r);
        else if (
          op === 0x00 || op === 0x01 || op === 0x05 || op === 0x0a || op === 0x0f || op === 0x19 ||
          op === 0x1a || op === 0x1b || (op >= 0x45 && op <= 0xc4) || op === 0xd1 || op === 0xd3 ||
          op === 0xd5
        ) { /* no immediates */ } else {throw new WasmLoadError(
            `unsupported instruction 0x${op.toString(16)}`,
          );}
    }
  }
}

/** Reads limits; returns [flags, min, max|undefined]. */
function readLimits(r: Reader): [number, number, number | undefined] {
  const flags = r.byte();
  const min = r.u32();
  const max = flags & 1 ? r.u32() : undefined;
  return [flags, min, max];
}

function writeCappedLimits(
  w: Writer,
  flags: number,
  min: number,
  max: number | undefined,
  cap: number,
): void {
  if (flags & 4) throw new WasmLoadError("memory64 modules are not supported");
  if (min > cap) {
    throw new WasmLoadError(`module needs ${min} memory pages initially; memory_limit allows ${cap}`);
  }
  w.byte(flags | 1);
  w.u32(min);
  w.u32(max === undefined ? cap : Math.min(max, cap));
}

/**
 * Rewrites `bytes` (a WebAssembly module) as described in the module doc.
 * Throws {@link WasmLoadError} for modules it cannot handle.
 */
export function instrument(bytes: Uint8Array, opts: InstrumentOptions): InstrumentResult {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmLoadError("not a WebAssembly module (bad magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmLoadError("unsupported WebAssembly version (components are not supported)");
  }
  // First pass: section boundaries, counts needed before rewriting.
  const sections: { id: number; start: number; end: number }[] = [];
  const r0 = new Reader(bytes, 8);
  while (r0.pos < bytes.length) {
    const id = r0.byte();
    const size = r0.u32();
    const start = r0.pos;
    r0.skip(size);
    sections.push({ id, start, end: start + size });
  }
  let typeCount = 0;
  const typeParams: number[] = [];
  /** Per type: only i32 parameters and at most one i32 result (-1 otherwise, else the result count). */
  const typeSimple: number[] = [];
  const funcTypes: number[] = [];
  const importTypes: number[] = [];
  const exported = new Map<string, number>();
  let importedFuncs = 0;
  let importedGlobals = 0;
  let definedGlobals = 0;
  for (const s of sections) {
    const r = new Reader(bytes, s.start, s.end);
    if (s.id === 1) {
      typeCount = r.u32();
      for (let i = 0; i < typeCount; i++) {
        if (r.byte() !== 0x60) throw new WasmLoadError("unsupported type (GC proposal)");
        const np = r.u32();
        let simple = true;
        for (let j = 0; j < np; j++) {
          const t = r.byte();
          if (isRefType(t)) throw new WasmLoadError("unsupported parameter type");
          if (t !== 0x7f) simple = false;
        }
        const nr = r.u32();
        for (let j = 0; j < nr; j++) {
          const t = r.byte();
          if (isRefType(t)) throw new WasmLoadError("unsupported result type");
          if (t !== 0x7f) simple = false;
        }
        typeParams.push(np);
        typeSimple.push(simple && nr <= 1 && np <= 5 ? nr : -1);
      }
    }
    if (s.id === 3) {
      const n = r.u32();
      for (let i = 0; i < n; i++) funcTypes.push(r.u32());
    }
    if (s.id === 6) definedGlobals = r.u32();
    if (s.id === 7) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const m = r.u32();
        const name = new TextDecoder().decode(bytes.subarray(r.pos, r.pos + m));
        r.skip(m);
        const kind = r.byte();
        const idx = r.u32();
        if (kind === 0) exported.set(name, idx);
      }
    }
    if (s.id === 2) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        r.skip(r.u32());
        r.skip(r.u32());
        const kind = r.byte();
        if (kind === 0) importTypes.push(r.u32()), importedFuncs++;
        else if (kind === 1) r.byte(), readLimits(r);
        else if (kind === 2) readLimits(r);
        else if (kind === 3) r.byte(), r.byte(), importedGlobals++;
        else if (kind === 4) r.byte(), r.u32();
        else throw new WasmLoadError(`unknown import kind ${kind}`);
      }
    }
  }
  const has = (id: number) => sections.some((s) => s.id === id);
  const chunk = opts.fuelChunk ?? DEFAULT_FUEL_CHUNK;
  const c: Ctx = {
    importedFuncs,
    checkFunc: importedFuncs,
    yieldFunc: importedFuncs + 1,
    fuelChunk: chunk,
    fuelGlobal: importedGlobals + definedGlobals,
    loops: 0,
    counterLocal: 0,
    loopMask: opts.loopMask ?? DEFAULT_LOOP_MASK,
  };
  const checkType = typeCount; // () -> i32, appended
  const yieldType = typeCount + 1; // () -> (), appended
  const resultType = typeCount + 2; // (i32) -> (), appended
  const entryType = typeCount + 3; // (i32 x 5) -> (), appended
  const argType = typeCount + 4; // (i32) -> i32, appended
  const entries = has(3) && has(7) && has(10)
    ? entryPoints(
      exported,
      (idx) => typeSimple[idx < importedFuncs ? importTypes[idx] : funcTypes[idx - importedFuncs]] ?? -1,
      typeParams,
      (idx) => idx < importedFuncs ? importTypes[idx] : funcTypes[idx - importedFuncs],
    )
    : [];
  const firstEntry = importedFuncs + OUR_IMPORTS + funcTypes.length;
  // The serving loop (after the entries) exists when there is anything to serve.
  const generated = entries.length > 0 ? entries.length + 1 : 0;
  let initialPages = 0;
  const out = new Writer();
  out.bytes(bytes.subarray(0, 8));
  const emit = (id: number, body: Uint8Array) => {
    out.byte(id);
    out.u32(body.length);
    out.bytes(body);
  };
  const emitImports = (w: Writer, extra: boolean) => {
    // Our imports go after every existing import: their indices = old imported function count (+1).
    if (extra) {
      w.str("loom");
      w.str("check");
      w.byte(0);
      w.u32(checkType);
      w.str("loom");
      w.str("yield");
      w.byte(0);
      w.u32(yieldType);
      w.str("loom");
      w.str("result");
      w.byte(0);
      w.u32(resultType);
      w.str("loom");
      w.str("next");
      w.byte(0);
      w.u32(checkType);
      w.str("loom");
      w.str("arg");
      w.byte(0);
      w.u32(argType);
    }
  };
  for (const s of sections) {
    const r = new Reader(bytes, s.start, s.end);
    const w = new Writer();
    switch (s.id) {
      case 1: {
        const n = r.u32();
        w.u32(n + 5);
        w.bytes(bytes.subarray(r.pos, s.end));
        w.byte(0x60), w.u32(0), w.u32(1), w.byte(0x7f);
        w.byte(0x60), w.u32(0), w.u32(0);
        w.byte(0x60), w.u32(1), w.byte(0x7f), w.u32(0);
        w.byte(0x60), w.u32(5), w.bytes(new Uint8Array(5).fill(0x7f)), w.u32(0);
        w.byte(0x60), w.u32(1), w.byte(0x7f), w.u32(1), w.byte(0x7f);
        emit(1, w.done());
        if (!has(2)) {
          const iw = new Writer();
          iw.u32(OUR_IMPORTS);
          emitImports(iw, true);
          emit(2, iw.done());
        }
        continue;
      }
      case 2: {
        const n = r.u32();
        w.u32(n + OUR_IMPORTS);
        for (let i = 0; i < n; i++) {
          const m = r.u32();
          w.u32(m), w.bytes(bytes.subarray(r.pos, r.pos + m)), r.skip(m);
          const f = r.u32();
          w.u32(f), w.bytes(bytes.subarray(r.pos, r.pos + f)), r.skip(f);
          const kind = r.byte();
          w.byte(kind);
          if (kind === 2) {
            const [flags, min, max] = readLimits(r);
            initialPages = min;
            writeCappedLimits(w, flags, min, max, opts.maxPages);
          } else {
            const st = r.pos;
            if (kind === 0) r.u32();
            else if (kind === 1) r.byte(), readLimits(r);
            else if (kind === 3) r.byte(), r.byte();
            else r.byte(), r.u32();
            w.bytes(bytes.subarray(st, r.pos));
          }
        }
        emitImports(w, true);
        emit(2, w.done());
        continue;
      }
      case 3: {
        const n = r.u32();
        w.u32(n + generated);
        w.bytes(bytes.subarray(r.pos, s.end));
        for (let i = 0; i < entries.length; i++) w.u32(entryType);
        if (generated > 0) w.u32(yieldType);
        emit(3, w.done());
        continue;
      }
      case 5: {
        const n = r.u32();
        w.u32(n);
        for (let i = 0; i < n; i++) {
          const [flags, min, max] = readLimits(r);
          if (i === 0) initialPages = min;
          writeCappedLimits(w, flags, min, max, opts.maxPages);
        }
        emit(5, w.done());
        continue;
      }
      case 6: {
        const n = r.u32();
        w.u32(n + 1);
        for (let i = 0; i < n; i++) {
          const t = r.pos;
          r.byte(), r.byte();
          w.bytes(bytes.subarray(t, r.pos));
          rewriteExpr(r, w, c, false);
        }
        w.byte(0x7f), w.byte(1), w.byte(0x41), w.s32(chunk), w.byte(0x0b);
        emit(6, w.done());
        continue;
      }
      case 7: {
        const n = r.u32();
        w.u32(n + generated);
        for (let i = 0; i < n; i++) {
          const m = r.u32();
          w.u32(m), w.bytes(bytes.subarray(r.pos, r.pos + m)), r.skip(m);
          const kind = r.byte();
          const idx = r.u32();
          w.byte(kind), w.u32(kind === 0 ? shiftFunc(c, idx) : idx);
        }
        entries.forEach((e, i) => {
          w.str(e.name), w.byte(0), w.u32(firstEntry + i);
        });
        if (generated > 0) w.str("loom:serve"), w.byte(0), w.u32(firstEntry + entries.length);
        emit(7, w.done());
        continue;
      }
      case 8:
        w.u32(shiftFunc(c, r.u32()));
        emit(8, w.done());
        continue;
      case 9: {
        const n = r.u32();
        w.u32(n);
        for (let i = 0; i < n; i++) {
          const flags = r.u32();
          w.u32(flags);
          if (flags > 7) throw new WasmLoadError(`unknown element segment kind ${flags}`);
          if (flags === 2 || flags === 6) w.u32(r.u32());
          if ((flags & 1) === 0) rewriteExpr(r, w, c, false);
          if (flags & 4) {
            if (flags !== 4) w.byte(r.byte()); // reftype
            const k = r.u32();
            w.u32(k);
            for (let j = 0; j < k; j++) rewriteExpr(r, w, c, false);
          } else {
            if (flags !== 0) w.byte(r.byte()); // elemkind
            const k = r.u32();
            w.u32(k);
            for (let j = 0; j < k; j++) w.u32(shiftFunc(c, r.u32()));
          }
        }
        emit(9, w.done());
        continue;
      }
      case 10: {
        const n = r.u32();
        w.u32(n + generated);
        for (let i = 0; i < n; i++) {
          const size = r.u32();
          const end = r.pos + size;
          const fr = new Reader(bytes, r.pos, end);
          const locals = new Writer();
          const groups = fr.u32();
          let localCount = typeParams[funcTypes[i]] ?? 0;
          for (let g = 0; g < groups; g++) {
            const count = fr.u32();
            localCount += count;
            locals.u32(count);
            const t = fr.pos;
            const b = fr.byte();
            if (b === 0x63 || b === 0x64) fr.skipLeb();
            locals.bytes(bytes.subarray(t, fr.pos));
          }
          c.counterLocal = localCount;
          const code = new Writer();
          const before = c.loops;
          rewriteExpr(fr, code, c, true);
          if (fr.pos !== end) throw new WasmLoadError("function body has trailing bytes");
          const fw = new Writer();
          if (c.loops > before) {
            // One more i32 local (the loop counter), and the entry check on the global fuel.
            fw.u32(groups + 1);
            fw.bytes(locals.done());
            fw.u32(1), fw.byte(0x7f);
            fw.byte(0x23), fw.u32(c.fuelGlobal);
            fw.byte(0x41), fw.s32(1);
            fw.byte(0x6b);
            fw.byte(0x24), fw.u32(c.fuelGlobal);
            fw.byte(0x23), fw.u32(c.fuelGlobal);
            fw.byte(0x41), fw.s32(0);
            fw.byte(0x4c); // i32.le_s: a check that threw leaves 0 behind
            fw.byte(0x04), fw.byte(0x40);
            emitCheck(fw, c);
            fw.byte(0x0b);
          } else {
            fw.u32(groups);
            fw.bytes(locals.done());
          }
          fw.bytes(code.done());
          const body = fw.done();
          w.u32(body.length);
          w.bytes(body);
          r.pos = end;
        }
        for (const e of entries) {
          const body = entryBody(e, c, importedFuncs + 2);
          w.u32(body.length);
          w.bytes(body);
        }
        if (generated > 0) {
          const body = serveBody(entries.length, firstEntry, importedFuncs + 3, importedFuncs + 4);
          w.u32(body.length);
          w.bytes(body);
        }
        emit(10, w.done());
        continue;
      }
      case 0: {
        const nameLen = r.u32();
        const name = new TextDecoder().decode(bytes.subarray(r.pos, r.pos + nameLen));
        if (name === "name") continue;
        emit(0, bytes.subarray(s.start, s.end));
        continue;
      }
      default:
        emit(s.id, bytes.subarray(s.start, s.end));
    }
  }
  if (!has(1)) throw new WasmLoadError("module has no type section (no functions)");
  if (!has(6)) {
    // Insert a global section holding only the fuel: rebuild in section order.
    return instrument(addEmptyGlobalSection(bytes, sections), opts);
  }
  return { bytes: out.done().slice(), loops: c.loops, initialPages };
}

/** A generated entry point: calls (callee, parameter indices, drop its result) in order, then `loom.result`. */
interface Entry {
  name: string;
  calls: { func: number; params: number[]; result: boolean }[];
  /** The last call's result goes to loom.result (else 0). */
  reports: boolean;
}

/** The entry points a module gets (see the module doc), from its exported functions. */
function entryPoints(
  exported: Map<string, number>,
  simple: (idx: number) => number,
  typeParams: number[],
  typeOf: (idx: number) => number,
): Entry[] {
  const out: Entry[] = [];
  // Parameter count and result count of an export we can wrap; null otherwise.
  const sig = (name: string) => {
    const idx = exported.get(name);
    if (idx === undefined) return null;
    const nr = simple(idx);
    return nr < 0 ? null : { idx, np: typeParams[typeOf(idx)] ?? 0, nr };
  };
  for (const name of exported.keys()) {
    if (!name.startsWith("proxy_on_") || name === "proxy_on_memory_allocate") continue;
    const f = sig(name);
    if (f === null) continue;
    out.push({
      name: "loom:" + name,
      calls: [{ func: f.idx, params: [0, 1, 2, 3, 4].slice(0, f.np), result: f.nr === 1 }],
      reports: f.nr === 1,
    });
  }
  const create = sig("proxy_on_context_create");
  const headers = sig("proxy_on_request_headers");
  if (create !== null && create.np === 2 && headers !== null && headers.np >= 2 && headers.np <= 4) {
    // (ctx, root, a, b, c): on_context_create(ctx, root), then on_request_headers(ctx, a, b[, c]).
    out.push({
      name: "loom:start",
      calls: [
        { func: create.idx, params: [0, 1], result: create.nr === 1 },
        { func: headers.idx, params: [0, 2, 3, 4].slice(0, headers.np), result: headers.nr === 1 },
      ],
      reports: headers.nr === 1,
    });
  }
  const ends = ["proxy_on_done", "proxy_on_log", "proxy_on_delete"].map(sig);
  if (ends.some((f) => f !== null) && ends.every((f) => f === null || f.np === 1)) {
    out.push({
      name: "loom:finish",
      calls: ends.filter((f) => f !== null).map((f) => ({ func: f.idx, params: [0], result: f.nr === 1 })),
      reports: false,
    });
  }
  return out;
}

function entryBody(e: Entry, c: Ctx, resultFunc: number): Uint8Array {
  const w = new Writer();
  w.u32(0); // no locals
  e.calls.forEach((call, i) => {
    for (const p of call.params) w.byte(0x20), w.u32(p);
    w.byte(0x10), w.u32(shiftFunc(c, call.func));
    const last = i === e.calls.length - 1;
    if (call.result && !(last && e.reports)) w.byte(0x1a); // drop
  });
  if (!e.reports) w.byte(0x41), w.s32(0);
  w.byte(0x10), w.u32(resultFunc);
  w.byte(0x0b);
  return w.done().slice();
}

/** `loom:serve` (see the module doc): one long-lived JSPI stack per VM instead of a fresh one per call. */
function serveBody(n: number, first: number, nextFunc: number, argFunc: number): Uint8Array {
  const w = new Writer();
  w.u32(1), w.u32(1), w.byte(0x7f); // one i32 local: the entry index
  w.byte(0x03), w.byte(0x40); // loop
  w.byte(0x10), w.u32(nextFunc);
  w.byte(0x21), w.u32(0);
  for (let i = 0; i < n; i++) {
    w.byte(0x20), w.u32(0), w.byte(0x41), w.s32(i), w.byte(0x46); // local == i
    w.byte(0x04), w.byte(0x40);
    for (let k = 0; k < 5; k++) w.byte(0x41), w.s32(k), w.byte(0x10), w.u32(argFunc);
    w.byte(0x10), w.u32(first + i);
    w.byte(0x0b);
  }
  w.byte(0x0c), w.u32(0); // br to the loop
  w.byte(0x0b); // end loop
  w.byte(0x0b);
  return w.done().slice();
}

/** Section order (custom sections excluded) for inserting a missing global section. */
const ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

function addEmptyGlobalSection(bytes: Uint8Array, sections: { id: number; start: number; end: number }[]) {
  const w = new Writer();
  w.bytes(bytes.subarray(0, 8));
  let inserted = false;
  const rank = (id: number) => ORDER.indexOf(id);
  for (const s of sections) {
    if (!inserted && s.id !== 0 && rank(s.id) > rank(6)) {
      w.byte(6), w.u32(1), w.byte(0);
      inserted = true;
    }
    // Re-emit the section header and body unchanged.
    w.byte(s.id);
    w.u32(s.end - s.start);
    w.bytes(bytes.subarray(s.start, s.end));
  }
  if (!inserted) w.byte(6), w.u32(1), w.byte(0);
  return w.done().slice();
}

/** (ref ht) / (ref null ht) value types carry a heap-type immediate we do not decode. */
function isRefType(b: number): boolean {
  return b === 0x63 || b === 0x64;
}
