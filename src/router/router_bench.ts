// Router micro-benchmarks: `deno bench src/router/router_bench.ts` (ns/match).
import { normalizePath } from "./path.ts";
import { Router } from "./router.ts";
import type { MatchInput, RouteSpec } from "./types.ts";

const RESOURCES = [
  "users",
  "orders",
  "products",
  "invoices",
  "carts",
  "payments",
  "shipments",
  "reviews",
  "coupons",
  "teams",
  "projects",
  "issues",
  "comments",
  "files",
  "events",
  "webhooks",
  "tokens",
  "sessions",
  "reports",
  "metrics",
];

function buildSpecs(): RouteSpec<number>[] {
  const paths: { path: string; methods?: string[]; host?: string }[] = [];
  for (const r of RESOURCES) {
    paths.push({ path: `/api/v1/${r}`, methods: ["GET"] });
    paths.push({ path: `/api/v1/${r}`, methods: ["POST"] });
    paths.push({ path: `/api/v1/${r}/{id}` });
    paths.push({ path: `/api/v1/${r}/{id}/history` });
    paths.push({ path: `/api/v1/${r}/search` });
    paths.push({ path: `/api/v2/${r}/:id/items/:item` });
    paths.push({ path: `/api/v2/${r}/*` });
    paths.push({ path: `/internal/${r}/health`, host: "admin.example.com" });
    paths.push({ path: `/static/${r}/{file...}` });
    paths.push({ path: `/${r}` });
  }
  paths.push({ path: "/" }, { path: "/api/*" }, { path: "/*", host: "*.example.com" });
  return paths.map((p, i) => ({ id: `r${i}`, ...p, order: i, data: i }));
}

const specs = buildSpecs();
const router = new Router(specs);
const noHeader = () => undefined;

function req(path: string, method = "GET", host = "api.example.com"): MatchInput {
  return { method, host, path, header: noHeader, query: "" };
}

const inputs = {
  static: req("/api/v1/webhooks/search"),
  staticMethod: req("/api/v1/reports", "POST"),
  param: req("/api/v1/metrics/12345"),
  twoParams: req("/api/v2/comments/987/items/654"),
  backtrack: req("/api/v1/orders/search/history"),
  catchAll: req("/static/teams/css/site/main.css"),
  host: req("/internal/tokens/health", "GET", "admin.example.com"),
  fallbackWildcard: req("/nothing/here/at/all"),
  miss: req("/nothing/here", "GET", "other.org"),
};

if (import.meta.main) console.log(`${specs.length} routes`);

for (const [name, input] of Object.entries(inputs)) {
  if (router.match(input) === null && name !== "miss") throw new Error(`bench input ${name} must match`);
  Deno.bench(`match ${name}`, { group: "match" }, () => {
    router.match(input);
  });
}

const mixed = Object.values(inputs);
let next = 0;
Deno.bench("match mixed (all of the above, round robin)", { group: "match" }, () => {
  router.match(mixed[next++ % mixed.length]);
});

// Real requests carry a fresh path string whose hash is not cached yet.
const freshBase = "x/api/v1/webhooks/search";
Deno.bench("match static, fresh path string", { group: "fresh" }, () => {
  router.match(req(freshBase.slice(1)));
});
Deno.bench("baseline: build the fresh input only", { group: "fresh", baseline: true }, () => {
  req(freshBase.slice(1));
});

const rawPaths = {
  fast: "/api/v1/users/12345/history",
  encoded: "/api/v1/files/caf%C3%A9/a%2Fb",
  dots: "/static/../api/./v1//users",
};
for (const [name, raw] of Object.entries(rawPaths)) {
  Deno.bench(`normalizePath ${name}`, { group: "normalize" }, () => {
    normalizePath(raw);
  });
}

Deno.bench("construct router (203 routes)", { group: "build" }, () => {
  new Router(specs);
});
