/**
 * Loom's metric set and the fast recording methods the proxy calls per request.
 *
 * Label conventions:
 * - `route` is the matched route's id, never the raw path (bounded
 *   cardinality). Requests that match no route use {@link UNMATCHED_ROUTE}
 *   (the empty string): route ids are non-empty, so it can never collide.
 * - `method` is one of the standard methods or "OTHER", so arbitrary client
 *   methods cannot create unbounded series.
 *
 * @module
 */

import {
  type Counter,
  type CounterChild,
  type Gauge,
  type GaugeChild,
  type Histogram,
  type HistogramChild,
  Registry,
} from "./metrics.ts";

/** `route` label value of requests that matched no route. */
export const UNMATCHED_ROUTE = "";

/** `method` label value of non-standard methods. */
export const OTHER_METHOD = "OTHER";

const STANDARD_METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

/** Maps a request method to its metric label: standard methods as-is, anything else "OTHER". */
export function methodLabel(method: string): string {
  return STANDARD_METHODS.has(method) ? method : OTHER_METHOD;
}

/** Per (route, method) or (upstream, endpoint) pair: its histogram and its counters by status. */
interface PairCache {
  duration: HistogramChild;
  byStatus: Map<number, CounterChild>;
}

/** Loom's gateway metrics, registered on one registry (one per isolate). */
export class GatewayMetrics {
  /** The registry holding these metrics; render or snapshot it. */
  readonly registry: Registry;
  readonly requestsTotal: Counter;
  readonly requestDuration: Histogram;
  readonly upstreamRequestsTotal: Counter;
  readonly upstreamDuration: Histogram;
  readonly upstreamErrorsTotal: Counter;
  readonly configReloadsTotal: Counter;
  readonly activeConnections: Gauge;
  readonly listenerAcceptFailuresTotal: Counter;
  readonly connectionsRefusedTotal: Counter;
  readonly buildInfo: Gauge;
  readonly upstreamRetriesTotal: Counter;
  readonly circuitBreakerState: Gauge;
  readonly upstreamHealthStatus: Gauge;
  readonly websocketsTotal: Counter;
  readonly websocketsActive: Gauge;
  readonly grpcResponsesTotal: Counter;
  readonly rejectionsTotal: Counter;
  readonly rateLimitDecisionsTotal: Counter;
  readonly cacheRequestsTotal: Counter;
  readonly mirrorRequestsTotal: Counter;
  readonly redisRequestDuration: Histogram;
  readonly redisErrorsTotal: Counter;
  readonly redisStateChangesTotal: Counter;
  readonly http2ProtocolErrorsTotal: Counter;

  // Two-level caches (outer name -> inner name -> children): lookups by the
  // caller's strings directly, no key concatenation per request.
  readonly #requests = new Map<string, Map<string, PairCache>>();
  readonly #upstreams = new Map<string, Map<string, PairCache>>();
  readonly #connections = new Map<string, GaugeChild>();
  /** route -> result -> counter child. */
  readonly #rateLimit = new Map<string, Map<string, CounterChild>>();
  /** route -> result -> counter child. */
  readonly #cache = new Map<string, Map<string, CounterChild>>();
  #redisDuration: HistogramChild | null = null;
  readonly #reloadOk: CounterChild;
  readonly #reloadFailed: CounterChild;

