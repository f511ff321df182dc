/**
 * The Loom configuration format, declared once. `normalise.ts` validates and
 * normalises against it; `json_schema.ts` turns it into config/loom.schema.json.
 *
 * Compatibility blocks (`tracing`) are validated
 * field by field but get no defaults: they are kept as written except that
 * durations become milliseconds and sizes bytes, like everywhere else.
 */

import { middlewareList } from "./middleware/mod.ts";
import { corsType } from "./middleware/cors.ts";
import {
  accessLogFields,
  dashboardType,
  otlpMetricsType,
  requestIdType,
  tracingType,
} from "./observability.ts";
import { topLevelRateLimitType } from "./middleware/rate_limit.ts";
import { topLevelCacheType } from "./middleware/cache.ts";
import { opt, req, t, type Type } from "./dsl.ts";
import { ENDPOINT_PATTERN, LISTEN_ADDRESS_PATTERN, parseAddress } from "./address.ts";
import { cidrError } from "../net/cidr.ts";
import { isIP } from "node:net";
import type { EndpointConfig, ValueMatcher } from "./types.ts";
import {
  backendsType,
  directResponseType,
  redirectType,
  routeMirrorType,
  stickyType,
} from "./route_actions.ts";
import { gatewayApiType } from "./gateway_api.ts";

/** RFC 9110 token characters: what a method or header name may contain. */
const TOKEN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

const checkRegex = (pattern: string): string | undefined => {
  try {
    new RegExp(pattern);
    return undefined;
  } catch (e) {
    return (e as Error).message; // already "Invalid regular expression: /x/: why"
  }
};

const listenAddress = (description: string) =>
  t.string({
    description,
    pattern: LISTEN_ADDRESS_PATTERN,
    check: (s) => {
      const r = parseAddress(s, false);
      return r.ok ? undefined : r.error;
    },
  });

/** Adds `hostname`/`port` parsed from an already validated `address`. */
const withHostPort = (v: { address: string }) => {
  // The address may be missing when it failed validation (e.g. an unset ${VAR}).
  if (typeof v.address !== "string") return v;
  const r = parseAddress(v.address, false);
  return r.ok ? { ...v, ...r.value } : v;
};

const endpointAddress = t.string({
  description: 'Backend "host:port" (no scheme); IPv6 as "[::1]:8080".',
  pattern: ENDPOINT_PATTERN,
  check: (s) => {
    const r = parseAddress(s, true);
    return r.ok ? undefined : r.error;
  },
});

const toEndpoint = (address: string, weight: number): EndpointConfig => {
  const r = parseAddress(address, true);
  return { address, hostname: r.ok ? r.value.hostname : "", port: r.ok ? r.value.port : 0, weight };
};

const endpoint = t.oneOf([
  t.string({ ...endpointAddress, normalize: (s: string) => toEndpoint(s, 1) }),
  t.object({
    address: req(endpointAddress),
    weight: opt(t.int({ min: 1 }), 1, "Relative share of traffic for weighted balancing (≥ 1)."),
  }, { normalize: (v: { address: string; weight: number }) => toEndpoint(v.address, v.weight) }),
], { description: 'An endpoint: "host:port", or {address, weight}.' });

const matcher = t.oneOf([
  t.string({
    coerce: true,
    description: "Exact value to match.",
    normalize: (value: string): ValueMatcher => ({ kind: "exact", value }),
  }),
  t.object({
    exact: opt(t.string({ coerce: true }), undefined, "Exact value."),
    regex: opt(
      t.string({ check: checkRegex }),
      undefined,
      "JavaScript regular expression the value must match.",
    ),
    present: opt(t.enum([true]), undefined, "Only require that it is present."),
  }, {
    minFields: 1,
    maxFields: 1,
    normalize: (v: { exact?: string; regex?: string; present?: true }): ValueMatcher =>
      v.exact !== undefined
        ? { kind: "exact", value: v.exact }
        : v.regex !== undefined
        ? { kind: "regex", pattern: v.regex }
        : { kind: "present" },
  }),
], { description: "A string (exact match) or exactly one of {exact, regex, present: true}." });

const tlsFiles = {
  cert_file: req(t.string({ file: true }), "PEM certificate (chain) file."),
  key_file: req(t.string({ file: true }), "PEM private key file."),
};

