/**
 * The Gateway API as a config source, for the supervisor: every config load
 * (start, file change, SIGHUP, POST /reload) goes through
 * {@link GatewayApiSource.load}, which — when the file has a `gateway_api`
 * block — takes the current resources (the manifests directory
 * read again, or the API server's watched state), translates them and
 * validates the file with their listeners, routes and upstreams merged in.
 * A change of the resources (a file in the directory, a watch event) asks
 * the supervisor for a reload, debounced like the config file's. After a
 * config is applied (or found unchanged) {@link GatewayApiSource.publish}
 * reports status: PATCHed to the API server by the Lease holder, or logged
 * for manifests (non-True conditions as warnings) and kept for `statuses()`.
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import { isMap, LineCounter, type Node, parseDocument } from "yaml";
import type { LoadResult } from "../config/types.ts";
import { type GatewayApiConfig, gatewayApiType } from "../config/gateway_api.ts";
import { normalise } from "../config/normalise.ts";
import { substituteEnv } from "../config/env.ts";
import { locator } from "../config/position.ts";
import { logger } from "../observability/logger.ts";
import { readManifests } from "./manifests.ts";
import { mergeTranslation } from "./merge.ts";
import { rejectOwners, translate, type Translation } from "./translate.ts";
import type { StatusEntry } from "./status.ts";
import type { Condition, ResourceSet } from "./types.ts";
import { KubeSource } from "./kube.ts";

/** Where resources come from: a manifests directory or the API server. */
export interface ResourceBackend {
  /** The resources now (the first call may wait for an initial sync). */
  snapshot(): Promise<ResourceSet>;
  /** Reports the statuses of the config just applied. */
  publish(statuses: readonly StatusEntry[]): Promise<void>;
  close(): void;
}

/** A directory of manifests, watched: re-read on every load. */
class ManifestBackend implements ResourceBackend {
  #watcher: Deno.FsWatcher | null = null;
  #logged = "";

  constructor(readonly dir: string, onChange: () => void) {
    try {
      const w = Deno.watchFs(dir, { recursive: true });
      this.#watcher = w;
      (async () => {
        try {
          for await (const ev of w) if (ev.kind !== "access") onChange();
        } catch { /* closed */ }
      })();
    } catch (e) {
      logger.warn("gateway_api: cannot watch the manifests directory", { dir, error: String(e) });
    }
  }

  async snapshot(): Promise<ResourceSet> {
    const r = await readManifests(this.dir);
    for (const p of r.problems) {
      logger.warn("gateway_api: manifest skipped", { file: p.file, error: p.message });
    }
    return r.resources;
  }

  publish(statuses: readonly StatusEntry[]): Promise<void> {
    const lines: string[] = [];
    for (const s of statuses) {
      const who = `${s.kind} ${s.namespace ? s.namespace + "/" : ""}${s.name}`;
      const conds = [
        ...(s.status.conditions ?? []).map((c: Condition) => ["", c] as const),
        ...(s.status.listeners ?? []).flatMap((l: { name: string; conditions: Condition[] }) =>
          l.conditions.map((c) => [` listener ${l.name}`, c] as const)
        ),
        ...(s.status.parents ?? []).flatMap((p: { parentRef: { name?: string }; conditions: Condition[] }) =>
          p.conditions.map((c) => [` parent ${p.parentRef?.name}`, c] as const)
        ),
      ] as (readonly [string, Condition])[];
      for (const [where, c] of conds) {
        const bad = c.type === "Conflicted" ? c.status === "True" : c.status !== "True";
        if (bad) lines.push(`${who}${where}: ${c.type}=${c.status} ${c.reason}: ${c.message}`);
      }
    }
    const text = lines.join("\n");
    if (text !== this.#logged) {
      this.#logged = text;
      for (const l of lines) logger.warn("gateway_api: " + l);
    }
    return Promise.resolve();
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = null;
  }
}

/** The supervisor's handle on the Gateway API source (one per Loom). */
export class GatewayApiSource {
  #settings = "";
  #backend: ResourceBackend | null = null;
  #certDir: string | null = null;
  #pending: Translation | null = null;
  #published: readonly StatusEntry[] = [];
  #written = new Map<string, string>();

