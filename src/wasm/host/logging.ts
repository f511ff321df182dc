/**
 * Logging host functions: `proxy_log` into Loom's logger (tagged with the
 * plugin), and `proxy_get_log_level`.
 *
 * @module
 */
import { LogLevel, Status } from "../abi.ts";
import { getLogLevel, isLevelEnabled, logger } from "../../observability/logger.ts";
import type { PluginVM } from "../vm.ts";
import { Stream } from "../stream.ts";
import type { HostFunctions } from "./mod.ts";

/** Loom's level for each Proxy-Wasm level (trace..critical). */
const LEVELS = ["debug", "debug", "info", "warn", "error", "error"] as const;

/** `proxy_log`, `proxy_get_log_level`. */
export function loggingFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  return {
    proxy_log: (level: number, p: number, l: number) => {
      const lv = LEVELS[level] ?? "info";
      // A traced request's lines, whatever Loom's level: events of the callback's span.
      const st = vm.stream();
      const tr = st instanceof Stream ? st.run.ctx.trace : null;
      if (tr !== null) tr.pluginLog(vm.host.pluginName, lv, mem.str(p, l));
      // Below Loom's level (an SDK's debug/trace chatter): not even decoded.
      if (isLevelEnabled(lv)) logger[lv]("plugin: " + mem.str(p, l), { plugin: vm.host.pluginName });
      return Status.OK;
    },
    // Loom's own level, so SDKs that check it skip formatting what would be dropped.
    proxy_get_log_level: (ptr: number) => {
      const lv = getLogLevel();
      mem.setU32(
        ptr,
        lv === "debug"
          ? LogLevel.DEBUG
          : lv === "info"
          ? LogLevel.INFO
          : lv === "warn"
          ? LogLevel.WARN
          : LogLevel.ERROR,
      );
      return Status.OK;
    },
  };
}
