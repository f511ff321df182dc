/**
 * Completions of Loom's asynchronous foreign functions (`dns_resolve`,
 * `set_timer`): each call gets a token, unique in its VM, and its outcome
 * reaches the caller's root context later as
 * `proxy_on_foreign_function(root_context_id, token, data_size)`, the data
 * readable as buffer CALL_DATA (8), through the VM's normal callback path
 * (its isolation and timeout, a trap fails the VM as any callback's).
 *
 * SDKs without that callback (the Go SDK) get completions as shared queue
 * items instead: when the root context registered a queue named
 * {@link COMPLETION_QUEUE}, each one is an item there (the token, 4 bytes
 * little-endian, then the data), announced by `proxy_on_queue_ready`.
 *
 * A root context that goes (retired, or its VM failed) drops its pending
 * work: its cleanups run and nothing is delivered to it any more.
 *
 * @module
 */
import type { PluginVM } from "../vm.ts";

/** The shared queue name that asks for completions as queue items. */
export const COMPLETION_QUEUE = "loom.completions";

const EMPTY = new Uint8Array(0);

/** What kind of work a token is (each kind is bounded on its own). */
export type Kind = "timer" | "dns";

/** Pending asynchronous work of one root context. */
interface RootState {
  /** Pending work by token: its kind and its cleanup (clear a timer, abort a lookup). */
  pending: Map<number, { kind: Kind; cancel: () => void }>;
}

/** Per VM: the token counter and each root context's pending work. */
interface VmState {
  next: number;
  roots: Map<number, RootState>;
}

const states = new WeakMap<PluginVM, VmState>();

function vmState(vm: PluginVM): VmState {
  let s = states.get(vm);
  if (s === undefined) states.set(vm, s = { next: 1, roots: new Map() });
  return s;
}

/** The root context a foreign function called now completes to: the effective context's. */
export function callerRoot(vm: PluginVM): number {
  return vm.rootOf(vm.effective);
}

/** How much pending work of `kind` root context `root` has. */
export function pendingCount(vm: PluginVM, root: number, kind: Kind): number {
  let n = 0;
  for (const p of vmState(vm).roots.get(root)?.pending.values() ?? []) if (p.kind === kind) n++;
  return n;
}

/**
 * Registers pending work for root context `root`: a fresh token; `cancel`
 * runs when the work is dropped ({@link settle}, {@link cancel}, or the
 * root context going).
 */
export function begin(vm: PluginVM, root: number, kind: Kind, cancel: () => void): number {
  const s = vmState(vm);
  let r = s.roots.get(root);
  if (r === undefined) {
    const state: RootState = { pending: new Map() };
    s.roots.set(root, r = state);
    vm.onRootGone(root, () => {
      s.roots.delete(root);
      for (const p of state.pending.values()) p.cancel();
      state.pending.clear();
    });
  }
  // Tokens skip 0 and wrap within u32.
  const token = s.next;
  s.next = s.next >= 0xffffffff ? 1 : s.next + 1;
  r.pending.set(token, { kind, cancel });
  return token;
}

/** Whether `token` (of `kind`) of root context `root` is still pending. */
export function isPending(vm: PluginVM, root: number, token: number, kind: Kind): boolean {
  return vmState(vm).roots.get(root)?.pending.get(token)?.kind === kind;
}

/** Drops pending work of `kind` (its cancel runs); false when it was not pending. */
export function cancel(vm: PluginVM, root: number, token: number, kind: Kind): boolean {
  const r = vmState(vm).roots.get(root);
  const p = r?.pending.get(token);
  if (p === undefined || p.kind !== kind) return false;
  r!.pending.delete(token);
  p.cancel();
  return true;
}

/** Work finished without being delivered again: forgets `token` (no cancel). */
export function settle(vm: PluginVM, root: number, token: number): void {
  vmState(vm).roots.get(root)?.pending.delete(token);
}

/**
 * Delivers one completion of `token` to root context `root` (if it is
 * still there): `proxy_on_foreign_function`, or the completion queue.
 * `done` runs once the callback ran (at once when nothing was delivered).
 */
export function complete(
  vm: PluginVM,
  root: number,
  token: number,
  data: Uint8Array = EMPTY,
  done?: () => void,
): void {
  if (vm.failed !== null || !vm.isRoot(root)) return done?.();
  const host = vm.hostOf(root);
  const queue = host.shared.queueByName.get(host.vmId + "\0" + COMPLETION_QUEUE);
  const q = queue === undefined ? undefined : host.shared.queues.get(queue);
  if (q !== undefined && q.vmId === host.vmId) {
    const item = new Uint8Array(4 + data.length);
    new DataView(item.buffer).setUint32(0, token, true);
    item.set(data, 4);
    q.items.push(item);
    q.owner(queue!);
    return done?.();
  }
  if (!vm.has("proxy_on_foreign_function")) return done?.();
  const delivered = vm.deliver(
    "proxy_on_foreign_function",
    { headers: [], body: data, trailers: [] },
    token,
    data.length,
    0,
    0,
    root,
    done,
  );
  if (!delivered) done?.();
}
