/**
 * The decisions of the `compress` middleware that depend only on header
 * values: which coding an Accept-Encoding asks for (RFC 9110 §12.5.3), and
 * whether a Content-Type is one to compress. Both are compiled once per
 * config snapshot; per request they only scan the header value.
 *
 * @module
 */

/**
 * Parses a qvalue (RFC 9110 §12.4.2: "0" to "1" with at most three
 * decimals); -1 when malformed.
 */
function parseQ(s: string): number {
  const n = s.length;
  if (n === 0 || n > 5) return -1;
  const first = s.charCodeAt(0);
  if (first !== 48 /* 0 */ && first !== 49 /* 1 */) return -1;
  if (n === 1) return first - 48;
  if (s.charCodeAt(1) !== 46 /* . */) return -1;
  let frac = 0;
  let scale = 1;
  for (let i = 2; i < n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    frac = frac * 10 + d;
    scale *= 10;
  }
  if (first === 49) return frac === 0 ? 1 : -1;
  return frac / scale;
}

/** The q of one Accept-Encoding member's parameters (`;q=0.5`), 1 without one, -1 when malformed. */
function memberQ(params: string): number {
  let q = 1;
  for (const p of params.split(";")) {
    const eq = p.indexOf("=");
    if (eq === -1) {
      if (p.trim() !== "") return -1;
      continue;
    }
    if (p.slice(0, eq).trim().toLowerCase() !== "q") continue;
    q = parseQ(p.slice(eq + 1).trim());
    if (q === -1) return -1;
  }
  return q;
}

/**
 * The index in `offered` (lower-case codings, in preference order) of the
 * coding `acceptEncoding` asks for, or -1 for none (send identity): the
 * highest q wins, ties go to the earlier offered coding; q=0 excludes a
 * coding; `*` stands for every coding not named; `x-gzip` is `gzip`.
 * No header, an empty one or a malformed member asks for nothing of ours
 * (malformed members are ignored, the rest still counts).
 */
export function negotiate(acceptEncoding: string | undefined, offered: readonly string[]): number {
  if (acceptEncoding === undefined) return -1;
  const qs: number[] = new Array(offered.length).fill(-1);
  let star = -1;
  for (const member of acceptEncoding.split(",")) {
    const semi = member.indexOf(";");
    let name = (semi === -1 ? member : member.slice(0, semi)).trim().toLowerCase();
    if (name === "") continue;
    const q = semi === -1 ? 1 : memberQ(member.slice(semi + 1));
    if (q === -1) continue;
    if (name === "*") {
      star = Math.max(star, q);
      continue;
    }
    if (name === "x-gzip") name = "gzip";
    const i = offered.indexOf(name);
    if (i !== -1) qs[i] = Math.max(qs[i], q);
  }
  let best = -1;
  let bestQ = 0;
  for (let i = 0; i < offered.length; i++) {
    const q = qs[i] !== -1 ? qs[i] : star;
    if (q > bestQ) {
      best = i;
      bestQ = q;
    }
  }
  return best;
}

/**
 * {@linkcode negotiate} with a per-snapshot cache of header values (clients
 * send a handful of distinct ones); the cache is dropped when it grows past
 * `limit` entries.
 */
export function cachedNegotiator(
  offered: readonly string[],
  limit = 256,
): (ae: string | undefined) => number {
  const cache = new Map<string, number>();
  return (ae) => {
    if (ae === undefined) return -1;
    let i = cache.get(ae);
    if (i === undefined) {
      i = negotiate(ae, offered);
      if (cache.size >= limit) cache.clear();
      cache.set(ae, i);
    }
    return i;
  };
}

/**
 * A Content-Type test from media type patterns: "type/subtype" (exact),
 * "type/*", "type/*+suffix" (e.g. "application/*+json") and "*\/*".
 * Parameters of the tested value are ignored, case too.
 */
export function typeMatcher(patterns: readonly string[]): (contentType: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixed: [string, string][] = [];
  let any = false;
  for (const raw of patterns) {
    const p = raw.toLowerCase();
    if (p === "*/*") any = true;
    else if (p.endsWith("/*")) prefixes.push(p.slice(0, -1));
    else {
      const star = p.indexOf("/*+");
      if (star !== -1) suffixed.push([p.slice(0, star + 1), p.slice(star + 2)]);
      else exact.add(p);
    }
  }
  return (contentType) => {
    const semi = contentType.indexOf(";");
    const t = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
    const slash = t.indexOf("/");
    if (slash <= 0 || slash === t.length - 1) return false;
    if (any || exact.has(t)) return true;
    for (let i = 0; i < prefixes.length; i++) if (t.startsWith(prefixes[i])) return true;
    for (let i = 0; i < suffixed.length; i++) {
      const [p, s] = suffixed[i];
      if (t.length > p.length + s.length && t.startsWith(p) && t.endsWith(s)) return true;
    }
    return false;
  };
}
