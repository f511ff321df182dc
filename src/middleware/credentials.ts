/**
 * Finding a credential in a request (a header, a query parameter, a cookie)
 * and taking it out again: what the `jwt` and `api_key` middleware share.
 * Query parameter names are compared percent-decoded, so `api%5Fkey=` is the
 * same parameter as `api_key=` (an encoded twin cannot slip past a strip).
 *
 * @module
 */
import type { HeaderList } from "../core/headers.ts";

/** Shown instead of a credential in the access log's path. */
export const MASKED = "[REDACTED]";

/** Every value of header `key` (lower-case), one per field. */
export function headerValues(h: HeaderList, key: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < h.keys.length; i++) if (h.keys[i] === key) out.push(h.values[i]);
  return out;
}

function decodeComponent(s: string): string | null {
  try {
    return decodeURIComponent(s.indexOf("+") === -1 ? s : s.replaceAll("+", " "));
  } catch {
    return null;
  }
}

/**
 * Values of query parameter `name` in `query` (raw, without "?"), decoded;
 * null when one of them is not valid percent-encoding.
 */
export function queryValues(query: string, name: string): string[] | null {
  const out: string[] = [];
  if (query === "") return out;
  for (const kv of query.split("&")) {
    const eq = kv.indexOf("=");
    const k = eq === -1 ? kv : kv.slice(0, eq);
    if (k !== name && decodeComponent(k) !== name) continue;
    const v = decodeComponent(eq === -1 ? "" : kv.slice(eq + 1));
    if (v === null) return null;
    out.push(v);
  }
  return out;
}

/** `target` (path and query) with parameter `name` removed (`replacement` null) or its values replaced. */
export function rewriteQueryParam(target: string, name: string, replacement: string | null): string {
  const q = target.indexOf("?");
  if (q === -1) return target;
  const kept: string[] = [];
  let changed = false;
  for (const kv of target.slice(q + 1).split("&")) {
    const eq = kv.indexOf("=");
    const k = eq === -1 ? kv : kv.slice(0, eq);
    if (k !== name && decodeComponent(k) !== name) kept.push(kv);
    else {
      changed = true;
      if (replacement !== null) kept.push(k + "=" + replacement);
    }
  }
  if (!changed) return target;
  return kept.length === 0 ? target.slice(0, q) : target.slice(0, q + 1) + kept.join("&");
}

/** Values of cookie `name` in the request's Cookie fields. */
export function cookieValues(h: HeaderList, name: string): string[] {
  const out: string[] = [];
  for (const field of headerValues(h, "cookie")) {
    for (const pair of field.split(";")) {
      const eq = pair.indexOf("=");
      if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
      let v = pair.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      out.push(v);
    }
  }
  return out;
}

/** Removes cookie `name` from the Cookie fields of `h` (a field left empty goes). */
export function removeCookie(h: HeaderList, name: string): void {
  const values = headerValues(h, "cookie");
  if (values.length === 0) return;
  const kept = values.flatMap((field) =>
    field.split(";").filter((pair) => {
      const eq = pair.indexOf("=");
      return pair.trim() !== "" && (eq === -1 || pair.slice(0, eq).trim() !== name);
    }).map((p) => p.trim())
  );
  h.delete("cookie");
  if (kept.length > 0) h.append("cookie", kept.join("; "));
}
