/**
 * A flat header list: parallel arrays of names (case as received), lower-case
 * keys and values. Cheaper than `Headers` (no per-call normalisation, no
 * iterator objects) and keeps duplicates and order, which a proxy must.
 */
export class HeaderList {
  /** Names as received or set (case preserved for HTTP/1.1 peers). */
  names: string[];
  /** Lower-case names, used for every lookup. */
  keys: string[];
  values: string[];

  constructor(names: string[] = [], keys: string[] = [], values: string[] = []) {
    this.names = names;
    this.keys = keys;
    this.values = values;
  }

  /** Builds a list from `[name, value]` pairs or a record. */
  static from(init: Iterable<[string, string]> | Record<string, string>): HeaderList {
    const h = new HeaderList();
    const entries = Symbol.iterator in init ? init as Iterable<[string, string]> : Object.entries(init);
    for (const [n, v] of entries) h.append(n, v);
    return h;
  }

  get size(): number {
    return this.keys.length;
  }

  /** First value of `key` (lower-case), or undefined. */
  get(key: string): string | undefined {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] === key) return this.values[i];
    return undefined;
  }

  /** All values of `key` joined as one field value (", ", or "; " for cookie). */
  getJoined(key: string): string | undefined {
    let out: string | undefined;
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== key) continue;
      out = out === undefined ? this.values[i] : out + (key === "cookie" ? "; " : ", ") + this.values[i];
    }
    return out;
  }

  has(key: string): boolean {
    return this.keys.indexOf(key) !== -1;
  }

  append(name: string, value: string): void {
    this.names.push(name);
    this.keys.push(name.toLowerCase());
    this.values.push(value);
  }

  /** Replaces every field named `name` with one field. */
  set(name: string, value: string): void {
    const key = name.toLowerCase();
    const i = this.keys.indexOf(key);
    if (i === -1) {
      this.append(name, value);
      return;
    }
    this.values[i] = value;
    this.removeFrom(key, i + 1);
  }

  /** Removes every field named `key` (lower-case). Returns whether any was removed. */
  delete(key: string): boolean {
    const i = this.keys.indexOf(key);
    if (i === -1) return false;
    this.removeFrom(key, i);
    return true;
  }

  private removeFrom(key: string, from: number): void {
    const { names, keys, values } = this;
    let w = from;
    for (let r = from; r < keys.length; r++) {
      if (keys[r] === key) continue;
      names[w] = names[r];
      keys[w] = keys[r];
      values[w] = values[r];
      w++;
    }
    names.length = keys.length = values.length = w;
  }

  /** `[name, value]` pairs, for building a `Headers` or logging. */
  entries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.keys.length; i++) out.push([this.names[i], this.values[i]]);
    return out;
  }

  clone(): HeaderList {
    return new HeaderList(this.names.slice(), this.keys.slice(), this.values.slice());
  }
}

/**
 * Fields an HTTP/2 or HTTP/3 message must not carry (connection-specific, RFC 9113 §8.2.2, RFC 9114 §4.2),
 * plus `content-length`, which each hop derives from the body it sends. Lower-case names.
 */
export function isConnectionField(k: string): boolean {
  return k === "connection" || k === "keep-alive" || k === "transfer-encoding" || k === "upgrade" ||
    k === "proxy-connection" || k === "content-length";
}

/**
 * Adds `token` to Vary unless it (or `*`) is listed already, case-insensitively. Existing Vary lines are
 * merged into one, so the field reads as one list whichever middleware added to it.
 */
export function addVary(h: HeaderList, token: string): void {
  const cur = h.getJoined("vary");
  if (cur === undefined) {
    h.append("vary", token);
    return;
  }
  const want = token.toLowerCase();
  for (const part of cur.split(",")) {
    const t = part.trim().toLowerCase();
    if (t === want || t === "*") return;
  }
  h.set("vary", cur + ", " + token);
}
