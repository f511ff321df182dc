import { GatewayMetrics } from "./gateway_metrics.ts";
import { newRequestId } from "./request_id.ts";

const metrics = new GatewayMetrics("bench");
const routes = ["users", "orders", "health", "static"];
const methods = ["GET", "POST", "GET", "DELETE"];
const statuses = [200, 201, 404, 500];
let i = 0;

Deno.bench("GatewayMetrics.request (64 label sets)", { group: "metrics", baseline: true }, () => {
  i++;
  metrics.request(routes[i & 3], methods[(i >> 2) & 3], statuses[(i >> 4) & 3], 0.0123);
});

Deno.bench("GatewayMetrics.request (one label set)", { group: "metrics" }, () => {
  metrics.request("users", "GET", 200, 0.0123);
});

Deno.bench("GatewayMetrics.upstream", { group: "metrics" }, () => {
  metrics.upstream("api", "10.0.0.1:80", 200, 0.01);
});

Deno.bench("Counter.labels(route, method, status).inc() generic lookup", { group: "metrics" }, () => {
  metrics.requestsTotal.labels("users", "GET", 200).inc();
});

Deno.bench("newRequestId", () => {
  newRequestId();
});

const scraped = new GatewayMetrics("bench");
for (let k = 0; k < 64; k++) {
  scraped.request(routes[k & 3], methods[(k >> 2) & 3], statuses[(k >> 4) & 3], k / 100);
}
Deno.bench("render (64 request counters + 16 histogram series)", () => {
  scraped.registry.render();
});
