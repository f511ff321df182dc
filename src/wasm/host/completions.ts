/**
 * Completions of Loom's asynchronous foreign functions (`dns_resolve`,
 * `set_timer`): each call gets a token, unique in its VM, and its outcome
 * reaches the caller's root context later as
 * `proxy_on_foreign_function(root_context_id, token, data_size)`, the data
 * readable as buffer CALL_DATA (8), through the VM's normal callback path
 * (its isolation and timeout, a trap fails the VM as any callback's).
 *
 * SDKs without that callback (the Go SDK) get completions as shared queue
 * items instead: a root context that names one of its queues with the
 * foreign function `completions_to_queue` gets each completion as an item
 * there (the token, 4 bytes little-endian, then the data), announced by
 * `proxy_on_queue_ready`.
 *
 * A root context that goes (retired, or its VM failed) drops its pending
 * work: its cleanups run and nothing is delivered to it any more.
 *
 * @module
 */
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";

const EMPTY = new Uint8Array(0);

/** What kind of work a token is (each kind is bounded on its own). */
export type Kind = "timer" | "dns";

/** Pending asynchronous work of one root context. */
interface RootState {
  /** Pending work by token: its kind and its cleanup (clear a timer, abort a lookup). */
  pending: Map<number, { kind: Kind; cancel: () => void }>;
  /** The shared queue completions go to (`completions_to_queue`); absent = proxy_on_foreign_function. */
  queue?: number;
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

/** A token as a foreign function's result: 4 bytes, little-endian. */
export function tokenBytes(token: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, token, true);
  return out;
}

/** The root context a foreign function called now completes to: the effective context's. */
export function callerRoot(vm: PluginVM): number {
  return vm.rootOf(vm.effective);
}

/** Whether root context `root` can still take work (it was not removed, its VM did not fail). */
export function live(vm: PluginVM, root: number): boolean {
  return vm.failed === null && vm.isRoot(root);
}

/** How much pending work of `kind` root context `root` has. */
export function pendingCount(vm: PluginVM, root: number, kind: Kind): number {
  let n = 0;
  for (const p of vmState(vm).roots.get(root)?.pending.values() ?? []) if (p.kind === kind) n++;
  return n;
}

/** The state of root context `root`, created with its cleanup when the root context goes. */
function rootState(vm: PluginVM, root: number): RootState {
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
  return r;
}

/**
 * Registers pending work for root context `root`: a fresh token; `cancel`
 * runs when the work is dropped ({@link cancel}, or the root context going).
 */
export function begin(vm: PluginVM, root: number, kind: Kind, cancel: () => void): number {
  const s = vmState(vm);
  const r = rootState(vm, root);
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
  if (!live(vm, root)) return done?.();
  const queue = vmState(vm).roots.get(root)?.queue;
  const q = queue === undefined ? undefined : vm.hostOf(root).shared.queues.get(queue);
  if (q !== undefined) {
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

/**
 * `completions_to_queue`: arg = a shared queue id (u32 LE) from
 * proxy_register_shared_queue, or empty to go back to
 * proxy_on_foreign_function. NOT_FOUND for an unknown queue.
 */
export function completionsToQueue(vm: PluginVM, arg: Uint8Array): Uint8Array | number {
  const r = rootState(vm, callerRoot(vm));
  if (arg.length === 0) {
    delete r.queue;
    return new Uint8Array(0);
  }
  if (arg.length !== 4) return Status.BAD_ARGUMENT;
  const id = new DataView(arg.buffer, arg.byteOffset, 4).getUint32(0, true);
  if (!vm.host.shared.queues.has(id)) return Status.NOT_FOUND;
  r.queue = id;
  return new Uint8Array(0);
}
