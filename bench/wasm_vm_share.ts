/**
 * VMs shared by vm_id (issue 14 item 8): N definitions of the Go filter
 * (plugins/sdk-go, 2.4 MiB, its Go runtime started in `_initialize`) each in
 * a VM of its own (empty vm_id) against all in one VM (one vm_id, a root
 * context per plugin). Per variant: the time until all N run (the module
 * compiled once beforehand, so this is VM and root context start-up), the
 * VMs created, the guest linear memory they hold, and the process RSS
 * growth (noisy: V8 and the allocator decide when memory goes back).
 *
 * Usage: deno run -A bench/wasm_vm_share.ts [N=8] [rounds=3]
 *
 * @module
 */
import { PluginManager } from "../src/wasm/mod.ts";
import type { LoomConfig, PluginConfig } from "../src/config/types.ts";
import type { PluginVM } from "../src/wasm/vm.ts";
import { setLogLevel } from "../src/observability/logger.ts";

setLogLevel("error");
const GO = new URL("../plugins/sdk-go/http_filter.wasm", import.meta.url).pathname;
const N = Number(Deno.args[0] ?? 8);
const ROUNDS = Number(Deno.args[1] ?? 3);

function cfg(i: number, vmId: string): PluginConfig {
  return {
    name: `go${i}`,
    path: GO,
    root_id: "loom_go",
    vm_id: vmId,
    config: `plugin ${i}`,
    memory_limit: 64 * 1024 * 1024,
    timeout: 50,
    priority: 0,
    failure_policy: "fail_closed",
  } as PluginConfig;
}

interface Result {
  ms: number;
  vms: number;
  guestMiB: number;
  rssMiB: number;
}

async function variant(vmId: string): Promise<Result> {
  const m = new PluginManager();
  const cfgs = Array.from({ length: N }, (_, i) => cfg(i, vmId));
  // Compiled once beforehand (cached by content): what follows is start-up alone.
  await m.compile(GO, 64 * 1024 * 1024);
  const rss0 = Deno.memoryUsage().rss;
  const t0 = performance.now();
  m.update({ plugins: cfgs } as unknown as LoomConfig, new Map());
  const chain = m.chain(cfgs.map((c) => c.name))!;
  const vms = new Set<PluginVM>();
  for (const p of chain.plugins) {
    const vm = await p.getVM();
    if (vm === null) throw new Error(`${p.pluginName} did not start: ${p.lastError}`);
    vms.add(vm);
  }
  const ms = performance.now() - t0;
  const guest = [...vms].reduce((n, vm) => n + vm.memory.buffer.byteLength, 0);
  const rss = Deno.memoryUsage().rss - rss0;
  // Retired: the VMs are dropped with the manager.
  m.update({ plugins: [] } as unknown as LoomConfig, new Map());
  m.retireReplaced();
  return { ms, vms: vms.size, guestMiB: guest / 2 ** 20, rssMiB: rss / 2 ** 20 };
}

const fmt = (r: Result) =>
  `${r.ms.toFixed(1)} ms, ${r.vms} VM(s), guest memory ${r.guestMiB.toFixed(1)} MiB, RSS +${
    r.rssMiB.toFixed(1)
  } MiB`;
for (let round = 0; round < ROUNDS; round++) {
  // Alternated, so a warming machine favours neither.
  const own = await variant("");
  const shared = await variant("go");
  console.log(`round ${round + 1}: ${N} Go filters, own VMs: ${fmt(own)}`);
  console.log(`round ${round + 1}: ${N} Go filters, one vm_id: ${fmt(shared)}`);
}
