/**
 * A stand-in for the Kubernetes API server on loopback (Deno.serve) that
 * speaks the real list/watch protocol for the kinds Loom reads: collection
 * GETs (paginated with `limit` / `continue`, the list's resourceVersion),
 * `?watch=1&resourceVersion=N` as chunked newline-delimited JSON events
 * (ADDED, MODIFIED, DELETED, BOOKMARK when `allowWatchBookmarks=true`), 410
 * Gone for a resourceVersion older than the last compaction (as the answer,
 * or as an ERROR event), merge-patches of the `status` subresource, and
 * coordination.k8s.io/v1 Leases (create, get, update with resourceVersion
 * conflicts). Requests need `Authorization: Bearer <a known token>`.
 */

/** An object as stored. */
// deno-lint-ignore no-explicit-any
export type Obj = any;

interface Event {
  rv: number;
  collection: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: Obj;
}

/** Where each kind lives (collection path without namespace). */
export const COLLECTIONS: Record<string, string> = {
  GatewayClass: "/apis/gateway.networking.k8s.io/v1/gatewayclasses",
  Gateway: "/apis/gateway.networking.k8s.io/v1/gateways",
  HTTPRoute: "/apis/gateway.networking.k8s.io/v1/httproutes",
  GRPCRoute: "/apis/gateway.networking.k8s.io/v1/grpcroutes",
  ReferenceGrant: "/apis/gateway.networking.k8s.io/v1beta1/referencegrants",
  Service: "/api/v1/services",
  EndpointSlice: "/apis/discovery.k8s.io/v1/endpointslices",
  Secret: "/api/v1/secrets",
  Namespace: "/api/v1/namespaces",
  Lease: "/apis/coordination.k8s.io/v1/leases",
};

const KIND_OF: Record<string, string> = Object.fromEntries(
  Object.entries(COLLECTIONS).map(([k, p]) => [p.slice(p.lastIndexOf("/") + 1), k]),
);

/** A running stand-in. */
export class KubeStub {
  readonly objects = new Map<string, Map<string, Obj>>(); // collection → key → object
  rv = 1;
  /** Watches from a version at or below this get 410 Gone. */
  compactedRv = 0;
  /** true: a stale watch gets 200 and an ERROR event with code 410 instead of a 410 answer. */
  goneAsEvent = false;
  readonly events: Event[] = [];
  readonly lists = new Map<string, number>();
  readonly watches = new Map<string, number>();
  /** Status PATCHes: path, the caller's token, the body. */
  readonly patches: { path: string; token: string; body: Obj }[] = [];
  readonly #streams = new Set<{ collection: string; ns?: string; send(e: string): void; close(): void }>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  #bookmarks: ReturnType<typeof setInterval>;

