/**
 * Timeslice entry points the rewriter (binary.ts) adds: `loom:<callback>` for
 * every exported `proxy_on_*` callback, the batches `loom:start` and
 * `loom:finish`, and the serving loop `loom:serve` that runs them by index
 * (timeslice.ts enters it once per VM).
 *
 * @module
 */
import { type Ctx, shiftFunc } from "./binary_code.ts";
import { Writer } from "./binary_io.ts";

/** A generated entry point: calls (callee, parameter indices, drop its result) in order, then `loom.result`. */
export interface Entry {
  name: string;
  calls: { func: number; params: number[]; result: boolean }[];
  /** The last call's result goes to loom.result (else 0). */
  reports: boolean;
}

/** The entry points a module gets (see the module doc), from its exported functions. */
export function entryPoints(
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

/** The body of entry point `e`: its calls, then `loom.result` (function `resultFunc`). */
export function entryBody(e: Entry, c: Ctx, resultFunc: number): Uint8Array {
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
export function serveBody(n: number, first: number, nextFunc: number, argFunc: number): Uint8Array {
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
