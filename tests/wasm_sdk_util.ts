/**
 * The contract every SDK-built filter in plugins/sdk-<lang>/ implements (see
 * their READMEs), as one suite of integration tests per SDK: configuration
 * from YAML, request and response header edits, properties, a local response,
 * a metric, a buffered body rewrite and a rejected configuration.
 */
import assert from "node:assert/strict";
import { itest, startLoom, yamlOf } from "./helpers.ts";
import type { Tool } from "./tools.ts";
import { get, metricValue } from "./gateway_util.ts";
import { type Echo, startUpstream } from "./upstream.ts";

/** An SDK filter: `lang` prefixes its headers, metric and body marker (x-go-sdk, wasm_go_requests, go[n]:). */
export interface SdkFilter {
  lang: "cpp" | "go" | "rust";
  /** As in its local response: "denied by the <label> SDK plugin". */
  label: string;
  wasm: string;
  /** What the build needs to be there (tests/tools.ts). */
  needs?: Tool[];
}

async function pluginErrors(admin: (p: string) => string): Promise<void> {
  const info = JSON.parse((await get(admin("/plugins"))).text) as { name: string; errors: number }[];
  assert.ok(info.length > 0);
  for (const p of info) assert.equal(p.errors, 0, JSON.stringify(p));
}

/** Registers the shared tests for one SDK filter. */
export function sdkFilterTests(sdk: SdkFilter): void {
  const { lang, wasm, needs = [] } = sdk;
  const rootId = `loom_${lang}`;
  const h = (name: string) => `x-${lang}-${name}`;
  const marked = (body: string) => `${lang}[${body.length}]:${body}`;
  /** An echo upstream and a Loom running the filter as `name` in `phase` on route `/<route>/*`. */
  const withFilter = async (route: string, name: string, phase: string, config: string) => {
    const app = startUpstream({ echo: "app" });
    const plugins = [{ name, path: wasm, root_id: rootId, phase, config }];
    return { app, loom: await startLoom(yamlOf({ app, plugins, pluginRoutes: [[route, [name]]] })) };
  };

  itest(`${lang} sdk plugin: configuration, header edits, properties, local response, metric`, async () => {
    const app = startUpstream({ echo: "app" });
    const config = { greeting: "from-yaml", n: 2 };
    const loom = await startLoom(yamlOf({
      app,
      plugins: [
        { name: lang, path: wasm, root_id: rootId, phase: "on_response_headers", config },
        {
          name: `${lang}-text`,
          path: wasm,
          root_id: rootId,
          phase: "on_response_headers",
          config: "plain text",
        },
      ],
      pluginRoutes: [[lang, [lang]], [`${lang}t`, [`${lang}-text`]]],
    }));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await get(loom.url(`/${lang}/x?q=1`), {
          headers: { "x-remove-me": "1", [h("config")]: "old" },
        });
        assert.equal(r.status, 200, r.text);
        const e = JSON.parse(r.text) as Echo;
        // Request side: add, replace and remove a header.
        assert.equal(e.headers[h("sdk")], `proxy-wasm-${lang}-sdk`);
        assert.equal(e.headers[h("config")], JSON.stringify(config)); // a mapping is passed as JSON
        assert.equal(e.headers["x-remove-me"], undefined);
        // Properties (NUL-separated paths).
        assert.equal(e.headers[h("path")], `/${lang}/x?q=1`);
        assert.equal(e.headers[h("root")], rootId);
        // Response side.
        assert.equal(r.headers.get(h("config")), JSON.stringify(config));
        assert.equal(r.headers.get(h("status")), "200"); // response.code, an 8-byte integer
        assert.equal(r.headers.get("x-upstream-secret"), null);
      }
      const t = await get(loom.url(`/${lang}t/x`));
      assert.equal(t.status, 200, t.text);
      assert.equal((JSON.parse(t.text) as Echo).headers[h("config")], "plain text");
      assert.equal(t.headers.get(h("config")), "plain text");

      // A local response: the upstream never sees the request.
      const before = app.seen.length;
      const d = await get(loom.url(`/${lang}/deny`));
      assert.equal(d.status, 403);
      assert.equal(d.text, `denied by the ${sdk.label} SDK plugin\n`);
      assert.equal(d.headers.get(h("local")), "1");
      assert.equal(app.seen.length, before);

      const metrics = (await get(loom.admin("/metrics"))).text;
      assert.ok(metricValue(metrics, `wasm_${lang}_requests`) >= 4, metrics);
      await pluginErrors(loom.admin);
    } finally {
      await loom.close();
      await app.close();
    }
  }, { needs });

  itest(`${lang} sdk plugin: the request body buffered until its end, then rewritten`, async () => {
    const { app, loom } = await withFilter("b", `${lang}-body`, "on_request_body", "body");
    try {
      const r = await get(loom.url("/b/x"), { method: "POST", body: "hello wasm" });
      assert.equal(r.status, 200, r.text);
      const e = JSON.parse(r.text) as Echo;
      assert.equal(e.body, marked("hello wasm"));
      assert.equal(e.headers["content-length"], String(marked("hello wasm").length));
      assert.equal(e.headers[h("config")], "body");
      // A streamed (chunked) body: the plugin pauses until its end, the host buffers the chunks.
      const chunks = ["one,", "two,", "three"];
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          const next = chunks.shift();
          if (next === undefined) return c.close();
          await new Promise((res) => setTimeout(res, 10));
          c.enqueue(new TextEncoder().encode(next));
        },
      });
      const s = await get(loom.url("/b/y"), { method: "POST", body: stream });
      assert.equal(s.status, 200, s.text);
      assert.equal((JSON.parse(s.text) as Echo).body, marked("one,two,three"));
      await pluginErrors(loom.admin);
    } finally {
      await loom.close();
      await app.close();
    }
  }, { needs });

  itest(`${lang} sdk plugin: a rejected configuration marks the plugin failed`, async () => {
    const { app, loom } = await withFilter("bad", `${lang}-bad`, "on_request_headers", "reject");
    try {
      const r = await get(loom.url("/bad/x"));
      assert.equal(r.status, 500, r.text); // fail_closed: {"error":"plugin failed"}
      assert.equal(app.seen.length, 0);
    } finally {
      await loom.close();
      await app.close();
    }
  }, { needs });
}
