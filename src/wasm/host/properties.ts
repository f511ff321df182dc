/**
 * Property host functions: attributes of the request, connection, upstream
 * and plugin (the stream answers first: filter properties; then the
 * plugin), and values a plugin sets on its stream.
 *
 * @module
 */
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";

const enc = new TextEncoder();

/** Property `path` in `vm`'s effective context: null/undefined = not found. */
function propertyOf(vm: PluginVM, path: string[]): Uint8Array | null | undefined {
  const s = vm.stream();
  if (s !== null) {
    const v = s.property(path);
    if (v !== undefined) return v;
  }
  if (path.length === 1 && path[0] === "plugin_root_id") return enc.encode(vm.host.rootId);
  return vm.host.property(path);
}

/** `proxy_get_property`, `proxy_set_property` (paths are NUL-separated segments). */
export function propertyFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  return {
    proxy_get_property: (p: number, l: number, pp: number, sp: number) => {
      let raw = mem.str(p, l);
      if (raw.endsWith("\0")) raw = raw.slice(0, -1);
      const v = propertyOf(vm, raw.split("\0"));
      if (v === undefined || v === null) return Status.NOT_FOUND;
      mem.give(v, pp, sp);
      return Status.OK;
    },
    proxy_set_property: (p: number, l: number, vp: number, vl: number) => {
      const s = vm.stream();
      if (s === null) return Status.NOT_FOUND;
      s.setProperty(mem.str(p, l).replaceAll("\0", "."), mem.read(vp, vl).slice());
      return Status.OK;
    },
  };
}