const tls = t.object({
  ...tlsFiles,
  min_version: opt(
    t.string({ coerce: true, pattern: "^1\\.[0-3]$", patternMessage: 'min_version must be "1.0" to "1.3"' }),
    undefined,
    'Lowest TLS version accepted: "1.2" or "1.3".',
  ),
  alpn: opt(t.list(t.string()), undefined, "ALPN protocols to offer, e.g. [h2, http/1.1]."),
  certificates: opt(t.list(t.object(tlsFiles)), undefined, "Extra certificates, chosen by SNI."),
  client_auth: opt(
    t.enum(["none", "optional", "request", "require", "verify_if_given", "require_and_verify"]),
    undefined,
    "Client certificate policy (mTLS): require (verified certificate needed) or optional (verified when sent).",
  ),
  client_ca_file: opt(t.string({ file: true }), undefined, "CA bundle for verifying client certificates."),
}, { description: "TLS settings; required for https, grpcs and http3." });

const listener = t.object({
  name: req(t.string(), "Unique listener name."),
  address: req(listenAddress('Listen address "[host]:port": ":8080", "0.0.0.0:8080", "[::1]:8080".')),
  protocol: req(
    t.enum(["http", "https", "h2c", "http3", "grpc", "grpcs", "tcp"]),
    "Protocol served on this listener (tcp: byte streams proxied to an upstream, TLS passed through).",
  ),
  tls: opt(tls),
  upstream: opt(
    t.string(),
    undefined,
    "tcp: the upstream connections go to (when no sni_routes entry matches).",
  ),
  sni_routes: opt(
    t.list(t.object({
      server_names: req(
        t.list(
          t.string({
            pattern: "^(\\*\\.)?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?$",
            patternMessage: 'a server name is a host name or "*." and a domain',
          }),
          { minItems: 1 },
        ),
        'Host names of the TLS ClientHello (SNI): exact, or "*.example.com" for any subdomain.',
      ),
      upstream: req(t.string(), "The upstream of connections whose SNI matches."),
    })),
    undefined,
    "tcp: TLS passthrough by SNI (the ClientHello is read, never terminated).",
  ),
  plugins: opt(
    t.list(t.string()),
    undefined,
    "tcp: Proxy-Wasm network filters (plugin names), in order, on every connection.",
  ),
  read_header_timeout: opt(t.duration(), "10s", "Time allowed to receive a complete request head."),
  idle_timeout: opt(
    t.duration(),
    "60s",
    "Keep-alive idle time between requests (tcp: time without a byte either way; 0 = none).",
  ),
  body_timeout: opt(
    t.duration(),
    "30s",
    "Longest pause while receiving a request body before any response began: then 408 (HTTP/1.1, 2 and 3).",
  ),
  max_connections: opt(t.int({ min: 0 }), 10000, "Concurrent connections per worker; 0 = unlimited."),
  max_header_bytes: opt(t.size(), "64KB", "Largest request head; beyond it the answer is 431."),
  max_headers: opt(
    t.int({ min: 1 }),
    100,
    "Most header fields in a request (HTTP/1.1, 2, 3); beyond it 431.",
  ),
  write_buffer: opt(
    t.size(),
    "64KB",
    "Response bytes a connection holds for its client: HTTP/1.1 copies at most this much at once " +
      "(larger chunks go out uncopied), HTTP/2 takes no more response data while this much is unsent " +
      "(at least 16KB). A client that does not read costs no more, and Loom stops reading the upstream.",
  ),
  http2: opt(
    t.object({
      max_concurrent_streams: opt(t.int({ min: 1 }), 100, "Streams a client may open at once."),
      max_header_list_size: opt(t.size(), "64KB", "Largest decoded header list of a request."),
      settings_timeout: opt(
        t.duration(),
        "10s",
        "Time a client has to acknowledge Loom's SETTINGS (then GOAWAY SETTINGS_TIMEOUT); 0 = no limit.",
      ),
      keepalive_interval: opt(
        t.duration(),
        "0s",
        "Send a PING after this long without a frame from the client; 0 = no keepalive.",
      ),
      keepalive_timeout: opt(
        t.duration(),
        "20s",
        "Close the connection when nothing arrives this long after a keepalive PING.",
      ),
    }),
    undefined,
    "HTTP/2 limits (grpc, grpcs, and TLS listeners offering h2).",
  ),
}, { normalize: withHostPort });

