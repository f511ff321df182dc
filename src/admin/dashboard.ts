/**
 * The live dashboard on the admin listener: `GET /dashboard` serves a page
 * (plain HTML, CSS and JavaScript from src/admin/dashboard/, embedded in the
 * program as strings by assets.ts: no CDN, no build step at run time) that
 * polls `GET /dashboard/state` every two seconds and draws routes, upstreams
 * (endpoint health, circuit state, in-flight requests), request rate, error
 * rate and latency charts over the last 15 minutes, plugins, recent errors
 * and reloads. The admin API's authentication, Host and write rules apply
 * (the routes sit behind the same middleware as every other).
 *
 * @module
 */
import type { Hono } from "hono";
import type { GatewayInfo, RouteInfo } from "./types.ts";
import type { UpstreamInfo } from "../upstream/upstream.ts";
import type { PluginInfo } from "../wasm/mod.ts";
import type { RecentError } from "../observability/recent_errors.ts";
import { DASHBOARD_ASSETS } from "./dashboard/assets.ts";

/** One point of the charts: the interval that ended at `t`. */
export interface DashboardSample {
  /** Epoch ms. */
  t: number;
  /** Requests per second. */
  rps: number;
  /** 5xx (and unanswered) requests over all requests, 0..1. */
  error_rate: number;
  errors_per_s: number;
  /** Latency quantiles in seconds (null: no request in the interval). */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/** Request totals since start, summed over workers (as /metrics shows them). */
export interface DashboardTotals {
  requests: number;
  /** 5xx answers and requests that got none. */
  errors: number;
}

/** A configuration reload's outcome. */
export interface ReloadRecord {
  /** ISO time. */
  time: string;
  /** What asked for it: file, SIGHUP, admin. */
  trigger: string;
  ok: boolean;
  errors: string[];
}

/** Everything the page shows, in one poll. */
export interface DashboardState {
  info: GatewayInfo;
  /** Epoch ms. */
  now: number;
  /** ms between samples. */
  interval_ms: number;
  totals: DashboardTotals & { active_connections: number };
  series: DashboardSample[];
  routes: (RouteInfo & { requests: number; errors: number })[];
  upstreams: UpstreamInfo[];
  plugins: PluginInfo[];
  errors: RecentError[];
  reloads: ReloadRecord[];
  process: {
    cpu_seconds: number;
    resident_bytes: number;
    heap_used_bytes: number;
    event_loop_p99_seconds: number;
  };
}

/** Adds the dashboard's routes to the admin app; `state` null: the dashboard is off (404). */
export function mountDashboard(app: Hono, state: (() => Promise<DashboardState>) | null): void {
  if (state === null) return;
  const asset = (name: keyof typeof DASHBOARD_ASSETS) => {
    const a = DASHBOARD_ASSETS[name];
    return new Response(a.body, {
      headers: {
        "content-type": a.type,
        "cache-control": "no-cache",
        // Everything comes from this origin: no CDN, no inline script.
        "content-security-policy":
          "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
        "x-content-type-options": "nosniff",
      },
    });
  };
  app.get("/dashboard", () => asset("index.html"));
  app.get("/dashboard/app.js", () => asset("app.js"));
  app.get("/dashboard/style.css", () => asset("style.css"));
  app.get("/dashboard/state", async (c) => c.json(await state()));
}
