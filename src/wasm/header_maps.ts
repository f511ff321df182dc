/**
 * Header maps as a plugin sees them: the {@link MapView} the map host
 * functions act on, its adapters (a pairs list; a HeaderList plus pseudo
 * headers), and the pairs encoding maps cross guest memory in.
 *
 * @module
 */
import type { HeaderList } from "../core/headers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A header map as the plugin sees it (pseudo headers included). */
export interface MapView {
  pairs(): [string, string][];
  get(key: string): string | undefined;
  add(key: string, value: string): void;
  replace(key: string, value: string): void;
  remove(key: string): void;
  setAll(pairs: [string, string][]): void;
}

/** A pairs list ([name, value]) as a MapView (http-call responses, send_local_response). */
export function pairsView(list: [string, string][]): MapView {
  return {
    pairs: () => list,
    get: (k) => list.find((p) => p[0] === k)?.[1],
    add: (k, v) => void list.push([k, v]),
    replace: (k, v) => {
      const i = list.findIndex((p) => p[0] === k);
      if (i === -1) list.push([k, v]);
      else {
        list[i][1] = v;
        for (let j = list.length - 1; j > i; j--) if (list[j][0] === k) list.splice(j, 1);
      }
    },
    remove: (k) => {
      for (let j = list.length - 1; j >= 0; j--) if (list[j][0] === k) list.splice(j, 1);
    },
    setAll: (p) => void list.splice(0, list.length, ...p),
  };
}

/** Pairs encoding of the reference host: count, (key len, value len)*, then key\0value\0 each. */
export function encodePairs(pairs: [string, string][]): Uint8Array {
  const bytes = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4;
  for (const [k, v] of bytes) size += 8 + k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let o = 4;
  for (const [k, v] of bytes) {
    dv.setUint32(o, k.length, true);
    dv.setUint32(o + 4, v.length, true);
    o += 8;
  }
  for (const [k, v] of bytes) {
    out.set(k, o);
    o += k.length + 1;
    out.set(v, o);
    o += v.length + 1;
  }
  return out;
}

/** Decodes the pairs encoding; null when malformed. */
export function decodePairs(b: Uint8Array): [string, string][] | null {
  // As the reference host: up to 4 bytes is an empty map (the spec allows a single 0x00).
  if (b.length <= 4) return [];
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const n = dv.getUint32(0, true);
  if (4 + n * 8 > b.length) return null;
  const out: [string, string][] = [];
  let data = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    if (data + kl + vl + 2 > b.length) return null;
    const k = dec.decode(b.subarray(data, data + kl));
    data += kl + 1;
    const v = dec.decode(b.subarray(data, data + vl));
    data += vl + 1;
    out.push([k, v]);
  }
  return out;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

/**
 * Whether a plugin-set header may reach the wire. Invalid ones (CR/LF/NUL in
 * the value, non-token names) are dropped rather than refused: SDKs trap on a
 * non-OK status from add/replace, and a buggy plugin (e.g. the AssemblyScript
 * SDK decoding stale memory for an empty configuration) must not be able to
 * emit a malformed or header-injecting response.
 */
function validHeader(k: string, v: string): boolean {
  return HEADER_NAME.test(k) && !BAD_VALUE.test(v);
}

/**
 * The header lines of a local response (`proxy_send_local_response`): names
 * lower-cased and checked like every other header edit (invalid ones
 * dropped), pseudo headers (say the `:status` of an http_call answer passed
 * on) never written as lines, framing fields (`content-length`,
 * `transfer-encoding`) left to the host.
 */
export function localResponseHeaders(pairs: [string, string][]): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, v] of pairs) {
    const k = name.toLowerCase();
    // Framing is the host's: the body's length is what it sends.
    if (k === "content-length" || k === "transfer-encoding") continue;
    if (k.charCodeAt(0) !== 58 && validHeader(k, v)) out.push([k, v]);
  }
  return out;
}

/** Pseudo headers (`:path`, `:status`, ...) of a map, kept outside its HeaderList. */
export interface PseudoHeaders {
  get(k: string): string | undefined;
  set(k: string, v: string): void;
  list(): [string, string][];
}

/** Adapts a HeaderList plus pseudo headers to a MapView. */
export function headerListView(h: HeaderList, pseudo: PseudoHeaders): MapView {
  return {
    pairs: () => {
      const out = pseudo.list();
      for (let i = 0; i < h.keys.length; i++) out.push([h.keys[i], h.values[i]]);
      return out;
    },
    get: (k) => k.charCodeAt(0) === 58 ? pseudo.get(k) : h.getJoined(k),
    add: (k, v) => {
      if (k.charCodeAt(0) === 58) pseudo.set(k, v);
      else if (validHeader(k, v)) h.append(k, v);
    },
    replace: (k, v) => {
      if (k.charCodeAt(0) === 58) pseudo.set(k, v);
      else if (validHeader(k, v)) h.set(k, v);
    },
    remove: (k) => {
      if (k.charCodeAt(0) !== 58) h.delete(k);
    },
    setAll: (pairs) => {
      h.names.length = h.keys.length = h.values.length = 0;
      for (const [k, v] of pairs) {
        if (k.charCodeAt(0) === 58) pseudo.set(k, v);
        else if (validHeader(k, v)) h.append(k, v);
      }
    },
  };
}
