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

import { type Ctx, emitCheck, OUR_IMPORTS, rewriteExpr, shiftFunc } from "./binary_code.ts";
import { type Entry, entryBody, entryPoints, serveBody } from "./binary_entries.ts";
import { Reader, WasmLoadError, Writer } from "./binary_io.ts";

/** What {@link instrument} throws for modules it cannot (or must not) load. */
export { WasmLoadError };

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

/** Section ids. */
const S = {
  CUSTOM: 0,
  TYPE: 1,
  IMPORT: 2,
  FUNCTION: 3,
  MEMORY: 5,
  GLOBAL: 6,
  EXPORT: 7,
  START: 8,
  ELEMENT: 9,
  CODE: 10,
};

/** Where a section's body lies in the module. */
interface Section {
  id: number;
  start: number;
  end: number;
}

/** What the first pass learns of a module: the counts and signatures the rewrite depends on. */
interface ModuleInfo {
  typeCount: number;
  /** Parameter count per type. */
  typeParams: number[];
  /** Per type: only i32 parameters and at most one i32 result (-1 otherwise, else the result count). */
  typeSimple: number[];
  /** Type index per defined function. */
  funcTypes: number[];
  /** Type index per imported function. */
  importTypes: number[];
  /** Exported functions: name to function index. */
  exported: Map<string, number>;
  importedFuncs: number;
  importedGlobals: number;
  definedGlobals: number;
}

/** How the module is rewritten, shared by the section passes. */
interface Plan {
  /** Expression rewriting (binary_code.ts); counts instrumented loops. */
  c: Ctx;
  maxPages: number;
  /** Type indices of the signatures appended to the type section. */
  checkType: number;
  yieldType: number;
  resultType: number;
  entryType: number;
  argType: number;
  typeParams: number[];
  funcTypes: number[];
  /** Timeslice entry points, and the function index of the first. */
  entries: Entry[];
  firstEntry: number;
  /** Functions added after the module's own: the entries plus the serving loop (0 when there are none). */
  generated: number;
  /** Declared initial pages of the first memory (found by the import and memory passes). */
  initialPages: number;
}

/** A section pass: the section's new body, or null to drop it. */
type Pass = (r: Reader, p: Plan) => Uint8Array | null;

/**
 * Rewrites `bytes` (a WebAssembly module) as described in the module doc.
 * Throws {@link WasmLoadError} for modules it cannot handle.
 */
export function instrument(bytes: Uint8Array, opts: InstrumentOptions): InstrumentResult {
  checkHeader(bytes);
  let sections = readSections(bytes);
  // The fuel lives in a global: a module without a global section gets an empty one first.
  if (!sections.some((s) => s.id === S.GLOBAL)) {
    bytes = addEmptyGlobalSection(bytes, sections);
    sections = readSections(bytes);
  }
  const p = plan(sections, scan(bytes, sections), opts);
  const hasImports = sections.some((s) => s.id === S.IMPORT);
  const out = new Writer();
  out.bytes(bytes.subarray(0, 8));
  const emit = (id: number, body: Uint8Array) => {
    out.byte(id);
    out.u32(body.length);
    out.bytes(body);
  };
  for (const s of sections) {
    const pass = PASSES[s.id];
    const body = pass === undefined
      ? bytes.subarray(s.start, s.end)
      : pass(new Reader(bytes, s.start, s.end), p);
    if (body !== null) emit(s.id, body);
    // A module that imports nothing gets an import section (ours only) in its place, after the types.
    if (s.id === S.TYPE && !hasImports) emit(S.IMPORT, onlyOurImports(p));
  }
  if (!sections.some((s) => s.id === S.TYPE)) {
    throw new WasmLoadError("module has no type section (no functions)");
  }
  return { bytes: out.done().slice(), loops: p.c.loops, initialPages: p.initialPages };
}

/** The section passes by section id; sections without one are copied unchanged. */
const PASSES: Record<number, Pass> = {
  [S.CUSTOM]: dropNames,
  [S.TYPE]: rewriteTypes,
  [S.IMPORT]: rewriteImports,
  [S.FUNCTION]: rewriteFunctions,
  [S.MEMORY]: rewriteMemories,
  [S.GLOBAL]: rewriteGlobals,
  [S.EXPORT]: rewriteExports,
  [S.START]: rewriteStart,
  [S.ELEMENT]: rewriteElements,
  [S.CODE]: rewriteCode,
};