  constructor(readonly tokens: string[], bookmarkMs = 200) {
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => this.#handle(req));
    this.#bookmarks = setInterval(() => {
      for (const s of this.#streams) {
        s.send(JSON.stringify({
          type: "BOOKMARK",
          object: {
            kind: KIND_OF[s.collection.slice(s.collection.lastIndexOf("/") + 1)],
            metadata: { resourceVersion: String(this.rv) },
          },
        }));
      }
    }, bookmarkMs);
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  #collection(kind: string): Map<string, Obj> {
    const c = COLLECTIONS[kind];
    let m = this.objects.get(c);
    if (m === undefined) this.objects.set(c, m = new Map());
    return m;
  }

  /** Creates or replaces an object (generation bumped when its spec changed); emits its event. */
  put(o: Obj): Obj {
    const m = this.#collection(o.kind);
    const key = `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    const old = m.get(key);
    const next = structuredClone(o);
    next.metadata.resourceVersion = String(++this.rv);
    next.metadata.uid ??= old?.metadata.uid ?? crypto.randomUUID();
    next.metadata.creationTimestamp ??= old?.metadata.creationTimestamp ?? new Date().toISOString();
    const specChanged = JSON.stringify(old?.spec) !== JSON.stringify(o.spec);
    next.metadata.generation = old === undefined ? 1 : old.metadata.generation + (specChanged ? 1 : 0);
    if (old !== undefined && next.status === undefined) next.status = old.status;
    m.set(key, next);
    this.#emit(COLLECTIONS[o.kind], old === undefined ? "ADDED" : "MODIFIED", next);
    return next;
  }

  get(kind: string, ns: string | undefined, name: string): Obj | undefined {
    return this.#collection(kind).get(`${ns ?? ""}/${name}`);
  }

  delete(kind: string, ns: string | undefined, name: string): void {
    const m = this.#collection(kind);
    const key = `${ns ?? ""}/${name}`;
    const old = m.get(key);
    if (old === undefined) return;
    m.delete(key);
    this.#emit(COLLECTIONS[kind], "DELETED", {
      ...old,
      metadata: { ...old.metadata, resourceVersion: String(++this.rv) },
    });
  }

  #emit(collection: string, type: Event["type"], object: Obj): void {
    const e = { rv: Number(object.metadata.resourceVersion), collection, type, object };
    this.events.push(e);
    for (const s of this.#streams) {
      if (s.collection === collection && (s.ns === undefined || s.ns === object.metadata.namespace)) {
        s.send(JSON.stringify({ type, object }));
      }
    }
  }

  /** Forgets history up to now (watches from older versions get 410) and ends every watch. */
  compact(): void {
    this.compactedRv = this.rv;
    this.dropWatches();
  }

  /** Ends every open watch (as an API server restart or a watch timeout would). */
  dropWatches(): void {
    for (const s of [...this.#streams]) s.close();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const token = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
    if (!this.tokens.includes(token)) return status(401, "Unauthorized");
    // /<prefix>/namespaces/<ns>/<plural>[/<name>[/status]]  or  /<prefix>/<plural>[/<name>[/status]]
    const m =
      /^(\/apis?\/(?:[^/]+\/)?v1(?:beta1)?)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?(\/status)?$/
        .exec(url.pathname);
    if (m === null) return status(404, "NotFound");
    const [, prefix, ns, plural, name, sub] = m;
    const collection = `${prefix}/${plural}`;
    const kind = KIND_OF[plural];
    if (kind === undefined || COLLECTIONS[kind] !== collection) return status(404, "NotFound");
    const store = this.#collection(kind);
    if (name === undefined && req.method === "GET") {
      if (url.searchParams.get("watch") === "1") return this.#watch(collection, ns, url);
      this.lists.set(kind, (this.lists.get(kind) ?? 0) + 1);
      const all = [...store.values()].filter((o) => ns === undefined || o.metadata.namespace === ns)
        .sort((a, b) => a.metadata.name < b.metadata.name ? -1 : 1);
      const limit = Number(url.searchParams.get("limit") ?? "0") || all.length;
      const from = Number(url.searchParams.get("continue") ?? "0");
      const items = all.slice(from, from + limit);
      const more = from + limit < all.length;
      return json(200, {
        kind: `${kind}List`,
        metadata: { resourceVersion: String(this.rv), ...(more ? { continue: String(from + limit) } : {}) },
        items,
      });
    }
    if (name === undefined && req.method === "POST") {
      const body = await req.json();
      if (store.has(`${ns ?? ""}/${body.metadata.name}`)) return status(409, "AlreadyExists");
      return json(201, this.put({ ...body, kind, metadata: { ...body.metadata, namespace: ns } }));
    }
    const key = `${ns ?? ""}/${name}`;
    const cur = store.get(key);
    if (cur === undefined) return status(404, "NotFound");
    if (req.method === "GET") return json(200, cur);
    if (req.method === "PUT") {
      const body = await req.json();
      if (body.metadata?.resourceVersion !== cur.metadata.resourceVersion) return status(409, "Conflict");
      return json(200, this.put({ ...body, kind }));
    }
    if (req.method === "PATCH" && sub === "/status") {
      if (req.headers.get("content-type") !== "application/merge-patch+json") {
        return status(415, "UnsupportedMediaType");
      }
      const body = await req.json();
      this.patches.push({ path: url.pathname, token, body });
      const next = structuredClone(cur);
      next.status = body.status === null ? undefined : { ...cur.status, ...body.status };
      next.metadata.resourceVersion = String(++this.rv);
      store.set(key, next);
      this.#emit(collection, "MODIFIED", next);
      return json(200, next);
    }
    return status(405, "MethodNotAllowed");
  }

  #watch(collection: string, ns: string | undefined, url: URL): Response {
    const kind = KIND_OF[collection.slice(collection.lastIndexOf("/") + 1)];
    this.watches.set(kind, (this.watches.get(kind) ?? 0) + 1);
    const from = Number(url.searchParams.get("resourceVersion") ?? "0");
    const gone = {
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      reason: "Expired",
      code: 410,
      message: "too old resource version",
    };
    if (from < this.compactedRv && !this.goneAsEvent) return json(410, gone);
    const enc = new TextEncoder();
    let entry: { collection: string; ns?: string; send(e: string): void; close(): void };
    const body = new ReadableStream<Uint8Array>({
      start: (ctrl) => {
        let open = true;
        entry = {
          collection,
          ns,
          send: (e) => {
            if (open) ctrl.enqueue(enc.encode(e + "\n"));
          },
          close: () => {
            if (!open) return;
            open = false;
            this.#streams.delete(entry);
            ctrl.close();
          },
        };
        if (from < this.compactedRv) {
          entry.send(JSON.stringify({ type: "ERROR", object: gone }));
          entry.close();
          return;
        }
        for (const e of this.events) {
          if (
            e.rv > from && e.collection === collection &&
            (ns === undefined || e.object.metadata.namespace === ns)
          ) {
            entry.send(JSON.stringify({ type: e.type, object: e.object }));
          }
        }
        this.#streams.add(entry);
      },
      cancel: () => {
        this.#streams.delete(entry);
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  }

  async close(): Promise<void> {
    clearInterval(this.#bookmarks);
    this.dropWatches();
    await this.#server.shutdown();
  }
}

function json(code: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status: code,
    headers: { "content-type": "application/json" },
  });
}

function status(code: number, reason: string): Response {
  return json(code, { kind: "Status", apiVersion: "v1", status: "Failure", reason, code });
}
