import assert from "node:assert/strict";
import { loadConfig, parseConfig } from "./load.ts";
import type { LoadResult } from "./types.ts";
import type { Type } from "./dsl.ts";
import { loomSchema } from "./schema.ts";

/** A config naming a file at every place the schema marks as a file path, all relative. */
const CONFIG = `
listeners:
  - name: tls
    address: "127.0.0.1:8443"
    protocol: https
    tls:
      cert_file: certs/server.pem
      key_file: ./certs/server.key
      certificates: [{ cert_file: certs/b.pem, key_file: certs/b.key }]
      client_ca_file: ../ca/clients.pem
upstreams:
  - name: up
    endpoints: ["127.0.0.1:9000"]
    tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client.key }
plugins:
  - { name: p, path: plugins/p.wasm }
  - { name: q, path: /abs/q.wasm }
routes:
  - id: r
    path: /*
    upstream: up
    middleware:
      - basic_auth: { users_file: htpasswd }
      - jwt: { keys: [{ algorithms: [RS256], file: keys/jwks.json }] }
      - api_key: { file: keys/api.yaml }
access_log:
  path: logs/access.log
`;

function ok(r: LoadResult) {
  assert.ok(r.ok, r.ok ? "" : r.errors.map((e) => `${e.line}: ${e.path}: ${e.message}`).join("\n"));
  return r.config as unknown as {
    listeners: { tls: Record<string, unknown> }[];
    upstreams: { tls: Record<string, string> }[];
    plugins: { path: string }[];
    routes: { middleware: { name: string; options: Record<string, unknown> }[] }[];
    access_log: { path: string };
  };
}

Deno.test("config paths: relative file paths resolve against the config file's directory", async () => {
  const dir = Deno.makeTempDirSync();
  const cwd = Deno.cwd();
  try {
    Deno.mkdirSync(`${dir}/etc`);
    // users_file is read while validating: it must be found relative to the config, not the cwd.
    Deno.writeTextFileSync(
      `${dir}/etc/htpasswd`,
      "alice:$2y$04$abcdefghijklmnopqrstuu5Gr3Ts7HdV/xlb3YJz5cQCHDq4XyC1a\n",
    );
    Deno.writeTextFileSync(`${dir}/etc/loom.yaml`, CONFIG);
    Deno.chdir(dir);
    const c = ok(await loadConfig("etc/loom.yaml"));
    const etc = `${dir}/etc`;
    assert.deepEqual(
      [
        c.listeners[0].tls.cert_file,
        c.listeners[0].tls.key_file,
        c.listeners[0].tls.certificates,
        c.listeners[0].tls.client_ca_file,
      ],
      [
        `${etc}/certs/server.pem`,
        `${etc}/certs/server.key`,
        [{ cert_file: `${etc}/certs/b.pem`, key_file: `${etc}/certs/b.key` }],
        `${dir}/ca/clients.pem`,
      ],
    );
    assert.deepEqual(c.upstreams[0].tls, {
      ca_file: `${etc}/ca.pem`,
      cert_file: `${etc}/client.pem`,
      key_file: `${etc}/client.key`,
      insecure_skip_verify: false,
    });
    assert.deepEqual(c.plugins.map((p) => p.path), [`${etc}/plugins/p.wasm`, "/abs/q.wasm"]);
    const mw = c.routes[0].middleware;
    assert.deepEqual(mw.map((m) => m.name), ["basic_auth", "jwt", "api_key"]);
    assert.equal(mw[0].options.users_file, `${etc}/htpasswd`);
    assert.equal((mw[1].options.keys as { file: string }[])[0].file, `${etc}/keys/jwks.json`);
    assert.equal(mw[2].options.file, `${etc}/keys/api.yaml`);
    assert.equal(c.access_log.path, `${etc}/logs/access.log`);
  } finally {
    Deno.chdir(cwd);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("config paths: access_log stdout stays; parseConfig without a base keeps paths as written", () => {
  const base = `listeners: [{ name: h, address: ":8080", protocol: http }]\n`;
  const kept = ok(parseConfig(base + "access_log: { path: stdout }\n", "t.yaml", {}, "/etc/loom"));
  assert.equal(kept.access_log.path, "stdout");
  const asWritten = ok(
    parseConfig(base + "plugins: [{ name: p, path: p.wasm }]\naccess_log: { path: a.log }\n", "t.yaml", {}),
  );
  assert.equal(asWritten.plugins[0].path, "p.wasm");
  assert.equal(asWritten.access_log.path, "a.log");
});

Deno.test("config paths: every *_file / file field of the schema is marked as a file path", () => {
  const unmarked: string[] = [];
  const marked = new Set<string>();
  const seen = new Set<Type>();
  const visit = (type: Type, path: string): void => {
    if (seen.has(type)) return;
    seen.add(type);
    switch (type.kind) {
      case "object":
        for (const [name, field] of Object.entries(type.fields)) {
          const p = path ? `${path}.${name}` : name;
          if (field.type.kind === "string" && field.type.file) marked.add(p);
          else if (/(^|_)file$/.test(name)) unmarked.push(p);
          visit(field.type, p);
        }
        return;
      case "list":
        return visit(type.items, path + "[]");
      case "map":
        return visit(type.values, path + ".*");
      case "oneOf":
        return type.variants.forEach((v) => visit(v, path));
    }
  };
  visit(loomSchema, "");
  assert.deepEqual(unmarked, []);
  // The walk reaches the middleware options too.
  for (
    const p of ["routes[].middleware[].basic_auth.users_file", "plugins[].path", "upstreams[].tls.ca_file"]
  ) {
    assert.ok(marked.has(p), `${p} is not marked as a file path`);
  }
});