const upstreamTls = t.object({
  ca_file: opt(
    t.string({ file: true }),
    undefined,
    "PEM CA bundle trusted for the upstream's certificate (system roots when absent).",
  ),
  server_name: opt(t.string(), undefined, "SNI and verified name; default: the endpoint host."),
  cert_file: opt(t.string({ file: true }), undefined, "Client certificate (mTLS towards the upstream)."),
  key_file: opt(t.string({ file: true }), undefined, "Client certificate key."),
  insecure_skip_verify: opt(t.bool(), false, "Do not verify the upstream certificate (tests only)."),
}, { description: "TLS towards the upstream's endpoints; verification is on unless insecure_skip_verify." });

const route = t.object({
  id: req(t.string(), "Unique route id."),
  host: opt(t.string(), undefined, 'Exact host or "*.example.com"; any host when absent.'),
  path: req(
    t.string({ pattern: "^/\\S*$", patternMessage: 'path must start with "/" and contain no spaces' }),
    'Path pattern: "/exact", "/api/*", "/users/:id" or "/users/{id}".',
  ),
  methods: opt(
    t.list(
      t.string({
        pattern: TOKEN,
        patternMessage: "not a valid HTTP method token",
        normalize: (s: string) => s.toUpperCase(),
      }),
    ),
    undefined,
    "Allowed methods; all when absent.",
  ),
  headers: opt(t.map(matcher), undefined, "Request headers that must match."),
  query_params: opt(t.map(matcher), undefined, "Query parameters that must match."),
  path_regex: opt(
    t.string({ check: checkRegex }),
    undefined,
    'A regular expression the whole path must match too (anchored), e.g. "/v[0-9]+/.*" with path "/*".',
  ),
  listeners: opt(
    t.list(t.string(), { minItems: 1 }),
    undefined,
    "Names of the listeners whose requests this route serves; every listener when absent.",
  ),
  upstream: opt(
    t.string(),
    undefined,
    "Upstream to proxy to (else one of backends, redirect, direct_response).",
  ),
  plugins: opt(t.list(t.string()), [], "Names of plugins (defined under top-level plugins) to run."),
  metadata: opt(
    t.any(),
    undefined,
    "Route metadata (Envoy's, e.g. {filter_metadata: {ns: {k: v}}}): plugins read it as the properties " +
      "xds.route_metadata.* and metadata.*.",
  ),
  middleware: middlewareList,
  strip_prefix: opt(t.bool(), false, "Remove the matched prefix before proxying."),
  rewrite: opt(
    t.string({ pattern: "^/", patternMessage: 'rewrite must start with "/"' }),
    undefined,
    'Path sent upstream, may use captures: "/v2/users/{id}".',
  ),
  redirect: opt(redirectType),
  direct_response: opt(directResponseType, undefined, "Answer with a fixed status and body (no upstream)."),
  backends: opt(
    backendsType,
    undefined,
    "Weighted split across upstreams, each with its own middleware (instead of upstream).",
  ),
  sticky: opt(stickyType, undefined, "Keep a client on the backend it was given (with backends)."),
  mirror: opt(routeMirrorType, undefined, "Copies of requests to other upstreams, answers discarded."),
  timeout: opt(t.duration(), "30s", "Total request time including retries."),
  connect_timeout: opt(t.duration(), undefined, "Overrides the upstream's connect_timeout."),
  per_try_timeout: opt(t.duration(), undefined, "Overrides the upstream's per_try_timeout."),
  priority: opt(t.int(), 0, "Higher priority routes are matched first."),
  preserve_host: opt(
    t.bool(),
    true,
    "Send the client's Host header upstream (false: the endpoint's host:port).",
  ),
  host_rewrite: opt(t.string(), undefined, "Explicit Host header sent upstream; wins over preserve_host."),
  retry_non_idempotent: opt(
    t.bool(),
    undefined,
    "Let the upstream's retry policy retry this route's non-idempotent methods (POST, PATCH).",
  ),
  allow_trace: opt(
    t.bool(),
    false,
    "Forward TRACE (false: 405 with Allow). With Max-Forwards: 0 Loom answers the TRACE itself, " +
      "credentials redacted.",
  ),
});

