/**
 * The radix tree behind the router: a compressed prefix tree over path
 * characters. Static text lives on edges (split on insertion as needed, so
 * `/api/user` + `/api/users` and `/api/users` + `/api/orders` share nodes in
 * either insertion order); a param is a dedicated child matching one whole
 * non-empty segment; a catch-all is a leaf matching the rest of the path.
 *
 * Each node has up to three leaves, each holding the routes of one path shape
 * pre-sorted by {@link compareInLeaf}:
 * - `exact`: patterns ending here;
 * - `catchAll`: `.../*` patterns whose "/" ends here (match any rest, even "");
 * - `bare`: the same catch-all patterns, reached without their final "/", so
 *   `/api/*` also matches `/api`.
 *
 * @module
 */

import { compareInLeaf, type Route } from "./route.ts";

/** A tree node, reached by consuming its `label` (static text). */
export class Node<T> {
  label: string;
  /** First char codes of `statics`, for dispatch without allocation. */
  keys: number[] = [];
  statics: Node<T>[] = [];
  param: Node<T> | null = null;
  exact: Route<T>[] | null = null;
  catchAll: Route<T>[] | null = null;
  bare: Route<T>[] | null = null;
  /** Highest route priority in this subtree, for pruning the search. */
  maxPriority = -Infinity;

  /** Creates a node reached through `label`. */
  constructor(label: string) {
    this.label = label;
  }
}

/** Where a route's pattern ends in the tree. */
export type LeafKind = "exact" | "catchAll" | "bare";

/** Walks/creates the static path `s` below `node`, splitting edges; returns the end node. */
function insertStatic<T>(node: Node<T>, s: string): Node<T> {
  while (s.length > 0) {
    const idx = node.keys.indexOf(s.charCodeAt(0));
    if (idx < 0) {
      const child = new Node<T>(s);
      node.keys.push(s.charCodeAt(0));
      node.statics.push(child);
      return child;
    }
    let child = node.statics[idx];
    const label = child.label;
    let l = 1;
    const max = Math.min(label.length, s.length);
    while (l < max && label.charCodeAt(l) === s.charCodeAt(l)) l++;
    if (l < label.length) {
      // Split the edge: the new middle node takes the common part.
      const mid = new Node<T>(label.slice(0, l));
      child.label = label.slice(l);
      mid.keys.push(child.label.charCodeAt(0));
      mid.statics.push(child);
      node.statics[idx] = mid;
      child = mid;
    }
    node = child;
    s = s.slice(l);
  }
  return node;
}

/** Adds `route` under `root` at the leaf of the given kind. */
export function insertRoute<T>(root: Node<T>, route: Route<T>, kind: LeafKind): void {
  const tokens = route.parsed.tokens;
  let node = root;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.kind === "param") {
      node = node.param ??= new Node<T>("");
      continue;
    }
    // The bare form drops the final "/" that precedes the catch-all.
    const text = kind === "bare" && i === tokens.length - 1 ? t.text.slice(0, -1) : t.text;
    node = insertStatic(node, text);
  }
  const leaf = node[kind] ??= [];
  leaf.push(route);
}

/** Sorts every leaf and computes `maxPriority`; call once after all inserts. */
export function finalizeTree<T>(node: Node<T>): number {
  let max = -Infinity;
  for (const leaf of [node.exact, node.catchAll, node.bare]) {
    if (leaf === null) continue;
    leaf.sort(compareInLeaf);
    for (const r of leaf) max = Math.max(max, r.priority);
  }
  for (const child of node.statics) max = Math.max(max, finalizeTree(child));
  if (node.param !== null) max = Math.max(max, finalizeTree(node.param));
  node.maxPriority = max;
  return max;
}

/** The `exact` leaf at static path `s` (which must have been inserted). */
export function findExactLeaf<T>(root: Node<T>, s: string): Route<T>[] {
  let node = root;
  let pos = 0;
  while (pos < s.length) {
    const idx = node.keys.indexOf(s.charCodeAt(pos));
    node = node.statics[idx];
    pos += node.label.length;
  }
  return node.exact!;
}
