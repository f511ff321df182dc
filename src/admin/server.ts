/**
 * The admin API: health, readiness, routes, upstreams, redacted config,
 * reload, info, Prometheus metrics, the live dashboard (dashboard.ts) and
 * its OpenAPI 3.1 description (openapi.ts), served by Hono on `Deno.serve`.
 * Authentication is in auth.ts, the rules for writes, `Host` and listeners
 * beyond loopback in guard.ts.
 *
 * @module
 */

import { Hono } from "hono";
import type { AdminConfig } from "../config/types.ts";
import { logger } from "../observability/logger.ts";
import { hasAdminCredentials, isLoopbackHostname } from "../config/admin_exposure.ts";
import { adminAuth } from "./auth.ts";
import { adminGuard, exposedWithoutAuth, forbidden } from "./guard.ts";
import { redactConfig } from "./redact.ts";
import type { AdminBackend } from "./types.ts";
import { mountDashboard } from "./dashboard.ts";
import { openApiDocument } from "./openapi.ts";

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Paths that never require credentials (probes run without them). */
const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/health", "/ready"]);

const log = logger.child({ component: "admin" });

/**
 * Builds the admin Hono app. The metrics path and on/off switch are read
 * from `backend.config().metrics.prometheus` per request, so a reload that
 * moves the path takes effect without restarting the admin server.
 */
export function createAdminApp(backend: AdminBackend, cfg: AdminConfig): Hono {
  const app = new Hono();

  app.onError((err, c) => {
    // Details go to the log only: responses never carry stack traces.
    log.error("admin request failed", { method: c.req.method, path: c.req.path, error: err });
    return c.json({ error: "internal server error" }, 500);
  });
  app.notFound((c) => c.json({ error: "not found" }, 404));

  if (cfg.auth?.enabled) {
    const { users, token, realm } = cfg.auth;
    app.use("*", adminAuth({ users, token, realm: realm || "Loom", publicPaths: PUBLIC_PATHS }));
  }
  // "" (all interfaces) is not loopback: that is also what Deno.serve binds for it.
  const guard = { loopback: isLoopbackHostname(cfg.hostname), authenticated: hasAdminCredentials(cfg.auth) };
  app.use("*", adminGuard(guard));

  app.use("*", async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return next();
    const prom = backend.config().metrics?.prometheus;
    if (prom?.enabled === false || c.req.path !== (prom?.path || "/metrics")) return next();
    return c.body(await backend.metrics(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  });

  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const ready = backend.ready();
    return c.json({ ready }, ready ? 200 : 503);
  });
  app.get("/routes", (c) => c.json(backend.routes()));
  app.get("/upstreams", async (c) => c.json(await backend.upstreams()));
  app.get("/config", (c) => {
    if (exposedWithoutAuth(guard)) {
      return forbidden(c, "GET /config needs admin.auth on an address beyond loopback");
    }
    return c.json(redactConfig(backend.config(), { envPaths: backend.configEnvPaths?.() }));
  });
  app.get("/info", (c) => c.json(backend.info()));
  app.get(
    "/openapi.json",
    (c) => c.json(openApiDocument(backend.config().metrics?.prometheus?.path || "/metrics")),
  );
  mountDashboard(
    app,
    backend.dashboard !== undefined && cfg.dashboard?.enabled !== false ? () => backend.dashboard!() : null,
  );
  // Plugins of this isolate's gateway unless the backend merges workers itself.
  app.get("/plugins", async (c) => {
    if (backend.plugins !== undefined) return c.json(await backend.plugins());
    // A backend without plugins() (tests): the isolate's manager, loading the Wasm host only here.
    return c.json((await import("../wasm/mod.ts")).currentPluginManager()?.describe() ?? []);
  });
  // eBPF acceleration: programs attached, cgroup, counters read from the BPF maps, spliced tunnels.
  app.get("/ebpf", async (c) => {
    if (backend.ebpf === undefined) return c.json({ error: "not found" }, 404);
    return c.json(await backend.ebpf());
  });
  app.post("/reload", async (c) => {
    const result = await backend.reload();
    if (result.ok) {
      log.info("config reloaded via admin API");
      return c.json({ result: "success" }, 200);
    }
    log.warn("config reload via admin API failed", { errors: result.errors });
    return c.json({ result: "failure", errors: result.errors }, 400);
  });
  app.post("/cache/purge", async (c) => {
    if (backend.purgeCache === undefined) return c.json({ error: "not supported" }, 501);
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: 'expected a JSON body {"key": "..."} or {"prefix": "..."}' }, 400);
    }
    const o = (body ?? {}) as Record<string, unknown>;
    const key = o.key;
    const prefix = o.prefix;
    if (
      typeof body !== "object" || Array.isArray(body) || (key === undefined) === (prefix === undefined) ||
      (key !== undefined && (typeof key !== "string" || key === "")) ||
      (prefix !== undefined && typeof prefix !== "string")
    ) {
      return c.json(
        { error: 'expected {"key": "<cache key>"} or {"prefix": "<key prefix>"} (one of them)' },
        400,
      );
    }
    const what = key !== undefined ? { key: key as string } : { prefix: prefix as string };
    let purged: number;
    try {
      purged = await backend.purgeCache(what);
    } catch (e) {
      // E.g. a Redis store that is not reachable: nothing was confirmed purged there.
      log.warn("cache purge via admin API failed", { ...what, error: String(e) });
      return c.json({ error: `purge failed: ${e instanceof Error ? e.message : String(e)}` }, 503);
    }
    log.info("cache purged via admin API", { ...what, purged });
    return c.json({ ...what, purged });
  });
  for (const action of ["drain", "enable"] as const) {
    app.post(`/upstreams/:name/endpoints/:endpoint/${action}`, async (c) => {
      if (backend.setEndpointDraining === undefined) return c.json({ error: "not supported" }, 501);
      const name = c.req.param("name");
      const endpoint = c.req.param("endpoint");
      if (!(await backend.setEndpointDraining(name, endpoint, action === "drain"))) {
        return c.json({ error: `no endpoint ${endpoint} in upstream ${name}` }, 404);
      }
      return c.json({ upstream: name, endpoint, draining: action === "drain" });
    });
  }

  return app;
}

/** A running admin server. */
export interface AdminServer {
  /** The bound address (useful with port 0). */
  addr: Deno.NetAddr;
  /** Settles once the server has stopped. */
  finished: Promise<void>;
  /** Stops accepting and waits for in-flight requests. */
  shutdown(): Promise<void>;
}

/**
 * Serves the admin API on `cfg.hostname:cfg.port` ("" = all interfaces).
 * Callers check `cfg.enabled`; aborting `signal` shuts the server down.
 */
export function startAdminServer(backend: AdminBackend, cfg: AdminConfig, signal?: AbortSignal): AdminServer {
  const app = createAdminApp(backend, cfg);
  const server = Deno.serve({
    hostname: cfg.hostname || "0.0.0.0",
    port: cfg.port,
    signal,
    onListen: (addr) => log.info("admin API listening", { address: `${addr.hostname}:${addr.port}` }),
    onError: (err) => {
      log.error("admin server error", { error: err });
      return Response.json({ error: "internal server error" }, { status: 500 });
    },
  }, app.fetch);
  return {
    addr: server.addr,
    finished: server.finished,
    shutdown: () => server.shutdown(),
  };
}