/** A status ("200"), range ("200-299") or class ("2xx"), normalised to [lo, hi]. */
const statusRange = t.oneOf([
  t.int({ min: 100, max: 599, normalize: (n: number): [number, number] => [n, n] }),
  t.string({
    pattern: "^([1-5]xx|[1-5][0-9]{2}(-[1-5][0-9]{2})?)$",
    patternMessage: 'expected a status range like "200-299" or "2xx"',
    normalize: (s: string): [number, number] => {
      if (s.endsWith("xx")) return [Number(s[0]) * 100, Number(s[0]) * 100 + 99];
      const [lo, hi] = s.split("-").map(Number);
      return [lo, hi ?? lo];
    },
  }),
]);

const upstream = t.object({
  name: req(t.string(), "Unique upstream name."),
  endpoints: req(t.list(endpoint, { minItems: 1 }), "Backend endpoints."),
  load_balancer: opt(
    t.enum(["round_robin", "weighted", "least_conn", "random", "p2c", "consistent_hash"]),
    "round_robin",
    "Load balancing algorithm.",
  ),
  consistent_hash: opt(
    t.object({
      hash_key: opt(t.string(), "", 'Header ("X-User-ID"), "cookie:name", or "" / "ip" for the client IP.'),
      replicas: opt(t.int({ min: 1 }), 150, "Virtual nodes per endpoint (ring)."),
      algorithm: opt(t.enum(["maglev", "ring"]), "maglev"),
    }),
    {},
  ),
  health_check: opt(
    t.object({
      enabled: opt(t.bool(), true),
      type: opt(
        t.string({ pattern: "^(http|tcp|grpc)$", patternMessage: "type must be http, tcp or grpc" }),
        "http",
        "Probe kind: http (request, check status/body), tcp (connect only) or grpc (grpc.health.v1 Check).",
      ),
      service: opt(
        t.string(),
        undefined,
        'gRPC probe: the service asked about; "" (default) = the server\'s overall health.',
      ),
      path: opt(t.string(), "/health", "HTTP probe path."),
      method: opt(
        t.string({
          pattern: TOKEN,
          patternMessage: "not a valid HTTP method token",
          normalize: (s: string) => s.toUpperCase(),
        }),
        "GET",
        "HTTP probe method.",
      ),
      expected_status: opt(
        t.oneOf([statusRange, t.list(statusRange, { minItems: 1 })], {
          normalize: (v: [number, number] | [number, number][]) => typeof v[0] === "number" ? [v] : v,
        }),
        "200-399",
        'Healthy answers: a status, a range "200-299", a class "2xx", or a list of them.',
      ),
      body_contains: opt(t.string(), undefined, "The probe's response body must contain this."),
      host: opt(t.string(), undefined, "Host header of HTTP probes (default: the endpoint address)."),
      interval: opt(t.duration(), "10s", "Time between probes of one endpoint."),
      jitter: opt(t.duration(), undefined, "Random extra delay up to this per probe (default interval/10)."),
      timeout: opt(t.duration(), "2s", "Probe timeout."),
      healthy_threshold: opt(t.int({ min: 1 }), 2, "Consecutive successes to mark healthy."),
      unhealthy_threshold: opt(t.int({ min: 1 }), 3, "Consecutive failures to mark unhealthy."),
    }),
    undefined,
    "Active health checking; on when the block is present.",
  ),
  outlier_detection: opt(
    t.object({
      enabled: opt(t.bool(), true),
      consecutive_failures: opt(t.int({ min: 1 }), 5, "Failures in a row (5xx, connect errors) that eject."),
      base_ejection_time: opt(t.duration(), "30s", "First ejection; ×N for the N-th ejection."),
      max_ejection_time: opt(t.duration(), "300s", "Longest ejection."),
      max_ejection_percent: opt(
        t.int({ min: 0, max: 100 }),
        50,
        "Most endpoints ejected at once (%); one always may be.",
      ),
    }),
    undefined,
    "Passive health: eject endpoints that keep failing; on when the block is present.",
  ),
  panic_threshold: opt(
    t.int({ min: 0, max: 100 }),
    50,
    "Below this % of healthy endpoints, unhealthy/ejected ones get traffic too (0 = never).",
  ),
  circuit_breaker: opt(t.object({
    enabled: opt(t.bool(), true),
    failure_threshold: opt(t.int({ min: 1 }), 5, "Consecutive failures before opening."),
    success_threshold: opt(t.int({ min: 1 }), 3, "Successes (half-open) before closing."),
    timeout: opt(t.duration(), "30s", "Open time before half-open."),
    failure_ratio: opt(
      t.number({ min: 0, max: 1 }),
      undefined,
      "Also open at this failure share of the window.",
    ),
    window: opt(t.duration(), "10s", "Rolling window of failure_ratio."),
    min_requests: opt(t.int({ min: 0 }), 10, "Requests in the window before failure_ratio applies."),
    half_open_max: opt(t.int({ min: 1 }), 1, "Probe requests at once while half-open."),
  })),
  retry: opt(t.object({
    max_retries: opt(t.int({ min: 0 }), 3),
    backoff_base: opt(t.duration(), "100ms"),
    backoff_max: opt(t.duration(), "10s"),
    retryable_codes: opt(t.list(t.int({ min: 100, max: 599 })), [502, 503, 504]),
    per_try_timeout: opt(t.duration(), undefined, "Per-attempt timeout (default: the upstream's)."),
    retry_non_idempotent: opt(t.bool(), false, "Also retry POST/PATCH (routes may override)."),
    max_body_size: opt(t.size(), "64KB", "Largest request body kept for replay; bigger: not retried."),
    budget: opt(t.number({ min: 0, max: 1 }), 0.2, "Share of active requests that may be retries."),
  })),
  bulkhead: opt(t.object({
    enabled: opt(t.bool(), true),
    max_concurrent: opt(t.int({ min: 1 }), 100),
    queue_size: opt(t.int({ min: 0 }), 0),
    timeout: opt(t.duration(), 0, "Wait for a slot; 0 = no limit."),
  })),
  service_discovery: opt(t.map(t.any()), undefined, "Dynamic discovery settings (kept as written)."),
  pool: opt(
    t.object({
      max_idle: opt(t.int({ min: 0 }), 128, "Idle keep-alive connections kept per endpoint."),
      idle_timeout: opt(t.duration(), "60s"),
      max_connections: opt(t.int({ min: 0 }), 0, "Open connections per endpoint; 0 = unlimited."),
    }),
    {},
  ),
  connect_timeout: opt(t.duration(), "5s"),
  per_try_timeout: opt(t.duration(), "30s", "Wait for the response head, per attempt."),
  protocol: opt(
    t.enum(["http1", "h2", "h2c"]),
    undefined,
    "Upstream protocol: http1 (default), h2 (HTTP/2 over TLS) or h2c (cleartext HTTP/2). gRPC always uses HTTP/2.",
  ),
  tls: opt(upstreamTls),
});

