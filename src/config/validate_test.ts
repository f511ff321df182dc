import assert from "node:assert/strict";
import { assertError, configOf, errorsOf, LISTENER } from "./testdata/helpers.ts";

const BROKEN = [
  /*  1 */ "workers: many",
  /*  2 */ "drain_timeout: 30",
  /*  3 */ "listeners:",
  /*  4 */ "  - name: web",
  /*  5 */ '    address: ":8080"',
  /*  6 */ "    protocol: http",
  /*  7 */ "  - name: web",
  /*  8 */ '    address: "0.0.0.0:8080"',
  /*  9 */ "    protocol: https",
  /* 10 */ "  - name: quic",
  /* 11 */ '    address: "8443"',
  /* 12 */ "    protocol: http4",
  /* 13 */ "    max_header_bytes: 12XB",
  /* 14 */ "upstreams:",
  /* 15 */ "  - name: api",
  /* 16 */ "    endpoints:",
  /* 17 */ '      - "api.internal:8080"',
  /* 18 */ '      - "http://api.internal"',
  /* 19 */ '      - address: "b.internal:80"',
  /* 20 */ "        weight: 0",
  /* 21 */ "    load_balancer: roundrobin",
  /* 22 */ "  - name: api",
  /* 23 */ "    endpoints: []",
  /* 24 */ "    conect_timeout: 5s",
  /* 25 */ "plugins:",
  /* 26 */ "  - name: auth",
  /* 27 */ "    path: /auth.wasm",
  /* 28 */ "    phase: on_request",
  /* 29 */ "  - name: auth",
  /* 30 */ "    path: /auth2.wasm",
  /* 31 */ "routes:",
  /* 32 */ "  - id: a",
  /* 33 */ "    path: /users/{id}",
  /* 34 */ "    upstream: billing",
  /* 35 */ "    rewrite: /v2/{user}",
  /* 36 */ "    plugins: [auth, nope]",
  /* 37 */ '    methods: [GET, "BAD METHOD"]',
  /* 38 */ "  - id: a",
  /* 39 */ "    path: no-slash",
  /* 40 */ "    redirect:",
  /* 41 */ "      url: https://example.com",
  /* 42 */ "      code: 304",
  /* 43 */ "  - id: c",
  /* 44 */ "    path: /c",
  /* 45 */ "    headers:",
  /* 46 */ '      X-Re: {regex: "(unclosed"}',
  /* 47 */ "      X-Two: {exact: a, present: true}",
  /* 48 */ "    query_params:",
  /* 49 */ "      q: {present: false}",
  /* 50 */ "  - id: d",
  /* 51 */ "    path: /d",
  /* 52 */ "  - path: /e",
  /* 53 */ "    upstream: api",
  /* 54 */ "    timeout: 1.5",
];

