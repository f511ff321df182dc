import assert from "node:assert/strict";
import type { ValueMatcher } from "./types.ts";
import { normalizePath } from "./path.ts";
import { Router } from "./router.ts";
import type { MatchInput, RouteSpec } from "./types.ts";

type R = Omit<RouteSpec<string>, "order" | "data"> & { order?: number };

interface Req {
  path: string;
  method?: string;
  host?: string;
  headers?: Record<string, string>;
  query?: string;
  /** Expected route id; null = no match; "400" = normalizePath rejects the path. */
  want: string | null;
  params?: Record<string, string>;
  prefix?: string;
  rest?: string;
}

interface Case {
  name: string;
  routes: R[];
  reqs: Req[];
}

function build(routes: R[]): Router<string> {
  return new Router(routes.map((r, i) => ({ ...r, order: r.order ?? i, data: `data:${r.id}` })));
}

function input(path: string, r: Req): MatchInput {
  const headers = r.headers ?? {};
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    method: r.method ?? "GET",
    host: r.host ?? "example.com",
    path,
    query: r.query ?? "",
    header: (name) => lower[name],
  };
}

const exact = (value: string): ValueMatcher => ({ kind: "exact", value });
const regex = (pattern: string): ValueMatcher => ({ kind: "regex", pattern });
const present: ValueMatcher = { kind: "present" };

