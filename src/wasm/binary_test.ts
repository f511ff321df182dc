import assert from "node:assert/strict";
import wabtInit from "wabt";
import { instrument, WasmLoadError } from "./binary.ts";

const wabt = await wabtInit();
/** JSPI, not yet in Deno's lib types. */
const JSPI = WebAssembly as unknown as {
  Suspending: new (f: () => Promise<unknown>) => WebAssembly.ImportValue;
  promising(f: unknown): (...a: number[]) => Promise<number>;
};

function wat(text: string): Uint8Array {
  const m = wabt.parseWat("t.wat", text, { bulk_memory: true, reference_types: true });
  try {
    m.resolveNames();
    m.validate();
    return new Uint8Array(m.toBinary({ write_debug_names: true }).buffer);
  } finally {
    m.destroy();
  }
}

const SAMPLE = wat(`(module
  (type $t (func (result i32)))
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1 100)
  (table 3 funcref)
  (elem (i32.const 0) $a $b)
  (elem declare func $b)
  (global $g (mut i32) (i32.const 5))
  (global $r funcref (ref.func $a))
  (func $a (result i32) (i32.const 1))
  (func $b (result i32) (i32.const 2))
  (func $init (global.set $g (i32.const 7)))
  (start $init)
  (func (export "sum") (param $n i32) (result i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $h (local.get $n))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (i32.add (local.get $acc)
      (i32.add (call_indirect (type $t) (i32.const 0)) (call_indirect (type $t) (i32.const 1)))))
  (func (export "spin") (loop $x (br $x)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "direct") (result i32) (call $b))
  (func (export "viaref") (result i32)
    (table.set (i32.const 2) (ref.func $b))
    (call_indirect (type $t) (i32.const 2)))
  (func (export "g") (result i32) (global.get $g)))`);

function load(bytes: Uint8Array, check: () => number, yieldFn: WebAssembly.ImportValue = () => {}) {
  const m = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  const env = { h: (x: number) => x };
  const inst = new WebAssembly.Instance(m, {
    env,
    loom: { check, yield: yieldFn, result: () => {}, next: () => 0, arg: () => 0 },
  });
  return inst.exports as Record<string, (...a: number[]) => number> & { memory: WebAssembly.Memory };
}

Deno.test("instrument: behaviour preserved, function indices renumbered everywhere", () => {
  const plain = load(SAMPLE, () => 0);
  const r = instrument(SAMPLE, { maxPages: 50 });
  assert.equal(r.loops, 2);
  assert.equal(r.initialPages, 1);
  const ins = load(r.bytes, () => 1000);
  for (const ex of [plain, ins]) {
    assert.equal(ex.sum(3), 9);
    assert.equal(ex.direct(), 2);
    assert.equal(ex.viaref(), 2);
    assert.equal(ex.g(), 7, "start function ran");
  }
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>));
  assert.deepEqual(imports.map((i) => `${i.module}.${i.name}`), [
    "env.h",
    "loom.check",
    "loom.yield",
    "loom.result",
    "loom.next",
    "loom.arg",
  ]);
});

Deno.test("instrument: loops call the check every mask+1 iterations; a throwing check stops an endless loop", () => {
  let calls = 0;
  const r = instrument(SAMPLE, { maxPages: 50, loopMask: 15, fuelChunk: 3 });
  const ex = load(r.bytes, () => {
    if (++calls === 5) throw new Error("deadline");
    return 3;
  });
  assert.throws(() => ex.spin(), /deadline/);
  assert.equal(calls, 5);
  const fresh = load(r.bytes, () => (calls++, 3));
  calls = 0;
  assert.equal(fresh.sum(40), 40 * 41 / 2 + 3);
  assert.equal(calls, 2, "40 iterations at 16 per check: two checks");
  // Calls of loop-containing functions count against the global fuel (3 per check here).
  calls = 0;
  for (let i = 0; i < 9; i++) fresh.sum(1);
  assert.equal(calls, 3);
});

Deno.test("instrument: memory maximum capped at the limit; over-large initial memory refused", () => {
  const ex = load(instrument(SAMPLE, { maxPages: 50 }).bytes, () => 1);
  assert.equal(ex.grow(48), 1);
  assert.equal(ex.grow(2), -1);
  assert.equal(ex.memory.buffer.byteLength, 49 * 65536);
  assert.throws(() => instrument(SAMPLE, { maxPages: 0 }), WasmLoadError);
  const noMax = wat(`(module (memory (export "memory") 2) (func (export "grow") (param i32) (result i32)
    (memory.grow (local.get 0))))`);
  const ex2 = load(instrument(noMax, { maxPages: 4 }).bytes, () => 1);
  assert.equal(ex2.grow(2), 2);
  assert.equal(ex2.grow(1), -1);
});