  /**
   * `onChange` asks for a reload (debounced by the caller). `readOnly` (`loom validate`): the API server
   * is read but no Lease is taken and no status written.
   */
  constructor(private readonly onChange: (trigger: string) => void, private readonly readOnly = false) {}

  /** The statuses last published. */
  statuses(): readonly StatusEntry[] {
    return this.#published;
  }

  /**
   * Loads the config file at `path` with the Gateway API's parts merged in; null when the file has no
   * `gateway_api` block (or does not parse: the plain loader reports that), for the plain loader.
   */
  async load(path: string): Promise<LoadResult | null> {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      return null;
    }
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter });
    if (doc.errors.length > 0 || !isMap(doc.contents) || !doc.has("gateway_api")) {
      this.close();
      return null;
    }
    const baseDir = dirname(resolve(path));
    const locate = locator(lineCounter);
    const node = doc.get("gateway_api", true) as Node;
    const env = substituteEnv(node, (name) => Deno.env.get(name), locate);
    const n = normalise(gatewayApiType, node, doc, locate, env.failed, baseDir);
    const errors = [...env.errors, ...n.errors].map((e) => ({
      ...e,
      path: e.path ? `gateway_api.${e.path.replace(/^\./, "")}` : "gateway_api",
    }));
    const g = n.value as GatewayApiConfig | undefined;
    if (
      errors.length === 0 && g !== undefined && (g.manifests === undefined) === (g.kubernetes === undefined)
    ) {
      errors.push({
        path: "gateway_api",
        ...locate(node),
        message: 'needs exactly one of "manifests" and "kubernetes"',
      });
    }
    if (errors.length > 0 || g === undefined) return { ok: false, errors };
    const backend = this.#backendFor(g);
    const resources = await backend.snapshot();
    this.#certDir ??= await Deno.makeTempDir({ prefix: "loom-gateway-api-" });
    const plugins = doc.toJS().plugins;
    const t = await translate(resources, {
      controllerName: g.controller_name,
      gatewayClass: g.gateway_class,
      listenHost: g.listen_host,
      portMap: g.port_map,
      certDir: this.#certDir,
      middlewareNames: new Set(Object.keys(g.middleware)),
      pluginNames: new Set(
        Array.isArray(plugins) ? plugins.map((p: { name?: string }) => String(p?.name)) : [],
      ),
    });
    for (const [name, content] of Object.entries(t.files)) {
      if (this.#written.get(name) === content) continue;
      await Deno.writeTextFile(`${this.#certDir}/${name}`, content, { mode: 0o600 });
      this.#written.set(name, content);
    }
    const merged = mergeTranslation(text, path, baseDir, t);
    if (merged.dropped.size > 0) {
      rejectOwners(t, merged.dropped);
      for (const [owner, why] of merged.dropped) {
        logger.warn("gateway_api: route not applied", { owner, error: why });
      }
    }
    this.#pending = t;
    return merged.result;
  }

  /** The config of the last {@link load} is in effect: report its statuses. */
  async publish(): Promise<void> {
    const t = this.#pending;
    if (t === null || this.#backend === null) return;
    this.#published = t.statuses;
    try {
      await this.#backend.publish(t.statuses);
    } catch (e) {
      logger.warn("gateway_api: status not written", { error: String(e) });
    }
  }

  #backendFor(g: GatewayApiConfig): ResourceBackend {
    const key = JSON.stringify([g.manifests, g.kubernetes, g.controller_name, g.gateway_class]);
    if (this.#backend !== null && key === this.#settings) return this.#backend;
    this.#backend?.close();
    this.#settings = key;
    const changed = () => this.onChange("gateway-api");
    this.#backend = g.manifests !== undefined
      ? new ManifestBackend(g.manifests, changed)
      : new KubeSource(g.kubernetes!, g.controller_name, changed, !this.readOnly);
    return this.#backend;
  }

  /** Stops watching (the config lost its `gateway_api` block, or Loom stops). */
  close(): void {
    this.#backend?.close();
    this.#backend = null;
    this.#settings = "";
    this.#pending = null;
  }
}
