/**
 * Public types of Loom's router. The router is generic over the route payload
 * `T` (the gateway stores its `RouteConfig` there); it only does pure matching.
 *
 * @module
 */

/** A header or query matcher: exact value, regular expression, or mere presence. */
export type ValueMatcher =
  | { kind: "exact"; value: string }
  | { kind: "regex"; pattern: string }
  | { kind: "present" };

/** One route as given to the {@link Router} constructor. */
export interface RouteSpec<T> {
  /** Unique route id (reported back in matches and errors). */
  id: string;
  /** "api.example.com", or "*.example.com" (any subdomain depth ≥ 1, not the apex); case-insensitive. */
  host?: string;
  /** Path pattern: statics, `{id}`/`:id` params, trailing `*`/`{name...}` catch-all. */
  path: string;
  /** Upper-case method names; undefined (or empty) = any method. */
  methods?: string[];
  /** Header matchers; names are case-insensitive. */
  headers?: Record<string, ValueMatcher>;
  /** Query parameter matchers (names are case-sensitive, values decoded). */
  query?: Record<string, ValueMatcher>;
  /**
   * A regular expression the whole normalised path must match (anchored: `^(?:re)$`), besides `path`
   * (write `path: "/*"` for a route matched by the expression alone). Gateway API RegularExpression paths.
   */
  pathRegex?: string;
  /** Names of the listeners whose requests this route serves; undefined (or empty) = every listener. */
  listeners?: readonly string[];
  /** Explicit priority: higher wins over every other precedence rule. Default 0. */
  priority?: number;
  /** Config order: the last tie-breaker (lower first). */
  order: number;
  /** Opaque payload handed back on match. */
  data: T;
}

/** What the router needs to know about a request. */
export interface MatchInput {
  method: string;
  /** Lower-cased, port stripped (the caller does that). */
  host: string;
  /** Already normalised by `normalizePath`. */
  path: string;
  /** `name` is lower-case; multiple values joined by ", ". */
  header(name: string): string | undefined;
  /** Raw query string without "?" ("" if none). */
  query: string;
  /** Name of the listener the request arrived on (routes with `listeners` need it). */
  listener?: string;
}

/** A route after compilation; read-only view for callers. */
export interface CompiledRoute<T> {
  readonly id: string;
  readonly data: T;
  /** The pattern as written in the spec. */
  readonly pattern: string;
  /**
   * Literal prefix of the pattern before its first param or catch-all, without a
   * trailing slash: "/api/v1" for "/api/v1/*", "/users" for "/users/{id}",
   * "/exact" for "/exact" and "/exact/", "" for "/*".
   */
  readonly prefix: string;
  /** Names of the captured params in path order (catch-all last: its name, or "*"). */
  readonly paramNames: readonly string[];
  /** Whether the pattern ends with a catch-all. */
  readonly hasCatchAll: boolean;
  /** Lower-cased host pattern, if any. */
  readonly host: string | undefined;
  /** Allowed methods, if restricted. */
  readonly methods: readonly string[] | undefined;
  readonly priority: number;
  readonly order: number;
}

/** A successful match. Treat as read-only: static routes share one frozen instance. */
export interface RouteMatch<T> {
  readonly route: CompiledRoute<T>;
  /** Captured params; a shared frozen empty object when there are none. */
  readonly params: Readonly<Record<string, string>>;
  /**
   * Request-path part to strip for `strip_prefix`, without trailing slash: for a
   * catch-all route the text matched before the catch-all ("/api/v1" for
   * "/api/v1/*", "/t/acme/api" for "/t/{tenant}/api/*"); otherwise the route's
   * literal {@link CompiledRoute.prefix}.
   */
  readonly prefix: string;
  /** What the catch-all matched, without leading slash ("" if none). */
  readonly rest: string;
}
