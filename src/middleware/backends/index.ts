/**
 * A route's `backends`: a weighted split across upstreams (Gateway API
 * weighted backendRefs), as the route's terminal. Each backend is compiled
 * beforehand (src/gateway/route_chain.ts) into its own small chain, its
 * middleware then its proxy (or fixed answer); this terminal only chooses
 * one and calls it.
 *
 * ```yaml
 * routes:
 *   - id: checkout
 *     path: /checkout/*
 *     backends:
 *       - { upstream: stable, weight: 90 }
 *       - upstream: canary
 *         weight: 10
 *         middleware: [{ headers: { request: { set: { x-canary: "1" } } } }]
 *     sticky: { cookie: loom-backend, ttl: 1h }
 * ```
 *
 * Choice: smooth weighted round robin (nginx's): exact shares over every
 * sum-of-weights requests, interleaved (90/10 sends one canary request in
 * ten, not ten in a row), per worker. Weight 0 is never chosen; when every
 * weight is 0 the answer is 500, as the Gateway API requires.
 *
 * Sticky assignment, optional: `cookie` keeps a client on the backend named
 * by that cookie (a valid one with weight > 0); a request without it is
 * given a backend by the weights and the answer sets the cookie (its value
 * is the backend's `name`, default its upstream's). `header` hashes that
 * request header (FNV-1a) onto the weights, so one value always lands on
 * one backend and the shares still follow the weights across values; a
 * request without the header takes the round robin.
 *
 * @module
 */
import type { RequestContext } from "../../core/context.ts";
import type { Middleware } from "../../core/middleware.ts";
import { respondError } from "../../core/respond.ts";
import type { StickyConfig } from "../../config/route_actions.ts";
import type { Endpoint } from "../compose.ts";

/** One backend, compiled. */
export interface WeightedBackend {
  /** The sticky cookie's value. */
  readonly name: string;
  readonly weight: number;
  /** The backend's chain: its middleware, then its terminal. */
  readonly handler: Endpoint;
  /** The same chain setting the sticky cookie on the answer (cookie stickiness only). */
  readonly assign?: Endpoint;
}

/** The `Set-Cookie` a cookie-sticky split adds when it assigns `name`, as a response-phase middleware. */
export function stickyCookie(sticky: StickyConfig, name: string): Middleware {
  const attrs = `; Path=${sticky.path}${
    sticky.ttl !== undefined ? `; Max-Age=${Math.ceil(sticky.ttl / 1000)}` : ""
  }; HttpOnly; SameSite=Lax`;
  const plain = `${sticky.cookie}=${encodeURIComponent(name)}${attrs}`;
  const secure = plain + "; Secure";
  return {
    name: "sticky",
    response: (ctx, head) => head.headers.append("set-cookie", ctx.scheme === "https" ? secure : plain),
  };
}

/** The value of cookie `name` in the request's Cookie fields (undefined when absent). */
export function cookieValue(ctx: RequestContext, name: string): string | undefined {
  const h = ctx.headers;
  for (let k = 0; k < h.size; k++) {
    if (h.keys[k] !== "cookie") continue;
    const s = h.values[k];
    let i = 0;
    while (i < s.length) {
      const semi = s.indexOf(";", i);
      const end = semi === -1 ? s.length : semi;
      const eq = s.indexOf("=", i);
      if (eq !== -1 && eq < end && s.slice(i, eq).trim() === name) {
        const v = s.slice(eq + 1, end).trim();
        return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
      }
      i = end + 1;
    }
  }
  return undefined;
}

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Smooth weighted round robin over fixed integer weights (0 = never). */
export class SmoothWeighted {
  private readonly current: Float64Array;
  private readonly total: number;

  constructor(private readonly weights: readonly number[]) {
    this.current = new Float64Array(weights.length);
    this.total = weights.reduce((a, b) => a + b, 0);
  }

  /** The next index, or -1 when every weight is 0. */
  next(): number {
    const w = this.weights;
    const cur = this.current;
    let best = -1;
    let bestValue = -Infinity;
    for (let i = 0; i < w.length; i++) {
      if (w[i] === 0) continue;
      const v = cur[i] += w[i];
      if (v > bestValue) {
        bestValue = v;
        best = i;
      }
    }
    if (best !== -1) cur[best] -= this.total;
    return best;
  }

  /** The index whose share of [0, total) holds `point` (a hash), or -1 when every weight is 0. */
  at(point: number): number {
    if (this.total === 0) return -1;
    let p = point % this.total;
    for (let i = 0; i < this.weights.length; i++) {
      if (p < this.weights[i]) return i;
      p -= this.weights[i];
    }
    return -1;
  }
}

const noBackend: Endpoint = (ctx) => respondError(ctx, 500, "no backend of this route has a weight");

/** The terminal choosing among `backends` (see the module doc). */
export function weightedSplit(backends: readonly WeightedBackend[], sticky?: StickyConfig): Endpoint {
  const choice = new SmoothWeighted(backends.map((b) => b.weight));
  if (backends.every((b) => b.weight === 0)) return noBackend;
  if (backends.length === 1) return backends[0].handler;
  if (sticky?.header !== undefined) {
    const key = sticky.header.toLowerCase();
    return (ctx) => {
      const v = ctx.headers.getJoined(key);
      return backends[v === undefined ? choice.next() : choice.at(fnv1a(v))].handler(ctx);
    };
  }
  if (sticky?.cookie !== undefined) {
    const cookie = sticky.cookie;
    const byName = new Map<string, WeightedBackend>();
    for (const b of backends) if (b.weight > 0) byName.set(encodeURIComponent(b.name), b);
    return (ctx) => {
      const v = cookieValue(ctx, cookie);
      const kept = v === undefined ? undefined : byName.get(v);
      if (kept !== undefined) return kept.handler(ctx);
      const b = backends[choice.next()];
      return (b.assign ?? b.handler)(ctx);
    };
  }
  return (ctx) => backends[choice.next()].handler(ctx);
}
