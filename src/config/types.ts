/**
 * The normalised, validated Loom configuration: what `loadConfig` returns.
 *
 * Field names follow Loom's published YAML format (snake_case). Durations are
 * milliseconds, sizes are bytes, and every optional field that has a default is
 * filled in, so the rest of the gateway never re-parses or re-defaults config.
 * These objects are plain data (structured-clonable) so they can be posted to
 * worker isolates unchanged.
 */
import type { MiddlewareEntry } from "./middleware/mod.ts";
import type { CorsOptions } from "./middleware/cors.ts";
import type {
  AccessLogField,
  DashboardConfig,
  OtlpMetricsConfig,
  RequestIdConfig,
  TracingConfig,
} from "./observability.ts";
import type { Resource } from "./resources.ts";
import type { GatewayApiConfig } from "./gateway_api.ts";
import type { TopLevelRateLimit } from "./middleware/rate_limit.ts";
import type { TopLevelCache } from "./middleware/cache.ts";
export type { MiddlewareEntry };

/** Listener protocols of Loom's format. */
export type ListenerProtocol = "http" | "https" | "h2c" | "http3" | "grpc" | "grpcs" | "tcp";

export interface TlsConfig {
  cert_file: string;
  key_file: string;
  /** "1.2" or "1.3" (rustls offers nothing older). */
  min_version?: string;
  /** ALPN protocols offered; ["h2", "http/1.1"] serves HTTP/2 and HTTP/1.1 on one port. */
  alpn?: string[];
  /** Extra certificates, chosen by SNI (exact or `*.` wildcard names from their SANs/CN). */
  certificates?: { cert_file: string; key_file: string }[];
  /** Client certificates (mTLS): "require" and "optional" (plus Loom's aliases). */
  client_auth?: "none" | "optional" | "request" | "require" | "verify_if_given" | "require_and_verify";
  /** CA bundle that client certificates must chain to. */
  client_ca_file?: string;
  [extra: string]: unknown;
}

/** HTTP/2 limits of a listener. */
export interface Http2Limits {
  max_concurrent_streams: number;
  /** Bytes. */
  max_header_list_size: number;
  /** ms a client has to acknowledge Loom's SETTINGS (then GOAWAY SETTINGS_TIMEOUT); 0 = forever. Default 10s. */
  settings_timeout?: number;
  /** ms without a frame from the client before Loom sends a keepalive PING; 0 = no keepalive (default). */
  keepalive_interval?: number;
  /** ms after a keepalive PING with nothing from the client before the connection is closed. Default 20s. */
  keepalive_timeout?: number;
}

/** TLS towards an upstream. */
export interface UpstreamTlsConfig {
  ca_file?: string;
  server_name?: string;
  cert_file?: string;
  key_file?: string;
  insecure_skip_verify: boolean;
}

export interface ListenerConfig {
  name: string;
  /** As written: ":8080", "0.0.0.0:8080", "[::1]:8080". */
  address: string;
  /** Resolved from `address`; "" means all interfaces ("0.0.0.0"). */
  hostname: string;
  port: number;
  protocol: ListenerProtocol;
  tls?: TlsConfig;
  /** Time allowed to receive a complete request head (slowloris guard). Default 10s. */
  read_header_timeout: number;
  /** Keep-alive idle time between requests. Default 60s. */
  idle_timeout: number;
  /** Longest pause while receiving a request body. Default 30s. */
  body_timeout: number;
  /** Concurrent client connections per worker; 0 = unlimited. Default 10000. */
  max_connections: number;
  /** Largest request head (request line + headers). Default 64KiB; beyond it 431. */
  max_header_bytes: number;
  /** Most header fields in a request (any protocol). Default 100; beyond it 431. */
  max_headers: number;
  /**
   * Response bytes a connection holds for its client (a slow reader costs no more): the HTTP/1.1
   * writer's copy bound, the unsent HTTP/2 output before stream writes wait. Default 64KiB.
   */
  write_buffer: number;
  /** HTTP/2 limits; defaults apply when absent. */
  http2?: Http2Limits;
  /** tcp: the upstream of connections no `sni_routes` entry takes; none = such connections are closed. */
  upstream?: string;
  /** tcp: TLS passthrough by the ClientHello's server name (exact, or "*.domain" for any subdomain). */
  sni_routes?: { server_names: string[]; upstream: string }[];
  /** tcp: Proxy-Wasm network filters by plugin name, in order. */
  plugins?: string[];
}

/** A header or query matcher (the router's own type: config is data for it). */
import type { ValueMatcher } from "../router/types.ts";
export type { ValueMatcher };

