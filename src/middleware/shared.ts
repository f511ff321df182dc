/**
 * Shared memory for middleware state that must count once per process (a
 * rate limit's key table): which blocks a config needs, and how a middleware
 * gets its own.
 *
 * A middleware entry has a stable scope, its place in the config
 * (`middleware[0]`, `routes.api.middleware[1]`, `rate_limit` for the Loom
 * format's top-level block). A middleware that keeps shared state declares
 * its blocks with {@linkcode defineSharedNeeds} (a name and a size per block,
 * from its options); the supervisor reserves `scope/name` for every entry of
 * the config ({@linkcode sharedRegionsOf}) before posting it, and each
 * isolate's middleware gets the same memory with {@linkcode sharedBlock}. The
 * same config position, name and size keep their block across reloads.
 *
 * @module
 */
import type { LoomConfig } from "../config/types.ts";
import type { MiddlewareEntry } from "../config/middleware/mod.ts";
import type { MiddlewareEnv } from "./registry.ts";

/** Blocks a middleware's options need: [name, bytes] pairs. */
export type SharedNeeds = (options: never) => [string, number][];

const needs = new Map<string, SharedNeeds>();

/** Declares the shared blocks the middleware `name` asks {@linkcode sharedBlock} for, given its options. */
export function defineSharedNeeds(name: string, f: SharedNeeds): void {
  needs.set(name, f);
}

/** The scope of entry `index` of the top-level list (`route` null) or of route `route`'s list. */
export function entryScope(route: string | null, index: number): string {
  return route === null ? `middleware[${index}]` : `routes.${route}.middleware[${index}]`;
}

/** The scope of entry `index` of the middleware list of backend `backend` of route `route`. */
export function backendEntryScope(route: string, backend: number, index: number): string {
  return `routes.${route}.backends[${backend}].middleware[${index}]`;
}

/** `env` for the entry at `scope`. */
export function scopedEnv(env: MiddlewareEnv, scope: string): MiddlewareEnv {
  return { ...env, scope };
}

/** A block of memory shared by every isolate when the supervisor reserved it, else private to this one. */
export function sharedBlock(
  env: MiddlewareEnv,
  name: string,
  bytes: number,
): SharedArrayBuffer | ArrayBuffer {
  return env.regions?.get(`${env.scope ?? ""}/${name}`, bytes) ?? new ArrayBuffer(bytes);
}

/**
 * The blocks `config` needs (id → bytes), for the supervisor to reserve.
 * `extra` adds entries that are not in a middleware list (the top-level
 * `rate_limit` block) with their scope.
 */
export function sharedRegionsOf(
  config: LoomConfig,
  extra: readonly [string, MiddlewareEntry][] = [],
): Map<string, number> {
  const out = new Map<string, number>();
  const add = (scope: string, e: MiddlewareEntry) => {
    const f = needs.get(e.name);
    if (f === undefined) return;
    for (const [name, bytes] of (f as (o: unknown) => [string, number][])(e.options)) {
      out.set(`${scope}/${name}`, bytes);
    }
  };
  for (const [scope, e] of extra) add(scope, e);
  config.middleware.forEach((e, i) => add(entryScope(null, i), e));
  for (const r of config.routes) {
    r.middleware.forEach((e, i) => add(entryScope(r.id, i), e));
    r.backends?.forEach((b, k) => b.middleware.forEach((e, i) => add(backendEntryScope(r.id, k, i), e)));
  }
  return out;
}
