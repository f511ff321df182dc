/**
 * The consistent-hash key of a request, per `consistent_hash.hash_key`:
 * `"X-User-ID"` / `"header:X-User-ID"` (a header), `"cookie:session"` (a cookie
 * of the Cookie header), `""` / `"ip"` (the client IP). A request without the
 * key (or with it empty) falls back to the client IP.
 *
 * @module
 */

import type { SelectInput } from "../selection.ts";
import { murmur3 } from "./hash.ts";

// Where the key comes from (plain numbers: compared on every request).
const IP = 0;
const HEADER = 1;
const COOKIE = 2;

/** Parsed `hash_key`, hashing requests without building the key string. */
export class HashKey {
  readonly #source: number;
  /** Lower-case header name, or the cookie name (case-sensitive). */
  readonly #name: string;

  /** @param spec the `hash_key` setting. */
  constructor(spec: string) {
    const s = spec.trim();
    const colon = s.indexOf(":");
    const prefix = colon < 0 ? "" : s.slice(0, colon).toLowerCase();
    if (s === "" || s.toLowerCase() === "ip") {
      this.#source = IP;
      this.#name = "";
    } else if (prefix === "cookie") {
      this.#source = COOKIE;
      this.#name = s.slice(colon + 1).trim();
    } else {
      this.#source = HEADER;
      this.#name = (prefix === "header" ? s.slice(colon + 1).trim() : s).toLowerCase();
    }
    if (this.#source !== IP && this.#name === "") {
      throw new Error(`consistent_hash.hash_key "${spec}": missing header or cookie name`);
    }
  }

  /** What the key reads: "ip", "header:<name>" or "cookie:<name>". */
  get description(): string {
    return this.#source === IP ? "ip" : `${this.#source === HEADER ? "header" : "cookie"}:${this.#name}`;
  }

  /** The 32-bit hash of the request's key. */
  hash(input: SelectInput): number {
    if (this.#source === HEADER) {
      const v = input.header(this.#name);
      if (v !== undefined && v !== "") return murmur3(v);
    } else if (this.#source === COOKIE) {
      const h = input.header("cookie");
      if (h !== undefined) {
        const r = this.#cookie(h);
        if (r >= 0) return r;
      }
    }
    return murmur3(input.clientIp);
  }

  /**
   * Hash of the named cookie's value in a Cookie header, hashed in place rather
   * than sliced out; -1 if absent or empty. Pairs are separated by ";" (and ","
   * from joined header lines, which cookie values cannot contain).
   */
  #cookie(h: string): number {
    const name = this.#name;
    const n = h.length;
    let i = 0;
    while (i < n) {
      let c = h.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x3b || c === 0x2c) {
        i++;
        continue;
      }
      // [i, end) is one "name=value" pair.
      let end = i;
      while (end < n && (c = h.charCodeAt(end)) !== 0x3b && c !== 0x2c) end++;
      if (h.startsWith(name, i)) {
        let j = i + name.length;
        while (j < end && h.charCodeAt(j) === 0x20) j++;
        if (j < end && h.charCodeAt(j) === 0x3d) {
          let vs = j + 1;
          let ve = end;
          while (vs < ve && h.charCodeAt(vs) === 0x20) vs++;
          while (ve > vs && ((c = h.charCodeAt(ve - 1)) === 0x20 || c === 0x09)) ve--;
          // RFC 6265 allows a value in double quotes; the quotes are not part of it.
          if (ve - vs >= 2 && h.charCodeAt(vs) === 0x22 && h.charCodeAt(ve - 1) === 0x22) {
            vs++;
            ve--;
          }
          return ve > vs ? murmur3(h, vs, ve) : -1;
        }
      }
      i = end + 1;
    }
    return -1;
  }
}
