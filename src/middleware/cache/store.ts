/**
 * What the cache keeps, and where: a stored response ({@linkcode Stored}),
 * the Vary marker that points a key at its variants, the store interface,
 * the memory store (LRU bounded in bytes) and the byte format the Redis
 * store writes.
 *
 * Keys: a response without Vary is stored at its key; one with Vary leaves a
 * {@linkcode VaryMarker} (the field names) at the key and is stored at
 * `key + "\0" + the request's values of those fields`. Purging a key drops
 * the key and every `key\0...` variant.
 *
 * @module
 */
import { HeaderList } from "../../core/headers.ts";

/** A stored response. Immutable once stored: a refresh (304) stores a new one. */
export interface Stored {
  readonly kind: "response";
  readonly status: number;
  /** Fields as the upstream sent them, hop-by-hop and Age removed. Never handed out: clone it. */
  readonly headers: HeaderList;
  readonly body: Uint8Array;
  /** ms since the epoch when the response (or the 304 that refreshed it) arrived. */
  readonly responseTime: number;
  /** RFC 9111 corrected_initial_age, seconds. */
  readonly initialAge: number;
  /** Freshness lifetime, seconds. */
  readonly lifetime: number;
  /** Stale windows, seconds. */
  readonly swr: number;
  readonly sie: number;
  readonly noCache: boolean;
  /** must-revalidate and the like: no stale answers (but its own stale-* windows). */
  readonly noStale: boolean;
  readonly authOk: boolean;
  readonly etag: string | undefined;
  /** Last-Modified (else Date) in ms, NaN when neither: If-Modified-Since is compared with it. */
  readonly lastModified: number;
  /** ms since the epoch after which the entry is dropped. */
  readonly keepUntil: number;
  /** Bytes counted against the memory store's bound. */
  readonly size: number;
  /** HTTP/1.1 status line and field lines, built on the first hit (memory store only). */
  raw?: Uint8Array;
}

/** At a key whose response has Vary: the request fields that select the variant. */
export interface VaryMarker {
  readonly kind: "vary";
  /** Lower-case, sorted, unique. */
  readonly fields: readonly string[];
  readonly keepUntil: number;
  readonly size: number;
}

/** What a key holds. */
export type Item = Stored | VaryMarker;

/** Where stored responses live. `get` may answer at once (memory) or later (Redis). */
export interface CacheStore {
  get(key: string): Item | undefined | Promise<Item | undefined>;
  /** Stores `item` (asynchronous stores write in the background). */
  set(key: string, item: Item): void;
  /** Drops `key` and its variants (`exact`), or every key starting with `key`; the count dropped. */
  purge(key: string, exact: boolean): number | Promise<number>;
  /** Drops what `key` holds (its variants become unreachable and expire): cheap, for unsafe methods. */
  invalidate(key: string): void;
  /** Frees timers and connections. */
  close(): void;
}

/** Bytes an entry costs beyond its body and fields (objects, map slot). */
const OVERHEAD = 256;

/** The memory footprint counted for a response. */
export function sizeOf(key: string, headers: HeaderList, body: Uint8Array): number {
  let n = OVERHEAD + key.length * 2 + body.length;
  for (let i = 0; i < headers.size; i++) n += (headers.names[i].length + headers.values[i].length) * 2 + 16;
  return n;
}

/**
 * The memory store of one isolate: a Map in least-recently-used order (a hit
 * moves its key to the end), bounded by `maxBytes`: storing past it drops
 * the least recently used entries first. Entries past `keepUntil` are
 * dropped when met and by a sweep every `cleanupMs`.
 */
export class MemoryStore implements CacheStore {
  readonly #map = new Map<string, Item>();
  #bytes = 0;
  readonly #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly maxBytes: number, cleanupMs: number) {
    if (cleanupMs > 0) {
      const timer = setInterval(() => this.sweep(Date.now()), cleanupMs);
      Deno.unrefTimer(timer as unknown as number);
      this.#timer = timer;
    }
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held. */
  get size(): number {
    return this.#map.size;
  }

