/**
 * Loom's request router: picks the route for a normalised request.
 *
 * Precedence, among the routes whose host, path, methods, headers and query
 * matchers all accept the request:
 * 1. higher explicit `priority`;
 * 2. path specificity, comparing patterns segment by segment: static >
 *    param > catch-all; so a longer static match beats a shorter one, and at
 *    equal segments a pattern without catch-all beats one with it (`/api`
 *    beats `/api/*` for "/api");
 * 3. host specificity: exact > wildcard (longer suffix first) > none;
 * 4. more matchers (methods as one, plus each header and query matcher);
 * 5. lower config `order`.
 *
 * The search is a depth-first walk of the radix tree ({@link Node}) trying, at
 * each node, the static child, then the param child, then the catch-all: the
 * order of rule 2, so the first accepted leaf is the most specific one.
 * Leaves whose routes all reject the request (host/method/header/query) make
 * the walk backtrack to less specific patterns. Explicit priorities are
 * handled by continuing the walk only into subtrees whose `maxPriority`
 * exceeds the best priority found so far; with uniform priorities the walk
 * stops at the first accepted route.
 *
 * Fully static patterns are also indexed in a hash map by path: such a leaf
 * is the most specific possible match, so when one of its routes accepts the
 * request at the highest priority in use, the tree walk is skipped.
 *
 * All parsing, sorting and regex compilation happens in the constructor; a
 * match allocates only the result (none for param-less static routes) and
 * its params.
 *
 * @module
 */

import { LazyQuery } from "./query.ts";
import { Route } from "./route.ts";
import { finalizeTree, findExactLeaf, insertRoute, Node } from "./tree.ts";
import type { CompiledRoute, MatchInput, RouteMatch, RouteSpec } from "./types.ts";

const SLASH = 0x2f;

/**
 * Matches requests against a fixed set of routes. Immutable after construction.
 * `match` is synchronous and not re-entrant (it reuses scratch state), which
 * holds as long as `MatchInput.header` does not call back into the router.
 */
export class Router<T> {
  /** Compiled routes, in the order given. */
  readonly routes: readonly CompiledRoute<T>[];
  readonly #root = new Node<T>("");
  readonly #query = new LazyQuery();
  /** Leaves of fully static patterns by path: the most specific possible match. */
  readonly #statics = new Map<string, Route<T>[]>();
  /** Highest priority of all routes: a static hit at this priority is final. */
  readonly #maxPriority: number;
  // Per-match scratch state: matching is synchronous, so one set suffices.
  #input: MatchInput | null = null;
  #path = "";
  #caps: Int32Array;
  #best: Route<T> | null = null;
  #bestPriority = -Infinity;
  #bestCaps: Int32Array;
  #bestRest = -1;

