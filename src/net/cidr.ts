/**
 * IP address ranges in CIDR notation ("10.0.0.0/8", "2001:db8::/32", or one
 * address): parsing for config validation and a matcher for client addresses.
 * IPv4-mapped IPv6 addresses (::ffff:10.1.2.3) match IPv4 ranges.
 *
 * @module
 */

/** One range: 16 address bytes (IPv4 as mapped IPv6) and the prefix length in bits over them. */
interface Range {
  bytes: Uint8Array;
  bits: number;
}

const V4_MAPPED = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** Parses an IPv4 or IPv6 address (an IPv6 zone "%eth0" is ignored) into 16 bytes, IPv4 mapped; null if invalid. */
export function parseIp(s: string): Uint8Array | null {
  const pct = s.indexOf("%");
  if (pct !== -1) s = s.slice(0, pct);
  if (!s.includes(":")) {
    const v4 = parseV4(s);
    if (v4 === null) return null;
    const out = new Uint8Array(16);
    out.set(V4_MAPPED);
    out.set(v4, 12);
    return out;
  }
  return parseV6(s);
}

function parseV4(s: string): number[] | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseV6(s: string): Uint8Array | null {
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    const parts = h.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseV4(p);
        if (v4 === null) return null;
        out.push(v4[0] << 8 | v4[1], v4[2] << 8 | v4[3]);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return null;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  const n = head.length + tail.length;
  if (halves.length === 2 ? n > 7 : n !== 8) return null;
  const all = [...head, ...new Array(8 - n).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

/** Parses "address/bits" or one address; a string saying what is wrong when invalid. */
function parseRange(s: string): Range | string {
  const slash = s.indexOf("/");
  const addr = slash === -1 ? s : s.slice(0, slash);
  const bytes = parseIp(addr);
  if (bytes === null) return `"${s}" is not an IP address or CIDR range (e.g. "10.0.0.0/8", "2001:db8::/32")`;
  const v4 = !addr.includes(":");
  const max = v4 ? 32 : 128;
  let bits = max;
  if (slash !== -1) {
    const t = s.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(t) || Number(t) > max) return `"${s}" has an invalid prefix length (0-${max})`;
    bits = Number(t);
  }
  return { bytes, bits: v4 ? bits + 96 : bits };
}

/** Why `s` is not a valid address or CIDR range, or undefined when it is (a config check). */
export function cidrError(s: string): string | undefined {
  const r = parseRange(s);
  return typeof r === "string" ? r : undefined;
}

/** A set of address ranges; `has` answers for a client address. */
export class CidrSet {
  private ranges: Range[] = [];
  // One-entry cache: a connection's requests come from one address.
  private lastIp = "";
  private lastHit = false;

  /** Throws on an invalid range (config validation has refused those already). */
  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const r = parseRange(c);
      if (typeof r === "string") throw new TypeError(r);
      this.ranges.push(r);
    }
  }

  /** Whether `ip` (as a socket reports it) lies in one of the ranges. */
  has(ip: string): boolean {
    if (ip === this.lastIp) return this.lastHit;
    const b = parseIp(ip);
    let hit = false;
    if (b !== null) {
      for (const r of this.ranges) {
        if (inRange(b, r)) {
          hit = true;
          break;
        }
      }
    }
    this.lastIp = ip;
    return this.lastHit = hit;
  }
}

function inRange(b: Uint8Array, r: Range): boolean {
  const full = r.bits >> 3;
  for (let i = 0; i < full; i++) if (b[i] !== r.bytes[i]) return false;
  const rest = r.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[full] & mask) === (r.bytes[full] & mask);
}
