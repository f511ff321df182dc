/**
 * The resilient forwarding loop, shared by the HTTP/1.1 path (forward.ts) and
 * the HTTP/2 / gRPC path (h2_forward.ts): bulkhead admission, a circuit
 * breaker per endpoint, outlier reporting, and retries with full-jitter
 * backoff under the upstream's retry budget. The protocol supplies one
 * attempt, how a request body is kept for replay, and the answer for a
 * failed last attempt; everything else is decided here, once, for both.
 *
 * Retries go to another endpoint when one is available, only while nothing
 * of the response reached the client.
 */
import type { RequestContext } from "../core/context.ts";
import type { BodyReader } from "../core/body.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import { ADMITTED, DENIED } from "../upstream/circuit_breaker.ts";
import { admit, judge, type Resilience } from "../upstream/resilience.ts";
import { backoff, type RetryPolicy } from "../upstream/retry.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { respondError } from "../core/respond.ts";
import type { ForwardOptions, ProxyObserver } from "./forward.ts";

/** Methods a retry policy may resend without the route's opt-in. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

// Outcomes of one attempt: a relayed status (> 0), or one of these; a status
// the retry policy discarded is DISCARDED - status.
/** Connecting to the endpoint failed (nothing was sent). */
export const CONNECT_REFUSED = -1;
/** Connecting to the endpoint timed out (nothing was sent). */
export const CONNECT_TIMEOUT = -2;
/** The upstream reset the connection or stream (it may have processed the request). */
export const RESET = -3;
/** No response (head) in time. */
export const TIMEOUT = -4;
/** The upstream's response was unreadable. */
export const PROTOCOL = -5;
/** The client went away or sent a bad body; its response is already dealt with. */
export const CLIENT = -6;
/**
 * The upstream refused the stream before processing it (HTTP/2 REFUSED_STREAM,
 * or a GOAWAY whose last stream id is below it): safe to resend, if the body can be.
 */
export const REFUSED = -7;
/** A failure after the response head reached the client; the attempt already ended the response. */
export const ANSWERED = -8;
/** Base of discarded retryable statuses: the outcome is DISCARDED - status. */
export const DISCARDED = -1000;

/** How a request body is resent by a retry. */
export interface BodyReplay {
  /** Whether the whole body (as far as it was read) is still held, so a retry can resend it. */
  replayable(): boolean;
  /** Installs, as `ctx.body`, a reader that starts the body over. */
  rewind(ctx: RequestContext): void;
}

/** One attempt on `ep`; resolves to an outcome (see the constants above). */
export type Attempt = (
  ctx: RequestContext,
  up: Upstream,
  ep: Endpoint,
  target: string,
  opt: ForwardOptions,
  perTry: number,
  totalDeadline: number,
  discard: ReadonlySet<number> | null,
  obs: ProxyObserver | null,
  replay: BodyReplay | null,
) => Promise<number>;

/** What a protocol plugs into {@linkcode forwardResilient}. */
export interface AttemptProtocol {
  readonly attempt: Attempt;
  /**
   * Prepares the request body (non-empty) for replay under `policy`; null when
   * it cannot be replayed. May throw `{status}` for an invalid body.
   */
  keep(ctx: RequestContext, policy: RetryPolicy, methodOk: boolean): Promise<BodyReplay | null>;
  /** The gateway's answer for a failed last attempt (not called for CLIENT or ANSWERED). */
  fail(ctx: RequestContext, outcome: number): Promise<void>;
}

const RETRY_AFTER_1: [string, string][] = [["retry-after", "1"]];

/**
 * Forwarding with bulkhead, circuit breakers, outlier detection and retries
 * for an upstream with resilience state.
 * @param totalTimeout the request's whole budget (the route's `timeout`, shortened by `grpc-timeout`).
 */
export async function forwardResilient(
  ctx: RequestContext,
  up: Upstream,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
  proto: AttemptProtocol,
  totalTimeout: number,
): Promise<void> {
  const rs = up.resilience!;
  const bh = rs.bulkhead;
  if (bh !== null && !bh.tryEnter() && !(await bh.wait())) {
    ctx.endTime = performance.now();
    return respondError(ctx, 503, "upstream at capacity", RETRY_AFTER_1);
  }
  const budget = rs.budget;
  budget.active++;
  // Set when this request took a slot of the retry budget (released here even if an attempt throws).
  const slot = { taken: false };
  try {
    await attempts(ctx, up, rs, target, opt, obs, proto, totalTimeout, slot);
  } finally {
    budget.active--;
    if (slot.taken) budget.retrying--;
    bh?.leave();
    ctx.endTime = performance.now();
  }
}

