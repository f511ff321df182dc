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

/** Name of the middleware that opens a request's trace (src/middleware/tracing/). */
const TRACING = "tracing";

/**
 * `m` with a span around its `request` phase (until it calls `next()`, or
 * until it is done when it answers itself) and its `upstream_request` and `response` hooks, for
 * requests with a trace. Only chains with the tracing middleware get these
 * wrappers: without tracing nothing here runs.
 */
function traced(m: Middleware): Middleware {
  const { request, upstreamRequest, response } = m;
  if (
    m.name === TRACING || (request === undefined && upstreamRequest === undefined && response === undefined)
  ) {
    return m;
  }
  const name = m.name;
  const requestSpan = "middleware " + name;
  const attrs = { "loom.middleware": name };
  /** A synchronous hook in a span of its own. */
  const timed = <H>(hook: ((ctx: RequestContext, head: H) => void) | undefined, span: string) =>
    hook === undefined ? undefined : (ctx: RequestContext, head: H) => {
      const tr = ctx.trace;
      if (tr === null) return hook(ctx, head);
      const s = tr.child(span, attrs);
      try {
        hook(ctx, head);
      } finally {
        s.end();
      }
    };
  return {
    name,
    upstreamRequest: timed(upstreamRequest, requestSpan + " upstream_request"),
    response: timed(response, requestSpan + " response"),
    responseBody: m.responseBody,
    log: m.log,
    request: request === undefined ? undefined : (ctx, next) => {
      const tr = ctx.trace;
      if (tr === null) return request(ctx, next);
      const span = tr.child(requestSpan, attrs);
      let passed = false;
      const settle = (error: unknown) => {
        if (passed) return;
        if (error !== undefined) span.fail(String(error));
        else {
          // It answered the request itself (a refusal, a redirect, a cached answer...).
          span.setAttribute("loom.answered", true);
          if (ctx.status > 0) span.setAttribute("http.response.status_code", ctx.status);
          if (ctx.rejection !== "") span.setAttribute("loom.rejection", ctx.rejection);
        }
        span.end();
      };
      let p: Promise<void>;
      try {
        p = request(ctx, () => {
          passed = true;
          span.end();
          return next();
        });
      } catch (e) {
        settle(e);
        throw e;
      }
      return p.then(() => settle(undefined), (e) => {
        settle(e);
        throw e;
      });
    },
  };
}

/**
 * Compiles `list` (in run order) around `terminal`: sets the route's phase
 * hooks on the context, wraps the response writer when a response phase is
 * hooked, then runs the onion. Returns `terminal` itself for an empty list.
 * With the tracing middleware in the list, every other middleware's request
 * and response phases get a span (see {@link traced}).
 */
export function compileChain(chain: readonly Middleware[], terminal: Endpoint): Endpoint {
  const list = chain.some((m) => m.name === TRACING) ? chain.map(traced) : chain;
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

/**
 * Compiles `list` as a chain nested inside an outer chain of `outer` (a
 * route's backend inside the route): its request handlers run after the
 * outer ones, its phase hooks join the outer ones on the context (its
 * `upstream_request` and `log` hooks after them), and its `response` /
 * `response_body` hooks run before the outer ones (nearer the upstream, as
 * in an onion). Returns `terminal` itself for an empty list.
 */
export function compileInnerChain(
  outer: readonly Middleware[],
  list: readonly Middleware[],
  terminal: Endpoint,
): Endpoint {
  if (list.length === 0) return terminal;
  const onion = compose(hooksOf(list, "request") ?? [], terminal);
  const own = phaseHooks(list);
  if (own === null) return onion;
  const merged = phaseHooks([...outer, ...list]);
  const wrap = own.response !== null || own.responseBody !== null;
  return (ctx) => {
    ctx.hooks = merged;
    if (wrap && ctx.upgrade === undefined) ctx.res = new PhasedWriter(ctx.res, ctx, own);
    return onion(ctx);
  };
}
