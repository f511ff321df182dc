/**
 * The Kubernetes API server as a resource source: in-cluster credentials,
 * list + watch per kind, status written back by the Lease holder.
 *
 * - Credentials: the service account's bearer token (re-read every minute:
 *   projected tokens rotate) and CA bundle; the server from
 *   `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` unless configured.
 * - Per kind an informer: a paginated list (`limit`, `continue`) gives the
 *   objects and a resourceVersion; a watch from it
 *   (`?watch=1&resourceVersion=…&allowWatchBookmarks=true`) streams
 *   newline-delimited JSON events (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).
 *   A watch that ends is started again from the last version seen (bookmarks
 *   move it on without objects); `410 Gone` (as the answer or as an ERROR
 *   event) means that version is too old: list again. Failures back off
 *   exponentially (0.5 s doubling to 30 s, with jitter). Only changes beyond
 *   `status` and bookkeeping metadata ask for a reload.
 * - Status: GatewayClass, Gateway and route status are PATCHed (merge patch)
 *   to their `status` subresource when they differ from what the object has,
 *   only by the replica holding the `coordination.k8s.io/v1` Lease (renewed
 *   every third of its duration; taken over when its holder has not renewed
 *   it for a whole duration, as client-go's leader election does). Every
 *   replica serves; a new holder writes the statuses at once.
 *
 * @module
 */
import { type KubernetesSourceConfig, SERVICE_ACCOUNT_DIR } from "../config/gateway_api.ts";
import { logger } from "../observability/logger.ts";
import { type StatusEntry, statusToWrite } from "./status.ts";
import {
  API_PATHS,
  emptyResources,
  type K8sObject,
  keyOf,
  type Kind,
  KINDS,
  type ResourceSet,
} from "./types.ts";

/** Talks to the API server. */
export class KubeClient {
  #token = "";
  #tokenRead = 0;
  #client: Deno.HttpClient | undefined;

  constructor(readonly server: string, private readonly tokenFile: string, caFile: string) {
    if (server.startsWith("https:")) {
      try {
        this.#client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(caFile)] });
      } catch { /* no CA file: the system roots */ }
    }
  }

  #auth(): string {
    if (Date.now() - this.#tokenRead > 60_000) {
      try {
        this.#token = Deno.readTextFileSync(this.tokenFile).trim();
      } catch { /* no token (e.g. a local proxy): unauthenticated */ }
      this.#tokenRead = Date.now();
    }
    return this.#token;
  }

  /** A request to `path` (with query); JSON bodies. */
  fetch(
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
    signal?: AbortSignal,
  ) {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = this.#auth();
    if (token !== "") headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = contentType;
    return fetch(this.server + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      client: this.#client,
    } as RequestInit);
  }

  close(): void {
    this.#client?.close();
  }
}

