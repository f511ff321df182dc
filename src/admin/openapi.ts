/**
 * The admin API described as OpenAPI 3.1, served at `GET /openapi.json`.
 * server_test.ts compares the paths and methods here with the routes the
 * Hono app registers, so a route added without its entry fails a test.
 *
 * @module
 */
import { VERSION } from "../version.ts";

type Schema = Record<string, unknown>;

const json = (schema: Schema, description = "OK") => ({
  description,
  content: { "application/json": { schema } },
});
const error = (description: string) => json({ $ref: "#/components/schemas/Error" }, description);
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** Answers every route may give: the guard's and the authentication's. */
const COMMON = {
  "401": error("Credentials missing or wrong (admin.auth)"),
  "403": error("Refused by the admin API's rules (Host, writes, beyond loopback)"),
};

const endpointAction = (action: "drain" | "enable") => ({
  post: {
    summary: action === "drain"
      ? "Stop sending new requests to an endpoint (every worker; survives reloads)"
      : "Send requests to a drained endpoint again",
    operationId: action === "drain" ? "drainEndpoint" : "enableEndpoint",
    parameters: [
      { name: "name", in: "path", required: true, schema: { type: "string" }, description: "Upstream name" },
      {
        name: "endpoint",
        in: "path",
        required: true,
        schema: { type: "string" },
        description: 'Endpoint address, e.g. "10.0.0.1:8080"',
      },
    ],
    responses: {
      "200": json({
        type: "object",
        properties: {
          upstream: { type: "string" },
          endpoint: { type: "string" },
          draining: { type: "boolean" },
        },
      }),
      "404": error("No such upstream or endpoint"),
      "501": error("Not supported by this backend"),
      ...COMMON,
    },
  },
});

