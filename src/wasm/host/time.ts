/**
 * Time host functions: the wall clock and the root context's tick timer
 * (`proxy_on_tick`, run by the plugin: plugin.ts `tickPeriod`).
 *
 * @module
 */
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`. */
export function timeFunctions(vm: PluginVM): HostFunctions {
  return {
    proxy_get_current_time_nanoseconds: (ptr: number) => {
      vm.mem.setU64(ptr, BigInt(Date.now()) * 1_000_000n);
      return Status.OK;
    },
    proxy_set_tick_period_milliseconds: (ms: number) => {
      vm.host.tickPeriod(ms >>> 0);
      return Status.OK;
    },
  };
}
