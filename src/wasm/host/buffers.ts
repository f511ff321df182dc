/**
 * Buffer host functions: read and rewrite the bytes of a buffer type — the
 * stream's request/response body window, the VM and plugin configuration,
 * and a callout's body (http_call answer, gRPC message).
 *
 * @module
 */
import { concat } from "../../net/bytes.ts";
import { BufferType, Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** The bytes of buffer `type` in `vm`'s effective context; null when it has none. */
function bufferOf(vm: PluginVM, type: number): Uint8Array | null {
  switch (type) {
    case BufferType.VM_CONFIGURATION:
      return vm.host.vmConfig;
    case BufferType.PLUGIN_CONFIGURATION:
      return vm.host.pluginConfig;
    case BufferType.HTTP_CALL_RESPONSE_BODY:
    case BufferType.GRPC_RECEIVE_BUFFER:
    case BufferType.CALL_DATA: // proxy_on_foreign_function's data (host/completions.ts)
      return vm.callout?.body ?? null;
    default:
      return vm.stream()?.buffer(type) ?? null;
  }
}

/** `proxy_get_configuration`, `proxy_{get,set}_buffer_bytes`, `proxy_get_buffer_status`. */
export function bufferFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  return {
    proxy_get_configuration: (pp: number, sp: number) => {
      mem.give(vm.host.pluginConfig, pp, sp);
      return Status.OK;
    },
    proxy_get_buffer_bytes: (type: number, start: number, max: number, pp: number, sp: number) => {
      const b = bufferOf(vm, type);
      if (b === null) return Status.NOT_FOUND;
      start >>>= 0, max >>>= 0;
      if (start > b.length) return Status.BAD_ARGUMENT;
      const end = Math.min(b.length, start + max);
      // Nothing to copy: OK without touching *pp/*sp, as the reference host does.
      // The AssemblyScript SDK's onConfigure passes the config size as size_ptr and
      // relies on this when the configuration is empty.
      if (end === start) return Status.OK;
      mem.give(b.subarray(start, end), pp, sp);
      return Status.OK;
    },
    proxy_get_buffer_status: (type: number, lenPtr: number, flagsPtr: number) => {
      const b = bufferOf(vm, type);
      if (b === null) return Status.NOT_FOUND;
      mem.setU32(lenPtr, b.length);
      mem.setU32(flagsPtr, 0);
      return Status.OK;
    },
    proxy_set_buffer_bytes: (type: number, start: number, size: number, dp: number, dl: number) => {
      const b = bufferOf(vm, type);
      if (b === null) return Status.NOT_FOUND;
      const data = mem.read(dp, dl);
      start >>>= 0, size >>>= 0;
      let next: Uint8Array;
      if (start === 0 && size >= b.length) next = data.slice(); // replace all
      // Append: a start at or past the end, as Envoy (SIZE_MAX from Rust and C++, 0x7fffffff from Go).
      else if (start >= b.length) next = concat([b, data]);
      else if (start === 0 && size === 0) next = concat([data, b]); // prepend
      else {
        const end = Math.min(b.length, start + size);
        next = concat([b.subarray(0, start), data, b.subarray(end)]);
      }
      const s = vm.stream();
      if (s === null || !s.setBuffer(type, next)) return Status.NOT_FOUND;
      return Status.OK;
    },
  };
}
