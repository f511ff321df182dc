import assert from "node:assert/strict";
import { parse } from "yaml";
import { loomSchema } from "./schema.ts";
import { loomJsonSchema, schemaText } from "./json_schema.ts";
import { parseConfig } from "./load.ts";
import { checkJsonSchema } from "./testdata/json_schema_check.ts";

const read = (rel: string) => Deno.readTextFileSync(new URL(rel, import.meta.url));

Deno.test("schema: config/loom.schema.json is in sync with schema.ts (run `deno task schema`)", () => {
  assert.equal(read("../../config/loom.schema.json"), schemaText(loomSchema));
});

Deno.test("schema: shape of the generated JSON Schema", () => {
  const s = loomJsonSchema(loomSchema) as {
    $schema: string;
    required: string[];
    properties: Record<string, unknown>;
  };
  assert.equal(s.$schema, "http://json-schema.org/draft-07/schema#");
  assert.deepEqual(s.required, ["listeners"]);
  const drain = s.properties.drain_timeout as { description: string; default: string };
  assert.equal(drain.default, "30s");
  assert.match(drain.description, /Duration: e\.g\. "30s"/);
});

const valid: Record<string, string> = {
  "config/loom.yaml": read("../../config/loom.yaml"),
  "josedab-loom.yaml": read("./testdata/josedab-loom.yaml"),
  "full": [
    "workers: auto",
    "listeners:",
    "  - {name: a, address: ':8443', protocol: https, tls: {cert_file: c, key_file: k, min_version: 1.3, alpn: [h2]}}",
    "upstreams:",
    "  - name: u",
    "    endpoints: ['a:1', {address: 'b:2', weight: 2}]",
    "    load_balancer: p2c",
    "    health_check: {type: tcp, expected_status: [200, 204], jitter: 1s}",
    "    circuit_breaker: {failure_ratio: 0.5, window: 10s}",
    "    bulkhead: {max_concurrent: 5, timeout: 0}",
    "    service_discovery: {provider: dns, refresh_interval: 30s}",
    "routes:",
    "  - {id: r, path: '/x/{id}', upstream: u, headers: {A: 1, B: {regex: 'b+'}}, rewrite: '/y/{id}'}",
    "  - {id: s, path: /s, redirect: {url: /t, code: 307}}",
    "plugins: [{name: p, path: p.wasm, config: 'raw', failure_policy: fail_open, memory_limit: 1024}]",
    "cache: {max_size: 1GiB, stale_while_revalidate: 30s}",
    "access_log: {path: /var/log/loom.log}",
    "demo: {echo: {}}",
  ].join("\n"),
};

// Invalid for both the validator and the JSON Schema (cross-reference checks aside).
const invalid: Record<string, string> = {
  "no listeners": "routes: []",
  "bad enum": "listeners: [{name: a, address: ':1', protocol: ftp}]",
  "bad type": "listeners: [{name: a, address: ':1', protocol: http, max_connections: many}]",
  "unknown key": "listeners: [{name: a, address: ':1', protocol: http}]\nrouts: []",
  "bad duration": "listeners: [{name: a, address: ':1', protocol: http, idle_timeout: 30}]",
  "bad size": "listeners: [{name: a, address: ':1', protocol: http, max_header_bytes: 1TB}]",
  "missing id": "listeners: [{name: a, address: ':1', protocol: http}]\nroutes: [{path: /, redirect: /x}]",
  "two matchers": "listeners: [{name: a, address: ':1', protocol: http}]\n" +
    "routes: [{id: r, path: /, redirect: /x, headers: {A: {exact: a, regex: b}}}]",
  "bad weight": "listeners: [{name: a, address: ':1', protocol: http}]\n" +
    "upstreams: [{name: u, endpoints: [{address: 'a:1', weight: 0}]}]",
  "bad address": "listeners: [{name: a, address: '8080', protocol: http}]",
};

const schema = loomJsonSchema(loomSchema);

Deno.test("schema: JSON Schema and validator accept the same valid fixtures", () => {
  for (const [name, text] of Object.entries(valid)) {
    const r = parseConfig(text, name, {});
    assert.ok(r.ok, `${name}: ${JSON.stringify(!r.ok && r.errors)}`);
    assert.deepEqual(checkJsonSchema(schema, parse(text)), [], name);
  }
});

Deno.test("schema: JSON Schema and validator reject the same invalid fixtures", () => {
  for (const [name, text] of Object.entries(invalid)) {
    assert.equal(parseConfig(text, name, {}).ok, false, `validator accepted ${name}`);
    assert.notDeepEqual(checkJsonSchema(schema, parse(text)), [], `JSON Schema accepted ${name}`);
  }
});
