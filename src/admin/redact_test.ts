import assert from "node:assert/strict";
import { isSecretName, redactConfig, REDACTED, redactUrl } from "./redact.ts";

Deno.test("redactConfig: key patterns, nesting, arrays, admin users", () => {
  const input = {
    password: "p",
    Secret_Value: "s",
    access_token: "t",
    apiKey: "k",
    "api-key": "k",
    private_key: "pk",
    credential: "c",
    keep: "v",
    nested: [{ APIKEY: 1, n: null }, "plain"],
    admin: { auth: { enabled: true, users: { alice: "hash", bob: "hash2" }, realm: "r" } },
    users: { carol: "not the admin map" },
  };
  const copy = structuredClone(input);
  assert.deepEqual(redactConfig(input), {
    password: REDACTED,
    Secret_Value: REDACTED,
    access_token: REDACTED,
    apiKey: REDACTED,
    "api-key": REDACTED,
    private_key: REDACTED,
    credential: REDACTED,
    keep: "v",
    nested: [{ APIKEY: REDACTED, n: null }, "plain"],
    admin: { auth: { enabled: true, users: { alice: REDACTED, bob: REDACTED }, realm: "r" } },
    users: { carol: "not the admin map" },
  });
  assert.deepEqual(input, copy);
});

Deno.test("redactConfig: plugin config values unless listed in public_config_keys", () => {
  const plugins = [
    {
      name: "a",
      config: { issuer: "https://id.example", level: 3, tags: ["x"], nested: { deep: "v" }, token: "t" },
      public_config_keys: ["issuer", "token", "nested"],
    },
    { name: "b", config: { issuer: "https://id.example", list: [1, 2] } },
    { name: "c", config: '{"key":"raw json text"}' },
    { name: "d", config: ["x"] },
    { name: "e" },
  ];
  assert.deepEqual(redactConfig({ plugins }).plugins, [
    {
      name: "a",
      // Public keys still go through the other rules: "token" is a secret name.
      config: {
        issuer: "https://id.example",
        level: REDACTED,
        tags: REDACTED,
        nested: { deep: "v" },
        token: REDACTED,
      },
      public_config_keys: ["issuer", "token", "nested"],
    },
    { name: "b", config: { issuer: REDACTED, list: REDACTED } },
    { name: "c", config: REDACTED },
    { name: "d", config: REDACTED },
    { name: "e" },
  ]);
  // Only plugins[i].config is special.
  assert.deepEqual(redactConfig({ config: { a: 1 } }), { config: { a: 1 } });
});

Deno.test("redactConfig: credential header and query parameter matchers", () => {
  const headers = {
    Authorization: { kind: "exact", value: "Bearer abc" },
    "proxy-authorization": { kind: "regex", pattern: "^Basic " },
    Cookie: { kind: "exact", value: "session=1" },
    "X-Auth-Token": { kind: "exact", value: "t" },
    "X-Api-Key": { kind: "exact", value: "k" },
    "X-Session-Id": { kind: "exact", value: "s" },
    "X-Tenant": { kind: "exact", value: "acme" },
    "Keep-Alive": { kind: "present" },
    Accept: { kind: "regex", pattern: "json" },
  };
  const query_params = {
    sig: { kind: "exact", value: "s" },
    "X-Amz-Signature": { kind: "exact", value: "s" },
    page: { kind: "exact", value: "2" },
  };
  const out = redactConfig({
    routes: [{ id: "r", headers, query_params }],
    middleware: [{
      name: "headers",
      options: { request: { set: { authorization: "Bearer x", "x-via": "loom" } } },
    }],
  });
  assert.deepEqual(out.routes[0].headers, {
    Authorization: REDACTED,
    "proxy-authorization": REDACTED,
    Cookie: REDACTED,
    "X-Auth-Token": REDACTED,
    "X-Api-Key": REDACTED,
    "X-Session-Id": REDACTED,
    "X-Tenant": { kind: "exact", value: "acme" },
    "Keep-Alive": { kind: "present" },
    Accept: { kind: "regex", pattern: "json" },
  });
  assert.deepEqual(out.routes[0].query_params, {
    sig: REDACTED,
    "X-Amz-Signature": REDACTED,
    page: { kind: "exact", value: "2" },
  });
  // Header names below a header map at any depth (a middleware's set/add).
  assert.deepEqual(out.middleware, [{
    name: "headers",
    options: { request: { set: { authorization: REDACTED, "x-via": "loom" } } },
  }]);
  // The YAML path of a middleware's options is its name (env paths are YAML paths).
  const mw = { middleware: [{ name: "headers", options: { response: { set: { "x-env": "v" } } } }] };
  assert.deepEqual(redactConfig(mw, { envPaths: ["middleware[0].headers.response.set.x-env"] }).middleware, [
    { name: "headers", options: { response: { set: { "x-env": REDACTED } } } },
  ]);
  // basic_auth's password hashes, at the top level and in a route.
  const auth = {
    middleware: [{ name: "basic_auth", options: { realm: "r", users: { ada: "$2y$10$h" } } }],
    routes: [{ id: "r", middleware: [{ name: "basic_auth", options: { users: { bob: "$argon2id$h" } } }] }],
  };
  const redacted = redactConfig(auth);
  assert.deepEqual(redacted.middleware[0].options, { realm: "r", users: { ada: REDACTED } });
  assert.deepEqual(redacted.routes[0].middleware[0].options, { users: { bob: REDACTED } });
  // Outside header/query maps such names are ordinary keys.
  assert.deepEqual(redactConfig({ cookie: { name: "sticky" }, session: 5 }), {
    cookie: { name: "sticky" },
    session: 5,
  });
});