/** What a watched object looks like for reload purposes: no status, no bookkeeping. */
function fingerprint(o: K8sObject): string {
  // deno-lint-ignore no-unused-vars
  const { resourceVersion, managedFields, ...meta } = (o.metadata ?? {}) as Record<string, unknown>;
  return JSON.stringify({ ...o, metadata: meta, status: undefined });
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/** Exponential backoff with jitter: 0.5 s × 2^n, at most 30 s. */
export function backoffMs(failures: number): number {
  const base = Math.min(30_000, 500 * 2 ** Math.min(failures, 10));
  return base / 2 + Math.random() * base / 2;
}

/** The list + watch of one kind. */
class Informer {
  readonly store = new Map<string, K8sObject>();
  #rv = "";
  #synced = false;
  readonly synced: Promise<void>;
  #resolveSynced!: () => void;

  constructor(
    private readonly client: KubeClient,
    readonly kind: Kind,
    private readonly path: string,
    private readonly query: string,
    private readonly onChange: () => void,
    private readonly signal: AbortSignal,
  ) {
    this.synced = new Promise((r) => this.#resolveSynced = r);
    void this.#run();
  }

  async #list(): Promise<void> {
    const next = new Map<string, K8sObject>();
    let cont = "";
    let rv = "";
    do {
      const q = `?limit=500${this.query}${cont ? "&continue=" + encodeURIComponent(cont) : ""}`;
      const res = await this.client.fetch("GET", this.path + q, undefined, undefined, this.signal);
      if (res.status !== 200) throw new Error(`list ${this.kind}: ${res.status} ${await res.text()}`);
      const body = await res.json();
      for (const o of body.items ?? []) {
        o.kind ??= this.kind;
        next.set(keyOf(o), o);
      }
      rv = body.metadata?.resourceVersion ?? "";
      cont = body.metadata?.continue ?? "";
    } while (cont !== "");
    let changed = next.size !== this.store.size;
    for (const [k, o] of next) {
      const old = this.store.get(k);
      if (old === undefined || fingerprint(old) !== fingerprint(o)) changed = true;
    }
    this.store.clear();
    for (const [k, o] of next) this.store.set(k, o);
    this.#rv = rv;
    if (!this.#synced) {
      this.#synced = true;
      this.#resolveSynced();
    } else if (changed) this.onChange();
  }

  /** One watch until it ends; returns "relist" on 410 Gone. */
  async #watch(): Promise<"again" | "relist"> {
    const q = `?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${
      encodeURIComponent(this.#rv)
    }${this.query}`;
    const res = await this.client.fetch("GET", this.path + q, undefined, undefined, this.signal);
    if (res.status === 410) {
      await res.body?.cancel();
      return "relist";
    }
    if (res.status !== 200 || res.body === null) {
      throw new Error(`watch ${this.kind}: ${res.status} ${await res.text()}`);
    }
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of res.body) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line === "") continue;
        const ev = JSON.parse(line) as { type: string; object: K8sObject & { code?: number } };
        if (ev.type === "ERROR") {
          if (ev.object?.code === 410) return "relist";
          throw new Error(`watch ${this.kind}: ${JSON.stringify(ev.object)}`);
        }
        const o = ev.object;
        if (o?.metadata?.resourceVersion) this.#rv = o.metadata.resourceVersion;
        if (ev.type === "BOOKMARK") continue;
        o.kind ??= this.kind;
        const k = keyOf(o);
        const old = this.store.get(k);
        if (ev.type === "DELETED") {
          if (this.store.delete(k)) this.onChange();
        } else if (ev.type === "ADDED" || ev.type === "MODIFIED") {
          this.store.set(k, o);
          if (old === undefined || fingerprint(old) !== fingerprint(o)) this.onChange();
        }
      }
    }
    return "again";
  }

  async #run(): Promise<void> {
    let failures = 0;
    let listed = false;
    while (!this.signal.aborted) {
      try {
        if (!listed) {
          await this.#list();
          listed = true;
        }
        const r = await this.#watch();
        if (r === "relist") {
          logger.debug("gateway_api: watch expired; listing again", { kind: this.kind });
          listed = false;
        }
        failures = 0;
      } catch (e) {
        if (this.signal.aborted) return;
        logger.warn("gateway_api: list/watch failed", {
          kind: this.kind,
          error: String(e),
          retry: failures + 1,
        });
        await sleep(backoffMs(failures++), this.signal);
      }
    }
  }
}

/** MicroTime as the API server writes it. */
export const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

/** Leader election on a Lease. */
export class LeaseElector {
  leader = false;
  #observed = { holder: "", renew: "", at: 0 };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(
    private readonly client: KubeClient,
    readonly namespace: string,
    readonly name: string,
    readonly identity: string,
    readonly durationMs: number,
    private readonly onLeader: () => void,
  ) {
    this.#tick();
  }

  get #path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases/${this.name}`;
  }

  #tick = async (): Promise<void> => {
    if (this.#closed) return;
    const was = this.leader;
    try {
      this.leader = await this.#tryAcquire();
    } catch (e) {
      logger.debug("gateway_api: lease check failed", { error: String(e) });
      if (Date.now() - this.#observed.at > this.durationMs) this.leader = false;
    }
    if (this.leader && !was) {
      logger.info("gateway_api: this replica writes status (lease acquired)", { identity: this.identity });
      this.onLeader();
    } else if (!this.leader && was) logger.info("gateway_api: lease lost", { identity: this.identity });
    if (this.#closed) return;
    this.#timer = setTimeout(this.#tick, Math.max(100, this.durationMs / 3));
  };

  async #tryAcquire(): Promise<boolean> {
    const now = Date.now();
    const seconds = Math.max(1, Math.round(this.durationMs / 1000));
    const res = await this.client.fetch("GET", this.#path);
    if (res.status === 404) {
      await res.body?.cancel();
      const created = await this.client.fetch(
        "POST",
        `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases`,
        {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.name, namespace: this.namespace },
          spec: {
            holderIdentity: this.identity,
            leaseDurationSeconds: seconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        },
      );
      await created.body?.cancel();
      if (created.status === 201 || created.status === 200) {
        this.#observed = { holder: this.identity, renew: "", at: now };
      }
      return created.status === 201 || created.status === 200;
    }
    if (res.status !== 200) throw new Error(`lease: ${res.status} ${await res.text()}`);
    const lease = await res.json();
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    if (holder !== this.#observed.holder || spec.renewTime !== this.#observed.renew) {
      this.#observed = { holder, renew: spec.renewTime ?? "", at: now };
    }
    const mine = holder === this.identity;
    const expired = holder === "" || now - this.#observed.at > (spec.leaseDurationSeconds ?? seconds) * 1000;
    if (!mine && !expired) return false;
    const next = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: seconds,
        renewTime: microTime(now),
        acquireTime: mine ? spec.acquireTime : microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      },
    };
    const put = await this.client.fetch("PUT", this.#path, next);
    await put.body?.cancel();
    if (put.status === 200) this.#observed = { holder: this.identity, renew: next.spec.renewTime, at: now };
    return put.status === 200;
  }

  /** Stops renewing; a held lease is released (holder cleared) so another replica takes over at once. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#closed = true;
    if (!this.leader) return;
    this.leader = false;
    try {
      const res = await this.client.fetch("GET", this.#path);
      if (res.status !== 200) return void await res.body?.cancel();
      const lease = await res.json();
      if (lease.spec?.holderIdentity !== this.identity) return;
      const put = await this.client.fetch("PUT", this.#path, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: "" },
      });
      await put.body?.cancel();
    } catch { /* best effort */ }
  }
}

