import assert from "node:assert/strict";
import { effectiveHostnames, hostnameScore, intersectHostname } from "./hostnames.ts";
import { translate, type TranslateOptions } from "./translate.ts";
import { emptyResources, type K8sObject, type ResourceSet } from "./types.ts";
import { parseManifestText } from "./manifests.ts";
import { backoffMs, microTime } from "./kube.ts";
import { Router } from "../router/mod.ts";
import { statusToWrite } from "./status.ts";

const OPTS: TranslateOptions = {
  controllerName: "loom.dev/gateway-controller",
  listenHost: "127.0.0.1",
  portMap: {},
  certDir: "/certs",
  middlewareNames: new Set(),
  pluginNames: new Set(["auth"]),
};

function resources(
  extra: K8sObject[],
  listeners: unknown[] = [{ name: "http", port: 80, protocol: "HTTP" }],
) {
  const res = emptyResources();
  const docs: K8sObject[] = [
    { kind: "GatewayClass", metadata: { name: "loom" }, spec: { controllerName: OPTS.controllerName } },
    {
      kind: "Gateway",
      metadata: { name: "gw", namespace: "ns" },
      spec: { gatewayClassName: "loom", listeners },
    },
    {
      kind: "Service",
      metadata: { name: "svc", namespace: "ns" },
      spec: { ports: [{ name: "http", port: 8080 }] },
    },
    {
      kind: "EndpointSlice",
      metadata: { name: "svc-1", namespace: "ns", labels: { "kubernetes.io/service-name": "svc" } },
      endpoints: [
        { addresses: ["10.0.0.1"], conditions: { ready: true } },
        { addresses: ["10.0.0.2"], conditions: { ready: false } },
        { addresses: ["fd00::1"] },
      ],
      ports: [{ name: "http", port: 9000 }],
    },
    ...extra,
  ];
  for (const d of docs) (res[d.kind as keyof ResourceSet] as K8sObject[]).push(d);
  return res;
}

const route = (name: string, spec: Record<string, unknown>, kind = "HTTPRoute"): K8sObject => ({
  kind,
  metadata: { name, namespace: "ns", generation: 3 },
  spec: { parentRefs: [{ name: "gw" }], ...spec },
});

Deno.test("k8s hostnames: intersection with listener hostnames, wildcards both ways", () => {
  assert.equal(intersectHostname("a.example.com", undefined), "a.example.com");
  assert.equal(intersectHostname("a.example.com", "*.example.com"), "a.example.com");
  assert.equal(intersectHostname("example.com", "*.example.com"), null);
  assert.equal(intersectHostname("*.example.com", "a.example.com"), "a.example.com");
  assert.equal(intersectHostname("*.example.com", "*.a.example.com"), "*.a.example.com");
  assert.equal(intersectHostname("*.a.example.com", "*.example.com"), "*.a.example.com");
  assert.equal(intersectHostname("*.example.com", "*.example.org"), null);
  assert.deepEqual(effectiveHostnames([], "Foo.com"), ["foo.com"]);
  assert.deepEqual(effectiveHostnames(["x.com", "*.foo.com"], "a.foo.com"), ["a.foo.com"]);
  assert.ok(hostnameScore("a.b") > hostnameScore("*.longer.example.com"));
  assert.ok(hostnameScore("*.b.example.com") > hostnameScore("*.example.com"));
  assert.equal(hostnameScore(undefined), 0);
});

Deno.test("k8s translate: listeners, upstreams from EndpointSlices, route fields", async () => {
  const t = await translate(
    resources([
      route("r", {
        hostnames: ["app.example"],
        rules: [{
          matches: [{
            path: { type: "PathPrefix", value: "/api/" },
            method: "GET",
            headers: [{ name: "X-A", value: "1" }],
          }],
          timeouts: { request: "2s", backendRequest: "500ms" },
          filters: [{
            type: "ExtensionRef",
            extensionRef: { group: "loom.dev", kind: "Plugin", name: "auth" },
          }],
          backendRefs: [{ name: "svc", port: 8080 }],
        }],
      }),
    ]),
    OPTS,
  );
  assert.deepEqual(t.listeners, [{ name: "gw-80", address: "127.0.0.1:80", protocol: "http" }]);
  assert.deepEqual(t.upstreams, [{
    name: "k8s/ns/svc:8080",
    endpoints: ["10.0.0.1:9000", "[fd00::1]:9000"],
  }]);
  assert.equal(t.routes.length, 1);
  const r = t.routes[0];
  assert.equal(r.path, "/api/*");
  assert.equal(r.host, "app.example");
  assert.deepEqual(r.listeners, ["gw-80"]);
  assert.deepEqual(r.methods, ["GET"]);
  assert.deepEqual(r.headers, { "x-a": { exact: "1" } });
  assert.equal(r.upstream, "k8s/ns/svc:8080");
  assert.equal(r.timeout, "2s");
  assert.equal(r.per_try_timeout, "500ms");
  assert.deepEqual(r.plugins, ["auth"]);
  const st = t.statuses.find((s) => s.kind === "HTTPRoute")!;
  assert.equal(st.status.parents[0].conditions[0].observedGeneration, 3);
});

