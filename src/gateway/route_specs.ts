/**
 * Adapter from Loom's validated config routes to router specs.
 *
 * @module
 */

import type { RouteConfig } from "../config/types.ts";
import type { RouteSpec } from "../router/mod.ts";

/**
 * Turns config routes into {@link RouteSpec}s. The payload is the
 * `RouteConfig` itself, or what `payload` builds from it.
 */
export function specsFromConfig(routes: readonly RouteConfig[]): RouteSpec<RouteConfig>[];
export function specsFromConfig<T>(
  routes: readonly RouteConfig[],
  payload: (r: RouteConfig) => T,
): RouteSpec<T>[];
export function specsFromConfig<T>(
  routes: readonly RouteConfig[],
  payload?: (r: RouteConfig) => T,
): RouteSpec<T | RouteConfig>[] {
  return routes.map((r) => ({
    id: r.id,
    host: r.host,
    path: r.path,
    methods: r.methods,
    headers: r.headers,
    query: r.query_params,
    pathRegex: r.path_regex,
    listeners: r.listeners,
    priority: r.priority,
    order: r.order,
    data: payload ? payload(r) : r,
  }));
}
