/**
 * Foreign functions (`proxy_call_foreign_function`): the ones Envoy offers
 * that make sense outside Envoy. `compress` / `uncompress` (zlib format, as
 * Envoy's), `declare_property` (accepted: any property may be set with
 * proxy_set_property here) and `clear_route_cache` (as the host function).
 * An unknown name is NOT_FOUND, as in Envoy.
 *
 * Loom's own host features are foreign functions too, so every SDK reaches
 * them unchanged: `dns_resolve` (dns.ts), `set_timer` / `cancel_timer`
 * (timers.ts), whose outcomes come later through proxy_on_foreign_function
 * or, after `completions_to_queue`, a shared queue (completions.ts), and
 * `read_file` (a file of the plugin's read-only directories, preopens.ts).
 * plugins/README.md documents the conventions.
 *
 * @module
 */
import { deflateSync, inflateSync } from "node:zlib";
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import type { HostFunctions } from "./mod.ts";
import { sandboxOf } from "../preopens.ts";
import { completionsToQueue } from "./completions.ts";
import { dnsResolve } from "./dns.ts";
import { cancelTimer, setTimer } from "./timers.ts";

/** Largest uncompressed result (bytes): a zip bomb stops here. */
const MAX_UNCOMPRESSED = 64 * 1024 * 1024;

type Foreign = (vm: PluginVM, arg: Uint8Array) => Uint8Array | number;

const EMPTY = new Uint8Array(0);

/** The foreign functions by name: a result, or a Status. */
const FOREIGN: Record<string, Foreign> = {
  compress: (_vm, arg) => new Uint8Array(deflateSync(arg)),
  uncompress: (_vm, arg) => {
    try {
      return new Uint8Array(inflateSync(arg, { maxOutputLength: MAX_UNCOMPRESSED }));
    } catch {
      return Status.SERIALIZATION_FAILURE;
    }
  },
  declare_property: () => EMPTY,
  clear_route_cache: (vm) => {
    vm.stream()?.clearRouteCache();
    return EMPTY;
  },
  dns_resolve: dnsResolve,
  set_timer: setTimer,
  cancel_timer: cancelTimer,
  read_file: readFile,
  completions_to_queue: completionsToQueue,
};

/**
 * `read_file`: arg = a path in one of the plugin's directories ("/data/a.txt").
 * NOT_FOUND: no such file; BAD_ARGUMENT: outside every directory (`..`, a
 * symlink out, no directory configured) or not a regular file;
 * INTERNAL_FAILURE: larger than 16 MiB or unreadable.
 */
function readFile(vm: PluginVM, arg: Uint8Array): Uint8Array | number {
  const sandbox = sandboxOf(vm.host.cfg);
  if (sandbox === null) return Status.BAD_ARGUMENT;
  const r = sandbox.readFile(new TextDecoder().decode(arg));
  if (r instanceof Uint8Array) return r;
  return r === "not_found"
    ? Status.NOT_FOUND
    : r === "denied" || r === "not_file"
    ? Status.BAD_ARGUMENT
    : Status.INTERNAL_FAILURE;
}

/** `proxy_call_foreign_function(name, name_len, arg, arg_len, result_ptr, result_len_ptr)`. */
export function foreignFunctions(vm: PluginVM): HostFunctions {
  const mem = vm.mem;
  return {
    proxy_call_foreign_function: (np: number, nl: number, ap: number, al: number, rp: number, rl: number) => {
      const f = FOREIGN[mem.str(np, nl)];
      if (f === undefined) return Status.NOT_FOUND;
      const r = f(vm, mem.read(ap, al).slice());
      if (typeof r === "number") return r;
      mem.give(r, rp, rl);
      return Status.OK;
    },
  };
}
