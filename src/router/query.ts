/**
 * Query-string access for query matchers. The raw query is parsed lazily, at
 * most once per request, and only when a candidate route has query matchers.
 *
 * Keys and values are decoded (`+` is a space, then percent-decoding; a
 * malformed escape is kept literally rather than failing the request). When a
 * key repeats, its first value is the one matched. A key without "=" has the
 * value "" (so it satisfies `present`).
 *
 * @module
 */

/** Decodes one `application/x-www-form-urlencoded` component leniently. */
export function decodeQueryComponent(s: string): string {
  const plus = s.includes("+") ? s.replaceAll("+", " ") : s;
  if (!plus.includes("%")) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus;
  }
}

/** Parses a raw query (no "?") into decoded key → first value. */
export function parseQuery(raw: string): Map<string, string> {
  const map = new Map<string, string>();
  if (raw === "") return map;
  for (const pair of raw.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = decodeQueryComponent(eq < 0 ? pair : pair.slice(0, eq));
    if (!map.has(key)) map.set(key, eq < 0 ? "" : decodeQueryComponent(pair.slice(eq + 1)));
  }
  return map;
}

/** Per-request lazy view of the query; the router reuses one instance. */
export class LazyQuery {
  #raw = "";
  #map: Map<string, string> | null = null;

  /** Points the view at a new request's raw query, dropping any parse. */
  reset(raw: string): void {
    this.#raw = raw;
    this.#map = null;
  }

  /** First decoded value of `name`, or undefined if absent. */
  get(name: string): string | undefined {
    this.#map ??= parseQuery(this.#raw);
    return this.#map.get(name);
  }
}