Deno.test("k8s translate: the spec's precedence as priorities, in the router", async () => {
  const rule = (match: Record<string, unknown>, tag: string) => ({
    matches: [match],
    backendRefs: [{ name: "svc", port: 8080, weight: 1 }],
    filters: [{
      type: "RequestHeaderModifier",
      requestHeaderModifier: { set: [{ name: "x-tag", value: tag }] },
    }],
  });
  const t = await translate(
    resources([
      route("a", {
        rules: [
          rule({ path: { type: "PathPrefix", value: "/" } }, "root"),
          rule({ path: { type: "PathPrefix", value: "/a" } }, "prefix-a"),
          rule({ path: { type: "Exact", value: "/a/b" } }, "exact"),
          rule({ path: { type: "PathPrefix", value: "/a" }, method: "POST" }, "method"),
          rule({ path: { type: "PathPrefix", value: "/a" }, headers: [{ name: "h", value: "1" }] }, "header"),
          rule(
            { path: { type: "PathPrefix", value: "/a" }, queryParams: [{ name: "q", value: "1" }] },
            "query",
          ),
          rule({ path: { type: "RegularExpression", value: "/a/[0-9]+" } }, "regex"),
        ],
      }),
      route("host", {
        hostnames: ["h.example"],
        rules: [rule({ path: { type: "PathPrefix", value: "/" } }, "host")],
      }),
    ]),
    OPTS,
  );
  // deno-lint-ignore no-explicit-any
  const routes = t.routes as any[];
  const router = new Router(routes.map((r, order) => ({
    id: r.id,
    host: r.host,
    path: r.path,
    pathRegex: r.path_regex,
    methods: r.methods,
    headers: Object.fromEntries(
      Object.entries(r.headers ?? {}).map((
        [k, v],
      ) => [k, { kind: "exact", value: (v as { exact: string }).exact }]),
    ),
    query: Object.fromEntries(
      Object.entries(r.query_params ?? {}).map((
        [k, v],
      ) => [k, { kind: "exact", value: (v as { exact: string }).exact }]),
    ),
    listeners: r.listeners,
    priority: r.priority,
    order,
    data: r.middleware[0].headers.request.set["x-tag"] as string,
  })));
  const pick = (
    path: string,
    o: { method?: string; host?: string; headers?: Record<string, string>; query?: string } = {},
  ) =>
    router.match({
      method: o.method ?? "GET",
      host: o.host ?? "x.example",
      path,
      query: o.query ?? "",
      header: (n) => o.headers?.[n],
      listener: "gw-80",
    })?.route.data;
  assert.equal(pick("/a/b"), "exact");
  assert.equal(pick("/a/b", { method: "POST" }), "exact");
  assert.equal(pick("/a/12"), "regex");
  assert.equal(pick("/a/c", { method: "POST", headers: { h: "1" } }), "method");
  assert.equal(pick("/a/c", { headers: { h: "1" }, query: "q=1" }), "header");
  assert.equal(pick("/a/c", { query: "q=1" }), "query");
  assert.equal(pick("/a/c"), "prefix-a");
  assert.equal(pick("/ab"), "root");
  assert.equal(pick("/a/b", { host: "h.example" }), "host");
  assert.equal(
    router.match({
      method: "GET",
      host: "x",
      path: "/a",
      query: "",
      header: () => undefined,
      listener: "other",
    }),
    null,
  );
});