import type {
  BackendConfig,
  DirectResponseConfig,
  MirrorOptions,
  RedirectConfig,
  StickyConfig,
} from "./route_actions.ts";
export type { BackendConfig, DirectResponseConfig, RedirectConfig, StickyConfig };

export interface RouteConfig {
  id: string;
  /** Exact host or `*.example.com`; undefined = any host. */
  host?: string;
  path: string;
  /** Upper-case method names; undefined = all methods. */
  methods?: string[];
  headers?: Record<string, ValueMatcher>;
  query_params?: Record<string, ValueMatcher>;
  /** A regular expression the whole normalised path must match too (anchored). */
  path_regex?: string;
  /** Listener names whose requests the route serves; undefined = every listener. */
  listeners?: string[];
  /** Exactly one of `upstream`, `backends`, `redirect` and `direct_response` is set. */
  upstream?: string;
  plugins: string[];
  /** Route metadata, read by plugins as `xds.route_metadata.*` / `metadata.*` properties. */
  metadata?: unknown;
  /** Route middleware, run after the top-level list. */
  middleware: MiddlewareEntry[];
  strip_prefix: boolean;
  /** Path template sent upstream, e.g. "/v2/users/{id}" or "/files/{path}". */
  rewrite?: string;
  redirect?: RedirectConfig;
  /** A fixed answer instead of proxying. */
  direct_response?: DirectResponseConfig;
  /** Weighted split across upstreams (each with its own middleware) instead of `upstream`. */
  backends?: BackendConfig[];
  /** Sticky assignment to one of `backends`. */
  sticky?: StickyConfig;
  /** Shadow traffic: mirrors run after the route's middleware and plugins. */
  mirror?: MirrorOptions[];
  /** Total time for the request including retries (ms). Default 30s. */
  timeout: number;
  /** Overrides of the upstream's connect/per-try timeouts (ms). */
  connect_timeout?: number;
  per_try_timeout?: number;
  priority: number;
  /** Keep the client's Host header (default true); false sends the endpoint's host:port. */
  preserve_host: boolean;
  /** Explicit Host value sent upstream; wins over preserve_host. */
  host_rewrite?: string;
  /** Overrides the upstream retry policy's retry_non_idempotent for this route. */
  retry_non_idempotent?: boolean;
  /** Forward TRACE (default false: 405 with Allow); Max-Forwards: 0 is answered by Loom. */
  allow_trace: boolean;
  /** Position in the YAML list, used as the last tie-breaker. */
  order: number;
}

export type LoadBalancerKind =
  | "round_robin"
  | "weighted"
  | "least_conn"
  | "random"
  | "p2c"
  | "consistent_hash";

export interface EndpointConfig {
  /** "host:port" (IPv6 as "[::1]:8080"). */
  address: string;
  hostname: string;
  port: number;
  weight: number;
}

export interface ConsistentHashConfig {
  /** "X-User-ID" or "header:X-User-ID" (header), "cookie:session" / "Cookie:session" (cookie), "" or "ip" (client IP). */
  hash_key: string;
  /** Virtual nodes per endpoint for the ring. Default 150. */
  replicas: number;
  /** Default "maglev". */
  algorithm: "ring" | "maglev";
}

/** Active health checks of an upstream's endpoints (probes run once, in the main isolate). */
export interface HealthCheckConfig {
  enabled: boolean;
  /** "http", "tcp" or "grpc" (grpc.health.v1.Health/Check; healthy only when SERVING). */
  type: "http" | "tcp" | "grpc";
  /** gRPC probes: the service name asked about; "" or absent = the server's overall health. */
  service?: string;
  path: string;
  method: string;
  /** Healthy status ranges, inclusive [lo, hi]. Default [[200, 399]]. */
  expected_status: [number, number][];
  body_contains?: string;
  /** Host header of HTTP probes; default the endpoint address. */
  host?: string;
  /** ms. Default 10s. */
  interval: number;
  /** Random extra delay per probe, ms; default interval/10. */
  jitter?: number;
  /** ms. Default 2s. */
  timeout: number;
  healthy_threshold: number;
  unhealthy_threshold: number;
}

/** Passive health: eject endpoints after consecutive failures. */
export interface OutlierDetectionConfig {
  enabled: boolean;
  /** Default 5. */
  consecutive_failures: number;
  /** ms; the N-th ejection lasts N × this. Default 30s. */
  base_ejection_time: number;
  /** ms. Default 300s. */
  max_ejection_time: number;
  /** Default 50. */
  max_ejection_percent: number;
}

