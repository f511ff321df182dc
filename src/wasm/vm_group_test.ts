import assert from "node:assert/strict";
import wabtInit from "wabt";
import { instrument } from "./binary.ts";
import { PluginTimeout } from "./errors.ts";
import type { PluginVM, SharedStores, StreamHost } from "./vm.ts";
import { groupKey, type GroupMember, VmGroup } from "./vm_group.ts";
import { setLogOutput } from "../observability/logger.ts";

/** Refuses a configuration of 2 bytes; on_request_headers loops until its timeout. */
const WAT = `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.ne (local.get 1) (i32.const 2)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))`;

async function module(): Promise<WebAssembly.Module> {
  const wabt = await wabtInit();
  const m = wabt.parseWat("group.wat", WAT);
  try {
    return new WebAssembly.Module(
      instrument(new Uint8Array(m.toBinary({}).buffer), { maxPages: 4 }).bytes as Uint8Array<ArrayBuffer>,
    );
  } finally {
    m.destroy();
  }
}

type Member = GroupMember & { errors: string[] };

function member(name: string, config: string, timeout: number): Member {
  const m: Member = {
    pluginName: name,
    rootId: "",
    vmId: "v",
    vmConfig: new Uint8Array(0),
    pluginConfig: new TextEncoder().encode(config),
    timeout,
    startTimeout: 1000,
    isolation: "inline",
    property: () => undefined,
    tickPeriod: () => {},
    httpCall: () => null,
    shared: {} as SharedStores,
    vm: null,
    retired: false,
    errors: [],
    recordError: (msg) => void m.errors.push(msg),
    lostVM: () => {},
  };
  return m;
}

/** A stream context of `m` in `vm` (what chain.ts creates per request). */
function stream(vm: PluginVM, m: Member): number {
  const id = vm.newContextId();
  vm.streams.set(id, { id, plugin: m } as unknown as StreamHost);
  return id;
}

Deno.test("groupKey: an empty vm_id is never shared; every part of the key counts", () => {
  const cfg = new TextEncoder().encode("{}");
  assert.equal(groupKey("", "h", 1, "inline", cfg), null);
  const k = groupKey("v", "h", 1, "inline", cfg);
  assert.equal(groupKey("v", "h", 1, "inline", new TextEncoder().encode("{}")), k);
  for (
    const other of [
      groupKey("w", "h", 1, "inline", cfg),
      groupKey("v", "g", 1, "inline", cfg),
      groupKey("v", "h", 2, "inline", cfg),
      groupKey("v", "h", 1, "timeslice", cfg),
      groupKey("v", "h", 1, "inline", new Uint8Array(0)),
    ]
  ) assert.notEqual(other, k);
});

Deno.test("VmGroup: one VM, a root context per member with its own timeout; a failure loses it for all", async () => {
  const prevLog = setLogOutput(() => {});
  const g = new VmGroup("k", await module(), "0.2.1", () => {});
  const fast = member("fast", "fast", 20), slow = member("slow", "slow", 60);
  g.add(fast);
  g.add(slow);
  try {
    const vm = await g.vmFor(fast);
    assert.ok(vm !== null);
    assert.equal(await g.vmFor(slow), vm);
    assert.equal(g.vms, 1);
    assert.notEqual(vm.rootFor(fast), vm.rootFor(slow));
    assert.equal(vm.hostOf(vm.rootFor(slow)), slow);
    assert.deepEqual(g.sharedWith(fast), ["slow"]);

    // Each member's callbacks run with its own timeout.
    const ctx = stream(vm, slow);
    assert.equal(vm.rootOf(ctx), vm.rootFor(slow));
    assert.throws(() => vm.call("proxy_on_request_headers", ctx, ctx, 0, 0), new PluginTimeout(60));
    // The VM is lost to both; the failure is charged to the member whose callback failed it.
    assert.equal(fast.vm, null);
    assert.equal(slow.vm, null);
    assert.equal(slow.errors.length, 1);
    assert.equal(fast.errors.length, 0);

    // One new VM for both, each root context started again.
    const next = await g.vmFor(fast);
    assert.ok(next !== null && next !== vm);
    assert.equal(slow.vm, next);
    assert.equal(g.vms, 2);
    const fctx = stream(next, fast);
    assert.throws(() => next.call("proxy_on_request_headers", fctx, fctx, 0, 0), new PluginTimeout(20));
  } finally {
    g.remove(fast);
    g.remove(slow);
    setLogOutput(prevLog);
  }
});

Deno.test("VmGroup: a member whose root context is refused fails alone; alone, the VM start fails", async () => {
  const prevLog = setLogOutput(() => {});
  const mod = await module();
  const g = new VmGroup("k", mod, "0.2.1", () => {});
  const ok = member("ok", "fine", 50), refused = member("refused", "no", 50);
  g.add(ok);
  g.add(refused);
  const alone = new VmGroup(null, mod, "0.2.1", () => {});
  const only = member("only", "no", 50);
  alone.add(only);
  try {
    const vm = await g.vmFor(ok);
    assert.ok(vm !== null);
    assert.equal(refused.vm, null);
    assert.match(refused.errors[0], /rejected its configuration/);
    // Not retried before its backoff: the VM the others use is untouched.
    assert.equal(await g.vmFor(refused), null);
    assert.equal(g.vm, vm);
    assert.equal(vm.failed, null);
    assert.deepEqual(ok.errors, []);

    assert.equal(await alone.vmFor(only), null);
    assert.equal(alone.vm, null);
    assert.match(only.errors[0], /rejected its configuration/);
  } finally {
    g.remove(ok);
    g.remove(refused);
    alone.remove(only);
    setLogOutput(prevLog);
  }
});
