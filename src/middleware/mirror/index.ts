/**
 * `mirror`: shadow traffic. A copy of a share of requests goes to another
 * upstream and its answer is discarded; the client's request, answer and
 * latency are never affected. A route's `mirror:` field is this middleware
 * (after the route's middleware and plugins); it may also sit in any
 * middleware list, a backend's included (Gateway API RequestMirror).
 *
 * ```yaml
 * routes:
 *   - id: api
 *     path: /api/*
 *     upstream: api
 *     mirror: { upstream: api-next, percent: 10, max_in_flight: 16, max_body: 64KB }
 * ```
 *
 * How it stays out of the way:
 * - fire and forget: the copy is sent through the mirror upstream's own
 *   balancer and pools (the plain proxy path: no retries) and nothing waits
 *   for it; its answer is read and dropped, keeping the connection pooled;
 * - bounded: at most `max_in_flight` copies unanswered at once per worker;
 *   a request beyond it is not mirrored (`loom_mirror_requests_total`
 *   result `skipped_in_flight`), and each copy ends within `timeout`;
 * - a mirror upstream that cannot be connected to (down, refusing) pauses
 *   mirroring for {@linkcode DOWN_PAUSE_MS} (`skipped_down`): then one
 *   copy tries again;
 * - the body is teed, not buffered: the client's body goes to its upstream
 *   unchanged and at its pace, each chunk copied for the mirror as it passes;
 *   a declared length over `max_body` is not mirrored (`skipped_body`), a
 *   streamed body growing past it aborts its copy (`aborted_body`), so a
 *   mirror never holds more than `max_body`; a copy whose body the main
 *   request never finished reading (an early answer) is aborted too.
 *
 * The copy is the request as this middleware sees it (earlier middleware's
 * request edits applied), with the same request id, Loom's header policy,
 * and the route's `upstream_request` hooks (header edits, credential
 * stripping) run on it. WebSocket upgrades are not mirrored.
 *
 * Cost: +5.5 µs of CPU per mirrored request, the copy's exchange included
 * (bench/middleware.ts `mirror-100`); a route without a mirror pays nothing.
 *
 * @module
 */
import { RequestContext } from "../../core/context.ts";
import { type BodyReader, EMPTY_BODY, type ResponseWriter } from "../../core/body.ts";
import type { HeaderList } from "../../core/headers.ts";
import type { Middleware, PhaseHooks } from "../../core/middleware.ts";
import type { MirrorOptions } from "../../config/middleware/mirror.ts";
import type { MiddlewareEnv } from "../registry.ts";
import { logger } from "../../observability/logger.ts";

/** How long mirroring pauses after a connection to the mirror upstream could not be made. */
export const DOWN_PAUSE_MS = 1000;

/** Answers of a mirror upstream go nowhere. */
class DiscardWriter implements ResponseWriter {
  headSent = false;
  writeHead(): void {
    this.headSent = true;
  }
  write(): Promise<void> {
    return Promise.resolve();
  }
  end(): Promise<void> {
    return Promise.resolve();
  }
  abort(): void {}
}

/** The mirror's copy of a request body: chunks pushed as the client's body is read. */
export class CopiedBody implements BodyReader {
  private chunks: Uint8Array[] = [];
  private done = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;
  trailers: HeaderList | null = null;

  constructor(readonly length: number) {}

  /** Whether the copy is still being fed. */
  get open(): boolean {
    return !this.done && this.error === null;
  }

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.notify();
  }

  end(trailers: HeaderList | null): void {
    this.done = true;
    this.trailers = trailers;
    this.notify();
  }

  /** The copy cannot be completed: its reader fails, what it held is dropped. */
  fail(reason: string): void {
    if (!this.open) return;
    this.error = new Error(reason);
    this.chunks = [];
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.error !== null) throw this.error;
      const c = this.chunks.shift();
      if (c !== undefined) return c;
      if (this.done) return null;
      await new Promise<void>((r) => this.wake = r);
    }
  }
}

/**
 * The client's body as the main request reads it, every chunk also copied
 * into `copy` while the copy stays within `max` bytes (then it is failed
 * and `onOverflow` called). Length and trailers are the source's.
 */
export class TeeBody implements BodyReader {
  private seen = 0;

  constructor(
    private readonly src: BodyReader,
    readonly copy: CopiedBody,
    private readonly max: number,
    private readonly onOverflow: () => void,
  ) {}

  get length(): number {
    return this.src.length;
  }