export interface CircuitBreakerConfig {
  enabled: boolean;
  /** Consecutive failures that open the circuit. Default 5. */
  failure_threshold: number;
  /** Half-open successes that close it. Default 3. */
  success_threshold: number;
  /** Open time before half-open, ms. Default 30s. */
  timeout: number;
  /** Also open when this share of the window's requests failed. */
  failure_ratio?: number;
  /** Rolling window of failure_ratio, ms. Default 10s. */
  window: number;
  /** Requests in the window before failure_ratio applies. Default 10. */
  min_requests: number;
  /** Concurrent half-open probes. Default 1. */
  half_open_max: number;
}

export interface RetryConfig {
  max_retries: number;
  backoff_base: number;
  backoff_max: number;
  retryable_codes: number[];
  /** Per-attempt timeout, ms (default: the route's/upstream's per_try_timeout). */
  per_try_timeout?: number;
  /** Retry POST/PATCH too. Default false. */
  retry_non_idempotent: boolean;
  /** Largest request body kept for replay, bytes. Default 64KiB. */
  max_body_size: number;
  /** Share of active requests that may be retries. Default 0.2. */
  budget: number;
}

export interface BulkheadConfig {
  enabled: boolean;
  max_concurrent: number;
  queue_size: number;
  timeout: number;
}

export interface PoolConfig {
  /** Idle keep-alive connections kept per endpoint. Default 128. */
  max_idle: number;
  /** Idle connections are closed after this (ms). Default 60s. */
  idle_timeout: number;
  /** Open connections per endpoint (busy + idle); 0 = unlimited. Default 0. */
  max_connections: number;
}

export interface UpstreamConfig {
  name: string;
  endpoints: EndpointConfig[];
  load_balancer: LoadBalancerKind;
  consistent_hash: ConsistentHashConfig;
  health_check?: HealthCheckConfig;
  outlier_detection?: OutlierDetectionConfig;
  /** Percent of healthy endpoints below which unhealthy ones are used too; 0 = never. Default 50. */
  panic_threshold: number;
  circuit_breaker?: CircuitBreakerConfig;
  retry?: RetryConfig;
  bulkhead?: BulkheadConfig;
  service_discovery?: Record<string, unknown>;
  pool: PoolConfig;
  /** ms. Default 5s. */
  connect_timeout: number;
  /** Per-try timeout waiting for the response head (ms). Default 30s. */
  per_try_timeout: number;
  /** Upstream protocol; absent = http1. gRPC requests always use HTTP/2 (h2 with tls, else h2c). */
  protocol?: "http1" | "h2" | "h2c";
  tls?: UpstreamTlsConfig;
}

export interface PluginConfig {
  name: string;
  path: string;
  /** Optional restriction to the callbacks up to this phase; absent = every callback the module exports. */
  phase?: "on_request_headers" | "on_request_body" | "on_response_headers" | "on_response_body" | "on_log";
  priority: number;
  /** Runs on every route (merged with route plugins by priority). The schema defaults it to false. */
  global?: boolean;
  /** Proxy-Wasm root id (`plugin_root_id`). The schema defaults it to "". */
  root_id?: string;
  /** Plugin configuration as written (string, or object to be sent as JSON). */
  config?: unknown;
  /** Proxy-Wasm vm_id (`plugin_vm_id`); absent = "". */
  vm_id?: string;
  /** VM configuration as written (string, or object sent as JSON): buffer VM_CONFIGURATION. */
  vm_config?: unknown;
  /** Bytes. Default 16MB. */
  memory_limit: number;
  /** ms. Default 50ms. */
  timeout: number;
  /** Running time of a VM's start-up (ms); absent = 10 s (`DEFAULT_START_TIMEOUT` in src/wasm/plugin.ts). */
  start_timeout?: number;
  failure_policy: "fail_closed" | "fail_open";
  /**
   * How callbacks run: `timeslice` (suspended every few ms so other requests are served) or `inline`
   * (synchronous). Absent = timeslice (`DEFAULT_ISOLATION` in src/wasm/plugin.ts).
   */
  isolation?: "timeslice" | "inline";
  /** Keys of `config` whose values `GET /config` shows; every other value there is redacted. */
  public_config_keys?: string[];
  /**
   * Read-only directories the plugin may read (WASI preopens and the `read_file` foreign function):
   * `dir` on the host (absolute once loaded from a file), `as` the path the plugin uses.
   */
  files?: { dir: string; as: string }[];
  /** DNS server ("ip:port") of the `dns_resolve` foreign function; absent = the system's resolver. */
  dns_server?: string;
}