/** A directory of a plugin's `files`: it must exist when the config is loaded. */
const checkDir = (s: string): string | undefined => {
  try {
    if (!Deno.statSync(s).isDirectory) return `not a directory: ${s}`;
  } catch (e) {
    return e instanceof Deno.errors.NotFound
      ? `directory not found: ${s}`
      : `cannot read ${s}: ${(e as Error).message}`;
  }
  return undefined;
};

/** The path a plugin sees a directory as: absolute, without `..`. */
const checkGuestPath = (s: string): string | undefined =>
  !s.startsWith("/")
    ? `expected an absolute path like "/data", got "${s}"`
    : s.split("/").some((p) => p === "..")
    ? `"${s}" must not contain ".."`
    : undefined;

const pluginFiles = t.object({
  dir: req(t.string({ file: true, check: checkDir }), "Directory on the host (relative to the config file)."),
  as: req(t.string({ check: checkGuestPath }), 'The path the plugin opens it by, e.g. "/data".'),
});

/** dns_server: "ip:port" (an IP address: it is what is asked, not looked up). */
const checkDnsServer = (s: string): string | undefined => {
  const a = parseAddress(s, true);
  if (!a.ok) return a.error;
  return isIP(a.value.hostname) === 0 ? `"${s}": the DNS server must be an IP address` : undefined;
};

