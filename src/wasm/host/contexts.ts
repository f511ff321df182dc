/**
 * Stream and context control host functions: resume or reset the effective
 * stream, answer it locally, switch the effective context, and
 * `proxy_done`. On a connection's stream (network filters, wasm/network.ts)
 * continue and close act on its downstream or upstream direction.
 *
 * @module
 */
import { Status, StreamType } from "../abi.ts";
import { decodePairs, localResponseHeaders } from "../header_maps.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** Whether the effective context is a connection's (network filter) stream. */
function network(vm: PluginVM): boolean {
  return (vm.stream() as { kind?: string } | null)?.kind === "network";
}

/** `proxy_continue_stream`, `proxy_close_stream` and their ABI 0.1.0 names, local responses, contexts. */
export function contextFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  const continueStream = (t: number) => {
    const s = vm.stream();
    if (s === null) return Status.NOT_FOUND;
    s.resume(t);
    return Status.OK;
  };
  const closeStream = (t: number) => {
    const s = vm.stream();
    if (s === null) return Status.NOT_FOUND;
    s.close(t);
    return Status.OK;
  };
  return {
    proxy_send_local_response: (
      status: number,
      _dp: number,
      _dl: number,
      bp: number,
      bl: number,
      hp: number,
      hl: number,
      _grpc: number,
    ) => {
      const s = vm.stream();
      if (s === null) return Status.NOT_FOUND;
      const headers = decodePairs(mem.read(hp, hl));
      if (headers === null) return Status.BAD_ARGUMENT;
      s.localResponse({
        status: status >>> 0,
        headers: localResponseHeaders(headers),
        body: mem.read(bp, bl).slice(),
      });
      return Status.OK;
    },
    proxy_continue_stream: continueStream,
    proxy_close_stream: closeStream,
    proxy_continue_request: () => continueStream(StreamType.HTTP_REQUEST),
    proxy_continue_response: () => continueStream(StreamType.HTTP_RESPONSE),
    proxy_resume_http_request: () => continueStream(StreamType.HTTP_REQUEST),
    proxy_resume_http_response: () => continueStream(StreamType.HTTP_RESPONSE),
    // ABI 0.1.0's network calls act on network streams (wasm/network.ts); elsewhere they do nothing.
    proxy_resume_downstream: () => network(vm) ? continueStream(StreamType.DOWNSTREAM) : Status.OK,
    proxy_resume_upstream: () => network(vm) ? continueStream(StreamType.UPSTREAM) : Status.OK,
    proxy_reset_http_request: () => closeStream(StreamType.HTTP_REQUEST),
    proxy_reset_http_response: () => closeStream(StreamType.HTTP_RESPONSE),
    proxy_close_downstream: () => network(vm) ? closeStream(StreamType.DOWNSTREAM) : Status.OK,
    proxy_close_upstream: () => network(vm) ? closeStream(StreamType.UPSTREAM) : Status.OK,
    proxy_clear_route_cache: () => {
      vm.stream()?.clearRouteCache();
      return Status.OK;
    },
    proxy_set_effective_context: (id: number) => {
      id >>>= 0;
      if (!vm.isRoot(id) && !vm.streams.has(id)) return Status.BAD_ARGUMENT;
      vm.effective = id;
      return Status.OK;
    },
    // As the reference host: OK only for a root context whose on_done returned false.
    proxy_done: () => vm.host.done?.(vm, vm.effective) ? Status.OK : Status.NOT_FOUND,
  };
}
