/**
 * Shared by the Proxy-Wasm integration tests: the test plugin modules, a
 * JSON echo upstream and a YAML builder for routes with plugins.
 */
import { startUpstream, type TestUpstream } from "./helpers.ts";

/** Directory of the built test plugins. */
export const PLUGINS = new URL("../plugins/test/", import.meta.url).pathname;
/** The kitchen-sink test plugin, one build per ABI version. */
export const KITCHEN = {
  "0.1.0": PLUGINS + "kitchen_0_1_0.wasm",
  "0.2.0": PLUGINS + "kitchen_0_2_0.wasm",
  "0.2.1": PLUGINS + "kitchen_0_2_1.wasm",
};

/** An upstream echoing method, path, headers and body as JSON, with a secret response header. */
export function jsonEcho(): TestUpstream {
  return startUpstream(async (req) => {
    const body = await req.text();
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => headers[k] = v);
    const u = new URL(req.url);
    return Response.json({ method: req.method, path: u.pathname + u.search, headers, body }, {
      headers: { "x-upstream-secret": "s3cr3t", ...(u.searchParams.has("deny") ? { "x-deny": "1" } : {}) },
    });
  });
}

/** A `plugins:` entry. */
export interface PluginSpec {
  name: string;
  path: string;
  config?: unknown;
  phase?: string;
  priority?: number;
  failure_policy?: string;
  memory_limit?: string;
  timeout?: string;
  root_id?: string;
  global?: boolean;
  isolation?: string;
}

/** YAML: one listener, upstream "app" (+ optional "auth"), one route per [id, plugins]. */
export function pluginYaml(
  app: TestUpstream,
  plugins: PluginSpec[],
  routes: [string, string[]][],
  auth?: TestUpstream,
): string {
  const ups: unknown[] = [{ name: "app", endpoints: [app.address] }];
  if (auth) ups.push({ name: "auth", endpoints: [auth.address] });
  return [
    "listeners:",
    '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
    `upstreams: ${JSON.stringify(ups)}`,
    `routes: ${
      JSON.stringify(routes.map(([id, p]) => ({ id, path: `/${id}/*`, upstream: "app", plugins: p })))
    }`,
    `plugins: ${JSON.stringify(plugins)}`,
  ].join("\n") + "\n";
}

/** What jsonEcho answers. */
export interface Echoed {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}