const plugin = t.object({
  name: req(t.string(), "Unique plugin name, referenced by routes."),
  path: req(t.string({ file: true }), "Path of the .wasm file."),
  phase: opt(
    t.enum(["on_request_headers", "on_request_body", "on_response_headers", "on_response_body", "on_log"]),
    undefined,
    "Optional restriction: only the callbacks up to this phase run. Absent: every callback the module exports.",
  ),
  priority: opt(t.int(), 0, "Higher runs first."),
  global: opt(
    t.bool(),
    false,
    "Run on every route (merged with the route's plugins in priority order, once per plugin).",
  ),
  root_id: opt(
    t.string(),
    "",
    "Proxy-Wasm root id (Envoy's root_id): SDKs pick the root context registered under this name.",
  ),
  config: opt(t.any(), undefined, "Plugin configuration (string or mapping, passed as JSON)."),
  vm_id: opt(
    t.string(),
    undefined,
    "Proxy-Wasm vm_id (plugin_vm_id): plugins with the same non-empty vm_id, module and vm_config share one VM, " +
      "each with its own root context; shared queues are resolved by it.",
  ),
  vm_config: opt(
    t.any(),
    undefined,
    "VM configuration (string or mapping, passed as JSON): proxy_on_vm_start's size, buffer VM_CONFIGURATION.",
  ),
  memory_limit: opt(t.size(), "16MB"),
  timeout: opt(t.duration(), "50ms"),
  start_timeout: opt(
    t.duration(),
    undefined,
    "Running time a VM's start-up (_initialize/_start, on_vm_start, on_configure) may take; default 10s.",
  ),
  failure_policy: opt(
    t.enum(["fail_closed", "fail_open"]),
    "fail_closed",
    "What happens when the plugin fails.",
  ),
  isolation: opt(
    t.enum(["timeslice", "inline"]),
    undefined,
    "Default timeslice: callbacks run through JSPI and a long one is suspended every 2 ms so other " +
      "requests are served (about 1–1.5 µs more per request for a header plugin); inline: callbacks run " +
      "synchronously (a runaway callback delays the worker's other requests until its timeout).",
  ),
  public_config_keys: opt(
    t.list(t.string()),
    undefined,
    "Keys of config whose values GET /config shows; all other config values are redacted.",
  ),
  files: opt(
    t.list(pluginFiles),
    undefined,
    "Read-only directories the plugin may read: WASI preopened directories (open/fopen, std::fs, os) " +
      "and the read_file foreign function, sandboxed to them (no .., no symlink out).",
  ),
  dns_server: opt(
    t.string({ check: checkDnsServer }),
    undefined,
    'DNS server of the dns_resolve foreign function, "ip:port"; absent: the system\'s resolver.',
  ),
});

/** No value in the message: the token is a secret. */
const checkAdminToken = (s: string): string | undefined =>
  s.length < 16
    ? "the token must be at least 16 characters"
    : /\s/.test(s)
    ? "the token must not contain whitespace"
    : undefined;

