/**
 * DNS resolution for plugins: the foreign function `dns_resolve` returns a
 * token at once and resolves asynchronously (`Deno.resolveDns`, through the
 * plugin's `dns_server` or the system's resolver); the answer reaches the
 * root context that asked as `proxy_on_foreign_function(root, token, size)`
 * (host/completions.ts). `localhost` (and `*.localhost`) and IP literals are
 * answered without a lookup, as RFC 6761 asks of resolver libraries.
 *
 * Answer (buffer CALL_DATA): one status byte — 0 OK, 1 NOT_FOUND (no such
 * name, or no record of the type), 10 INTERNAL_FAILURE (the resolver failed
 * or timed out) — then UTF-8 text: the addresses, one per line, or the error.
 *
 * @module
 */
import { isIP } from "node:net";
import { Status } from "../abi.ts";
import type { PluginVM } from "../vm.ts";
import {
  begin,
  callerRoot,
  complete,
  isPending,
  live,
  pendingCount,
  settle,
  tokenBytes,
} from "./completions.ts";

/** Most lookups one root context may have pending. */
export const MAX_PENDING_DNS = 64;
/** Longest wait for one answer (ms): then INTERNAL_FAILURE. */
export const DNS_TIMEOUT_MS = 5000;

const enc = new TextEncoder();
const dec = new TextDecoder();

type RecordType = "A" | "AAAA";

/** A host name as DNS carries it: labels of letters, digits, `-` and `_`, at most 253 characters. */
const NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/** One answer: status byte, then text. */
function answer(status: number, text: string): Uint8Array {
  const t = enc.encode(text);
  const out = new Uint8Array(1 + t.length);
  out[0] = status;
  out.set(t, 1);
  return out;
}

/** The answer without a lookup (localhost, an IP literal), or null. */
function direct(name: string, types: readonly RecordType[]): Uint8Array | null {
  const ip = isIP(name);
  if (ip !== 0) {
    const fits = types.includes(ip === 4 ? "A" : "AAAA");
    return fits ? answer(Status.OK, name) : answer(Status.NOT_FOUND, `${name} is not an ${types[0]} address`);
  }
  const n = name.toLowerCase().replace(/\.$/, "");
  if (n !== "localhost" && !n.endsWith(".localhost")) return null;
  return answer(Status.OK, types.map((t) => t === "A" ? "127.0.0.1" : "::1").join("\n"));
}

type NameServer = { ipAddr: string; port: number } | undefined;

/** Name servers by plugin config: parsed once per plugin definition. */
const nameServers = new WeakMap<object, NameServer>();

/** A config's `dns_server` ("ip:port", "[v6]:port"; checked by the config schema) as Deno.resolveDns takes it. */
function nameServerOf(cfg: { dns_server?: string } | undefined): NameServer {
  const s = cfg?.dns_server;
  if (cfg === undefined || s === undefined) return undefined;
  if (nameServers.has(cfg)) return nameServers.get(cfg);
  const colon = s.lastIndexOf(":");
  const ns = { ipAddr: s.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port: Number(s.slice(colon + 1)) };
  nameServers.set(cfg, ns);
  return ns;
}

/** Resolves `name` for `types` through the resolver: the answer bytes. */
async function lookup(
  name: string,
  types: readonly RecordType[],
  signal: AbortSignal,
  nameServer: NameServer,
): Promise<Uint8Array> {
  const results = await Promise.allSettled(
    types.map((t) => Deno.resolveDns(name, t, nameServer ? { signal, nameServer } : { signal })),
  );
  const addresses = results.flatMap((r) => r.status === "fulfilled" ? r.value : []);
  if (addresses.length > 0) return answer(Status.OK, addresses.join("\n"));
  const errors = results.flatMap((r) => r.status === "rejected" ? [r.reason] : []);
  if (signal.aborted) return answer(Status.INTERNAL_FAILURE, `no answer within ${DNS_TIMEOUT_MS} ms`);
  // NXDOMAIN and "no records" both come as NotFound: for the plugin the name has no address.
  if (errors.length === 0 || errors.every((e) => e instanceof Deno.errors.NotFound)) {
    return answer(Status.NOT_FOUND, `${name}: no ${types.join("/")} record`);
  }
  const e = errors.find((e) => !(e instanceof Deno.errors.NotFound));
  return answer(Status.INTERNAL_FAILURE, e instanceof Error ? e.message : String(e));
}

/**
 * `dns_resolve`: arg = host name, optionally NUL and a record type ("A" or
 * "AAAA"; absent: both). Result: a token (u32 LE); the answer follows in
 * proxy_on_foreign_function. BAD_ARGUMENT for a malformed name or type,
 * INTERNAL_FAILURE with MAX_PENDING_DNS lookups pending.
 */
export function dnsResolve(vm: PluginVM, arg: Uint8Array): Uint8Array | number {
  const text = dec.decode(arg);
  const nul = text.indexOf("\0");
  const name = nul === -1 ? text : text.slice(0, nul);
  const type = nul === -1 ? "" : text.slice(nul + 1).toUpperCase();
  if (type !== "" && type !== "A" && type !== "AAAA") return Status.BAD_ARGUMENT;
  if (isIP(name) === 0 && !NAME.test(name)) return Status.BAD_ARGUMENT;
  const types: RecordType[] = type === "" ? ["A", "AAAA"] : [type];
  const root = callerRoot(vm);
  // A root context already gone (a callback after its removal) takes no work: nothing could deliver it.
  if (!live(vm, root) || pendingCount(vm, root, "dns") >= MAX_PENDING_DNS) return Status.INTERNAL_FAILURE;
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const token = begin(vm, root, "dns", () => {
    clearTimeout(timer);
    abort.abort();
  });
  const finish = (data: Uint8Array) => {
    clearTimeout(timer);
    // Gone meanwhile (its root context or VM): nothing is delivered.
    if (!isPending(vm, root, token, "dns")) return;
    settle(vm, root, token);
    complete(vm, root, token, data);
  };
  const now = direct(name, types);
  if (now !== null) {
    // Never within the calling callback: the token is the plugin's before its answer.
    timer = setTimeout(() => finish(now), 0);
  } else {
    const t = timer = setTimeout(() => abort.abort(), DNS_TIMEOUT_MS);
    Deno.unrefTimer(t);
    lookup(name, types, abort.signal, nameServerOf(vm.hostOf(root).cfg)).then(
      finish,
      (e) => finish(answer(Status.INTERNAL_FAILURE, String(e))),
    );
  }
  return tokenBytes(token);
}
