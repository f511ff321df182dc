/**
 * Composition of a route's middleware, done once when a snapshot is built:
 * the request-phase handlers become one onion around the terminal (the
 * proxy, a redirect, ...), and the other phases become flat hook lists on
 * the context. A route without middleware gets the terminal itself.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { Handler, Middleware, PhaseHooks } from "../core/middleware.ts";
import { PhasedWriter } from "./response_writer.ts";

/** What the request path calls for a route. */
export type Endpoint = (ctx: RequestContext) => Promise<void>;

/**
 * Hono's onion (`compose.ts`): `handlers[0]` runs first and reaches
 * `terminal` through each `next()`. Calling `next()` twice is an error.
 */
export function compose(handlers: readonly Handler[], terminal: Endpoint): Endpoint {
  const n = handlers.length;
  if (n === 0) return terminal;
  if (n === 1) {
    const only = handlers[0];
    return (ctx) => {
      let called = false;
      return only(ctx, () => {
        if (called) return Promise.reject(new Error("next() called multiple times"));
        called = true;
        return terminal(ctx);
      });
    };
  }
  return (ctx) => {
    let index = -1;
    const dispatch = (i: number): Promise<void> => {
      if (i <= index) return Promise.reject(new Error("next() called multiple times"));
      index = i;
      return i === n ? terminal(ctx) : handlers[i](ctx, () => dispatch(i + 1));
    };
    return dispatch(0);
  };
}

function hooksOf<K extends keyof Middleware>(
  list: readonly Middleware[],
  k: K,
): NonNullable<Middleware[K]>[] | null {
  const out: NonNullable<Middleware[K]>[] = [];
  for (const m of list) if (m[k] !== undefined) out.push(m[k] as NonNullable<Middleware[K]>);
  return out.length === 0 ? null : out;
}

/** The phase hooks of `list` in order, or null when none hooks any phase after `request`. */
export function phaseHooks(list: readonly Middleware[]): PhaseHooks | null {
  const hooks: PhaseHooks = {
    upstreamRequest: hooksOf(list, "upstreamRequest"),
    response: hooksOf(list, "response"),
    responseBody: hooksOf(list, "responseBody"),
    log: hooksOf(list, "log"),
  };
  return hooks.upstreamRequest === null && hooks.response === null && hooks.responseBody === null &&
      hooks.log === null
    ? null
    : hooks;
}

/**
 * Compiles `list` (in run order) around `terminal`: sets the route's phase
 * hooks on the context, wraps the response writer when a response phase is
 * hooked, then runs the onion. Returns `terminal` itself for an empty list.
 */
export function compileChain(list: readonly Middleware[], terminal: Endpoint): Endpoint {
  const onion = compose(hooksOf(list, "request") ?? [], terminal);
  const hooks = phaseHooks(list);
  if (hooks === null) return onion;
  const wrap = hooks.response !== null || hooks.responseBody !== null;
  return (ctx) => {
    ctx.hooks = hooks;
    // A 101 hands the connection over: there is no response to edit.
    if (wrap && ctx.upgrade === undefined) ctx.res = new PhasedWriter(ctx.res, ctx, hooks);
    return onion(ctx);
  };
}