const cases: Case[] = [
  {
    name: "statics",
    routes: [{ id: "root", path: "/" }, { id: "api", path: "/api" }, { id: "users", path: "/api/users" }, {
      id: "users/",
      path: "/api/users/",
    }],
    reqs: [
      { path: "/", want: "root", prefix: "" },
      { path: "/api", want: "api", params: {}, prefix: "/api", rest: "" },
      { path: "/api/users", want: "users", prefix: "/api/users" },
      { path: "/api/users/", want: "users/", prefix: "/api/users" },
      { path: "/api/user", want: null },
      { path: "/api/usersx", want: null },
      { path: "/API", want: null },
      { path: "/api/users/1", want: null },
    ],
  },
  {
    name: "trailing slash is significant",
    routes: [{ id: "exact", path: "/exact" }, { id: "dir", path: "/dir/" }],
    reqs: [
      { path: "/exact", want: "exact" },
      { path: "/exact/", want: null },
      { path: "/dir/", want: "dir" },
      { path: "/dir", want: null },
    ],
  },
  {
    name: "params, both syntaxes",
    routes: [{ id: "user", path: "/users/{id}" }, { id: "repo", path: "/orgs/:org/repos/{repo}" }],
    reqs: [
      { path: "/users/42", want: "user", params: { id: "42" }, prefix: "/users", rest: "" },
      { path: "/orgs/deno/repos/std", want: "repo", params: { org: "deno", repo: "std" }, prefix: "/orgs" },
      { path: "/users/", want: null },
      { path: "/users", want: null },
      { path: "/users/42/", want: null },
      { path: "/users/42/x", want: null },
      { path: "/users/caf%C3%A9", want: "user", params: { id: "café" } },
    ],
  },
  {
    name: "catch-alls: unnamed, named, prefix-style",
    routes: [
      { id: "static", path: "/static/*" },
      { id: "files", path: "/files/{path...}" },
      { id: "v1", path: "/api/v1/*" },
      { id: "tenant", path: "/t/{tenant}/api/*" },
      { id: "all", path: "/*" },
    ],
    reqs: [
      {
        path: "/static/css/a.css",
        want: "static",
        params: { "*": "css/a.css" },
        prefix: "/static",
        rest: "css/a.css",
      },
      { path: "/static/x", want: "static", rest: "x" },
      { path: "/static/", want: "static", params: { "*": "" }, prefix: "/static", rest: "" },
      { path: "/static", want: "static", params: { "*": "" }, prefix: "/static", rest: "" },
      { path: "/staticx", want: "all", rest: "staticx", prefix: "" },
      { path: "/files/a/b/c", want: "files", params: { path: "a/b/c" }, rest: "a/b/c", prefix: "/files" },
      { path: "/api/v1", want: "v1", prefix: "/api/v1", rest: "" },
      { path: "/api/v1/users/7", want: "v1", prefix: "/api/v1", rest: "users/7" },
      {
        path: "/t/acme/api/x/y",
        want: "tenant",
        params: { tenant: "acme", "*": "x/y" },
        prefix: "/t/acme/api",
        rest: "x/y",
      },
      {
        path: "/t/acme/api",
        want: "tenant",
        params: { tenant: "acme", "*": "" },
        prefix: "/t/acme/api",
        rest: "",
      },
      { path: "/", want: "all", params: { "*": "" }, prefix: "", rest: "" },
      { path: "/anything/else", want: "all", rest: "anything/else" },
    ],
  },
  ...[false, true].flatMap((reversed): Case[] => {
    const order = <X>(xs: X[]) => reversed ? [...xs].reverse() : xs;
    const tag = reversed ? " (reverse insertion)" : "";
    return [
      {
        name: "node split: /api/users + /api/orders" + tag,
        routes: order([{ id: "users", path: "/api/users" }, { id: "orders", path: "/api/orders" }]),
        reqs: [
          { path: "/api/users", want: "users" },
          { path: "/api/orders", want: "orders" },
          { path: "/api/o", want: null },
          { path: "/api/", want: null },
        ],
      },
      {
        name: "node split: /api/user + /api/users + /api/user/{id}" + tag,
        routes: order([
          { id: "user", path: "/api/user" },
          { id: "users", path: "/api/users" },
          { id: "one", path: "/api/user/{id}" },
        ]),
        reqs: [
          { path: "/api/user", want: "user" },
          { path: "/api/users", want: "users" },
          { path: "/api/user/9", want: "one", params: { id: "9" } },
          { path: "/api/use", want: null },
          { path: "/api/userss", want: null },
        ],
      },
      {
        name: "param next to static, with backtracking" + tag,
        routes: order([
          { id: "new", path: "/users/new" },
          { id: "byId", path: "/users/{id}" },
          { id: "posts", path: "/users/{id}/posts" },
          { id: "newest", path: "/users/newest/feed" },
        ]),
        reqs: [
          { path: "/users/new", want: "new", params: {} },
          { path: "/users/42", want: "byId", params: { id: "42" } },
          { path: "/users/new/posts", want: "posts", params: { id: "new" } },
          { path: "/users/newest", want: "byId", params: { id: "newest" } },
          { path: "/users/newest/feed", want: "newest" },
          { path: "/users/newest/posts", want: "posts", params: { id: "newest" } },
          { path: "/users/ne", want: "byId", params: { id: "ne" } },
        ],
      },
      {
        name: "wildcard at the same level as statics and params" + tag,
        routes: order([
          { id: "all", path: "/api/*" },
          { id: "health", path: "/api/health" },
          { id: "item", path: "/api/{x}" },
          { id: "api", path: "/api" },
        ]),
        reqs: [
          { path: "/api/health", want: "health" },
          { path: "/api/foo", want: "item", params: { x: "foo" } },
          { path: "/api/foo/bar", want: "all", rest: "foo/bar" },
          { path: "/api/health/x", want: "all", rest: "health/x" },
          { path: "/api", want: "api" },
          { path: "/api/", want: "all", rest: "" },
        ],
      },
    ];
  }),
  {
    name: "/api/* alone matches /api and /api/ (bare prefix)",
    routes: [{ id: "all", path: "/api/*" }, { id: "p", path: "/{x}" }],
    reqs: [
      { path: "/api", want: "all", rest: "", prefix: "/api" },
      { path: "/api/", want: "all", rest: "" },
      { path: "/apix", want: "p" },
    ],
  },
  {
    name: "host: exact > wildcard > none",
    routes: [
      { id: "any", path: "/x" },
      { id: "wild", path: "/x", host: "*.example.com" },
      { id: "deep", path: "/x", host: "*.eu.example.com" },
      { id: "exact", path: "/x", host: "API.Example.com" },
    ],
    reqs: [
      { path: "/x", host: "api.example.com", want: "exact" },
      { path: "/x", host: "foo.example.com", want: "wild" },
      { path: "/x", host: "a.b.example.com", want: "wild" },
      { path: "/x", host: "a.eu.example.com", want: "deep" },
      { path: "/x", host: "example.com", want: "any" },
      { path: "/x", host: "badexample.com", want: "any" },
      { path: "/x", host: "other.org", want: "any" },
    ],
  },
  {
    name: "host rules do not beat path specificity, priority beats host",
    routes: [
      { id: "hostWild", path: "/h/*", host: "api.example.com" },
      { id: "anyStatic", path: "/h/status" },
      { id: "hostOnly", path: "/only", host: "api.example.com" },
      { id: "anyPrio", path: "/p", priority: 10 },
      { id: "hostP", path: "/p", host: "api.example.com" },
    ],
    reqs: [
      { path: "/h/status", host: "api.example.com", want: "anyStatic" },
      { path: "/h/other", host: "api.example.com", want: "hostWild" },
      { path: "/h/other", host: "www.example.com", want: null },
      { path: "/only", host: "www.example.com", want: null },
      { path: "/p", host: "api.example.com", want: "anyPrio" },
    ],
  },
  {
    name: "methods",
    routes: [
      { id: "get", path: "/m", methods: ["GET"] },
      { id: "post", path: "/m", methods: ["POST"] },
      { id: "onlyPut", path: "/put", methods: ["put"] },
      { id: "anyMethod", path: "/mixed" },
      { id: "getMixed", path: "/mixed", methods: ["GET", "HEAD"] },
    ],
    reqs: [
      { path: "/m", method: "GET", want: "get" },
      { path: "/m", method: "POST", want: "post" },
      { path: "/m", method: "DELETE", want: null },
      { path: "/put", method: "PUT", want: "onlyPut" },
      { path: "/mixed", method: "HEAD", want: "getMixed" },
      { path: "/mixed", method: "PATCH", want: "anyMethod" },
    ],
  },
  {
    name: "headers: exact, regex, present, names case-insensitive",
    routes: [
      { id: "plain", path: "/h" },
      { id: "canary", path: "/h", headers: { "X-Env": exact("canary") } },
      { id: "mobile", path: "/h", headers: { "user-agent": regex("Mobile") } },
      { id: "authed", path: "/h", headers: { Authorization: present } },
      { id: "anchored", path: "/a", headers: { "x-v": regex("^v[0-9]+$") } },
      { id: "both", path: "/h", headers: { "x-env": exact("canary"), authorization: present } },
    ],
    reqs: [
      { path: "/h", want: "plain" },
      { path: "/h", headers: { "x-env": "canary" }, want: "canary" },
      { path: "/h", headers: { "x-env": "Canary" }, want: "plain" },
      { path: "/h", headers: { "user-agent": "Foo Mobile Safari" }, want: "mobile" },
      { path: "/h", headers: { authorization: "" }, want: "authed" },
      { path: "/h", headers: { "x-env": "canary", authorization: "Bearer x" }, want: "both" },
      { path: "/a", headers: { "x-v": "v12" }, want: "anchored" },
      { path: "/a", headers: { "x-v": "xv12" }, want: null },
      { path: "/a", want: null },
    ],
  },
  {
    name: "matcher rejection backtracks to a less specific pattern",
    routes: [
      { id: "beta", path: "/b/{x}", headers: { "x-beta": present } },
      { id: "fallback", path: "/b/*" },
      { id: "posts", path: "/users/{id}/posts", methods: ["POST"] },
      { id: "newAny", path: "/users/new/{any...}", methods: ["GET"] },
    ],
    reqs: [
      { path: "/b/1", headers: { "x-beta": "1" }, want: "beta", params: { x: "1" } },
      { path: "/b/1", want: "fallback", rest: "1" },
      { path: "/users/new/posts", method: "GET", want: "newAny", params: { any: "posts" } },
      { path: "/users/new/posts", method: "POST", want: "posts", params: { id: "new" } },
      { path: "/users/7/posts", method: "POST", want: "posts" },
      { path: "/users/7/posts", method: "GET", want: null },
    ],
  },
  {
    name: "query matchers",
    routes: [
      { id: "plain", path: "/q" },
      { id: "v2", path: "/q", query: { version: exact("2") } },
      { id: "name", path: "/q", query: { name: exact("a b/c") } },
      { id: "re", path: "/q", query: { id: regex("^[0-9]+$") } },
      { id: "debug", path: "/q", query: { debug: present } },
    ],
    reqs: [
      { path: "/q", want: "plain" },
      { path: "/q", query: "version=2", want: "v2" },
      { path: "/q", query: "version=3", want: "plain" },
      { path: "/q", query: "version=2&version=3", want: "v2" },
      { path: "/q", query: "version=3&version=2", want: "plain" },
      { path: "/q", query: "name=a+b%2Fc", want: "name" },
      { path: "/q", query: "id=123", want: "re" },
      { path: "/q", query: "id=12a", want: "plain" },
      { path: "/q", query: "debug", want: "debug" },
      { path: "/q", query: "x=1&debug=", want: "debug" },
      { path: "/q", query: "%64ebug=1", want: "debug" },
      { path: "/q", query: "bad=%zz&debug", want: "debug" },
    ],
  },
  {
    name: "explicit priority overrides specificity",
    routes: [
      { id: "exact", path: "/p/exact" },
      { id: "wild", path: "/p/*", priority: 5 },
      { id: "deep", path: "/x/y/z" },
      { id: "params", path: "/{a}/{b}/{c}", priority: 1 },
      { id: "hiRejected", path: "/r/*", priority: 9, methods: ["POST"] },
      { id: "mid", path: "/r/{x}", priority: 3 },
      { id: "low", path: "/r/static" },
    ],
    reqs: [
      { path: "/p/exact", want: "wild", rest: "exact" },
      { path: "/x/y/z", want: "params", params: { a: "x", b: "y", c: "z" } },
      { path: "/r/static", method: "POST", want: "hiRejected" },
      { path: "/r/static", method: "GET", want: "mid", params: { x: "static" } },
    ],
  },
  {
    name: "negative priority loses to the default",
    routes: [{ id: "neg", path: "/n", priority: -1 }, { id: "zero", path: "/{x}" }],
    reqs: [{ path: "/n", want: "zero" }],
  },
  {
    name: "config order tie-break",
    routes: [
      { id: "later", path: "/dup", order: 5 },
      { id: "earlier", path: "/dup", order: 2 },
      { id: "first", path: "/same/{a}" },
      { id: "second", path: "/same/:b" },
    ],
    reqs: [
      { path: "/dup", want: "earlier" },
      { path: "/same/1", want: "first", params: { a: "1" } },
    ],
  },
  {
    name: "matcher count tie-break",
    routes: [
      { id: "none", path: "/c" },
      { id: "method", path: "/c", methods: ["GET"] },
      { id: "methodHeader", path: "/c", methods: ["GET"], headers: { "x-a": present } },
    ],
    reqs: [
      { path: "/c", want: "method" },
      { path: "/c", headers: { "x-a": "1" }, want: "methodHeader" },
      { path: "/c", method: "PUT", headers: { "x-a": "1" }, want: "none" },
    ],
  },
  {
    name: "unicode paths",
    routes: [{ id: "cafe", path: "/café" }, { id: "menu", path: "/caf%C3%A9/menu" }, {
      id: "sp",
      path: "/a b",
    }],
    reqs: [
      { path: "/caf%C3%A9", want: "cafe" },
      { path: "/café", want: "cafe" },
      { path: "/café/menu", want: "menu" },
      { path: "/cafe", want: null },
      { path: "/a%20b", want: "sp" },
    ],
  },
  {
    name: "encoded slashes are not separators",
    routes: [{ id: "ab", path: "/files/a/b" }, { id: "name", path: "/files/{name}" }],
    reqs: [
      { path: "/files/a%2Fb", want: "name", params: { name: "a%2Fb" } },
      { path: "/files/a%2fb", want: "name", params: { name: "a%2Fb" } },
      { path: "/files/a/b", want: "ab" },
      { path: "/files/a%5Cb", want: "name", params: { name: "a%5Cb" } },
    ],
  },
  {
    name: "dot-segment attacks",
    routes: [{ id: "public", path: "/public/*" }, { id: "admin", path: "/admin" }],
    reqs: [
      { path: "/public/../admin", want: "admin" },
      { path: "/public/%2e%2e/admin", want: "admin" },
      { path: "/public/%2E%2E/admin", want: "admin" },
      { path: "/public/./../admin", want: "admin" },
      { path: "/public/a/../../admin", want: "admin" },
      { path: "/public/..%2Fadmin", want: "public", rest: "..%2Fadmin" },
      { path: "/public/a/../b", want: "public", rest: "b" },
      { path: "/../../public/x", want: "public", rest: "x" },
    ],
  },
  {
    name: "double slashes and invalid paths",
    routes: [{ id: "users", path: "/api/users" }, { id: "all", path: "/*" }],
    reqs: [
      { path: "//api//users", want: "users" },
      { path: "/api/users//", want: "all", rest: "api/users/" },
      { path: "/api/%zz", want: "400" },
      { path: "/api/%4", want: "400" },
      { path: "/api/%00", want: "400" },
      { path: "/api/%C3", want: "400" },
    ],
  },
];