  /**
   * @param version reported by `loom_build_info{version}` (value 1).
   * @param registry where to register; a fresh one by default.
   */
  constructor(version: string, registry: Registry = new Registry()) {
    this.registry = registry;
    const r = registry;
    this.requestsTotal = r.counter("loom_requests_total", "Requests handled, by route, method and status.", [
      "route",
      "method",
      "status",
    ]);
    this.requestDuration = r.histogram(
      "loom_request_duration_seconds",
      "Request duration in seconds, from request head to response end.",
      ["route", "method"],
    );
    this.upstreamRequestsTotal = r.counter(
      "loom_upstream_requests_total",
      "Requests sent to upstream endpoints, by response status.",
      ["upstream", "endpoint", "status"],
    );
    this.upstreamDuration = r.histogram(
      "loom_upstream_duration_seconds",
      "Upstream request duration in seconds, until the response head.",
      ["upstream", "endpoint"],
    );
    this.upstreamErrorsTotal = r.counter(
      "loom_upstream_errors_total",
      "Upstream requests that failed without a response, by error type.",
      ["upstream", "endpoint", "error_type"],
    );
    this.configReloadsTotal = r.counter("loom_config_reloads_total", "Configuration reloads, by result.", [
      "result",
    ]);
    this.activeConnections = r.gauge(
      "loom_active_connections",
      "Open client connections, by listener and its protocol (http, https, h2c, grpc, grpcs, http3).",
      ["listener", "protocol"],
    );
    this.listenerAcceptFailuresTotal = r.counter(
      "loom_listener_accept_failures_total",
      "Times a listener was found taking no new connections (then reopened), by listener.",
      ["listener"],
    );
    this.connectionsRefusedTotal = r.counter(
      "loom_connections_refused_total",
      "Client connections refused because the listener had max_connections open, by listener.",
      ["listener"],
    );
    // "max": every isolate reports 1; summing would show the worker count.
    this.buildInfo = r.gauge("loom_build_info", "Loom build information (always 1).", ["version"], {
      aggregate: "max",
    });
    this.buildInfo.labels(version).set(1);
    this.upstreamRetriesTotal = r.counter(
      "loom_upstream_retries_total",
      "Retries sent to an upstream, by reason (connect, reset, timeout or the retried status).",
      ["upstream", "reason"],
    );
    // "max" over workers: each isolate has its own breaker; the worst state shows.
    this.circuitBreakerState = r.gauge(
      "loom_circuit_breaker_state",
      "Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open (worst over workers).",
      ["upstream", "endpoint"],
      { aggregate: "max" },
    );
    this.upstreamHealthStatus = r.gauge(
      "loom_upstream_health_status",
      "Active health check verdict per endpoint (1 healthy, 0 unhealthy).",
      ["upstream", "endpoint"],
      { aggregate: "max" },
    );
    // gRPC answers are HTTP 200 whatever happened: the outcome is the grpc-status.
    this.grpcResponsesTotal = r.counter(
      "loom_grpc_responses_total",
      'gRPC and gRPC-Web requests by route and the grpc-status sent ("none": no status reached the client).',
      ["route", "grpc_status"],
    );
    this.rejectionsTotal = r.counter(
      "loom_rejections_total",
      "Requests a middleware refused, by route, middleware and reason (e.g. jwt/expired, cors/origin).",
      ["route", "middleware", "reason"],
    );
    this.http2ProtocolErrorsTotal = r.counter(
      "loom_http2_protocol_errors_total",
      "HTTP/2 protocol errors of clients (answered with GOAWAY or RST_STREAM), by listener and error code.",
      ["listener", "code"],
    );
    this.rateLimitDecisionsTotal = r.counter(
      "loom_rate_limit_decisions_total",
      "rate_limit decisions by route and result (allowed, limited, error: Redis failed and the fail mode decided).",
      ["route", "result"],
    );
    this.cacheRequestsTotal = r.counter(
      "loom_cache_requests_total",
      "GET/HEAD requests seen by the cache middleware, by route and result (hit, miss, stale, revalidated, bypass).",
      ["route", "result"],
    );
    this.mirrorRequestsTotal = r.counter(
      "loom_mirror_requests_total",
      "Requests a mirror saw, by route, mirror upstream and result (sent, skipped_in_flight, skipped_body, " +
        "skipped_down: the mirror upstream refused a connection within the last second, aborted_body: a " +
        "streamed body grew past max_body).",
      ["route", "upstream", "result"],
    );
    this.redisRequestDuration = r.histogram(
      "loom_redis_request_duration_seconds",
      "Redis round trips of rate limits that answered, in seconds.",
      [],
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    );
    this.redisErrorsTotal = r.counter(
      "loom_redis_errors_total",
      "Redis requests of rate limits that failed, by type (timeout, unavailable, reply).",
      ["type"],
    );
    this.redisStateChangesTotal = r.counter(
      "loom_redis_state_changes_total",
      "Redis connection state changes of rate limits (to=up, to=down), summed over workers.",
      ["to"],
    );
    this.websocketsTotal = r.counter(
      "loom_websocket_connections_total",
      "WebSocket tunnels opened, by route.",
      [
        "route",
      ],
    );
    this.websocketsActive = r.gauge(
      "loom_websocket_connections_active",
      "Open WebSocket tunnels, by route.",
      [
        "route",
      ],
    );
    this.#reloadOk = this.configReloadsTotal.labels("success");
    this.#reloadFailed = this.configReloadsTotal.labels("failure");
  }