function checkHeader(bytes: Uint8Array): void {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmLoadError("not a WebAssembly module (bad magic)");
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmLoadError("unsupported WebAssembly version (components are not supported)");
  }
}

/** Section boundaries. */
function readSections(bytes: Uint8Array): Section[] {
  const sections: Section[] = [];
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    sections.push({ id, start, end: start + size });
  }
  return sections;
}

/** First pass: the counts and signatures needed before rewriting. */
function scan(bytes: Uint8Array, sections: Section[]): ModuleInfo {
  const m: ModuleInfo = {
    typeCount: 0,
    typeParams: [],
    typeSimple: [],
    funcTypes: [],
    importTypes: [],
    exported: new Map(),
    importedFuncs: 0,
    importedGlobals: 0,
    definedGlobals: 0,
  };
  for (const s of sections) {
    const r = new Reader(bytes, s.start, s.end);
    if (s.id === S.TYPE) {
      m.typeCount = r.u32();
      for (let i = 0; i < m.typeCount; i++) {
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
        m.typeParams.push(np);
        m.typeSimple.push(simple && nr <= 1 && np <= 5 ? nr : -1);
      }
    }
    if (s.id === S.FUNCTION) {
      const n = r.u32();
      for (let i = 0; i < n; i++) m.funcTypes.push(r.u32());
    }
    if (s.id === S.GLOBAL) m.definedGlobals = r.u32();
    if (s.id === S.EXPORT) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const len = r.u32();
        const name = new TextDecoder().decode(bytes.subarray(r.pos, r.pos + len));
        r.skip(len);
        const kind = r.byte();
        const idx = r.u32();
        if (kind === 0) m.exported.set(name, idx);
      }
    }
    if (s.id === S.IMPORT) {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        r.skip(r.u32());
        r.skip(r.u32());
        const kind = r.byte();
        if (kind === 0) m.importTypes.push(r.u32()), m.importedFuncs++;
        else if (kind === 1) r.byte(), readLimits(r);
        else if (kind === 2) readLimits(r);
        else if (kind === 3) r.byte(), r.byte(), m.importedGlobals++;
        else if (kind === 4) r.byte(), r.u32();
        else throw new WasmLoadError(`unknown import kind ${kind}`);
      }
    }
  }
  return m;
}

/** Indices of what the rewrite adds (imports, types, the fuel global, entry points). */
function plan(sections: Section[], m: ModuleInfo, opts: InstrumentOptions): Plan {
  const has = (id: number) => sections.some((s) => s.id === id);
  const importedFuncs = m.importedFuncs;
  const typeOf = (idx: number) => idx < importedFuncs ? m.importTypes[idx] : m.funcTypes[idx - importedFuncs];
  const entries = has(S.FUNCTION) && has(S.EXPORT) && has(S.CODE)
    ? entryPoints(m.exported, (idx) => m.typeSimple[typeOf(idx)] ?? -1, m.typeParams, typeOf)
    : [];
  return {
    c: {
      importedFuncs,
      checkFunc: importedFuncs,
      yieldFunc: importedFuncs + 1,
      fuelChunk: opts.fuelChunk ?? DEFAULT_FUEL_CHUNK,
      fuelGlobal: m.importedGlobals + m.definedGlobals,
      loops: 0,
      counterLocal: 0,
      loopMask: opts.loopMask ?? DEFAULT_LOOP_MASK,
    },
    maxPages: opts.maxPages,
    checkType: m.typeCount, // () -> i32, appended
    yieldType: m.typeCount + 1, // () -> (), appended
    resultType: m.typeCount + 2, // (i32) -> (), appended
    entryType: m.typeCount + 3, // (i32 x 5) -> (), appended
    argType: m.typeCount + 4, // (i32) -> i32, appended
    typeParams: m.typeParams,
    funcTypes: m.funcTypes,
    entries,
    firstEntry: importedFuncs + OUR_IMPORTS + m.funcTypes.length,
    // The serving loop (after the entries) exists when there is anything to serve.
    generated: entries.length > 0 ? entries.length + 1 : 0,
    initialPages: 0,
  };
}

