/**
 * The admin API's view of the gateway. The admin server knows nothing of
 * sockets, listeners or workers: the gateway hands it an {@link AdminBackend}.
 *
 * @module
 */

import type { LoomConfig, RedirectConfig } from "../config/types.ts";
import type { UpstreamInfo } from "../upstream/upstream.ts";
import type { PluginInfo } from "../wasm/mod.ts";
import type { DashboardState } from "./dashboard.ts";

/** A configured route as the admin API lists it. */
export interface RouteInfo {
  id: string;
  host?: string;
  path: string;
  /** Undefined = all methods. */
  methods?: string[];
  upstream?: string;
  priority: number;
  plugins: string[];
  strip_prefix: boolean;
  rewrite?: string;
  redirect?: RedirectConfig;
}

/** Upstreams as listed by `GET /upstreams` (in-flight counts are summed over workers). */
export type { EndpointInfo, UpstreamInfo } from "../upstream/upstream.ts";

/** Gateway facts for `GET /info`. */
export interface GatewayInfo {
  version: string;
  workers: number;
  /** ISO 8601. */
  started_at: string;
  config_file: string;
}

/** Outcome of a configuration reload. */
export type ReloadResult = { ok: true } | { ok: false; errors: string[] };

/** What the admin API needs from the gateway. */
export interface AdminBackend {
  /** False while starting or draining. */
  ready(): boolean;
  routes(): RouteInfo[];
  upstreams(): Promise<UpstreamInfo[]>;
  /** The current configuration (the admin API redacts secrets itself). */
  config(): LoomConfig;
  /** YAML paths of the current config's values that came from `${VAR}` (redacted by GET /config). */
  configEnvPaths?(): readonly string[];
  reload(): Promise<ReloadResult>;
  /**
   * Drains (true) or re-enables an upstream endpoint on every worker; false
   * when unknown. Optional: backends without it answer 501.
   */
  setEndpointDraining?(upstream: string, endpoint: string, draining: boolean): boolean | Promise<boolean>;
  /** Proxy-Wasm plugins (GET /plugins); optional: without it the admin isolate's own are listed. */
  plugins?(): PluginInfo[] | Promise<PluginInfo[]>;
  /**
   * Drops cached responses (the cache middleware) on every worker: `key`
   * exactly (with its Vary variants) or every key starting with `prefix`;
   * the count dropped. Optional: backends without it answer 501.
   */
  purgeCache?(what: { key?: string; prefix?: string }): Promise<number>;
  /** eBPF acceleration: what is attached and its counters (GET /ebpf); optional: without it 404. */
  ebpf?(): unknown | Promise<unknown>;
  /** Prometheus text, already merged across workers. */
  metrics(): Promise<string>;
  /** What the live dashboard shows (GET /dashboard/state); optional: without it no dashboard. */
  dashboard?(): Promise<DashboardState>;
  info(): GatewayInfo;
}
