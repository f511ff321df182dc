import assert from "node:assert/strict";
import { GatewayMetrics, methodLabel, UNMATCHED_ROUTE } from "./gateway_metrics.ts";
import { renderMerged } from "./metrics.ts";

Deno.test("GatewayMetrics records Loom's metric set", () => {
  const m = new GatewayMetrics("1.2.3");
  m.request("users", "GET", 200, 0.02);
  m.request("users", "GET", 200, 0.2);
  m.request("users", "BREW", 418, 0.001);
  m.request(UNMATCHED_ROUTE, "GET", 404, 0.0001);
  m.upstream("api", "10.0.0.1:80", 503, 0.05);
  m.upstreamError("api", "10.0.0.1:80", "timeout");
  m.reload(true);
  m.reload(false);
  m.reload(false);
  m.connectionOpened("web", "http");
  m.connectionOpened("web", "http");
  m.connectionClosed("web", "http");
  const text = m.registry.render();
  for (
    const line of [
      'loom_requests_total{route="users",method="GET",status="200"} 2',
      'loom_requests_total{route="users",method="OTHER",status="418"} 1',
      'loom_requests_total{route="",method="GET",status="404"} 1',
      'loom_request_duration_seconds_count{route="users",method="GET"} 2',
      'loom_request_duration_seconds_bucket{route="users",method="GET",le="0.025"} 1',
      'loom_upstream_requests_total{upstream="api",endpoint="10.0.0.1:80",status="503"} 1',
      'loom_upstream_duration_seconds_count{upstream="api",endpoint="10.0.0.1:80"} 1',
      'loom_upstream_errors_total{upstream="api",endpoint="10.0.0.1:80",error_type="timeout"} 1',
      'loom_config_reloads_total{result="success"} 1',
      'loom_config_reloads_total{result="failure"} 2',
      'loom_active_connections{listener="web",protocol="http"} 1',
      'loom_build_info{version="1.2.3"} 1',
    ]
  ) {
    assert.ok(text.split("\n").includes(line), `missing: ${line}\n${text}`);
  }
});

Deno.test("merged worker metrics: counters summed, build_info not", () => {
  const w1 = new GatewayMetrics("1.0.0"), w2 = new GatewayMetrics("1.0.0");
  w1.request("r", "POST", 201, 0.1);
  w2.request("r", "POST", 201, 0.1);
  w1.connectionOpened("web", "http");
  w2.connectionOpened("web", "http");
  const text = renderMerged([w1.registry.snapshot(), w2.registry.snapshot()]);
  assert.match(text, /^loom_requests_total\{route="r",method="POST",status="201"\} 2$/m);
  assert.match(text, /^loom_active_connections\{listener="web",protocol="http"\} 2$/m);
  assert.match(text, /^loom_build_info\{version="1.0.0"\} 1$/m);
});

Deno.test("methodLabel bounds cardinality", () => {
  assert.equal(methodLabel("PATCH"), "PATCH");
  assert.equal(methodLabel("get"), "OTHER");
  assert.equal(methodLabel("PROPFIND"), "OTHER");
});