/**
 * The attempt loop. A retry of a request the upstream may have processed
 * (reset, timeout, retryable status) takes a slot of the retry budget; a
 * request that never left (connect failure, refused stream) is resent to
 * another endpoint outside the budget, as it adds no load to the failing one.
 */
async function attempts(
  ctx: RequestContext,
  up: Upstream,
  rs: Resilience,
  target: string,
  opt: ForwardOptions,
  obs: ProxyObserver | null,
  proto: AttemptProtocol,
  totalTimeout: number,
  slot: { taken: boolean },
): Promise<void> {
  const policy = opt.retry ?? null;
  const totalDeadline = Date.now() + totalTimeout;
  // gRPC calls are never resent once the upstream may have processed them (no
  // status or reset retries): only connect failures and refused streams.
  const methodOk = policy !== null && ctx.grpc === 0 && (policy.nonIdempotent || IDEMPOTENT.has(ctx.method));
  const empty = ctx.body.length === 0;
  let replay: BodyReplay | null = null;
  if (policy !== null && !empty) {
    try {
      replay = await proto.keep(ctx, policy, methodOk);
    } catch (e) {
      const status = (e as { status?: number }).status ?? 400;
      if (!ctx.aborted) await respondError(ctx, status, "invalid request body", [["connection", "close"]]);
      return;
    }
  }
  const perTry = policy?.perTryTimeout ?? opt.perTryTimeout;
  let exclude: Endpoint | undefined = undefined;
  let retries = 0;
  for (;;) {
    const now = Date.now();
    let ep = up.select(ctx, exclude);
    let token = ADMITTED;
    if (rs.breakers) {
      // An open circuit sends the request to another endpoint, if any admits it.
      let denied: Endpoint | null = null;
      for (let k = 0; ep !== null; k++) {
        token = admit(up.name, ep, now, obs);
        if (token !== DENIED) break;
        denied ??= ep;
        ep = k + 1 < rs.endpoints.length ? up.select(ctx, ep) : null;
      }
      if (ep === null && denied !== null) {
        return failFast(ctx, denied, now);
      }
    }
    if (ep === null) {
      return respondError(ctx, 503, "no healthy upstream endpoint");
    }
    ctx.upstreamAddr = ep.address;
    const replayable = empty || (replay !== null && replay.replayable());
    const budgetOk = policy !== null && retries < policy.maxRetries &&
      (slot.taken || rs.budget.allows(policy.budget));
    const discard = budgetOk && methodOk && replayable ? policy!.codes : null;
    if (retries > 0) replay?.rewind(ctx);
    const outcome = await proto.attempt(
      ctx,
      up,
      ep,
      target,
      opt,
      perTry,
      totalDeadline,
      discard,
      obs,
      replay,
    );
    const end = Date.now();
    if (outcome === CLIENT || outcome === REFUSED) {
      // No verdict on the endpoint: the client left, or the upstream declined the
      // stream unprocessed (a graceful GOAWAY, say), which says nothing of its health.
      ep.breaker?.cancel(token);
      if (outcome === CLIENT) return;
    } else {
      const ok = outcome > 0 ? outcome < 500 : outcome <= DISCARDED ? DISCARDED - outcome < 500 : false;
      judge(up.name, rs, ep, token, ok, end, obs);
      if (outcome > 0 || outcome === ANSWERED) return;
    }
    // Nothing was sent (connect failure), or nothing was processed (refused) and the body can be resent.
    const unsent = outcome === CONNECT_REFUSED || outcome === CONNECT_TIMEOUT ||
      (outcome === REFUSED && (empty || (replay !== null && replay.replayable())));
    const retryable = unsent || ((outcome === RESET || outcome === TIMEOUT || outcome <= DISCARDED) &&
      methodOk && (empty || (replay !== null && replay.replayable())));
    if (
      retryable && policy !== null && retries < policy.maxRetries && !ctx.aborted && !ctx.res.headSent &&
      (unsent || slot.taken || rs.budget.allows(policy.budget))
    ) {
      const delay = backoff(policy, retries + 1);
      if (end + delay < totalDeadline) {
        if (!unsent && !slot.taken) {
          slot.taken = true;
          rs.budget.retrying++;
        }
        retries++;
        obs?.retry?.(up.name, retryReason(outcome));
        if (delay >= 1) await new Promise((r) => setTimeout(r, delay));
        if (!ctx.aborted) {
          exclude = ep;
          continue;
        }
        ctx.res.abort();
        return;
      }
    }
    return proto.fail(ctx, outcome);
  }
}