/** The document (the metrics path is the configured one, /metrics by default). */
export function openApiDocument(metricsPath = "/metrics"): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "Loom admin API",
      version: VERSION,
      description: "Health, routes, upstreams, plugins, configuration, reloads, metrics and the live " +
        "dashboard of a running Loom. Writes need a JSON content type, an X-Loom-Admin header or a bearer " +
        "token; on loopback without auth the Host must name loopback.",
    },
    components: {
      securitySchemes: {
        basic: { type: "http", scheme: "basic" },
        bearer: { type: "http", scheme: "bearer" },
      },
      schemas: {
        Error: { type: "object", properties: { error: { type: "string" } }, required: ["error"] },
        Route: {
          type: "object",
          properties: {
            id: { type: "string" },
            host: { type: "string" },
            path: { type: "string" },
            methods: { type: "array", items: { type: "string" } },
            upstream: { type: "string" },
            priority: { type: "integer" },
            plugins: { type: "array", items: { type: "string" } },
            strip_prefix: { type: "boolean" },
            rewrite: { type: "string" },
            redirect: { type: "object" },
          },
          required: ["id", "path", "priority", "plugins", "strip_prefix"],
        },
        Upstream: {
          type: "object",
          properties: {
            name: { type: "string" },
            load_balancer: { type: "string" },
            panic: { type: "boolean" },
            endpoints: {
              type: "array",
              items: {
                type: "object",
                properties: {
                  address: { type: "string" },
                  weight: { type: "number" },
                  in_flight: { type: "integer" },
                  healthy: { type: "boolean" },
                  draining: { type: "boolean" },
                  ejected: { type: "boolean" },
                  circuit: { enum: ["closed", "open", "half_open"] },
                },
              },
            },
          },
        },
        Plugin: {
          type: "object",
          properties: {
            name: { type: "string" },
            path: { type: "string" },
            phase: { type: "string" },
            vms: { type: "integer" },
            running: { type: "boolean" },
            errors: { type: "integer" },
            last_error: { type: ["string", "null"] },
            workers: { type: "integer" },
            vm_shared_with: {
              type: "array",
              items: { type: "string" },
              description: "Plugins running in the same VM (same vm_id, module and vm_config)",
            },
          },
        },
      },
    },
    security: [{}, { basic: [] }, { bearer: [] }],
    paths: {
      "/health": {
        get: {
          summary: "Liveness",
          operationId: "health",
          security: [{}],
          responses: { "200": json({ type: "object", properties: { status: { const: "ok" } } }) },
        },
      },
      "/ready": {
        get: {
          summary: "Readiness: false while starting or draining",
          operationId: "ready",
          security: [{}],
          responses: {
            "200": json({ type: "object", properties: { ready: { type: "boolean" } } }),
            "503": json({ type: "object", properties: { ready: { type: "boolean" } } }, "Not ready"),
          },
        },
      },
      "/routes": {
        get: {
          summary: "Configured routes",
          operationId: "routes",
          responses: { "200": json({ type: "array", items: ref("Route") }), ...COMMON },
        },
      },
      "/upstreams": {
        get: {
          summary: "Upstreams and their endpoints (in-flight requests summed over workers)",
          operationId: "upstreams",
          responses: { "200": json({ type: "array", items: ref("Upstream") }), ...COMMON },
        },
      },
      "/upstreams/{name}/endpoints/{endpoint}/drain": endpointAction("drain"),
      "/upstreams/{name}/endpoints/{endpoint}/enable": endpointAction("enable"),
      "/config": {
        get: {
          summary: "The configuration in effect, secrets redacted",
          operationId: "config",
          responses: { "200": json({ type: "object" }), ...COMMON },
        },
      },
      "/info": {
        get: {
          summary: "Version, workers, start time, config file",
          operationId: "info",
          responses: {
            "200": json({
              type: "object",
              properties: {
                version: { type: "string" },
                workers: { type: "integer" },
                started_at: { type: "string", format: "date-time" },
                config_file: { type: "string" },
              },
            }),
            ...COMMON,
          },
        },
      },
      "/plugins": {
        get: {
          summary: "Proxy-Wasm plugins (VMs and errors summed over workers)",
          operationId: "plugins",
          responses: { "200": json({ type: "array", items: ref("Plugin") }), ...COMMON },
        },
      },
      "/ebpf": {
        get: {
          summary:
            "eBPF acceleration: programs attached, cgroup, counters from the BPF maps, spliced tunnels",
          operationId: "ebpf",
          responses: {
            "200": json({
              type: "object",
              properties: {
                enabled: { type: "boolean" },
                active: { type: "boolean" },
                missing: { type: "array", items: { type: "string" }, description: "What eBPF lacks here" },
                kernel: { type: "string" },
                libbpf: { type: ["string", "null"] },
                socket_redirect: {
                  type: "object",
                  description: "Programs, cgroup, mode, map sizes and the counters of the redirect programs",
                },
                splice_tunnels: {
                  type: "object",
                  description: "Per instance: tunnels spliced, bytes, and why others stayed in user space",
                },
              },
            }),
            "404": error("Not supported by this backend"),
            ...COMMON,
          },
        },
      },
      "/reload": {
        post: {
          summary: "Re-read and apply the config file (all or nothing)",
          operationId: "reload",
          responses: {
            "200": json({ type: "object", properties: { result: { const: "success" } } }),
            "400": json({
              type: "object",
              properties: {
                result: { const: "failure" },
                errors: { type: "array", items: { type: "string" } },
              },
            }, "The config was refused; the old one serves on"),
            ...COMMON,
          },
        },
      },
      "/cache/purge": {
        post: {
          summary: "Drop cached responses: one key (with its variants) or every key with a prefix",
          operationId: "purgeCache",
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: {
                  oneOf: [
                    { type: "object", properties: { key: { type: "string" } }, required: ["key"] },
                    { type: "object", properties: { prefix: { type: "string" } }, required: ["prefix"] },
                  ],
                },
              },
            },
          },
          responses: {
            "200": json({ type: "object", properties: { purged: { type: "integer" } } }),
            "400": error("Not {key} or {prefix}"),
            "501": error("Not supported by this backend"),
            "503": error("A shared store could not be reached"),
            ...COMMON,
          },
        },
      },
      [metricsPath]: {
        get: {
          summary: "Prometheus metrics, merged over workers (metrics.prometheus.path)",
          operationId: "metrics",
          responses: {
            "200": {
              description: "Text exposition format 0.0.4",
              content: { "text/plain; version=0.0.4": { schema: { type: "string" } } },
            },
            ...COMMON,
          },
        },
      },
      "/dashboard": {
        get: {
          summary: "The live dashboard (HTML; admin.dashboard)",
          operationId: "dashboard",
          responses: { "200": { description: "The page", content: { "text/html": {} } }, ...COMMON },
        },
      },
      "/dashboard/app.js": {
        get: {
          summary: "The dashboard's script",
          operationId: "dashboardScript",
          responses: { "200": { description: "JavaScript", content: { "text/javascript": {} } }, ...COMMON },
        },
      },
      "/dashboard/style.css": {
        get: {
          summary: "The dashboard's style sheet",
          operationId: "dashboardStyle",
          responses: { "200": { description: "CSS", content: { "text/css": {} } }, ...COMMON },
        },
      },
      "/dashboard/state": {
        get: {
          summary: "What the dashboard shows: totals, 15 minutes of samples, routes, upstreams, plugins, " +
            "recent errors, reloads",
          operationId: "dashboardState",
          responses: { "200": json({ type: "object" }), ...COMMON },
        },
      },
      "/openapi.json": {
        get: {
          summary: "This document",
          operationId: "openapi",
          responses: { "200": json({ type: "object" }), ...COMMON },
        },
      },
    },
  };
}