Deno.test("instrument: modules without globals or imports; bad input rejected", () => {
  const bare = wat(`(module (memory (export "memory") 1) (func (export "f") (result i32) (local i32)
    (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 0) (i32.const 5))))
    (local.get 0)))`);
  const r = instrument(bare, { maxPages: 2 });
  assert.equal(load(r.bytes, () => 1).f(), 5);
  assert.throws(() => instrument(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), { maxPages: 1 }), /magic/);
  assert.throws(() => instrument(SAMPLE.subarray(0, SAMPLE.length - 3), { maxPages: 50 }), WasmLoadError);
});

Deno.test("instrument: a check returning 0 yields (JSPI suspend), then the loop resumes with fresh fuel", async () => {
  const r = instrument(SAMPLE, { maxPages: 50, loopMask: 15, fuelChunk: 3 });
  let calls = 0, yields = 0;
  const log: string[] = [];
  const ex = load(
    r.bytes,
    () => {
      calls++;
      if (calls === 8) throw new Error("deadline");
      return calls % 3 === 0 ? 0 : 3;
    },
    new JSPI.Suspending(async () => {
      yields++;
      log.push("suspended");
      await new Promise((r) => setTimeout(r, 0));
    }),
  );
  const spin = JSPI.promising(ex.spin)();
  log.push("returned");
  await assert.rejects(spin, /deadline/);
  assert.equal(calls, 8);
  assert.equal(yields, 2, "checks 3 and 6 returned 0");
  assert.equal(log[0], "suspended");
  assert.equal(log[1], "returned", "the caller got the event loop back while the loop was suspended");
  // Results survive a suspension: sum() across yields.
  calls = 0;
  const ex2 = load(
    r.bytes,
    () => (++calls % 2 === 0 ? 0 : 3),
    new JSPI.Suspending(() => new Promise((r) => setTimeout(r, 0))),
  );
  assert.equal(await JSPI.promising(ex2.sum)(100), 100 * 101 / 2 + 3);
  assert.ok(calls >= 6);
});

Deno.test("instrument: timeslice entry points and the serving loop (loom.next / loom.arg / loom.result)", async () => {
  const mod = wat(`(module
    (import "env" "log" (func $log (param i32)))
    (memory (export "memory") 1)
    (func (export "proxy_on_context_create") (param i32 i32) (call $log (i32.add (i32.const 100) (local.get 1))))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $log (i32.add (i32.const 200) (local.get 1)))
      (i32.add (local.get 2) (i32.const 40)))
    (func (export "proxy_on_done") (param i32) (result i32) (call $log (i32.const 300)) (i32.const 1))
    (func (export "proxy_on_log") (param i32) (call $log (i32.const 400)))
    (func (export "proxy_on_delete") (param i32) (call $log (i32.const 500)))
    (func (export "proxy_on_tick") (param i64)))`);
  const r = instrument(mod, { maxPages: 2 });
  const names = WebAssembly.Module.exports(new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>))
    .map((e) => e.name).filter((n) => n.startsWith("loom:"));
  // proxy_on_tick (an i64 parameter) gets no entry point: the host calls it through its own promising.
  assert.deepEqual(names, [
    "loom:proxy_on_context_create",
    "loom:proxy_on_request_headers",
    "loom:proxy_on_done",
    "loom:proxy_on_log",
    "loom:proxy_on_delete",
    "loom:start",
    "loom:finish",
    "loom:serve",
  ]);
  const log: number[] = [];
  const results: number[] = [];
  let wake: ((i: number) => void) | null = null;
  let args = [0, 0, 0, 0, 0];
  const inst = new WebAssembly.Instance(new WebAssembly.Module(r.bytes as Uint8Array<ArrayBuffer>), {
    env: { log: (v: number) => void log.push(v) },
    loom: {
      check: () => 1000,
      yield: () => {},
      result: (v: number) => void results.push(v),
      next: new JSPI.Suspending(() => new Promise<number>((res) => wake = res)),
      arg: (i: number) => args[i],
    },
  });
  const serving = JSPI.promising(inst.exports["loom:serve"])();
  const run = async (job: number, a: number[]) => {
    args = a;
    const w = wake!;
    wake = null;
    w(job);
    await new Promise((r) => setTimeout(r, 0));
  };
  assert.ok(wake !== null, "parked in loom.next");
  await run(5, [7, 1, 2, 3, 0]); // loom:start
  await run(1, [7, 5, 6, 0, 0]); // loom:proxy_on_request_headers alone
  await run(6, [7, 0, 0, 0, 0]); // loom:finish
  assert.deepEqual(log, [101, 202, 205, 300, 400, 500]);
  assert.deepEqual(results, [43, 46, 0]);
  assert.ok(wake !== null, "parked again");
  serving.catch(() => {});
});
