/**
 * The middleware contract: a Hono-style `(ctx, next)` handler for the request
 * phase, plus Pingora-style named hooks for the points an onion cannot reach
 * cheaply. In core because the proxy (which runs `upstream_request`) and the
 * engines' writers (which run `response` and `response_body`) sit below the
 * middleware folders; composition is in `src/middleware/compose.ts`.
 *
 * A request's life, and where each phase runs:
 *
 *   routed → request (onion, in list order) → upstream_request (head about to
 *   go upstream) → response (the head the client will get) → response_body
 *   (streamed chunks) → log (after the response is finished; never delays it)
 *
 * @module
 */
import type { RequestContext } from "./context.ts";
import type { HeaderList } from "./headers.ts";

/** Calls the rest of the chain (and finally the proxy); resolves once the response is finished. */
export type Next = () => Promise<void>;

/** The request phase: answer early (don't call `next`), or edit `ctx` and call `next()` once. */
export type Handler = (ctx: RequestContext, next: Next) => Promise<void>;

/** The head about to go upstream, after Loom's header policy: edit it in place. */
export interface UpstreamRequestHead {
  method: string;
  /** Path and query sent upstream. */
  target: string;
  /** Host / :authority sent upstream. */
  authority: string;
  /** End-to-end fields (hop-by-hop ones already removed, forwarding fields already set). */
  headers: HeaderList;
}

/** The response head the client is about to get (from the upstream, a plugin, or Loom itself). */
export interface ResponseHead {
  status: number;
  headers: HeaderList;
  /** Exact body length, -1 when streamed. A body filter sets -1 when it changes the length. */
  bodyLength: number;
}

/** A per-response transform of the body's chunks; `flush` returns the bytes left at the end. */
export interface BodyFilter {
  push(chunk: Uint8Array): Uint8Array | Promise<Uint8Array>;
  flush(): Uint8Array | Promise<Uint8Array>;
  /** The response was given up (reset, client gone): free what the filter holds (a codec, say). */
  abort?(): void;
}

/** One middleware: a name and the phases it hooks (each optional). */
export interface Middleware {
  readonly name: string;
  readonly request?: Handler;
  readonly upstreamRequest?: (ctx: RequestContext, head: UpstreamRequestHead) => void;
  readonly response?: (ctx: RequestContext, head: ResponseHead) => void;
  /** Called once per response, after `response` hooks: a filter to stream the body through, or null. */
  readonly responseBody?: (ctx: RequestContext, head: ResponseHead) => BodyFilter | null;
  /** After the response; errors are logged, never surfaced. */
  readonly log?: (ctx: RequestContext) => void;
}

/**
 * A route's hooks after the request phase, in run order; null where no
 * middleware hooks that phase (the proxy and writers then pay one test).
 */
export interface PhaseHooks {
  readonly upstreamRequest: readonly ((ctx: RequestContext, head: UpstreamRequestHead) => void)[] | null;
  readonly response: readonly ((ctx: RequestContext, head: ResponseHead) => void)[] | null;
  readonly responseBody: readonly ((ctx: RequestContext, head: ResponseHead) => BodyFilter | null)[] | null;
  readonly log: readonly ((ctx: RequestContext) => void)[] | null;
}

/** Runs the route's `upstream_request` hooks on `head` (a no-op without hooks). */
export function runUpstreamRequestHooks(ctx: RequestContext, head: UpstreamRequestHead): void {
  const hooks = ctx.hooks?.upstreamRequest;
  if (hooks == null) return;
  for (let i = 0; i < hooks.length; i++) hooks[i](ctx, head);
}