  get trailers(): HeaderList | null {
    return this.src.trailers;
  }

  async read(): Promise<Uint8Array | null> {
    let chunk: Uint8Array | null;
    try {
      chunk = await this.src.read();
    } catch (e) {
      this.copy.fail("the client's body failed");
      throw e;
    }
    const copy = this.copy;
    if (!copy.open) return chunk;
    if (chunk === null) {
      copy.end(this.src.trailers);
    } else if (chunk.length > 0) {
      this.seen += chunk.length;
      if (this.seen > this.max) {
        copy.fail("request body over the mirror's max_body");
        this.onOverflow();
      } else copy.push(chunk.slice()); // the source's views are reused
    }
    return chunk;
  }
}

/** The hooks a copy runs: the route's `upstream_request` ones only. */
function copyHooks(h: PhaseHooks | null): PhaseHooks | null {
  if (h === null || h.upstreamRequest === null) return null;
  return { upstreamRequest: h.upstreamRequest, response: null, responseBody: null, log: null };
}

/** A copy of `ctx` for the mirror, with `body` and a writer that discards the answer. */
function copyOf(ctx: RequestContext, body: BodyReader): RequestContext {
  const m = new RequestContext(
    ctx.method,
    ctx.target,
    ctx.authority,
    ctx.scheme,
    ctx.protocol,
    ctx.headers.clone(),
    body,
    new DiscardWriter(),
    ctx.peerIp,
    ctx.clientPort,
    ctx.listener,
  );
  m.id = ctx.id;
  m.clientIp = ctx.clientIp;
  m.path = ctx.path;
  m.query = ctx.query;
  m.host = ctx.host;
  m.grpc = ctx.grpc;
  m.clientCert = ctx.clientCert;
  m.sni = ctx.sni;
  m.localAddr = ctx.localAddr;
  m.localPort = ctx.localPort;
  m.route = ctx.route;
  m.params = ctx.params;
  m.pathRest = ctx.pathRest;
  m.upstreamTarget = ctx.upstreamTarget;
  m.hooks = copyHooks(ctx.hooks);
  if (m.hooks !== null) { for (const [k, v] of ctx.vars) m.vars.set(k, v); }
  return m;
}

/** The mirror middleware for `o`; `env.proxy` sends the copies. */
export function mirror(o: MirrorOptions, env: MiddlewareEnv): Middleware {
  // A mirror upstream that cannot be connected to is left alone for a while: no work per request meanwhile.
  let downUntil = 0;
  const send = env.proxy?.(o.upstream, o.timeout, () => downUntil = Date.now() + DOWN_PAUSE_MS) ?? null;
  if (send === null) throw new Error(`mirror: upstream "${o.upstream}" is not defined`);
  const share = o.percent / 100;
  const max = o.max_body;
  const metrics = env.metrics ?? null;
  const count = (ctx: RequestContext, result: string) =>
    metrics?.mirrorRequest?.(ctx.route?.id ?? "", o.upstream, result);
  let inFlight = 0;
  const settle = () => inFlight--;
  const failed = (e: unknown) => logger.debug("mirror failed", { upstream: o.upstream, error: String(e) });
  // The copy is taken now; it is sent once the main request went on (its own head written first).
  const start = (copy: RequestContext) => queueMicrotask(() => send(copy).catch(failed).finally(settle));
  return {
    name: "mirror",
    request: (ctx, next) => {
      if (share < 1 && (share === 0 || Math.random() >= share)) return next();
      if (ctx.upgrade !== undefined) return next();
      if (downUntil !== 0) {
        if (Date.now() < downUntil) {
          count(ctx, "skipped_down");
          return next();
        }
        downUntil = 0;
      }
      if (inFlight >= o.max_in_flight) {
        count(ctx, "skipped_in_flight");
        return next();
      }
      const length = ctx.body.length;
      if (length > max) {
        count(ctx, "skipped_body");
        return next();
      }
      inFlight++;
      count(ctx, "sent");
      if (length === 0) {
        start(copyOf(ctx, EMPTY_BODY));
        return next();
      }
      const copy = new CopiedBody(length);
      const tee = new TeeBody(ctx.body, copy, max, () => count(ctx, "aborted_body"));
      start(copyOf(ctx, copy));
      ctx.body = tee;
      // The main request is over: a copy still waiting for body bytes will never get them.
      return next().finally(() => copy.fail("the request ended before its body was read"));
    },
  };
}