/** The whole Loom configuration file. */
export const loomSchema: Type = t.object({
  workers: opt(
    t.oneOf([t.enum(["auto"]), t.int({ min: 1 })], {
      normalize: (v: "auto" | number) => v === "auto" ? navigator.hardwareConcurrency : v,
    }),
    1,
    'Worker isolates: a number or "auto" (one per CPU).',
  ),
  listeners: req(t.list(listener, { minItems: 1 }), "Network listeners."),
  routes: opt(t.list(route), [], "Routing rules."),
  upstreams: opt(t.list(upstream), [], "Backend services."),
  plugins: opt(t.list(plugin), [], "WASM plugins."),
  middleware: middlewareList,
  admin: opt(
    t.object({
      enabled: opt(t.bool(), true),
      address: opt(listenAddress("Admin API listen address."), "127.0.0.1:9091"),
      auth: opt(t.object({
        enabled: opt(t.bool(), true, "On when the block is present."),
        users: opt(t.map(t.string()), {}, "User name → password hash."),
        realm: opt(t.string(), "Loom Admin"),
        token: opt(
          t.string({ check: checkAdminToken }),
          undefined,
          'Bearer token ("Authorization: Bearer <token>"), at least 16 characters; e.g. "${LOOM_ADMIN_TOKEN}".',
        ),
      })),
      insecure: opt(
        t.bool(),
        undefined,
        "true: let the admin API listen beyond loopback without auth (GET /config and writes stay refused).",
      ),
      dashboard: opt(
        dashboardType,
        undefined,
        "The live dashboard at /dashboard (on, 10s samples, when absent).",
      ),
    }, { normalize: withHostPort }),
    {},
    "Admin API.",
  ),
  metrics: opt(
    t.object({
      prometheus: opt(t.object({ enabled: opt(t.bool(), true), path: opt(t.string(), "/metrics") }), {}),
      opentelemetry: opt(otlpMetricsType, {}, "OTLP/HTTP export of the metrics, beside Prometheus."),
    }),
    {},
  ),
  access_log: opt(
    t.object({
      enabled: opt(t.bool(), true),
      path: opt(t.string({ file: { keep: ["stdout"] } }), "stdout", '"stdout" or a file path.'),
      ...accessLogFields,
    }),
    {},
  ),
  demo: opt(
    t.object({
      echo: opt(
        t.object({ address: opt(listenAddress("Where the echo service listens."), "127.0.0.1:18080") }, {
          normalize: withHostPort,
        }),
        undefined,
        "Echo service Loom starts itself (for the default config).",
      ),
    }),
    {},
    "Services Loom starts itself.",
  ),
  drain_timeout: opt(t.duration(), "30s", "Time to finish in-flight requests on SIGTERM."),
  reload: opt(
    t.object({
      watch: opt(t.bool(), true, "Reload when the config file changes."),
      debounce: opt(
        t.duration(),
        "100ms",
        "File changes and SIGHUPs this close together (or during a reload) give one reload.",
      ),
    }),
    {},
    "How config changes are picked up (SIGHUP and POST /reload always reload).",
  ),
  ebpf: opt(
    t.object({
      enabled: opt(
        t.bool(),
        false,
        "Use eBPF (Linux 5.7+, root or CAP_BPF with CAP_NET_ADMIN, cgroup v2, libbpf1); " +
          "without them one warning says what is missing and Loom runs without it.",
      ),
      socket_redirect: opt(
        t.bool(),
        true,
        "Local hops (a client on this host to Loom, Loom to a local upstream) skip the TCP/IP stack: " +
          "sock_ops + sk_msg redirect between the two sockets.",
      ),
      splice_tunnels: opt(
        t.bool(),
        false,
        "WebSocket and other upgraded tunnels between plain TCP connections are spliced in the kernel " +
          "(sk_skb); TLS tunnels stay in user space.",
      ),
      cgroup: opt(
        t.string({ check: (s) => s.startsWith("/") ? undefined : "expected an absolute path" }),
        undefined,
        "The cgroup v2 directory whose sockets socket_redirect watches; default: the cgroup2 mount point " +
          "(every process of the host).",
      ),
    }),
    undefined,
    "eBPF acceleration (off unless enabled).",
  ),
  trusted_proxies: opt(
    t.list(t.string({ check: cidrError, description: 'An address or CIDR range, e.g. "10.0.0.0/8".' })),
    [],
    "Clients (proxies in front of Loom) whose X-Forwarded-For and Forwarded are appended to; " +
      "from any other client they are replaced by Loom's.",
  ),
  rate_limit: opt(
    topLevelRateLimitType,
    undefined,
    "A token bucket per client IP in front of every route (the rate_limit middleware: more options there).",
  ),
  tracing: opt(
    tracingType,
    undefined,
    "OpenTelemetry traces: a span per request, its middleware, plugins, upstream attempts.",
  ),
  request_id: opt(requestIdType, undefined, "The request id on responses."),
  cors: opt(
    corsType,
    undefined,
    "CORS for every route (the Loom format's block; same options as the cors middleware).",
  ),
  gateway_api: opt(
    gatewayApiType,
    undefined,
    "Listeners, routes and upstreams from the Kubernetes Gateway API (manifests or the API server).",
  ),
  cache: opt(
    topLevelCacheType,
    undefined,
    "A response cache in front of every route (the cache middleware, memory store: more options there).",
  ),
}, { description: "Loom API gateway configuration." });