export interface AdminConfig {
  enabled: boolean;
  /** Default "127.0.0.1:9091". */
  address: string;
  hostname: string;
  port: number;
  auth?: {
    enabled: boolean;
    users: Record<string, string>;
    realm: string;
    /** Bearer token (plain text, often `${ENV}`); the admin API keeps only its SHA-256. */
    token?: string;
  };
  /** true: allow a non-loopback address without auth (then GET /config and writes are refused). */
  insecure?: boolean;
  /** The live dashboard (default on, 10s samples). */
  dashboard?: DashboardConfig;
}

export interface MetricsConfig {
  prometheus: { enabled: boolean; path: string };
  opentelemetry: OtlpMetricsConfig;
}

export interface AccessLogConfig {
  enabled: boolean;
  /** "stdout" or a file path. */
  path: string;
  /** The fields of a line, in order (default DEFAULT_ACCESS_LOG_FIELDS). */
  fields?: AccessLogField[];
  /** Fraction of 1xx-3xx requests logged (errors always are). Default 1. */
  sample?: number;
}

/** Config reloads (`reload:`). */
export interface ReloadConfig {
  /** Reload when the config file changes. Default true. */
  watch: boolean;
  /** ms: file changes and SIGHUPs this close together give one reload. Default 100ms. */
  debounce: number;
}

/** eBPF acceleration (`ebpf:`, src/ebpf/). */
export interface EbpfConfig {
  /** Default false. */
  enabled: boolean;
  /** Local hops skip the TCP/IP stack (sock_ops + sk_msg). Default true. */
  socket_redirect: boolean;
  /** Upgraded tunnels between plain TCP connections are spliced in the kernel (sk_skb). Default false. */
  splice_tunnels: boolean;
  /** cgroup v2 directory socket_redirect attaches to; undefined = the cgroup2 mount point. */
  cgroup?: string;
}

/** Services Loom starts itself (the demo echo upstream of the default config). */
export interface DemoConfig {
  echo?: { address: string; hostname: string; port: number };
}

export interface LoomConfig {
  /** Resolved worker count (auto = number of CPUs). Default 1. */
  workers: number;
  listeners: ListenerConfig[];
  routes: RouteConfig[];
  upstreams: UpstreamConfig[];
  plugins: PluginConfig[];
  /** Middleware run on every route, before the route's own. */
  middleware: MiddlewareEntry[];
  admin: AdminConfig;
  metrics: MetricsConfig;
  access_log: AccessLogConfig;
  demo: DemoConfig;
  /** SIGTERM drain time (ms). Default 30s. */
  drain_timeout: number;
  /** How config changes are picked up. Default: watched, 100ms debounce. */
  reload?: ReloadConfig;
  /** eBPF acceleration (`ebpf:`); absent = off. */
  ebpf?: EbpfConfig;
  /** Addresses / CIDR ranges of proxies in front of Loom, whose X-Forwarded-For and Forwarded are kept. Default []. */
  trusted_proxies: string[];
  /** Accepted and validated for compatibility with Loom configs; implemented by later issues. */
  /** Loom format: a rate limit per client IP in front of every route (the rate_limit middleware). */
  rate_limit?: TopLevelRateLimit;
  /** OpenTelemetry traces (Loom format's block). */
  tracing?: TracingConfig;
  /** The request id on every response. */
  request_id?: RequestIdConfig;
  /** Top-level CORS (Loom format): a `cors` middleware in front of every route. */
  cors?: CorsOptions;
  /** Loom format: a response cache in front of every route (the cache middleware). */
  cache?: TopLevelCache;
  /** The Kubernetes Gateway API as a source of listeners, routes and upstreams (src/k8s/). */
  gateway_api?: GatewayApiConfig;
}

/** One validation problem, located in the YAML source. */
export interface ConfigError {
  /** YAML path such as "routes[2].upstream". */
  path: string;
  /** 1-based line (0 when unknown, e.g. file not found). */
  line: number;
  column: number;
  message: string;
}

export type LoadResult =
  | {
    ok: true;
    config: LoomConfig;
    source: string;
    warnings: ConfigError[];
    /** Problems that make `loom run` refuse to start (a loadable file otherwise; also in `warnings`). */
    runErrors: ConfigError[];
    /** YAML paths of values that came from `${VAR}` substitution (redacted by `GET /config`). */
    envPaths: string[];
    /** The files the config names (plugins, certificates, key files), checked before it is applied. */
    resources: Resource[];
  }
  | { ok: false; errors: ConfigError[] };