for (const c of cases) {
  Deno.test(`router: ${c.name}`, async (t) => {
    const router = build(c.routes);
    for (const r of c.reqs) {
      const label = `${r.method ?? "GET"} ${r.host ?? ""}${r.path}${r.query ? "?" + r.query : ""}` +
        `${r.headers ? " " + JSON.stringify(r.headers) : ""} -> ${r.want}`;
      await t.step(label, () => {
        const path = normalizePath(r.path);
        if (r.want === "400") return assert.equal(path, null);
        assert.notEqual(path, null, "path should normalise");
        const m = router.match(input(path!, r));
        assert.equal(m?.route.id ?? null, r.want);
        if (m === null) return;
        assert.equal(m.route.data, `data:${r.want}`);
        if (r.params) assert.deepEqual({ ...m.params }, r.params);
        if (r.prefix !== undefined) assert.equal(m.prefix, r.prefix);
        if (r.rest !== undefined) assert.equal(m.rest, r.rest);
      });
    }
  });
}

Deno.test("router: static matches reuse one frozen result, no params allocated", () => {
  const router = build([{ id: "s", path: "/s" }, { id: "p", path: "/p/{id}" }]);
  const a = router.match(input("/s", { path: "/s", want: "s" }))!;
  const b = router.match(input("/s", { path: "/s", want: "s" }))!;
  assert.equal(a, b);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.params));
  assert.deepEqual(Object.keys(a.params), []);
  const p = router.match(input("/p/1", { path: "/p/1", want: "p" }))!;
  assert.deepEqual(p.params, { id: "1" });
});

