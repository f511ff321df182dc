/**
 * Shared data and shared queue host functions. Both stores are isolate-wide
 * (VmHost.shared), as in Envoy per worker: shared data is a key-value store
 * with compare-and-swap; a queue belongs to the VM id that registered it,
 * and the root context that registered it (in a VM shared by plugins, that
 * plugin's) gets `proxy_on_queue_ready` per item.
 *
 * @module
 */
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** `proxy_{set,get}_shared_data`, `proxy_{register,resolve,enqueue,dequeue}_shared_queue`. */
export function sharedFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  const host = vm.host;
  return {
    proxy_set_shared_data: (kp: number, kl: number, vp: number, vl: number, cas: number) => {
      const key = mem.str(kp, kl);
      const store = host.shared;
      const cur = store.data.get(key);
      cas >>>= 0;
      if (cas !== 0 && (cur === undefined || cur.cas !== cas)) return Status.CAS_MISMATCH;
      store.data.set(key, { value: mem.read(vp, vl).slice(), cas: store.nextCas++ });
      return Status.OK;
    },
    proxy_get_shared_data: (kp: number, kl: number, pp: number, sp: number, casPtr: number) => {
      const cur = host.shared.data.get(mem.str(kp, kl));
      if (cur === undefined) return Status.NOT_FOUND;
      mem.give(cur.value, pp, sp);
      mem.setU32(casPtr, cur.cas);
      return Status.OK;
    },
    proxy_register_shared_queue: (np: number, nl: number, tokenPtr: number) => {
      const store = host.shared;
      const key = host.vmId + "\0" + mem.str(np, nl);
      let token = store.queueByName.get(key);
      const root = vm.rootOf(vm.effective);
      // Not to a root context deleted since (its plugin retired), as the reference host: an SDK would panic.
      const owner = (t: number) => vm.isRoot(root) && vm.fire("proxy_on_queue_ready", root, root, t);
      if (token === undefined) {
        token = store.nextQueue++;
        store.queueByName.set(key, token);
        store.queues.set(token, { vmId: host.vmId, name: key, items: [], owner });
      } else store.queues.get(token)!.owner = owner;
      mem.setU32(tokenPtr, token);
      return Status.OK;
    },
    proxy_resolve_shared_queue: (_vp: number, _vl: number, np: number, nl: number, tokenPtr: number) => {
      const vmId = mem.str(_vp, _vl);
      const token = host.shared.queueByName.get(vmId + "\0" + mem.str(np, nl));
      if (token === undefined) return Status.NOT_FOUND;
      mem.setU32(tokenPtr, token);
      return Status.OK;
    },
    proxy_enqueue_shared_queue: (token: number, dp: number, dl: number) => {
      const q = host.shared.queues.get(token >>> 0);
      if (q === undefined) return Status.NOT_FOUND;
      q.items.push(mem.read(dp, dl).slice());
      // Delivered after the current callback, never re-entrantly.
      setTimeout(() => q.owner(token >>> 0), 0);
      return Status.OK;
    },
    proxy_dequeue_shared_queue: (token: number, pp: number, sp: number) => {
      const q = host.shared.queues.get(token >>> 0);
      if (q === undefined) return Status.NOT_FOUND;
      const item = q.items.shift();
      if (item === undefined) return Status.EMPTY;
      mem.give(item, pp, sp);
      return Status.OK;
    },
  };
}