  /** Compiles `specs`; throws an `Error` naming the route on any invalid spec. */
  constructor(specs: RouteSpec<T>[]) {
    const routes: Route<T>[] = [];
    const ids = new Set<string>();
    let maxParams = 0;
    for (const spec of specs) {
      if (ids.has(spec.id)) throw new Error(`duplicate route id "${spec.id}"`);
      ids.add(spec.id);
      const route = new Route(spec);
      routes.push(route);
      maxParams = Math.max(maxParams, route.paramNames.length);
      if (route.hasCatchAll) {
        insertRoute(this.#root, route, "catchAll");
        insertRoute(this.#root, route, "bare");
      } else {
        insertRoute(this.#root, route, "exact");
      }
    }
    this.#maxPriority = finalizeTree(this.#root);
    for (const r of routes) {
      if (r.paramNames.length > 0) continue;
      const text = (r.parsed.tokens[0] as { text: string }).text;
      // Leaves are shared with the tree, so they are already sorted.
      if (!this.#statics.has(text)) this.#statics.set(text, findExactLeaf(this.#root, text));
    }
    this.routes = Object.freeze(routes);
    this.#caps = new Int32Array(maxParams * 2);
    this.#bestCaps = new Int32Array(maxParams * 2);
  }

  /** Best route for `input` by the precedence rules, or null if none accepts it. */
  match(input: MatchInput): RouteMatch<T> | null {
    const path = input.path;
    if (path.length === 0) return null;
    this.#input = input;
    this.#path = path;
    this.#best = null;
    this.#bestPriority = -Infinity;
    this.#query.reset(input.query);
    const leaf = this.#statics.get(path);
    if (leaf !== undefined) {
      this.#tryLeaf(leaf, 0, -1);
      const hit = this.#best as Route<T> | null;
      if (hit !== null && hit.priority >= this.#maxPriority) {
        this.#input = null;
        return hit.staticMatch;
      }
    }
    this.#walk(this.#root, 0, 0);
    // The walk mutates #best; TypeScript cannot see that through the call.
    const best = this.#best as Route<T> | null;
    this.#input = null;
    if (best === null) return null;
    if (best.staticMatch !== null) return best.staticMatch;
    return this.#result(best, path);
  }

  /** Searches below `node`, reached at `pos` with `depth` params captured. */
  #walk(node: Node<T>, pos: number, depth: number): void {
    const path = this.#path;
    const len = path.length;
    // Loops instead of recursing while there is nothing to backtrack to.
    for (;;) {
      if (node.maxPriority <= this.#bestPriority) return;
      if (pos === len) {
        if (node.exact !== null) this.#tryLeaf(node.exact, depth, -1);
        if (node.catchAll !== null) this.#tryLeaf(node.catchAll, depth, pos);
        if (node.bare !== null) this.#tryLeaf(node.bare, depth, -1);
        return;
      }
      const c = path.charCodeAt(pos);
      const keys = node.keys;
      let next: Node<T> | null = null;
      for (let i = 0; i < keys.length; i++) {
        if (keys[i] !== c) continue;
        const child = node.statics[i];
        if (path.startsWith(child.label, pos)) next = child;
        break;
      }
      const param = node.param;
      if (param === null && node.catchAll === null) {
        if (next === null) return;
        pos += next.label.length;
        node = next;
        continue;
      }
      if (next !== null) this.#walk(next, pos + next.label.length, depth);
      if (param !== null && c !== SLASH) {
        let end = path.indexOf("/", pos);
        if (end < 0) end = len;
        this.#caps[depth * 2] = pos;
        this.#caps[depth * 2 + 1] = end;
        this.#walk(param, end, depth + 1);
      }
      if (node.catchAll !== null) this.#tryLeaf(node.catchAll, depth, pos);
      return;
    }
  }

  /** Takes the first route of `leaf` accepting the request, if it beats the best so far. */
  #tryLeaf(leaf: Route<T>[], depth: number, restStart: number): void {
    const input = this.#input!;
    for (let i = 0; i < leaf.length; i++) {
      const r = leaf[i];
      // Sorted by priority desc: nothing further can beat the current best.
      if (r.priority <= this.#bestPriority) return;
      if (!r.accepts(input, this.#query)) continue;
      this.#best = r;
      this.#bestPriority = r.priority;
      this.#bestRest = restStart;
      for (let k = 0; k < depth * 2; k++) this.#bestCaps[k] = this.#caps[k];
      return;
    }
  }

  #result(route: Route<T>, path: string): RouteMatch<T> {
    const names = route.paramNames;
    const caps = this.#bestCaps;
    const params: Record<string, string> = {};
    const segParams = route.hasCatchAll ? names.length - 1 : names.length;
    for (let i = 0; i < segParams; i++) params[names[i]] = path.slice(caps[i * 2], caps[i * 2 + 1]);
    if (!route.hasCatchAll) return { route, params, prefix: route.prefix, rest: "" };
    const restStart = this.#bestRest;
    const rest = restStart < 0 ? "" : path.slice(restStart);
    params[names[segParams]] = rest;
    let prefix = route.prefix;
    if (route.variablePrefix) prefix = restStart < 0 ? path : path.slice(0, restStart - 1);
    return { route, params, prefix, rest };
  }
}
