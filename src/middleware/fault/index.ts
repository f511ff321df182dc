/**
 * `fault`: fault injection for resilience tests, with the semantics of
 * Envoy's fault filter. A share of requests is delayed, then (independently)
 * a share is aborted with a status instead of going on.
 *
 * ```yaml
 * routes:
 *   - id: api
 *     path: /api/*
 *     upstream: api
 *     middleware:
 *       - fault:
 *           delay: { percent: 10, duration: 2s }
 *           abort: { percent: 5, status: 503 }
 * ```
 *
 * The delay comes first and holds the request before anything after this
 * middleware runs (the upstream never sees it meanwhile); an abort answers
 * through `reject` (counted as `fault/abort` in `loom_rejections_total`,
 * gRPC clients get the matching gRPC status). Each draw is a separate
 * `Math.random()`, so over many requests the shares are the percentages.
 *
 * With `headers: true` a request may choose its fault (for tests, like
 * Envoy's `x-envoy-fault-*`): `x-loom-fault-delay-request: <ms>` and
 * `x-loom-fault-abort-request: <status>` set the delay and the status (a
 * header acts only when its block is configured; a delay is capped at 60 s),
 * `x-loom-fault-delay-request-percentage` / `-abort-request-percentage` the
 * shares (never above the configured ones). Invalid header values are ignored.
 *
 * Cost: +0.2 µs of CPU per request when configured and not firing
 * (bench/middleware.ts `fault-off`).
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import type { FaultOptions } from "../../config/middleware/fault.ts";
import { reject } from "../reject.ts";

const NAME = "fault";
const MAX_HEADER_DELAY = 60_000;

/** A number from a request header within [lo, hi], else undefined. */
function headerNumber(ctx: RequestContext, name: string, lo: number, hi: number): number | undefined {
  const v = ctx.headers.get(name);
  if (v === undefined || !/^[0-9]+(\.[0-9]+)?$/.test(v.trim())) return undefined;
  const n = Number(v);
  return n >= lo && n <= hi ? n : undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The middleware for `o`. */
export function fault(o: FaultOptions, random: () => number = Math.random): Middleware {
  const delay = o.delay;
  const abort = o.abort;
  const fromHeaders = o.headers;
  const hit = (percent: number) => percent >= 100 || (percent > 0 && random() * 100 < percent);

  const aborted = (ctx: RequestContext): number => {
    if (abort === undefined) return 0;
    let status = abort.status;
    let percent = abort.percent;
    if (fromHeaders) {
      status = headerNumber(ctx, "x-loom-fault-abort-request", 400, 599) ?? status;
      percent = Math.min(
        percent,
        headerNumber(ctx, "x-loom-fault-abort-request-percentage", 0, 100) ?? percent,
      );
    }
    return hit(percent) ? Math.trunc(status) : 0;
  };
  const abortOrNext = (ctx: RequestContext, next: () => Promise<void>): Promise<void> => {
    const status = aborted(ctx);
    return status === 0 ? next() : reject(ctx, NAME, "abort", status, "fault injected");
  };

  return {
    name: NAME,
    request: (ctx, next) => {
      if (delay !== undefined) {
        let ms = delay.duration;
        let percent = delay.percent;
        if (fromHeaders) {
          ms = headerNumber(ctx, "x-loom-fault-delay-request", 0, MAX_HEADER_DELAY) ?? ms;
          percent = Math.min(
            percent,
            headerNumber(ctx, "x-loom-fault-delay-request-percentage", 0, 100) ?? percent,
          );
        }
        if (ms > 0 && hit(percent)) return sleep(ms).then(() => abortOrNext(ctx, next));
      }
      return abortOrNext(ctx, next);
    },
  };
}