/** Type section: the signatures of our imports and entry points appended. */
function rewriteTypes(r: Reader, _p: Plan): Uint8Array {
  const w = new Writer();
  const n = r.u32();
  w.u32(n + 5); // the five below, in the order of Plan.checkType .. argType
  w.bytes(r.b.subarray(r.pos, r.end));
  w.byte(0x60), w.u32(0), w.u32(1), w.byte(0x7f);
  w.byte(0x60), w.u32(0), w.u32(0);
  w.byte(0x60), w.u32(1), w.byte(0x7f), w.u32(0);
  w.byte(0x60), w.u32(5), w.bytes(new Uint8Array(5).fill(0x7f)), w.u32(0);
  w.byte(0x60), w.u32(1), w.byte(0x7f), w.u32(1), w.byte(0x7f);
  return w.done();
}

/** Import section: memory imports capped at the limit, our imports appended. */
function rewriteImports(r: Reader, p: Plan): Uint8Array {
  const b = r.b;
  return vector(r, OUR_IMPORTS, (w) => {
    const m = r.u32();
    w.u32(m), w.bytes(b.subarray(r.pos, r.pos + m)), r.skip(m);
    const f = r.u32();
    w.u32(f), w.bytes(b.subarray(r.pos, r.pos + f)), r.skip(f);
    const kind = r.byte();
    w.byte(kind);
    if (kind === 2) {
      const [flags, min, max] = readLimits(r);
      p.initialPages = min;
      writeCappedLimits(w, flags, min, max, p.maxPages);
    } else {
      const st = r.pos;
      if (kind === 0) r.u32();
      else if (kind === 1) r.byte(), readLimits(r);
      else if (kind === 3) r.byte(), r.byte();
      else r.byte(), r.u32();
      w.bytes(b.subarray(st, r.pos));
    }
  }, (w) => ourImports(w, p));
}

/**
 * Our imports, after the module's own (their indices = the old imported
 * function count onwards): loom.check, yield, result, next, arg.
 */
function ourImports(w: Writer, p: Plan): void {
  const ours: [string, number][] = [
    ["check", p.checkType],
    ["yield", p.yieldType],
    ["result", p.resultType],
    ["next", p.checkType],
    ["arg", p.argType],
  ];
  for (const [name, type] of ours) w.str("loom"), w.str(name), w.byte(0), w.u32(type);
}

/** An import section of our imports only, for a module that imports nothing. */
function onlyOurImports(p: Plan): Uint8Array {
  const w = new Writer();
  w.u32(OUR_IMPORTS);
  ourImports(w, p);
  return w.done();
}

/** Function section: the entry points' and the serving loop's types appended. */
function rewriteFunctions(r: Reader, p: Plan): Uint8Array {
  const w = new Writer();
  const n = r.u32();
  w.u32(n + p.generated);
  w.bytes(r.b.subarray(r.pos, r.end)); // the module's type indices, unchanged
  for (let i = 0; i < p.entries.length; i++) w.u32(p.entryType);
  if (p.generated > 0) w.u32(p.yieldType);
  return w.done();
}

/** Memory section: every maximum capped at the limit. */
function rewriteMemories(r: Reader, p: Plan): Uint8Array {
  return vector(r, 0, (w, i) => {
    const [flags, min, max] = readLimits(r);
    if (i === 0) p.initialPages = min;
    writeCappedLimits(w, flags, min, max, p.maxPages);
  });
}

/** Global section: initialisers renumbered, the fuel global (mutable i32 = one chunk) appended. */
function rewriteGlobals(r: Reader, p: Plan): Uint8Array {
  return vector(r, 1, (w) => {
    const t = r.pos;
    r.byte(), r.byte(); // value type, mutability
    w.bytes(r.b.subarray(t, r.pos));
    rewriteExpr(r, w, p.c, false);
  }, (w) => {
    w.byte(0x7f), w.byte(1), w.byte(0x41), w.s32(p.c.fuelChunk), w.byte(0x0b);
  });
}

