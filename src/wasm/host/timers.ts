/**
 * Timers for plugins, beyond the single tick period: the foreign functions
 * `set_timer` and `cancel_timer`. A timer fires
 * `proxy_on_foreign_function(root, timer_id, 0)` on the root context that
 * set it (host/completions.ts), with the plugin's timeout and isolation as
 * on_tick. A repeating timer waits for its callback to end before it counts
 * the next period, so calls never pile up behind a slow one. Timers go with
 * their root context (retired, or the VM failed) and never keep a draining
 * process alive.
 *
 * @module
 */
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import {
  begin,
  callerRoot,
  cancel,
  complete,
  isPending,
  live,
  pendingCount,
  settle,
  tokenBytes,
} from "./completions.ts";

/** Most timers one root context may have pending. */
export const MAX_TIMERS = 1024;
/** set_timer's flags: bit 0 repeats. */
const REPEAT = 1;

const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset, b.length).getUint32(at, true);

/**
 * `set_timer`: arg = delay in ms (u32 LE), optionally flags (u32 LE, bit 0:
 * repeat). Result: the timer id (u32 LE). BAD_ARGUMENT for another shape,
 * INTERNAL_FAILURE with MAX_TIMERS pending.
 */
export function setTimer(vm: PluginVM, arg: Uint8Array): Uint8Array | number {
  if (arg.length !== 4 && arg.length !== 8) return Status.BAD_ARGUMENT;
  const repeat = arg.length === 8 && (u32(arg, 4) & REPEAT) !== 0;
  // A repeating timer of 0 ms would run back to back.
  const delay = Math.max(repeat ? 1 : 0, u32(arg, 0));
  const root = callerRoot(vm);
  // A root context already gone (a callback after its removal) takes no work: nothing could deliver it.
  if (!live(vm, root) || pendingCount(vm, root, "timer") >= MAX_TIMERS) return Status.INTERNAL_FAILURE;
  let handle: ReturnType<typeof setTimeout> | undefined;
  const token = begin(vm, root, "timer", () => clearTimeout(handle));
  const arm = () => {
    if (!isPending(vm, root, token, "timer")) return;
    const h = handle = setTimeout(fire, delay);
    Deno.unrefTimer(h);
  };
  const fire = () => {
    if (!isPending(vm, root, token, "timer")) return;
    if (!repeat) settle(vm, root, token);
    complete(vm, root, token, undefined, repeat ? arm : undefined);
  };
  arm();
  return tokenBytes(token);
}

/** `cancel_timer`: arg = a timer id (u32 LE). NOT_FOUND when it is not pending (fired, cancelled, unknown). */
export function cancelTimer(vm: PluginVM, arg: Uint8Array): Uint8Array | number {
  if (arg.length !== 4) return Status.BAD_ARGUMENT;
  return cancel(vm, callerRoot(vm), u32(arg, 0), "timer") ? new Uint8Array(0) : Status.NOT_FOUND;
}