Deno.test("router: routes are exposed in config order with compiled facts", () => {
  const router = build([
    { id: "v1", path: "/api/v1/*", host: "API.example.com", methods: ["get"] },
    { id: "u", path: "/users/{id}" },
  ]);
  assert.deepEqual(router.routes.map((r) => r.id), ["v1", "u"]);
  const v1 = router.routes[0];
  assert.equal(v1.prefix, "/api/v1");
  assert.equal(v1.host, "api.example.com");
  assert.deepEqual(v1.methods, ["GET"]);
  assert.deepEqual(v1.paramNames, ["*"]);
  assert.equal(v1.hasCatchAll, true);
  assert.equal(router.routes[1].prefix, "/users");
  assert.equal(router.match(input("/nothing", { path: "", want: null })), null);
  assert.equal(new Router<string>([]).match(input("/", { path: "", want: null })), null);
});

Deno.test("router: invalid specs are rejected at construction", async (t) => {
  const bad: [string, R[]][] = [
    ["no leading slash", [{ id: "x", path: "api" }]],
    ["catch-all not last", [{ id: "x", path: "/a/*/b" }]],
    ["named catch-all not last", [{ id: "x", path: "/a/{r...}/b" }]],
    ["partial param", [{ id: "x", path: "/a{id}" }]],
    ["unterminated brace", [{ id: "x", path: "/{id" }]],
    ["empty param name", [{ id: "x", path: "/{}" }]],
    ["bad param name", [{ id: "x", path: "/:1x" }]],
    ["duplicate param", [{ id: "x", path: "/{a}/{a}" }]],
    ["reserved param name", [{ id: "x", path: "/{__proto__}" }]],
    ["empty segment", [{ id: "x", path: "/a//b" }]],
    ["dot segment", [{ id: "x", path: "/a/../b" }]],
    ["star inside segment", [{ id: "x", path: "/a*" }]],
    ["query in pattern", [{ id: "x", path: "/a?b" }]],
    ["bad escape", [{ id: "x", path: "/a%zz" }]],
    ["bad regex", [{ id: "x", path: "/a", headers: { x: regex("(") } }]],
    ["bad host", [{ id: "x", path: "/a", host: "a.*.com" }]],
    ["bare star host", [{ id: "x", path: "/a", host: "*" }]],
    ["duplicate id", [{ id: "x", path: "/a" }, { id: "x", path: "/b" }]],
  ];
  for (const [why, routes] of bad) {
    await t.step(why, () => assert.throws(() => build(routes), /"x"/));
  }
});
