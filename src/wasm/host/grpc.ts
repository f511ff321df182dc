/**
 * gRPC host functions (ABI 0.1.0 and 0.2 names): unary calls and streams to
 * a configured upstream, run by the plugin's GrpcHost (vm.ts,
 * grpc_callouts.ts); `proxy_get_status` reads the status of the call
 * being closed.
 *
 * @module
 */
import { Status } from "../abi.ts";
import { decodePairs } from "../header_maps.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** `proxy_grpc_{call,stream,send,cancel,close}` and their ABI 0.2 names, `proxy_get_status`. */
export function grpcFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  // Both openers start with (ptr, len) of the upstream, service, method and initial metadata.
  const target = (a: number[]) =>
    [
      mem.read(a[0], a[1]).slice(),
      mem.str(a[2], a[3]),
      mem.str(a[4], a[5]),
      // As the reference host's toPairs: malformed metadata is no metadata.
      a[7] === 0 ? [] : decodePairs(mem.read(a[6], a[7])) ?? [],
    ] as const;
  const token = (r: { token: number } | number, tokenPtr: number) => {
    if (typeof r === "number") return r;
    mem.setU32(tokenPtr, r.token);
    return Status.OK;
  };
  // (target, message ptr, message len, timeout ms, token ptr)
  const grpcCall = (...a: number[]) => {
    const g = vm.host.grpc;
    if (g === undefined) return Status.INTERNAL_FAILURE;
    return token(g.call(vm, ...target(a), mem.read(a[8], a[9]).slice(), a[10] >>> 0), a[11]);
  };
  // (target, token ptr)
  const grpcStream = (...a: number[]) => {
    const g = vm.host.grpc;
    if (g === undefined) return Status.INTERNAL_FAILURE;
    return token(g.stream(vm, ...target(a)), a[8]);
  };
  const grpcSend = (token: number, p: number, l: number, end: number) =>
    vm.host.grpc?.send(vm, token >>> 0, mem.read(p, l).slice(), end !== 0) ?? Status.NOT_FOUND;
  const cancel = (token: number) => vm.host.grpc?.cancel(vm, token >>> 0) ?? Status.NOT_FOUND;
  const close = (token: number) => vm.host.grpc?.close(vm, token >>> 0) ?? Status.NOT_FOUND;
  return {
    proxy_grpc_call: grpcCall,
    proxy_dispatch_grpc_call: grpcCall,
    proxy_grpc_stream: grpcStream,
    proxy_open_grpc_stream: grpcStream,
    proxy_grpc_send: grpcSend,
    proxy_send_grpc_stream_message: grpcSend,
    proxy_grpc_cancel: cancel,
    proxy_cancel_grpc_call: cancel,
    proxy_grpc_close: close,
    proxy_close_grpc_call: close,
    // The status of the gRPC call being closed (proxy_on_grpc_close), else OK with no message.
    proxy_get_status: (codePtr: number, pp: number, sp: number) => {
      const st = vm.callout?.status;
      mem.setU32(codePtr, st?.code ?? 0);
      mem.give(st === undefined ? EMPTY : enc.encode(st.message), pp, sp);
      return Status.OK;
    },
  };
}
