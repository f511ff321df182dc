/**
 * Cost of the loop instrumentation that bounds plugin callbacks (src/wasm/binary.ts):
 * the same tight loops run in the original module and in the instrumented one.
 *
 *   deno run -A bench/wasm_loops.ts
 */
import wabtInit from "wabt";
import { instrument } from "../src/wasm/binary.ts";

const wabt = await wabtInit();
const mod = wabt.parseWat(
  "loops.wat",
  `(module
  (memory (export "memory") 17)
  ;; byte loop: sums n bytes (a body scan, the tightest realistic plugin loop)
  (func (export "scan") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (i32.load8_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  ;; empty counting loop: the worst case (the check is most of the work)
  (func (export "count") (param $n i32) (result i32)
    (loop $l (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br_if $l (local.get $n)))
    (local.get $n)))`,
);
mod.resolveNames();
const plain = new Uint8Array(mod.toBinary({}).buffer);
mod.destroy();
const inst = instrument(plain, { maxPages: 256 });

type Ex = { scan(n: number): number; count(n: number): number };
const a = new WebAssembly.Instance(new WebAssembly.Module(plain)).exports as unknown as Ex;
const b = new WebAssembly.Instance(new WebAssembly.Module(inst.bytes as Uint8Array<ArrayBuffer>), {
  loom: { check: () => 20_000 },
}).exports as unknown as Ex;

function time(f: () => void, reps: number): number {
  f();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) f();
  return (performance.now() - t0) / reps;
}
for (const [name, n] of [["scan", 1 << 20], ["count", 10_000_000]] as const) {
  const best = [Infinity, Infinity];
  for (let round = 0; round < 5; round++) {
    best[0] = Math.min(best[0], time(() => a[name](n), 20));
    best[1] = Math.min(best[1], time(() => b[name](n), 20));
  }
  const per = (ms: number) => (ms * 1e6 / n).toFixed(3);
  console.log(
    `${name}: ${per(best[0])} ns/iteration plain, ${per(best[1])} instrumented (+${
      ((best[1] / best[0] - 1) * 100).toFixed(0)
    }%)`,
  );
}
