/**
 * The byte layouts Loom's BPF programs share with it (src/ebpf/bpf/loom.h): a socket by its
 * four-tuple (`struct loom_sock_key`) and an address with a port (`struct loom_addr_key`). Addresses
 * are 16 bytes in network order with IPv4 mapped (::ffff:a.b.c.d), ports little-endian u32 in host
 * order (x86-64 and arm64 are little-endian).
 *
 * @module
 */
import { parseIp } from "../net/cidr.ts";

/** sizeof(struct loom_sock_key). */
export const SOCK_KEY_SIZE = 40;
/** sizeof(struct loom_addr_key). */
export const ADDR_KEY_SIZE = 20;

/** An address and port as Deno reports them (Deno.NetAddr). */
export interface HostPort {
  hostname: string;
  port: number;
}

/** 16 address bytes; "" (all interfaces) is 0.0.0.0; null for what is not an IP literal. */
export function ipBytes(hostname: string): Uint8Array | null {
  let h = hostname === "" ? "0.0.0.0" : hostname;
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  return parseIp(h);
}

/** The key of the socket whose ends are `local` and `remote` (as that socket sees them); null if not IP. */
export function sockKey(local: HostPort, remote: HostPort): Uint8Array | null {
  const l = ipBytes(local.hostname);
  const r = ipBytes(remote.hostname);
  if (l === null || r === null) return null;
  const key = new Uint8Array(SOCK_KEY_SIZE);
  key.set(l, 0);
  key.set(r, 16);
  const v = new DataView(key.buffer);
  v.setUint32(32, local.port, true);
  v.setUint32(36, remote.port, true);
  return key;
}

/** The key of the other end of the connection `key` names. */
export function reverseKey(key: Uint8Array): Uint8Array {
  const r = new Uint8Array(SOCK_KEY_SIZE);
  r.set(key.subarray(16, 32), 0);
  r.set(key.subarray(0, 16), 16);
  r.set(key.subarray(36, 40), 32);
  r.set(key.subarray(32, 36), 36);
  return r;
}

/** An address key; `hostname` null = the wildcard of every address ("::", which matches IPv4 too). */
export function addrKey(hostname: string | null, port: number): Uint8Array | null {
  const ip = hostname === null ? new Uint8Array(16) : ipBytes(hostname);
  if (ip === null) return null;
  const key = new Uint8Array(ADDR_KEY_SIZE);
  key.set(ip, 0);
  new DataView(key.buffer).setUint32(16, port, true);
  return key;
}

/** "127.0.0.1:8080 > 127.0.0.1:41234" for a socket key (logs, GET /ebpf). */
export function formatSockKey(key: Uint8Array): string {
  const v = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return `${formatIp(key.subarray(0, 16))}:${v.getUint32(32, true)} > ${formatIp(key.subarray(16, 32))}:${
    v.getUint32(36, true)
  }`;
}

function formatIp(b: Uint8Array): string {
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  return "[" + groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::") + "]";
}
