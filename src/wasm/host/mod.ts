/**
 * The import object of a plugin instance: the Proxy-Wasm host functions
 * (`env`, one module per ABI area in this folder), WASI (`wasi.ts`) and the
 * `loom` namespace the instrumentation adds (`timeslice.ts`).
 *
 * Missing host functions do not fail instantiation: an `env` one answers
 * UNIMPLEMENTED (and is logged when called), a WASI one ENOSYS, so a module
 * that imports more than it uses still runs.
 *
 * @module
 */
import { Errno, Status } from "../abi.ts";
import { logger } from "../../observability/logger.ts";
import type { PluginVM } from "../vm.ts";
import { wasiFunctions } from "../wasi.ts";
import { sandboxOf } from "../preopens.ts";
import { bufferFunctions } from "./buffers.ts";
import { contextFunctions } from "./contexts.ts";
import { foreignFunctions } from "./foreign.ts";
import { grpcFunctions } from "./grpc.ts";
import { httpCallFunctions } from "./http_calls.ts";
import { loggingFunctions } from "./logging.ts";
import { mapFunctions } from "./maps.ts";
import { metricFunctions } from "./metrics.ts";
import { propertyFunctions } from "./properties.ts";
import { sharedFunctions } from "./shared.ts";
import { timeFunctions } from "./time.ts";

/** Host functions of one import namespace, by name (they all return an i32 status). */
export type HostFunctions = Record<string, (...a: never[]) => number>;

/** Every Proxy-Wasm host function of `vm`, by import name (`env` namespace). */
function envFunctions(vm: PluginVM): HostFunctions {
  return {
    ...loggingFunctions(vm),
    ...timeFunctions(vm),
    ...bufferFunctions(vm),
    ...mapFunctions(vm),
    ...propertyFunctions(vm),
    ...contextFunctions(vm),
    ...httpCallFunctions(vm),
    ...grpcFunctions(vm),
    ...sharedFunctions(vm),
    ...metricFunctions(vm),
    ...foreignFunctions(vm),
  };
}

/**
 * The imports `module` asks for, bound to `vm`; `loom` is the timeslice
 * namespace. Throws for imports no host provides (other namespaces, or
 * anything but functions outside `loom`).
 */
export function hostImports(
  vm: PluginVM,
  module: WebAssembly.Module,
  loom: Record<string, WebAssembly.ImportValue>,
): WebAssembly.Imports {
  const env = envFunctions(vm);
  // WASI state (descriptors) is the VM's: its preopens are those of the plugin that created it.
  const wasi = wasiFunctions(vm.mem, vm.output, sandboxOf(vm.host.cfg));
  const out: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    const ns = out[imp.module] ??= {};
    if (imp.module === "loom" && Object.hasOwn(loom, imp.name)) {
      ns[imp.name] = loom[imp.name];
      continue;
    }
    if (imp.kind !== "function") {
      throw new Error(`unsupported import ${imp.module}.${imp.name} (${imp.kind})`);
    }
    if (imp.module === "env") {
      ns[imp.name] = env[imp.name] ?? (() => {
        logger.warn("plugin called an unimplemented host function", {
          plugin: vm.host.pluginName,
          function: imp.name,
        });
        return Status.UNIMPLEMENTED;
      });
    } else if (imp.module === "wasi_snapshot_preview1" || imp.module === "wasi_unstable") {
      ns[imp.name] = wasi[imp.name] ?? (() => Errno.NOSYS);
    } else {
      throw new Error(`unsupported import module ${imp.module} (function ${imp.name})`);
    }
  }
  return out;
}
