import assert from "node:assert/strict";
import wabtInit from "wabt";
import { Status } from "../abi.ts";
import { PluginVM, type SharedStores, type VmHost } from "../vm.ts";
import { pendingCount } from "./completions.ts";
import { dnsResolve, MAX_PENDING_DNS } from "./dns.ts";
import { cancelTimer, MAX_TIMERS, setTimer } from "./timers.ts";

/** An inline VM whose proxy_on_foreign_function counts its calls (exported `calls`). */
async function counterVM(): Promise<{ vm: PluginVM; calls: () => number }> {
  const wabt = await wabtInit();
  const m = wabt.parseWat(
    "fx.wat",
    `(module
      (memory (export "memory") 1)
      (global $n (mut i32) (i32.const 0))
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_foreign_function") (param i32 i32 i32) (global.set $n (i32.add (global.get $n) (i32.const 1))))
      (func (export "calls") (result i32) (global.get $n)))`,
  );
  const module = new WebAssembly.Module(new Uint8Array(m.toBinary({}).buffer));
  m.destroy();
  // Only what the VM and these host functions read of a plugin.
  const host = { pluginName: "t", vmId: "", timeout: 50, shared: { queues: new Map() } as SharedStores };
  const vm = new PluginVM(module, "0.2.1", host as unknown as VmHost);
  vm.effective = vm.rootContextId;
  return { vm, calls: () => (vm.instance.exports.calls as () => number)() };
}

const le = (...v: number[]) => new Uint8Array(new Uint32Array(v).buffer);
/** Until the timers due now (setTimeout 0, queued earlier) have run. */
const nextTurn = () => new Promise((r) => setTimeout(r, 0));

Deno.test("completions: a VM that failed gets nothing; its timers and lookups are dropped", async () => {
  const { vm, calls } = await counterVM();
  const root = vm.rootContextId;
  assert.ok(setTimer(vm, le(60_000)) instanceof Uint8Array);
  assert.ok(dnsResolve(vm, new TextEncoder().encode("localhost")) instanceof Uint8Array);
  assert.equal(pendingCount(vm, root, "timer"), 1);
  assert.equal(pendingCount(vm, root, "dns"), 1);
  vm.fail(new Error("gone"));
  assert.equal(pendingCount(vm, root, "timer"), 0);
  assert.equal(pendingCount(vm, root, "dns"), 0);
  await nextTurn(); // the localhost answer was due now
  assert.equal(calls(), 0);
});

Deno.test("completions: a root context removed (its plugin retired) drops its work", async () => {
  const { vm, calls } = await counterVM();
  const root = vm.rootContextId;
  dnsResolve(vm, new TextEncoder().encode("127.0.0.1"));
  vm.removeRoot(root);
  assert.equal(pendingCount(vm, root, "dns"), 0);
  // A callback still running for it (on_delete) gets no new work.
  assert.equal(setTimer(vm, le(0)), Status.INTERNAL_FAILURE);
  await nextTurn();
  assert.equal(calls(), 0);
});

Deno.test("completions: delivered once; cancel; bounds per root context", async () => {
  const { vm, calls } = await counterVM();
  const root = vm.rootContextId;
  const t = setTimer(vm, le(0)) as Uint8Array;
  const c = setTimer(vm, le(0));
  assert.ok(cancelTimer(vm, c as Uint8Array) instanceof Uint8Array); // OK: cancelled before it fired
  assert.equal(cancelTimer(vm, le(999_999)), Status.NOT_FOUND);
  await nextTurn();
  assert.equal(calls(), 1);
  assert.equal(cancelTimer(vm, t), Status.NOT_FOUND); // fired already
  assert.equal(setTimer(vm, new Uint8Array(3)), Status.BAD_ARGUMENT);
  for (let i = 0; i < MAX_TIMERS; i++) assert.ok(setTimer(vm, le(60_000)) instanceof Uint8Array);
  assert.equal(setTimer(vm, le(60_000)), Status.INTERNAL_FAILURE);
  for (let i = 0; i < MAX_PENDING_DNS; i++) dnsResolve(vm, new TextEncoder().encode("localhost"));
  assert.equal(dnsResolve(vm, new TextEncoder().encode("localhost")), Status.INTERNAL_FAILURE);
  assert.equal(pendingCount(vm, root, "timer"), MAX_TIMERS);
  vm.removeRoot(root); // clears the minute-long timers
  assert.equal(pendingCount(vm, root, "timer"), 0);
});