Deno.test("k8s translate: GRPCRoute methods onto /service/method paths", async () => {
  const t = await translate(
    resources([
      route("g", {
        rules: [
          {
            matches: [{ method: { service: "pkg.Svc", method: "Get" } }],
            backendRefs: [{ name: "svc", port: 8080 }],
          },
          { matches: [{ method: { service: "pkg.Svc" } }], backendRefs: [{ name: "svc", port: 8080 }] },
          { matches: [{ method: { method: "Ping" } }], backendRefs: [{ name: "svc", port: 8080 }] },
          {
            matches: [{ method: { type: "RegularExpression", service: "pkg\\..*", method: "L.*" } }],
            backendRefs: [{ name: "svc", port: 8080 }],
          },
        ],
      }, "GRPCRoute"),
    ]),
    OPTS,
  );
  // deno-lint-ignore no-explicit-any
  const byPath = (t.routes as any[]).map((r) => [r.path, r.path_regex ?? ""]);
  assert.deepEqual(byPath, [
    ["/pkg.Svc/Get", ""],
    ["/*", "/pkg\\..*/L.*"], // characters of service, then of method: the pattern's count
    ["/pkg.Svc/{method}", ""],
    ["/*", "/[^/]+/Ping"],
  ]);
  assert.equal(t.listeners[0].protocol, "h2c");
});

Deno.test("k8s translate: malformed resources get conditions, never an exception", async () => {
  const weird: K8sObject[] = [
    route("r1", { rules: "nope" }),
    route("r2", { rules: [{ matches: [{ path: { type: "Exact", value: 7 } }] }] }),
    route("r3", { parentRefs: "x" }),
    route("r4", { rules: [{ backendRefs: [{ name: "svc", port: 8080, filters: [{ type: "Bogus" }] }] }] }),
    {
      kind: "Gateway",
      metadata: { name: "g2", namespace: "ns" },
      spec: { gatewayClassName: "loom", listeners: [null, 3] },
    },
    {
      kind: "EndpointSlice",
      metadata: { name: "e", namespace: "ns", labels: { "kubernetes.io/service-name": "svc" } },
      ports: 5 as unknown as [],
    },
  ];
  const t = await translate(resources(weird), OPTS);
  const accepted = (name: string) =>
    t.statuses.find((s) => s.name === name)?.status.parents[0].conditions.find((c: { type: string }) =>
      c.type === "Accepted"
    );
  assert.equal(accepted("r1").reason, "UnsupportedValue");
  assert.equal(accepted("r2").reason, "UnsupportedValue");
  assert.equal(accepted("r4").reason, "UnsupportedValue");
  assert.equal(t.statuses.find((s) => s.name === "r3"), undefined);
});

Deno.test("k8s manifests: multi-document YAML, Lists, defaults, problems", () => {
  const res = emptyResources();
  const problems: { file: string; message: string }[] = [];
  parseManifestText(
    [
      "kind: Service\nmetadata: {name: a}\n",
      "kind: List\nitems:\n  - {kind: Namespace, metadata: {name: n}}\n  - {kind: Deployment, metadata: {name: d}}\n",
      "kind: HTTPRoute\nmetadata: {}\n",
      "kind: [\n",
    ].join("---\n"),
    "f.yaml",
    res,
    problems,
  );
  assert.equal(res.Service[0].metadata?.namespace, "default");
  assert.equal(res.Namespace[0].metadata?.namespace, undefined);
  assert.equal(problems.length, 2);
});

Deno.test("k8s status: transition times kept, other controllers' parents kept, no-op detected", () => {
  const cur: K8sObject = {
    status: {
      parents: [
        { parentRef: { name: "x" }, controllerName: "other", conditions: [] },
        {
          parentRef: { name: "gw" },
          controllerName: "c",
          conditions: [{
            type: "Accepted",
            status: "True",
            reason: "Accepted",
            message: "m",
            lastTransitionTime: "t0",
          }],
        },
      ],
    },
  };
  const entry = {
    kind: "HTTPRoute" as const,
    namespace: "ns",
    name: "r",
    status: {
      parents: [{
        parentRef: { name: "gw" },
        controllerName: "c",
        conditions: [{ type: "Accepted", status: "True" as const, reason: "Accepted", message: "m" }],
      }],
    },
  };
  assert.equal(statusToWrite(entry, cur, "c", "t1"), null);
  entry.status.parents[0].conditions[0].message = "changed";
  const next = statusToWrite(entry, cur, "c", "t1");
  assert.equal(next.parents.length, 2);
  assert.equal(next.parents[1].conditions[0].lastTransitionTime, "t0");
  assert.equal(microTime(0), "1970-01-01T00:00:00.000000Z");
  assert.ok(backoffMs(0) >= 250 && backoffMs(0) <= 500 && backoffMs(20) <= 30_000);
});
