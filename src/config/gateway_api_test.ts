import assert from "node:assert/strict";
import { parseConfig } from "./load.ts";

const base = [
  "listeners: [{name: web, address: ':8080', protocol: http}]",
  "upstreams: [{name: u, endpoints: ['127.0.0.1:1']}]",
];

Deno.test("config: route path_regex and listeners are checked", () => {
  const r = parseConfig(
    [...base, "routes:", "  - {id: a, path: /*, path_regex: '/v[0-9]+/.*', listeners: [web], upstream: u}"]
      .join("\n"),
    "x.yaml",
    {},
  );
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  assert.equal(r.config.routes[0].path_regex, "/v[0-9]+/.*");
  assert.deepEqual(r.config.routes[0].listeners, ["web"]);
  const bad = parseConfig(
    [...base, "routes:", "  - {id: a, path: /*, path_regex: '([', listeners: [nope], upstream: u}"].join(
      "\n",
    ),
    "x.yaml",
    {},
  );
  assert.ok(!bad.ok);
  const paths = bad.errors.map((e) => e.path).sort();
  assert.deepEqual(paths, ["routes[0].listeners[0]", "routes[0].path_regex"]);
});

Deno.test("config: the gateway_api block and its defaults", () => {
  const r = parseConfig(
    [...base, "gateway_api: {manifests: gw, port_map: {'80': 8080}}"].join("\n"),
    "x.yaml",
    {},
    "/etc/loom",
  );
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  const g = r.config.gateway_api!;
  assert.equal(g.manifests, "/etc/loom/gw");
  assert.equal(g.controller_name, "loom.dev/gateway-controller");
  assert.deepEqual(g.port_map, { "80": 8080 });
  assert.equal(g.listen_host, "");
  const k = parseConfig([...base, "gateway_api: {kubernetes: {}}"].join("\n"), "x.yaml", {});
  assert.ok(k.ok);
  assert.equal(k.config.gateway_api!.kubernetes!.lease.duration, 15_000);
  assert.equal(
    k.config.gateway_api!.kubernetes!.token_file,
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
  );
});
