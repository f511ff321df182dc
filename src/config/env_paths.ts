/**
 * Which config values come from the environment: the YAML paths of string
 * scalars with a `${VAR}` reference, so `GET /config` can redact them.
 *
 * @module
 */

import { type Document, isAlias, isMap, isPair, isScalar, isSeq, type Node } from "yaml";
import { expandEnv } from "./env.ts";
import { joinIndex, joinKey } from "./path.ts";

/**
 * Paths (`plugins[0].config.token`, as in error messages and as the admin API
 * walks the normalised config) of every value that names an environment
 * variable, including `${VAR:-default}`. An alias is listed under each path
 * that uses it. Must run on the parsed document before substitution.
 */
export function envReferencePaths(root: Node | null, doc: Document): string[] {
  const out: string[] = [];
  const active = new Set<Node>();
  const visit = (raw: unknown, path: string): void => {
    const node = isAlias(raw) ? raw.resolve(doc) : raw as Node | null | undefined;
    if (!node || active.has(node)) return;
    active.add(node);
    if (isMap(node)) {
      for (const pair of node.items) {
        if (isPair(pair) && isScalar(pair.key)) visit(pair.value, joinKey(path, String(pair.key.value)));
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, joinIndex(path, i)));
    } else if (isScalar(node) && typeof node.value === "string" && node.value.includes("${")) {
      // The substitution's own parser decides what counts as a variable reference.
      let references = false;
      expandEnv(node.value, () => {
        references = true;
        return "";
      });
      if (references) out.push(path);
    }
    active.delete(node);
  };
  visit(root, "");
  return out;
}