function defaultNamespace(): string {
  const env = Deno.env.get("POD_NAMESPACE");
  if (env) return env;
  try {
    return Deno.readTextFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`).trim() || "default";
  } catch {
    return "default";
  }
}

function defaultServer(): string {
  const host = Deno.env.get("KUBERNETES_SERVICE_HOST") ?? "kubernetes.default.svc";
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT") ?? "443";
  return `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The API server source: informers for every kind, a Lease, status PATCHes. */
export class KubeSource {
  readonly client: KubeClient;
  /** The Lease election (null: a source that only reads, as `loom validate` uses). */
  readonly elector: LeaseElector | null;
  readonly #informers: Informer[];
  readonly #abort = new AbortController();
  #statuses: readonly StatusEntry[] = [];
  #sync: Promise<void>;
  /** PATCHes that failed (tests and logs). */
  failures = 0;

  constructor(
    readonly settings: KubernetesSourceConfig,
    readonly controller: string,
    onChange: () => void,
    elect = true,
  ) {
    this.client = new KubeClient(settings.server ?? defaultServer(), settings.token_file, settings.ca_file);
    this.#informers = KINDS.map((kind) => {
      const a = API_PATHS[kind];
      const ns = settings.namespace !== undefined && a.namespaced ? `/namespaces/${settings.namespace}` : "";
      const query = kind === "Secret" ? "&fieldSelector=" + encodeURIComponent("type=kubernetes.io/tls") : "";
      return new Informer(
        this.client,
        kind,
        `${a.prefix}${ns}/${a.plural}`,
        query,
        onChange,
        this.#abort.signal,
      );
    });
    const limit = settings.initial_sync_timeout;
    this.#sync = Promise.race([
      Promise.all(this.#informers.map((i) => i.synced)).then(() => {}),
      sleep(limit, this.#abort.signal).then(() => {
        const missing = this.#informers.filter((i) => i.store.size === 0).map((i) => i.kind);
        logger.warn("gateway_api: initial sync incomplete; serving what was listed", {
          missing,
          limit_ms: limit,
        });
      }),
    ]);
    const identity = settings.identity ?? Deno.env.get("POD_NAME") ??
      `${Deno.hostname()}-${crypto.randomUUID().slice(0, 8)}`;
    this.elector = !elect ? null : new LeaseElector(
      this.client,
      settings.lease.namespace ?? defaultNamespace(),
      settings.lease.name,
      identity,
      settings.lease.duration,
      () => void this.#write(),
    );
  }

  async snapshot(): Promise<ResourceSet> {
    await this.#sync;
    const out = emptyResources();
    for (const i of this.#informers) out[i.kind] = [...i.store.values()];
    return out;
  }

  publish(statuses: readonly StatusEntry[]): Promise<void> {
    this.#statuses = statuses;
    return this.#write();
  }

  async #write(): Promise<void> {
    if (!this.elector?.leader) return;
    const now = microTime(Date.now());
    for (const s of this.#statuses) {
      const a = API_PATHS[s.kind];
      const informer = this.#informers.find((i) => i.kind === s.kind)!;
      const current = informer.store.get(s.namespace ? `${s.namespace}/${s.name}` : s.name);
      const next = statusToWrite(s, current, this.controller, now);
      if (next === null) continue;
      const path = `${a.prefix}${
        s.namespace ? `/namespaces/${s.namespace}` : ""
      }/${a.plural}/${s.name}/status`;
      try {
        const res = await this.client.fetch("PATCH", path, { status: next }, "application/merge-patch+json");
        if (res.status === 200 && current !== undefined) current.status = (await res.json()).status ?? next;
        else await res.body?.cancel();
        if (res.status !== 200 && res.status !== 404) {
          this.failures++;
          logger.warn("gateway_api: status PATCH failed", { object: path, status: res.status });
        }
      } catch (e) {
        this.failures++;
        logger.warn("gateway_api: status PATCH failed", { object: path, error: String(e) });
      }
    }
  }

  close(): void {
    this.#abort.abort();
    void (this.elector?.close() ?? Promise.resolve()).finally(() => this.client.close());
  }
}
