/**
 * The translation merged into the config file: its listeners, routes and
 * upstreams are appended to the file's own (as YAML nodes of the parsed
 * document), and the whole document is validated as one, so generated parts
 * get exactly the checks and defaults of written ones. A generated route that
 * does not validate (a value the translation could not foresee) is dropped and
 * its owner reported, never the whole config; the rest is validated again.
 *
 * @module
 */
import { type Document, isMap, isSeq, LineCounter, parseDocument, type YAMLMap, type YAMLSeq } from "yaml";
import type { ConfigError, LoadResult } from "../config/types.ts";
import { validateDocument } from "../config/validate.ts";
import { loadResultOf } from "../config/load.ts";
import { MIDDLEWARE_REF } from "./rules.ts";
import type { Translation } from "./translate.ts";

/** Generated strings are data: `${` is written `$${` so env substitution gives it back unchanged. */
function escapeEnv(v: unknown): unknown {
  if (typeof v === "string") return v.replaceAll("${", "$${");
  if (Array.isArray(v)) return v.map(escapeEnv);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, escapeEnv(x)]));
  }
  return v;
}

/** Replaces `{$gateway_api_middleware: name}` entries of a middleware list node by the named list's entries. */
function expandRefs(doc: Document, list: unknown): void {
  if (!isSeq(list)) return;
  const items: unknown[] = [];
  for (const item of list.items) {
    const ref = isMap(item) ? item.get(MIDDLEWARE_REF) : undefined;
    if (typeof ref === "string") {
      const named = doc.getIn(["gateway_api", "middleware", ref.replaceAll("$${", "${")], true);
      if (isSeq(named)) items.push(...named.items.map((n) => (n as { clone(): unknown }).clone()));
    } else items.push(item);
  }
  (list as YAMLSeq).items = items;
}

function append(doc: Document, key: string, values: Record<string, unknown>[]): void {
  let seq = doc.get(key, true);
  if (!isSeq(seq)) {
    seq = doc.createNode([]);
    // A Pair of nodes: the validator wants scalar keys (doc.set would keep a bare string).
    (doc.contents as YAMLMap).items.push(doc.createPair(key, seq));
  }
  for (const v of values) {
    const node = doc.createNode(escapeEnv(v)) as YAMLMap;
    if (key === "routes") {
      expandRefs(doc, node.get("middleware", true));
      const backends = node.get("backends", true);
      if (isSeq(backends)) {
        for (const b of backends.items) if (isMap(b)) expandRefs(doc, b.get("middleware", true));
      }
    }
    (seq as YAMLSeq).items.push(node);
  }
}

/** The merged config, and the owners of the generated routes that were dropped (with why). */
export interface MergeResult {
  result: LoadResult;
  dropped: Map<string, string>;
}

/**
 * Validates config `text` (of `file`, relative paths against `baseDir`) with `t`'s parts appended.
 * Generated routes that fail are dropped (up to three rounds); other errors fail the result.
 */
export function mergeTranslation(
  text: string,
  file: string,
  baseDir: string,
  t: Translation,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): MergeResult {
  const dropped = new Map<string, string>();
  let routes = t.routes.map((r, i) => ({ r, owner: t.routeOwners[i] }));
  for (let round = 0;; round++) {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: true });
    const baseRoutes = isSeq(doc.get("routes", true)) ? (doc.get("routes", true) as YAMLSeq).items.length : 0;
    if (doc.errors.length === 0 && isMap(doc.contents)) {
      append(doc, "listeners", t.listeners);
      append(doc, "upstreams", t.upstreams);
      append(doc, "routes", routes.map((x) => x.r));
    }
    const r = validateDocument(doc, lineCounter, env, baseDir);
    if (r.config !== undefined) return { result: loadResultOf(r, file), dropped };
    // Errors in generated routes: drop those routes and try again; anything else is the file's.
    const bad = new Map<number, ConfigError>();
    for (const e of r.errors) {
      const m = /^routes\[(\d+)\]/.exec(e.path);
      const i = m === null ? -1 : Number(m[1]) - baseRoutes;
      if (i >= 0 && i < routes.length && !bad.has(i)) bad.set(i, e);
    }
    const others = r.errors.filter((e) => {
      const m = /^routes\[(\d+)\]/.exec(e.path);
      return m === null || Number(m[1]) < baseRoutes;
    });
    if (bad.size === 0 || others.length > 0 || round === 2) {
      return { result: { ok: false, errors: r.errors }, dropped };
    }
    for (const [i, e] of bad) {
      const owner = routes[i].owner;
      if (!dropped.has(owner)) {
        dropped.set(owner, `${e.path.replace(/^routes\[\d+\]\.?/, "") || "route"}: ${e.message}`);
      }
    }
    const owners = new Set([...bad.keys()].map((i) => routes[i].owner));
    routes = routes.filter((x) => !owners.has(x.owner));
  }
}