  get(key: string): Item | undefined {
    const m = this.#map;
    const it = m.get(key);
    if (it === undefined) return undefined;
    if (it.keepUntil <= Date.now()) {
      this.#drop(key, it);
      return undefined;
    }
    // Most recently used last.
    m.delete(key);
    m.set(key, it);
    return it;
  }

  set(key: string, item: Item): void {
    if (item.size > this.maxBytes) return;
    const m = this.#map;
    const old = m.get(key);
    if (old !== undefined) this.#drop(key, old);
    m.set(key, item);
    this.#bytes += item.size;
    if (this.#bytes > this.maxBytes) {
      for (const [k, v] of m) {
        if (this.#bytes <= this.maxBytes) break;
        this.#drop(k, v);
      }
    }
  }

  purge(key: string, exact: boolean): number {
    let n = 0;
    const variants = key + "\0";
    for (const [k, v] of this.#map) {
      if (exact ? k === key || k.startsWith(variants) : k.startsWith(key)) {
        this.#drop(k, v);
        n++;
      }
    }
    return n;
  }

  invalidate(key: string): void {
    const it = this.#map.get(key);
    if (it !== undefined) this.#drop(key, it);
  }

  /** Drops every entry past its keepUntil. */
  sweep(now: number): void {
    for (const [k, v] of this.#map) if (v.keepUntil <= now) this.#drop(k, v);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#map.clear();
    this.#bytes = 0;
  }

  #drop(key: string, it: Item): void {
    if (this.#map.delete(key)) this.#bytes -= it.size;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * An item as bytes (Redis): a 4-byte big-endian length, that many bytes of
 * JSON (everything but the body), then the body.
 */
export function encodeItem(it: Item): Uint8Array {
  const meta = it.kind === "vary" ? { k: "v", f: it.fields, u: it.keepUntil } : {
    k: "r",
    s: it.status,
    h: it.headers.entries(),
    t: it.responseTime,
    a: it.initialAge,
    l: it.lifetime,
    w: it.swr,
    e: it.sie,
    n: it.noCache,
    x: it.noStale,
    o: it.authOk,
    g: it.etag,
    m: Number.isNaN(it.lastModified) ? null : it.lastModified,
    u: it.keepUntil,
  };
  const json = encoder.encode(JSON.stringify(meta));
  const body = it.kind === "vary" ? new Uint8Array(0) : it.body;
  const out = new Uint8Array(4 + json.length + body.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, 4);
  out.set(body, 4 + json.length);
  return out;
}

/** The item `bytes` hold (for `key`), or undefined when they are not one (another writer, a damaged value). */
export function decodeItem(key: string, bytes: Uint8Array): Item | undefined {
  try {
    if (bytes.length < 4) return undefined;
    const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
    if (4 + len > bytes.length) return undefined;
    const m = JSON.parse(decoder.decode(bytes.subarray(4, 4 + len)));
    if (m.k === "v") {
      const fields = (m.f as unknown[]).map(String);
      return { kind: "vary", fields, keepUntil: Number(m.u), size: OVERHEAD };
    }
    if (m.k !== "r") return undefined;
    const headers = HeaderList.from(
      (m.h as [string, string][]).map(([n, v]): [string, string] => [String(n), String(v)]),
    );
    const body = bytes.slice(4 + len);
    return {
      kind: "response",
      status: Number(m.s),
      headers,
      body,
      responseTime: Number(m.t),
      initialAge: Number(m.a),
      lifetime: Number(m.l),
      swr: Number(m.w),
      sie: Number(m.e),
      noCache: m.n === true,
      noStale: m.x === true,
      authOk: m.o === true,
      etag: typeof m.g === "string" ? m.g : undefined,
      lastModified: m.m === null ? NaN : Number(m.m),
      keepUntil: Number(m.u),
      size: sizeOf(key, headers, body),
    };
  } catch {
    return undefined;
  }
}
