/**
 * Code a config does not use is not loaded (issue 16 item 4, bench/README.md Memory): what the CLI
 * imports statically leaves out the HTTP/2, HTTP/3, tcp and eBPF code, the Wasm host, the middleware
 * and the npm packages behind them (they are `import()`ed while a config that uses them is loaded), and
 * the one case the config gives no sign of, gRPC-Web on a config of HTTP/1.1 only, is served by code
 * loaded with its first request.
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoomProcess } from "./helpers.ts";
import { startGrpcServer } from "./grpc_util.ts";

const SRC = new URL("../src/", import.meta.url);

/** Static imports that bring code at run time (not `import type`, not `{ type A, type B }`). */
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s+(type\s+)?([^;"']*?)\s*from\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g;

/** Every module (src-relative path, or a bare/npm specifier) the CLI loads before any config is read. */
function staticClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    const text = Deno.readTextFileSync(new URL(rel, SRC));
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[3] ?? m[4];
      if (m[1] !== undefined) continue;
      const names = (m[2] ?? "").trim();
      if (names.startsWith("{")) {
        const items = names.slice(1, -1).split(",").map((s) => s.trim()).filter(Boolean);
        if (items.length > 0 && items.every((s) => s.startsWith("type "))) continue;
      }
      if (!spec.startsWith(".")) {
        seen.add(spec);
        continue;
      }
      visit(new URL(spec, new URL(rel, SRC)).pathname.slice(SRC.pathname.length));
    }
  };
  visit(entry);
  return seen;
}

Deno.test("lazy loading: the CLI's static imports leave out what only some configs use", () => {
  const loaded = staticClosure("cli/main.ts");
  // What every config needs is there (the walk works).
  for (
    const m of ["runtime/instance.ts", "listeners/http1.ts", "proxy/forward.ts", "middleware/registry.ts"]
  ) {
    assert.ok(loaded.has(m), `${m} should be imported statically`);
  }
  const lazy = [
    "listeners/h2.ts",
    "listeners/h3.ts",
    "listeners/tcp.ts",
    "http2/connection.ts",
    "http3/connection.ts",
    "proxy/h2_forward.ts",
    "upstream/h2_pool.ts",
    "upstream/health_check.ts",
    "wasm/mod.ts",
    "wasm/plugin.ts",
    "wasm/check.ts",
    "middleware/wasm/index.ts",
    "ebpf/mod.ts",
    "ebpf/tunnels.ts",
    "observability/tracing.ts",
    "middleware/tracing/index.ts",
    "middleware/rate_limit/index.ts",
    "middleware/cache/index.ts",
    "middleware/jwt/index.ts",
    "middleware/basic_auth/index.ts",
    "middleware/compress/index.ts",
    "middleware/headers/index.ts",
    "middleware/forward_auth/index.ts",
    "jose",
    "hash-wasm",
    "ioredis",
    "@opentelemetry/api",
  ];
  const found = lazy.filter((m) => loaded.has(m));
  assert.deepEqual(found, [], `imported statically from src/cli/main.ts (make them import() at config time)`);
});

itest(
  "lazy loading: gRPC-Web on a config of HTTP/1.1 only loads HTTP/2 forwarding with its first request",
  async () => {
    const up = await startGrpcServer(freePort());
    // A Loom process of its own: its isolate has not loaded HTTP/2 forwarding for another test.
    const loom = await startLoomProcess(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
upstreams:
  - name: svc
    endpoints: ["127.0.0.1:${up.port}"]
routes:
  - { id: echo, path: "/test.Echo/*", upstream: svc }
`);
    try {
      const body = new Uint8Array([0, 0, 0, 0, 3, ...new TextEncoder().encode("web")]);
      // Together: the second arrives while the first may still be loading the module.
      const answers = await Promise.all([1, 2, 3].map(async () => {
        const r = await fetch(loom.url("/test.Echo/Unary"), {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
          body,
        });
        return [r.status, new TextDecoder().decode(await r.arrayBuffer())] as const;
      }));
      for (const [status, text] of answers) {
        assert.equal(status, 200, loom.log());
        assert.match(text, /echo:web/);
        assert.match(text, /grpc-status:\s*0/);
      }
    } finally {
      await loom.close();
      await up.close();
    }
  },
);