function retryReason(outcome: number): string {
  return outcome <= DISCARDED
    ? String(DISCARDED - outcome)
    : outcome === CONNECT_REFUSED || outcome === CONNECT_TIMEOUT
    ? "connect"
    : outcome === REFUSED
    ? "refused"
    : outcome === RESET
    ? "reset"
    : "timeout";
}

/** The gateway's answer for a failed last attempt (for gRPC clients, respondError makes it a gRPC status). */
export function respondFailure(ctx: RequestContext, outcome: number): Promise<void> {
  switch (outcome) {
    case CONNECT_REFUSED:
      return respondError(ctx, 502, "upstream connection refused");
    case CONNECT_TIMEOUT:
      return respondError(ctx, 504, "upstream connect timeout");
    case TIMEOUT:
      return respondError(ctx, 504, "upstream timeout");
    case RESET:
      return respondError(ctx, 502, "upstream connection reset");
    case PROTOCOL:
      return respondError(ctx, 502, ctx.upstreamError || "invalid upstream response");
    case REFUSED:
      return respondError(ctx, 503, "upstream refused the stream");
    default: {
      // A discarded retryable status that can no longer be retried.
      const status = DISCARDED - outcome;
      return respondError(ctx, status, "upstream answered " + status);
    }
  }
}

/** 503 at once for an open circuit, with Retry-After. */
function failFast(ctx: RequestContext, ep: Endpoint, now: number): Promise<void> {
  return respondError(ctx, 503, "upstream circuit open", [[
    "retry-after",
    String(ep.breaker!.retryAfter(now)),
  ]]);
}

/**
 * Keeps a streamed request body for replay while it is forwarded: every chunk
 * read is recorded (copied) until more than `max` bytes were seen. Unlike
 * buffering the body first, the request streams at once, which streaming
 * calls (gRPC client or bidi streams) need: their client may wait for
 * answers before it sends the rest. A retry's reader replays the recorded
 * chunks and then continues with the live body; one underlying read is in
 * flight at a time, shared by whichever reader asks, so a read the failed
 * attempt left pending is not lost.
 */
export class BodyRecorder implements BodyReplay {
  readonly #src: BodyReader;
  readonly #max: number;
  readonly #parts: Uint8Array[] = [];
  #size = 0;
  #over = false;
  #done = false;
  #pending: Promise<Uint8Array | null> | null = null;

  /** Starts recording `ctx.body` (at most about `max` bytes) and installs the first reader. */
  constructor(ctx: RequestContext, max: number) {
    this.#src = ctx.body;
    this.#max = max;
    // A body known to be bigger is never replayable: stream it untouched.
    if (ctx.body.length > max) this.#over = true;
    else ctx.body = this.#reader();
  }

  replayable(): boolean {
    return !this.#over;
  }

  rewind(ctx: RequestContext): void {
    if (!this.#over) ctx.body = this.#reader();
  }

  #pull(): Promise<Uint8Array | null> {
    this.#pending ??= this.#src.read().then(
      (c) => {
        this.#pending = null;
        if (c === null) {
          this.#done = true;
          return null;
        }
        // Past the limit nothing is kept: the chunk goes straight to the one live reader.
        if (this.#over) return c;
        // Copied: the source's views are only valid until its next read. The chunk crossing
        // the limit is kept too, so a reader waiting on this read still gets it.
        const copy = c.slice();
        this.#parts.push(copy);
        this.#size += copy.length;
        if (this.#size > this.#max) this.#over = true;
        return copy;
      },
      (e) => {
        this.#pending = null;
        throw e;
      },
    );
    return this.#pending;
  }

  #reader(): BodyReader {
    let i = 0;
    const src = this.#src;
    const read = async (): Promise<Uint8Array | null> => {
      for (;;) {
        if (i < this.#parts.length) return this.#parts[i++];
        if (this.#done) return null;
        const n = this.#parts.length;
        const c = await this.#pull();
        if (c === null) return null;
        // Recorded: take it (and anything before it) by index.
        if (this.#parts.length > n) continue;
        return c;
      }
    };
    return {
      length: src.length,
      get trailers() {
        return src.trailers;
      },
      read,
    };
  }
}