const EXPECTED: [string, number, RegExp][] = [
  ["workers", 1, /invalid value "many"; allowed: auto/],
  ["drain_timeout", 2, /no unit.*ns, us.*ms, s, m, h/],
  ["listeners[1].name", 7, /duplicate listener name "web" \(first defined at listeners\[0\].name, line 4\)/],
  ["listeners[1].address", 8, /clashes with listeners\[0\].address ":8080" \(same port 8080\)/],
  ["listeners[1].tls", 9, /protocol "https" requires a tls block/],
  ["listeners[2].address", 11, /has no port/],
  ["listeners[2].protocol", 12, /invalid value "http4"; allowed: http, https, h2c, http3, grpc, grpcs/],
  ["listeners[2].max_header_bytes", 13, /invalid size "12XB"/],
  ["upstreams[0].endpoints[1]", 18, /has a scheme; expected "host:port"/],
  ["upstreams[0].endpoints[2].weight", 20, /at least 1/],
  ["upstreams[0].load_balancer", 21, /allowed: round_robin, weighted/],
  ["upstreams[1].name", 22, /duplicate upstream name "api"/],
  ["upstreams[1].endpoints", 23, /at least 1 item/],
  ["upstreams[1].conect_timeout", 24, /unknown key "conect_timeout"; did you mean "connect_timeout"\?/],
  ["plugins[0].phase", 28, /allowed: on_request_headers, on_request_body/],
  ["plugins[1].name", 29, /duplicate plugin name "auth"/],
  ["routes[0].upstream", 34, /upstream "billing" is not defined/],
  ["routes[0].rewrite", 35, /uses \{user\} but path "\/users\/\{id\}" captures only \{id\}/],
  ["routes[0].plugins[1]", 36, /plugin "nope" is not defined/],
  ["routes[0].methods[1]", 37, /not a valid HTTP method/],
  ["routes[1].id", 38, /duplicate route id "a"/],
  ["routes[1].path", 39, /must start with "\/"/],
  ["routes[1].redirect.code", 42, /invalid value 304; allowed: 301, 302, 303, 307, 308/],
  ["routes[2]", 43, /needs "upstream", "backends", "redirect" or "direct_response"/],
  ["routes[2].headers.X-Re.regex", 46, /Invalid regular expression: \/\(unclosed\/: Unterminated group/],
  ["routes[2].headers.X-Two", 47, /exactly 1 of: exact, regex, present/],
  ["routes[2].query_params.q.present", 49, /invalid value false; allowed: true/],
  ["routes[3]", 50, /needs "upstream", "backends", "redirect" or "direct_response"/],
  ["routes[4].id", 52, /missing required key "id"/],
  ["routes[4].timeout", 54, /no unit/],
];

Deno.test("validate: every error is reported at once, with path and line", () => {
  const errors = errorsOf(BROKEN);
  for (const [path, line, message] of EXPECTED) assertError(errors, path, line, message);
  // Nothing else: no duplicate or follow-on noise.
  assert.deepEqual(
    errors.map((e) => `${e.path}:${e.line}`).sort(),
    EXPECTED.map(([p, l]) => `${p}:${l}`).sort(),
  );
  // Sorted by position.
  assert.deepEqual(errors.map((e) => e.line), [...errors.map((e) => e.line)].sort((a, b) => a - b));
});

Deno.test("validate: YAML syntax errors carry a line", () => {
  const errors = errorsOf([...LISTENER, "routes:", "  - id: x", "    path: [unclosed"]);
  assert.equal(errors[0].path, "");
  assert.ok(errors[0].line >= 6, JSON.stringify(errors));
  assert.match(errors[0].message, /YAML syntax error/);
  const dup = errorsOf([...LISTENER, "workers: 1", "workers: 2"]);
  assertError(dup, "", 6, /unique/);
});

Deno.test("validate: empty file and wrong top-level shape", () => {
  assertError(errorsOf([""]), "", 1, /empty/);
  assertError(errorsOf(["- a"]), "", 1, /expected a mapping, got a list/);
  assertError(errorsOf(["routes: []"]), "listeners", 1, /missing required key "listeners"/);
  assertError(errorsOf(["listeners: []"]), "listeners", 1, /at least 1 item/);
});

Deno.test("validate: wrong types name the expected type", () => {
  const errors = errorsOf([
    ...LISTENER,
    "    max_connections: lots", // 5
    "    idle_timeout: [1]", // 6
    "routes:", // 7
    "  - id: 7", // 8
    "    path: /", // 9
    "    redirect: /x", // 10
    "    strip_prefix: yes", // 11
    "    priority: 1.5", // 12
    "admin:", // 13
    "  enabled: 1", // 14
    "upstreams: {}", // 15
  ]);
  assertError(errors, "listeners[0].max_connections", 5, /expected an integer, got "lots"/);
  assertError(errors, "listeners[0].idle_timeout", 6, /expected a duration like "30s", got a list/);
  assertError(errors, "routes[0].id", 8, /expected a string, got 7/);
  assertError(errors, "routes[0].strip_prefix", 11, /expected true or false, got "yes"/);
  assertError(errors, "routes[0].priority", 12, /expected an integer, got 1.5/);
  assertError(errors, "admin.enabled", 14, /expected true or false, got 1/);
  assertError(errors, "upstreams", 15, /expected a list, got a mapping/);
});

Deno.test("validate: unknown keys suggest close names, or none when nothing is close", () => {
  const errors = errorsOf([...LISTENER, "    protocl: http", "rutes: []", "zzz: 1"]);
  assertError(errors, "listeners[0].protocl", 5, /did you mean "protocol"\?/);
  assertError(errors, "rutes", 6, /did you mean "routes"\?/);
  assertError(errors, "zzz", 7, /^unknown key "zzz"$/);
});

Deno.test("validate: listener addresses and TLS protocols", () => {
  const errors = errorsOf([
    "listeners:",
    "  - {name: a, address: ':8443', protocol: https, tls: {cert_file: c, key_file: k}}", // 2
    "  - {name: b, address: ':8443', protocol: http3, tls: {cert_file: c, key_file: k}}", // 3: UDP, no clash
    "  - {name: c, address: '127.0.0.1:8443', protocol: h2c}", // 4: clashes with wildcard
    "  - {name: d, address: '[::1]:9000', protocol: grpcs}", // 5: no tls
    "  - {name: e, address: '[::1]:9000', protocol: grpc}", // 6: same host+port
    "  - {name: f, address: '::1:9001', protocol: grpc}", // 7
    "  - {name: g, address: 'localhost:70000', protocol: grpc}", // 8
    "  - {name: h, address: ':9091', protocol: http}", // 9: admin default is 127.0.0.1:9091
    "  - {name: i, address: ':9443', protocol: http3}", // 10: no tls
  ]);
  assertError(errors, "listeners[2].address", 4, /clashes with listeners\[0\].address ":8443"/);
  assertError(errors, "listeners[3].tls", 5, /protocol "grpcs" requires a tls block/);
  assertError(errors, "listeners[4].address", 6, /clashes with listeners\[3\].address "\[::1\]:9000"/);
  assertError(errors, "listeners[5].address", 7, /IPv6 hosts must be bracketed/);
  assertError(errors, "listeners[6].address", 8, /not in 1-65535/);
  assertError(errors, "admin.address", 1, /clashes with listeners\[7\].address ":9091"/);
  assertError(errors, "listeners[8].tls", 10, /protocol "http3" requires a tls block/);
  assert.equal(errors.length, 7, JSON.stringify(errors, null, 1));
});

Deno.test("validate: rewrite and redirect captures", () => {
  const errors = errorsOf([
    ...LISTENER,
    "upstreams: [{name: u, endpoints: ['u:1']}]", // 5
    "routes:", // 6
    "  - {id: a, path: '/a/:id', upstream: u, rewrite: '/x/{id}'}", // 7 ok
    "  - {id: b, path: '/b/{rest...}', upstream: u, rewrite: '/x/{rest}'}", // 8 ok
    "  - {id: c, path: '/c/*', upstream: u, rewrite: '/x/{path}'}", // 9
    "  - {id: d, path: '/d/{id}', redirect: {url: 'https://e.com/{uid}'}}", // 10
    "  - {id: e, path: '/e', redirect: 'https://e.com/', upstream: u}", // 11
  ]);
  assertError(errors, "routes[2].rewrite", 9, /uses \{path\} but path "\/c\/\*" captures only \{\*\}/);
  assertError(errors, "routes[3].redirect", 10, /uses \{uid\}/);
  assertError(errors, "routes[4].redirect", 11, /both "upstream" and "redirect"/);
  assert.equal(errors.length, 3, JSON.stringify(errors, null, 1));
});

Deno.test("validate: normalised shapes and defaults", () => {
  const c = configOf([
    ...LISTENER,
    "workers: auto", // 5
    "upstreams:",
    "  - name: u",
    "    endpoints: ['a.internal:80', {address: '[::1]:81', weight: 3}]",
    "    load_balancer: consistent_hash",
    "    health_check: {interval: 1m30s}",
    "    bulkhead: {}",
    "    retry: {max_body_size: 1MiB}",
    "routes:",
    "  - id: r",
    "    path: /users/{id}",
    "    methods: [get, Post]",
    "    upstream: u",
    "    rewrite: /v2/users/{id}",
    "    headers: {X-Version: 2, X-Trace: {present: true}, X-Re: {regex: '^a+$'}}",
    "    query_params: {q: {exact: x}}",
    "    per_try_timeout: 250ms",
    "  - {id: go, path: /go, redirect: 'https://example.com'}",
    "  - {id: go2, path: /go2, redirect: {url: /x, code: 308}}",
    "plugins: [{name: p, path: p.wasm, config: {a: [1, 2]}}]",
  ]);
  assert.equal(c.workers, navigator.hardwareConcurrency);
  assert.deepEqual(c.listeners[0], {
    name: "http",
    address: ":8080",
    hostname: "",
    port: 8080,
    protocol: "http",
    read_header_timeout: 10_000,
    idle_timeout: 60_000,
    body_timeout: 30_000,
    max_connections: 10_000,
    max_header_bytes: 65_536,
    max_headers: 100,
    write_buffer: 65_536,
  });
  const u = c.upstreams[0];
  assert.deepEqual(u.endpoints, [
    { address: "a.internal:80", hostname: "a.internal", port: 80, weight: 1 },
    { address: "[::1]:81", hostname: "::1", port: 81, weight: 3 },
  ]);
  assert.deepEqual(u.consistent_hash, { hash_key: "", replicas: 150, algorithm: "maglev" });
  assert.deepEqual(u.health_check, {
    enabled: true,
    type: "http",
    path: "/health",
    method: "GET",
    expected_status: [[200, 399]],
    interval: 90_000,
    timeout: 2000,
    healthy_threshold: 2,
    unhealthy_threshold: 3,
  });
  assert.deepEqual(u.bulkhead, { enabled: true, max_concurrent: 100, queue_size: 0, timeout: 0 });
  assert.deepEqual(u.retry, {
    max_retries: 3,
    backoff_base: 100,
    backoff_max: 10_000,
    retryable_codes: [502, 503, 504],
    retry_non_idempotent: false,
    max_body_size: 1024 ** 2,
    budget: 0.2,
  });
  assert.equal(u.circuit_breaker, undefined);
  assert.deepEqual(u.pool, { max_idle: 128, idle_timeout: 60_000, max_connections: 0 });
  assert.equal(u.connect_timeout, 5000);
  assert.equal(u.per_try_timeout, 30_000);
  const r = c.routes[0];
  assert.deepEqual(r.methods, ["GET", "POST"]);
  assert.deepEqual(r.headers, {
    "X-Version": { kind: "exact", value: "2" },
    "X-Trace": { kind: "present" },
    "X-Re": { kind: "regex", pattern: "^a+$" },
  });
  assert.deepEqual(r.query_params, { q: { kind: "exact", value: "x" } });
  assert.equal(r.per_try_timeout, 250);
  assert.equal(r.connect_timeout, undefined);
  assert.deepEqual(
    [r.plugins, r.strip_prefix, r.timeout, r.priority, r.preserve_host, r.allow_trace, r.order],
    [[], false, 30_000, 0, true, false, 0],
  );
  assert.deepEqual(c.routes[1].redirect, { url: "https://example.com", code: 302 });
  assert.deepEqual(c.routes[2].redirect, { url: "/x", code: 308 });
  assert.equal(c.routes[2].order, 2);
  assert.deepEqual(c.plugins[0], {
    name: "p",
    path: "p.wasm",
    priority: 0,
    global: false,
    root_id: "",
    config: { a: [1, 2] },
    memory_limit: 16 * 1024 * 1024,
    timeout: 50,
    failure_policy: "fail_closed",
  });
  assert.deepEqual(c.admin, { enabled: true, address: "127.0.0.1:9091", hostname: "127.0.0.1", port: 9091 });
  assert.deepEqual(c.metrics, {
    prometheus: { enabled: true, path: "/metrics" },
    opentelemetry: { enabled: false, endpoint: "" },
  });
  assert.deepEqual(c.access_log, { enabled: true, path: "stdout" });
  assert.deepEqual(c.demo, {});
  assert.equal(c.drain_timeout, 30_000);
  assert.equal(c.rate_limit, undefined);
  // Plain data: can be posted to workers.
  assert.deepEqual(structuredClone(c), c);
});

Deno.test("validate: compatibility blocks keep their fields, durations and sizes normalised", () => {
  const c = configOf([
    ...LISTENER,
    "cache:",
    "  enabled: true",
    "  max_size: 100MB",
    "  default_ttl: 5m",
    "  excluded_paths: ['/api/auth/*']",
    "  bypass_header: X-Cache-Bypass",
    "rate_limit: {enabled: true, rate: 10.5, burst: 20, cleanup_interval: 1m}",
    "admin: {auth: {users: {admin: '$2a$10$abc'}}}",
  ]);
  assert.deepEqual(c.cache, {
    enabled: true,
    max_size: 100 * 1024 ** 2,
    default_ttl: 300_000,
    excluded_paths: ["/api/auth/*"],
    bypass_header: "X-Cache-Bypass",
  });
  assert.deepEqual(c.rate_limit, { enabled: true, rate: 10.5, burst: 20, cleanup_interval: 60_000 });
  assert.deepEqual(c.admin.auth, { enabled: true, users: { admin: "$2a$10$abc" }, realm: "Loom Admin" });
  const errors = errorsOf([...LISTENER, "tracing: {sample_rate: 2}", "cors: {max_age: 1d}"]);
  assertError(errors, "tracing.sample_rate", 5, /at most 1/);
  assertError(errors, "cors.max_age", 6, /expected an integer/);
});

Deno.test("validate: {*} names an unnamed catch-all; invalid router patterns are config errors", () => {
  const errors = errorsOf([
    ...LISTENER,
    "upstreams: [{name: u, endpoints: ['u:1']}]", // 5
    "routes:", // 6
    "  - {id: a, path: '/a/*', upstream: u, rewrite: '/x/{*}'}", // 7 ok
    "  - {id: b, path: '/b/*/c', upstream: u}", // 8: catch-all not last
  ]);
  assertError(errors, "routes[1].path", 8, /catch-all/);
  assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
});

Deno.test("validate: an unset ${VAR} in an address is a located error, not a crash", () => {
  const errors = errorsOf([
    "listeners:", // 1
    "  - name: a", // 2
    '    address: "127.0.0.1:${LOOM_TEST_UNSET_VAR_1}"', // 3
    "    protocol: http", // 4
  ]);
  assertError(errors, "listeners[0].address", 3, /LOOM_TEST_UNSET_VAR_1 is not set/);
});
