/**
 * `proxy_http_call` (ABI 0.2: `proxy_dispatch_http_call`): an HTTP request
 * from the plugin to a configured upstream; the answer goes to the root
 * context's `proxy_on_http_call_response` (plugin.ts sends it).
 *
 * @module
 */
import { Status } from "../abi.ts";
import { decodePairs } from "../header_maps.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

/** `proxy_http_call`, `proxy_dispatch_http_call`. */
export function httpCallFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  const httpCall = (
    up: number,
    upLen: number,
    hp: number,
    hl: number,
    bp: number,
    bl: number,
    tp: number,
    tl: number,
    timeout: number,
    tokenPtr: number,
  ) => {
    const headers = decodePairs(mem.read(hp, hl));
    const trailers = decodePairs(mem.read(tp, tl));
    if (headers === null || trailers === null) return Status.BAD_ARGUMENT;
    const has = (k: string) => headers.some((p) => p[0] === k);
    if (!has(":method") || !has(":path") || !has(":authority")) return Status.BAD_ARGUMENT;
    const token = vm.host.httpCall(
      vm,
      mem.str(up, upLen),
      headers,
      mem.read(bp, bl).slice(),
      trailers,
      timeout >>> 0,
    );
    if (token === null) return Status.BAD_ARGUMENT;
    mem.setU32(tokenPtr, token);
    return Status.OK;
  };
  return { proxy_http_call: httpCall, proxy_dispatch_http_call: httpCall };
}