/** Export section: function exports renumbered, the entry points and `loom:serve` exported. */
function rewriteExports(r: Reader, p: Plan): Uint8Array {
  return vector(r, p.generated, (w) => {
    const m = r.u32();
    w.u32(m), w.bytes(r.b.subarray(r.pos, r.pos + m)), r.skip(m);
    const kind = r.byte();
    const idx = r.u32();
    w.byte(kind), w.u32(kind === 0 ? shiftFunc(p.c, idx) : idx);
  }, (w) => {
    p.entries.forEach((e, i) => {
      w.str(e.name), w.byte(0), w.u32(p.firstEntry + i);
    });
    if (p.generated > 0) w.str("loom:serve"), w.byte(0), w.u32(p.firstEntry + p.entries.length);
  });
}

/** Start section: the start function renumbered. */
function rewriteStart(r: Reader, p: Plan): Uint8Array {
  const w = new Writer();
  w.u32(shiftFunc(p.c, r.u32()));
  return w.done();
}

/** Element section: function indices and constant expressions renumbered. */
function rewriteElements(r: Reader, p: Plan): Uint8Array {
  const c = p.c;
  return vector(r, 0, (w) => {
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
  });
}

/** Code section: every body instrumented (instrumentBody), then the entry points' and serving loop's. */
function rewriteCode(r: Reader, p: Plan): Uint8Array {
  const sized = (w: Writer, body: Uint8Array) => {
    w.u32(body.length);
    w.bytes(body);
  };
  return vector(r, p.generated, (w, i) => {
    const size = r.u32();
    const end = r.pos + size;
    sized(w, instrumentBody(new Reader(r.b, r.pos, end), p, p.typeParams[p.funcTypes[i]] ?? 0));
    r.pos = end;
  }, (w) => {
    const importedFuncs = p.c.importedFuncs;
    for (const e of p.entries) sized(w, entryBody(e, p.c, importedFuncs + 2));
    if (p.generated > 0) {
      sized(w, serveBody(p.entries.length, p.firstEntry, importedFuncs + 3, importedFuncs + 4));
    }
  });
}

/**
 * A vector section: its count (plus the `added` items `append` writes),
 * then each of its items as `item` rewrites them (`r` is at the item).
 */
function vector(
  r: Reader,
  added: number,
  item: (w: Writer, i: number) => void,
  append?: (w: Writer) => void,
): Uint8Array {
  const w = new Writer();
  const n = r.u32();
  w.u32(n + added);
  for (let i = 0; i < n; i++) item(w, i);
  append?.(w);
  return w.done();
}

/**
 * One function body (`params` parameters): its loops instrumented and, when
 * it has any, a loop counter local and the entry check on the global fuel.
 */
function instrumentBody(fr: Reader, p: Plan, params: number): Uint8Array {
  const c = p.c;
  const locals = new Writer();
  const groups = fr.u32();
  let localCount = params;
  for (let g = 0; g < groups; g++) {
    const count = fr.u32();
    localCount += count;
    locals.u32(count);
    const t = fr.pos;
    const b = fr.byte();
    if (b === 0x63 || b === 0x64) fr.skipLeb();
    locals.bytes(fr.b.subarray(t, fr.pos));
  }
  c.counterLocal = localCount;
  const code = new Writer();
  const before = c.loops;
  rewriteExpr(fr, code, c, true);
  if (fr.pos !== fr.end) throw new WasmLoadError("function body has trailing bytes");
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
  return fw.done();
}

/** Custom sections: `name` dropped (its function indices are stale after renumbering), others kept. */
function dropNames(r: Reader, _p: Plan): Uint8Array | null {
  const start = r.pos;
  const len = r.u32();
  const name = new TextDecoder().decode(r.b.subarray(r.pos, r.pos + len));
  return name === "name" ? null : r.b.subarray(start, r.end);
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

/** Section order (custom sections excluded) for inserting a missing global section. */
const ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

/** `bytes` with an empty global section in its place (section order), for the fuel global. */
function addEmptyGlobalSection(bytes: Uint8Array, sections: Section[]): Uint8Array {
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
