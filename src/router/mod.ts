/**
 * Loom's router: path normalisation, route matching, rewrites.
 *
 * @module
 */

export type { CompiledRoute, MatchInput, RouteMatch, RouteSpec } from "./types.ts";
export { Router } from "./router.ts";
export { normalizePath, type SplitTarget, splitTarget } from "./path.ts";
export { compileRedirect, compileRewrite, encodePath, stripPrefix, type Substitute } from "./rewrite.ts";
