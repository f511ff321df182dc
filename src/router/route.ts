/**
 * Compilation of one {@link RouteSpec} into a {@link Route}: parsed pattern,
 * host/method/header/query checks, and its precedence keys.
 *
 * @module
 */

import { ValueTest } from "./matchers.ts";
import { type ParsedPattern, parsePattern } from "./pattern.ts";
import type { LazyQuery } from "./query.ts";
import type { CompiledRoute, MatchInput, RouteMatch, RouteSpec } from "./types.ts";

/** Shared params object for matches without params. */
export const EMPTY_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

const HOST_ANY = 0;
const HOST_WILDCARD = 1;
const HOST_EXACT = 2;

/** A compiled route: the public {@link CompiledRoute} view plus its matchers. */
export class Route<T> implements CompiledRoute<T> {
  readonly id: string;
  readonly data: T;
  readonly pattern: string;
  readonly prefix: string;
  readonly paramNames: readonly string[];
  readonly hasCatchAll: boolean;
  readonly host: string | undefined;
  readonly methods: readonly string[] | undefined;
  readonly priority: number;
  readonly order: number;
  /** Parsed pattern, for tree insertion. */
  readonly parsed: ParsedPattern;
  /** Host specificity rank: exact 2, wildcard 1, any 0. */
  readonly hostRank: number;
  /** Number of methods/header/query matchers (methods count as one). */
  readonly matcherCount: number;
  /** Frozen match reused for every hit of a param-less, catch-all-less route. */
  readonly staticMatch: RouteMatch<T> | null;
  /** Whether params precede the catch-all (then the matched prefix varies per request). */
  readonly variablePrefix: boolean;

  readonly #hostSuffix: string;
  readonly #methods: string[] | null;
  readonly #headerNames: string[];
  readonly #headerTests: ValueTest[];
  readonly #queryNames: string[];
  readonly #queryTests: ValueTest[];
  readonly #pathRegex: RegExp | null;
  readonly #listeners: readonly string[] | null;

  /** Compiles `spec`; throws an `Error` naming the route on any invalid part. */
  constructor(spec: RouteSpec<T>) {
    const what = `route "${spec.id}"`;
    this.id = spec.id;
    this.data = spec.data;
    this.pattern = spec.path;
    try {
      this.parsed = parsePattern(spec.path);
    } catch (e) {
      throw new Error(`${what}: ${(e as Error).message}`);
    }
    this.prefix = this.parsed.prefix;
    this.paramNames = this.parsed.paramNames;
    this.hasCatchAll = this.parsed.catchAll !== null;
    this.variablePrefix = this.hasCatchAll && this.paramNames.length > 1;
    this.priority = spec.priority ?? 0;
    this.order = spec.order;
    if (!Number.isFinite(this.priority)) throw new Error(`${what}: priority must be a finite number`);

    const host = spec.host?.toLowerCase();
    this.host = host;
    if (host === undefined) {
      this.hostRank = HOST_ANY;
      this.#hostSuffix = "";
    } else if (host.startsWith("*.") && host.length > 2 && !host.slice(1).includes("*")) {
      this.hostRank = HOST_WILDCARD;
      this.#hostSuffix = host.slice(1);
    } else if (host !== "" && !host.includes("*")) {
      this.hostRank = HOST_EXACT;
      this.#hostSuffix = host;
    } else {
      throw new Error(`${what}: invalid host "${spec.host}" (use "name" or "*.suffix")`);
    }

    // An empty list is treated like an absent one: no method restriction.
    const methods = spec.methods?.length ? spec.methods.map((m) => m.toUpperCase()) : undefined;
    this.methods = methods;
    this.#methods = methods ?? null;

    this.#headerNames = [];
    this.#headerTests = [];
    for (const [name, m] of Object.entries(spec.headers ?? {})) {
      this.#headerNames.push(name.toLowerCase());
      this.#headerTests.push(new ValueTest(m, `${what} header "${name}"`));
    }
    this.#queryNames = [];
    this.#queryTests = [];
    for (const [name, m] of Object.entries(spec.query ?? {})) {
      this.#queryNames.push(name);
      this.#queryTests.push(new ValueTest(m, `${what} query "${name}"`));
    }
    try {
      // No "g"/"y" flag: those make `test` stateful across requests.
      this.#pathRegex = spec.pathRegex === undefined ? null : new RegExp(`^(?:${spec.pathRegex})$`);
    } catch (e) {
      throw new Error(`${what}: invalid path regex "${spec.pathRegex}": ${(e as Error).message}`);
    }
    this.#listeners = spec.listeners?.length ? spec.listeners : null;
    this.matcherCount = (methods ? 1 : 0) + this.#headerNames.length + this.#queryNames.length;
    this.staticMatch = this.paramNames.length === 0
      ? Object.freeze({ route: this, params: EMPTY_PARAMS, prefix: this.prefix, rest: "" })
      : null;
  }

  /** Whether the request's host, method, headers and query satisfy this route. */
  accepts(input: MatchInput, query: LazyQuery): boolean {
    if (this.hostRank === HOST_EXACT) {
      if (input.host !== this.#hostSuffix) return false;
    } else if (this.hostRank === HOST_WILDCARD) {
      // Strictly longer than ".suffix": at least one label, never the apex.
      const h = input.host;
      if (h.length <= this.#hostSuffix.length || !h.endsWith(this.#hostSuffix)) return false;
    }
    if (this.#listeners !== null && !this.#listeners.includes(input.listener ?? "")) return false;
    if (this.#methods !== null && !this.#methods.includes(input.method)) return false;
    if (this.#pathRegex !== null && !this.#pathRegex.test(input.path)) return false;
    const hn = this.#headerNames;
    for (let i = 0; i < hn.length; i++) {
      if (!this.#headerTests[i].test(input.header(hn[i]))) return false;
    }
    const qn = this.#queryNames;
    for (let i = 0; i < qn.length; i++) {
      if (!this.#queryTests[i].test(query.get(qn[i]))) return false;
    }
    return true;
  }
}

/**
 * Orders routes that share one path shape (a tree leaf): priority desc, host
 * specificity desc (longer wildcard suffix first), matcher count desc, order asc.
 */
export function compareInLeaf<T>(a: Route<T>, b: Route<T>): number {
  return b.priority - a.priority ||
    b.hostRank - a.hostRank ||
    (a.hostRank === HOST_WILDCARD ? (b.host!.length - a.host!.length) : 0) ||
    b.matcherCount - a.matcherCount ||
    a.order - b.order;
}
