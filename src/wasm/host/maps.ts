/**
 * Header map host functions: read and edit the request/response headers
 * and trailers of the effective stream, and a callout's headers and
 * trailers (http_call answer, gRPC metadata). Names are lower-cased on the
 * way in, as HTTP/2 and the reference host want them.
 *
 * @module
 */
import { MapType, Status } from "../abi.ts";
import { decodePairs, encodePairs, type MapView, pairsView } from "../header_maps.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

const enc = new TextEncoder();

/** Map `type` in `vm`'s effective context; null when it has none. */
function mapOf(vm: PluginVM, type: number): MapView | null {
  if (type >= MapType.GRPC_RECEIVE_INITIAL_METADATA && type <= MapType.HTTP_CALL_RESPONSE_TRAILERS) {
    const r = vm.callout;
    if (r === null) return null;
    const leading = type === MapType.HTTP_CALL_RESPONSE_HEADERS ||
      type === MapType.GRPC_RECEIVE_INITIAL_METADATA;
    return pairsView(leading ? r.headers : r.trailers);
  }
  return vm.stream()?.map(type) ?? null;
}

/**
 * `proxy_{get,set}_header_map_pairs`, `proxy_get_header_map_size`,
 * `proxy_{get,add,replace,remove}_header_map_value`.
 */
export function mapFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  return {
    proxy_get_header_map_pairs: (type: number, pp: number, sp: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      mem.give(encodePairs(m.pairs()), pp, sp);
      return Status.OK;
    },
    proxy_set_header_map_pairs: (type: number, p: number, l: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      const pairs = decodePairs(mem.read(p, l));
      if (pairs === null) return Status.BAD_ARGUMENT;
      m.setAll(pairs.map(([k, v]) => [k.toLowerCase(), v]));
      return Status.OK;
    },
    proxy_get_header_map_size: (type: number, sp: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      mem.setU32(sp, encodePairs(m.pairs()).length);
      return Status.OK;
    },
    proxy_get_header_map_value: (type: number, kp: number, kl: number, pp: number, sp: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      const v = m.get(mem.str(kp, kl).toLowerCase());
      if (v === undefined) return Status.NOT_FOUND;
      mem.give(enc.encode(v), pp, sp);
      return Status.OK;
    },
    proxy_add_header_map_value: (type: number, kp: number, kl: number, vp: number, vl: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      m.add(mem.str(kp, kl).toLowerCase(), mem.str(vp, vl));
      return Status.OK;
    },
    proxy_replace_header_map_value: (type: number, kp: number, kl: number, vp: number, vl: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      m.replace(mem.str(kp, kl).toLowerCase(), mem.str(vp, vl));
      return Status.OK;
    },
    proxy_remove_header_map_value: (type: number, kp: number, kl: number) => {
      const m = mapOf(vm, type);
      if (m === null) return Status.NOT_FOUND;
      m.remove(mem.str(kp, kl).toLowerCase());
      return Status.OK;
    },
  };
}