  /** Records a finished client request. Use {@link UNMATCHED_ROUTE} when no route matched. */
  request(routeId: string, method: string, status: number, seconds: number): void {
    const m = STANDARD_METHODS.has(method) ? method : OTHER_METHOD;
    const pair = this.#pair(this.#requests, this.requestDuration, routeId, m);
    pair.duration.observe(seconds);
    let c = pair.byStatus.get(status);
    if (c === undefined) pair.byStatus.set(status, c = this.requestsTotal.labels(routeId, m, status));
    c.value++;
  }

  /** Records an upstream response (`endpoint` is the endpoint's address). */
  upstream(upstream: string, endpoint: string, status: number, seconds: number): void {
    const pair = this.#pair(this.#upstreams, this.upstreamDuration, upstream, endpoint);
    pair.duration.observe(seconds);
    let c = pair.byStatus.get(status);
    if (c === undefined) {
      pair.byStatus.set(status, c = this.upstreamRequestsTotal.labels(upstream, endpoint, status));
    }
    c.value++;
  }

  /** Records an upstream failure; `type` must come from a small fixed set (e.g. "connect", "timeout", "reset"). */
  upstreamError(upstream: string, endpoint: string, type: string): void {
    // Rare path: the generic per-label lookup is fast enough.
    this.upstreamErrorsTotal.labels(upstream, endpoint, type).value++;
  }

  /** Records a retry to `upstream` (`reason` from a small fixed set, or a status). */
  retry(upstream: string, reason: string): void {
    this.upstreamRetriesTotal.labels(upstream, reason).value++;
  }

  /** Publishes a circuit breaker's state (0 closed, 1 open, 2 half-open). */
  circuitState(upstream: string, endpoint: string, state: number): void {
    this.circuitBreakerState.labels(upstream, endpoint).set(state);
  }

  /** Publishes an active health check verdict. */
  healthStatus(upstream: string, endpoint: string, healthy: boolean): void {
    this.upstreamHealthStatus.labels(upstream, endpoint).set(healthy ? 1 : 0);
  }

  /** Records the grpc-status label (see grpcStatusLabel) a gRPC request on `route` ended with. */
  grpcResponse(route: string, grpcStatus: string): void {
    // Only gRPC requests come here: the generic per-label lookup is fast enough.
    this.grpcResponsesTotal.labels(route, grpcStatus).value++;
  }

  /** A middleware refused a request on `route`; `rejection` is "middleware/reason". */
  rejection(route: string, rejection: string): void {
    const slash = rejection.indexOf("/");
    const mw = slash === -1 ? rejection : rejection.slice(0, slash);
    this.rejectionsTotal.labels(route, mw, slash === -1 ? "" : rejection.slice(slash + 1)).value++;
  }

