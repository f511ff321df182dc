/**
 * Costs of the plugin host features of issue 14 item 11, measured on one VM
 * without a gateway around it:
 *
 * - `read_file` / WASI reads are synchronous: how long one call holds the
 *   event loop for a 4 KiB, 1 MiB and 16 MiB file (the cap);
 * - a `set_timer(0)` firing: from the call to the end of its
 *   proxy_on_foreign_function callback, inline and timeslice;
 * - `dns_resolve` of `localhost` (answered without a lookup): from the call
 *   to the end of its callback.
 *
 * Usage: deno run -A --unstable-net bench/hostfx.ts [rounds=2000]
 *
 * @module
 */
import wabtInit from "wabt";
import { compileModule, endCompileWorker } from "../src/wasm/compile.ts";
import { PluginVM, type SharedStores } from "../src/wasm/vm.ts";
import { sandboxOf } from "../src/wasm/preopens.ts";
import { setTimer } from "../src/wasm/host/timers.ts";
import { dnsResolve } from "../src/wasm/host/dns.ts";

const rounds = Number(Deno.args[0] ?? 2000);

/** A VM with an empty proxy_on_foreign_function; `ended` runs when a completion's callback has ended. */
async function benchVM(isolation: "inline" | "timeslice", ended: () => void): Promise<PluginVM> {
  const wabt = await wabtInit();
  const m = wabt.parseWat(
    "bench.wat",
    `(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_foreign_function") (param i32 i32 i32)))`,
  );
  const bytes = new Uint8Array(m.toBinary({}).buffer);
  m.destroy();
  const c = await compileModule(bytes, 16 << 20);
  const vm = new PluginVM(c.module, "0.2.1", {
    pluginName: "bench",
    rootId: "",
    vmId: "",
    vmConfig: new Uint8Array(0),
    pluginConfig: new Uint8Array(0),
    timeout: 1000,
    isolation,
    property: () => undefined,
    tickPeriod: () => {},
    httpCall: () => null,
    shared: { queues: new Map() } as unknown as SharedStores,
  });
  // The real delivery path, with a probe at its end.
  const deliver = vm.deliver.bind(vm);
  vm.deliver = (cb, data, token, x, y, z, root, done) =>
    deliver(cb, data, token, x, y, z, root, () => {
      done?.();
      ended();
    });
  vm.effective = vm.rootContextId;
  return vm;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const fmt = (ms: number) => ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`;

// 1. Synchronous reads.
const tmp = Deno.makeTempDirSync({ prefix: "loom-bench-hostfx-" });
for (const [name, size] of [["4k", 4096], ["1m", 1 << 20], ["16m", 16 << 20]] as const) {
  Deno.writeFileSync(`${tmp}/${name}`, new Uint8Array(size).fill(97));
}
const sandbox = sandboxOf({ files: [{ dir: tmp, as: "/data" }] })!;
console.log("read_file's host side (resolve, realPath, stat, read whole), per call:");
for (const name of ["4k", "1m", "16m"]) {
  const n = Math.min(rounds, name === "16m" ? 50 : 500);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = sandbox.readFile(`/data/${name}`);
    times.push(performance.now() - t);
    if (!(r instanceof Uint8Array)) throw new Error(String(r));
  }
  console.log(
    `  ${name.padEnd(4)} median ${fmt(median(times))}, max ${fmt(Math.max(...times))} (${n} reads)`,
  );
}
Deno.removeSync(tmp, { recursive: true });

// 2. Timers and 3. DNS: from the call to the end of the callback, against a bare setTimeout(0) of the host.
const bare: number[] = [];
for (let i = 0; i < rounds; i++) {
  const t = performance.now();
  await new Promise((r) => setTimeout(r, 0));
  bare.push(performance.now() - t);
}
console.log(`bare setTimeout(0) of the host (the floor of both): median ${fmt(median(bare))} (${rounds})`);
let ended = () => {};
const enc = new TextEncoder();
for (const isolation of ["inline", "timeslice"] as const) {
  const vm = await benchVM(isolation, () => ended());
  for (
    const [what, start] of [
      ["set_timer(0)", () => setTimer(vm, new Uint8Array(4))],
      ["dns_resolve(localhost)", () => dnsResolve(vm, enc.encode("localhost"))],
    ] as const
  ) {
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t = performance.now();
      const done = new Promise<void>((r) => ended = r);
      start();
      await done;
      times.push(performance.now() - t);
    }
    console.log(
      `${what} to the end of its callback, ${isolation}: median ${fmt(median(times))} (${rounds} calls)`,
    );
  }
}
// The compile worker keeps the process alive otherwise.
endCompileWorker();
