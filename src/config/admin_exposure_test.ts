import assert from "node:assert/strict";
import { parseConfig } from "./load.ts";
import { isLoopbackHostname } from "./admin_exposure.ts";
import { assertError, errorsOf } from "./testdata/helpers.ts";

const LISTENER = ["listeners:", "  - { name: http, address: ':8080', protocol: http }"];

function load(lines: string[], env: Record<string, string> = {}) {
  const r = parseConfig([...LISTENER, ...lines].join("\n"), "t.yaml", env);
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return r;
}

Deno.test("isLoopbackHostname", () => {
  for (
    const h of [
      "127.0.0.1",
      "127.255.0.9",
      "::1",
      "0:0:0:0:0:0:0:1",
      "localhost",
      "LOCALHOST",
      "::ffff:127.0.0.1",
    ]
  ) {
    assert.ok(isLoopbackHostname(h), h);
  }
  for (
    const h of ["", "0.0.0.0", "::", "10.0.0.1", "127.0.0.256", "127.0.0", "localhost.example", "128.0.0.1"]
  ) {
    assert.ok(!isLoopbackHostname(h), h);
  }
});

Deno.test("admin beyond loopback without auth: a run error at admin.address, a warning for validate", () => {
  const r = load(["admin:", "  enabled: true", '  address: ":9091"']);
  assert.equal(r.runErrors.length, 1);
  const e = r.runErrors[0];
  assert.deepEqual([e.path, e.line, e.column], ["admin.address", 5, 12]);
  assert.match(e.message, /all interfaces \(":9091"\).*without authentication \(no admin\.auth\)/);
  assert.match(e.message, /admin\.auth\.token.*admin\.insecure: true/);
  assert.ok(r.warnings.includes(e));

  // An auth block without credentials is no auth; a token from the environment is.
  const empty = load(["admin:", '  address: "0.0.0.0:9091"', "  auth: { enabled: true }"]);
  assert.match(empty.runErrors[0].message, /"0\.0\.0\.0:9091".*admin\.auth has no token and no users/);
  const env = { LOOM_ADMIN_TOKEN: "0123456789abcdef-x" };
  for (
    const auth of [
      "{ token: '${LOOM_ADMIN_TOKEN}' }",
      "{ users: { ops: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 } }",
    ]
  ) {
    const ok = load(["admin:", '  address: "0.0.0.0:9091"', `  auth: ${auth}`], env);
    assert.deepEqual([ok.runErrors, ok.warnings], [[], []], auth);
  }
  assert.equal(
    load(
      ["admin:", '  address: "0.0.0.0:9091"', "  auth: { enabled: false, token: '${LOOM_ADMIN_TOKEN}' }"],
      env,
    ).runErrors.length,
    1,
  );

  // admin.insecure: true: a warning only.
  const insecure = load(["admin:", '  address: "[::]:9091"', "  insecure: true"]);
  assert.deepEqual(insecure.runErrors, []);
  assert.match(insecure.warnings[0].message, /admin\.insecure: true accepts this/);

  // Loopback or disabled: nothing.
  for (
    const admin of [
      '{ address: "127.0.0.1:9091" }',
      '{ address: "[::1]:9091" }',
      '{ address: "localhost:9091" }',
      '{ address: ":9091", enabled: false }',
    ]
  ) {
    const quiet = load([`admin: ${admin}`]);
    assert.deepEqual([quiet.runErrors, quiet.warnings], [[], []], admin);
  }
});

Deno.test("admin.auth.token: at least 16 characters, no whitespace, never echoed", () => {
  const errors = errorsOf([...LISTENER, "admin:", "  auth:", "    token: short-s3cret"]);
  assertError(errors, "admin.auth.token", 5, /at least 16 characters/);
  assert.ok(!JSON.stringify(errors).includes("short-s3cret"));
  assertError(
    errorsOf([...LISTENER, "admin:", "  auth: { token: 'has a space in the token' }"]),
    "admin.auth.token",
    4,
    /whitespace/,
  );
});

Deno.test("envPaths: every value with a ${VAR} reference, by YAML path, aliases included", () => {
  const r = load([
    "upstreams:",
    "  - name: u",
    "    endpoints: ['${UP_ADDR}', 'b:2']",
    "    health_check: { path: &hp '/health?k=${HC_KEY:-none}' }",
    "plugins:",
    "  - name: p",
    "    path: p.wasm",
    "    config: { region: '${REGION}', literal: '$${NOT}', copy: *hp, odd.key: '${REGION}' }",
  ], { UP_ADDR: "a:1", REGION: "eu" });
  assert.deepEqual(
    r.envPaths.sort(),
    [
      "plugins[0].config.copy",
      'plugins[0].config["odd.key"]',
      "plugins[0].config.region",
      "upstreams[0].endpoints[0]",
      "upstreams[0].health_check.path",
    ].sort(),
  );
});
