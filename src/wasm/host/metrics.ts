/**
 * Metric host functions: plugin-defined counters, gauges and histograms in
 * the isolate-wide store (VmHost.shared; plugin.ts publishes them).
 *
 * @module
 */
import { MetricType, Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`, `proxy_get_metric`. */
export function metricFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  const host = vm.host;
  return {
    proxy_define_metric: (type: number, np: number, nl: number, idPtr: number) => {
      if (type < MetricType.COUNTER || type > MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
      const id = host.shared.defineMetric(type, mem.str(np, nl));
      if (id < 0) return Status.BAD_ARGUMENT;
      mem.setU32(idPtr, id);
      return Status.OK;
    },
    // i64 parameters arrive as BigInt.
    proxy_increment_metric: ((id: number, offset: bigint) => {
      const m = host.shared.metric(id >>> 0);
      if (m === undefined) return Status.NOT_FOUND;
      if (m.type === MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
      m.add(BigInt(offset));
      return Status.OK;
    }) as unknown as (...a: never[]) => number,
    proxy_record_metric: ((id: number, value: bigint) => {
      const m = host.shared.metric(id >>> 0);
      if (m === undefined) return Status.NOT_FOUND;
      m.record(BigInt.asUintN(64, BigInt(value)));
      return Status.OK;
    }) as unknown as (...a: never[]) => number,
    proxy_get_metric: (id: number, resultPtr: number) => {
      const m = host.shared.metric(id >>> 0);
      if (m === undefined) return Status.NOT_FOUND;
      if (m.type === MetricType.HISTOGRAM) return Status.BAD_ARGUMENT;
      mem.setU64(resultPtr, BigInt.asUintN(64, m.get()));
      return Status.OK;
    },
  };
}