Deno.test("isSecretName", () => {
  for (
    const n of [
      "authorization",
      "Proxy-Authorization",
      "cookie",
      "Set-Cookie",
      "x-api-key",
      "x-auth-token",
      "key",
      "sig",
      "signature",
      "X-Amz-Credential",
      "access_token",
      "api_key",
      "apikey",
      "password",
      "pwd",
      "session_id",
      "client.secret",
    ]
  ) {
    assert.ok(isSecretName(n), n);
  }
  for (const n of ["accept", "x-tenant", "keep-alive", "monkey", "page", "host", "x-request-id", "design"]) {
    assert.ok(!isSecretName(n), n);
  }
});

Deno.test("redactUrl: userinfo and secret query parameters", () => {
  const cases: [string, string][] = [
    ["postgres://loom:pa55@db.internal:5432/loom", "postgres://[REDACTED]@db.internal:5432/loom"],
    ["redis://:p@ss/w@cache:6379/0", "redis://[REDACTED]@cache:6379/0"],
    ["https://TOKEN123@github.com/org/repo", "https://[REDACTED]@github.com/org/repo"],
    ["https://user@host/x?y=1", "https://[REDACTED]@host/x?y=1"],
    ["/health?token=abc&full=1", "/health?token=[REDACTED]&full=1"],
    [
      "/health?key=k&sig=s&signature=s2&page=2",
      "/health?key=[REDACTED]&sig=[REDACTED]&signature=[REDACTED]&page=2",
    ],
    [
      "https://s3.example/b/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Expires=60",
      "https://s3.example/b/o?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&X-Amz-Expires=60",
    ],
    ["https://h/cb#access_token=t&state=s", "https://h/cb#access_token=[REDACTED]&state=s"],
    ["mysql://u:p@h/db?password=x&ssl=true", "mysql://[REDACTED]@h/db?password=[REDACTED]&ssl=true"],
    ["https://h/a?api%5Fkey=1", "https://h/a?api%5Fkey=[REDACTED]"],
    ["https://h/a?q=%zz&token=1", "https://h/a?q=%zz&token=[REDACTED]"],
  ];
  for (const [input, want] of cases) assert.equal(redactUrl(input), want, input);
  // Not URLs (or no secrets): unchanged.
  for (
    const s of [
      "/health",
      "https://example.com/docs?page=2",
      "user@example.com",
      "a=b&token=c",
      "^Bearer .+$",
      "https://x/@me",
    ]
  ) {
    assert.equal(redactUrl(s), s.startsWith("https://x/@") ? "https://[REDACTED]@me" : s, s);
  }
  // Anywhere in the config.
  assert.deepEqual(
    redactConfig({
      upstreams: [{ health_check: { path: "/healthz?access_token=t" } }],
      tracing: { endpoint: "http://u:p@otel:4318" },
    }),
    {
      upstreams: [{ health_check: { path: "/healthz?access_token=[REDACTED]" } }],
      tracing: { endpoint: "http://[REDACTED]@otel:4318" },
    },
  );
});

Deno.test("redactConfig: values from ${ENV}, with the host and port derived from an address", () => {
  const config = {
    listeners: [{ name: "http", address: "10.1.2.3:8080", hostname: "10.1.2.3", port: 8080 }],
    admin: { address: "127.0.0.1:9091", hostname: "127.0.0.1", port: 9091 },
    upstreams: [{
      name: "u",
      endpoints: [{ address: "a:1", hostname: "a", port: 1, weight: 1 }, { address: "b:2" }],
    }],
    plugins: [{
      name: "p",
      config: { region: "eu", level: "debug" },
      public_config_keys: ["region", "level"],
    }],
    drain_timeout: 5000,
  };
  const envPaths = [
    "listeners[0].address",
    "upstreams[0].endpoints[0]",
    "plugins[0].config.region",
    "drain_timeout",
  ];
  const out = redactConfig(config, { envPaths });
  assert.deepEqual(out.listeners, [{ name: "http", address: REDACTED, hostname: REDACTED, port: REDACTED }]);
  assert.deepEqual(out.admin, config.admin);
  assert.deepEqual(out.upstreams[0].endpoints, [REDACTED, { address: "b:2" }]);
  assert.deepEqual(out.plugins[0].config, { region: REDACTED, level: "debug" });
  assert.equal(out.drain_timeout, REDACTED);
  // A whole plugin config from one variable.
  assert.equal(redactConfig(config, { envPaths: ["plugins[0].config"] }).plugins[0].config, REDACTED);
});

Deno.test("redactConfig: api_key middleware key hashes, top level and per route", () => {
  const entry = {
    name: "api_key",
    options: { header: "x-api-key", keys: [{ key: "sha256:ab12", name: "shop" }] },
  };
  const out = redactConfig({ middleware: [entry], routes: [{ id: "r", middleware: [entry] }] }) as {
    middleware: { options: { keys: { key: string; name: string }[] } }[];
    routes: { middleware: { options: { keys: { key: string; name: string }[] } }[] }[];
  };
  assert.deepEqual(out.middleware[0].options.keys, [{ key: REDACTED, name: "shop" }]);
  assert.deepEqual(out.routes[0].middleware[0].options.keys, [{ key: REDACTED, name: "shop" }]);
});