  /** An HTTP/2 client on `listener` broke a protocol rule; `code` is the RFC 9113 error name sent back. */
  http2ProtocolError(listener: string, code: string): void {
    // Rare path: the generic per-label lookup is fast enough.
    this.http2ProtocolErrorsTotal.labels(listener, code).value++;
  }

  /** A rate_limit decision on `route` (allowed, limited, error). */
  rateLimitDecision(route: string, result: string): void {
    let inner = this.#rateLimit.get(route);
    if (inner === undefined) this.#rateLimit.set(route, inner = new Map());
    let c = inner.get(result);
    if (c === undefined) inner.set(result, c = this.rateLimitDecisionsTotal.labels(route, result));
    c.value++;
  }

  /** A request the cache middleware answered or forwarded on `route` (hit, miss, stale, revalidated, bypass). */
  cacheRequest(route: string, result: string): void {
    let inner = this.#cache.get(route);
    if (inner === undefined) this.#cache.set(route, inner = new Map());
    let c = inner.get(result);
    if (c === undefined) inner.set(result, c = this.cacheRequestsTotal.labels(route, result));
    c.value++;
  }

  /** A request a mirror of `route` saw (sent, skipped_in_flight, skipped_body, skipped_down, aborted_body). */
  mirrorRequest(route: string, upstream: string, result: string): void {
    this.mirrorRequestsTotal.labels(route, upstream, result).value++;
  }

  /** A Redis round trip of a rate limit that answered in `seconds`. */
  redisRequest(seconds: number): void {
    (this.#redisDuration ??= this.redisRequestDuration.labels()).observe(seconds);
  }

  /** A Redis request of a rate limit failed (timeout, unavailable, reply). */
  redisError(type: string): void {
    this.redisErrorsTotal.labels(type).value++;
  }

  /** A rate limit's Redis connection went up or down. */
  redisState(up: boolean): void {
    this.redisStateChangesTotal.labels(up ? "up" : "down").value++;
  }

  /** A WebSocket (HTTP/1.1 Upgrade) tunnel opened on `route`. */
  websocketOpened(route: string): void {
    this.websocketsTotal.labels(route).value++;
    this.websocketsActive.labels(route).value++;
  }

  /** A WebSocket tunnel on `route` ended. */
  websocketClosed(route: string): void {
    this.websocketsActive.labels(route).value--;
  }

  /** Records a configuration reload attempt. */
  reload(ok: boolean): void {
    (ok ? this.#reloadOk : this.#reloadFailed).value++;
  }

  /** A client connection was accepted on `listener` (of `protocol`, the listener's). */
  connectionOpened(listener: string, protocol = ""): void {
    this.#connection(listener, protocol).value++;
  }

  /** A client connection on `listener` closed. */
  connectionClosed(listener: string, protocol = ""): void {
    this.#connection(listener, protocol).value--;
  }

  /** `listener` was found taking no new connections (it is reopened). */
  listenerAcceptFailed(listener: string): void {
    this.listenerAcceptFailuresTotal.labels(listener).value++;
  }

  /** `listener` refused a connection: it had max_connections open. */
  connectionRefused(listener: string): void {
    this.connectionsRefusedTotal.labels(listener).value++;
  }

  #connection(listener: string, protocol: string): GaugeChild {
    // Once per connection, not per request: a joined key is cheap enough.
    const key = listener + "\u0000" + protocol;
    let g = this.#connections.get(key);
    if (g === undefined) this.#connections.set(key, g = this.activeConnections.labels(listener, protocol));
    return g;
  }

  #pair(cache: Map<string, Map<string, PairCache>>, hist: Histogram, a: string, b: string): PairCache {
    let inner = cache.get(a);
    if (inner === undefined) cache.set(a, inner = new Map());
    let pair = inner.get(b);
    if (pair === undefined) inner.set(b, pair = { duration: hist.labels(a, b), byStatus: new Map() });
    return pair;
  }
}
