/**
 * Instruction-level rewriting (binary.ts): copies an expression (a function
 * body, a global's or element's constant expression), renumbers the
 * function indices our imports shifted, and puts the fuel check on every
 * `loop` header.
 *
 * @module
 */
import { type Reader, WasmLoadError, type Writer } from "./binary_io.ts";

/** What instruction rewriting needs to know (filled by binary.ts from the module). */
export interface Ctx {
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
export const OUR_IMPORTS = 5;
/** A function index after our imports went in. */
export const shiftFunc = (c: Ctx, idx: number) => idx >= c.importedFuncs ? idx + OUR_IMPORTS : idx;

/** `fuel = loom.check(); if (fuel == 0) { loom.yield(); fuel = chunk; }` */
export function emitCheck(w: Writer, c: Ctx): void {
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

/** Skips a memory argument (alignment, optional memory index, offset). */
function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory index
  r.skipLeb(); // offset (u32, or u64 for memory64)
}

/**
 * Copies an instruction sequence from `r` to `w` until the `end` that closes
 * depth 0 (inclusive), renumbering function references and instrumenting loops.
 */
export function rewriteExpr(r: Reader, w: Writer, c: Ctx, instrumentLoops: boolean): void {
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
