/**
 * Middleware by name: what a `middleware:` entry of the config turns into.
 * Built-in middleware are registered here; a middleware defined elsewhere
 * registers itself with {@link defineMiddleware} (options schema and
 * factory) before the config is loaded.
 *
 * @module
 */
import type { Middleware } from "../core/middleware.ts";
import type { Type } from "../config/dsl.ts";
import { type MiddlewareEntry, registerMiddlewareOptions } from "../config/middleware/mod.ts";
import { headers, type HeadersOptions } from "./headers/index.ts";

/** Builds a middleware from its validated, normalised options (once per snapshot). */
export type MiddlewareFactory = (options: never) => Middleware;

const factories = new Map<string, MiddlewareFactory>([
  ["headers", (o: HeadersOptions) => headers(o)],
]);

/**
 * Adds a middleware named `name`: `options` describes its config (validated
 * like the rest, with line numbers and "did you mean"), `create` builds it.
 */
export function defineMiddleware<O>(
  name: string,
  options: Type,
  create: (options: O) => Middleware,
  description?: string,
): void {
  registerMiddlewareOptions(name, options, description);
  factories.set(name, create as MiddlewareFactory);
}

/** The middleware for a validated config entry. */
export function createMiddleware(entry: MiddlewareEntry): Middleware {
  const f = factories.get(entry.name);
  if (f === undefined) throw new Error(`middleware "${entry.name}" is not defined`);
  return (f as (o: unknown) => Middleware)(entry.options);
}
