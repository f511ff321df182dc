import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";

itest("access log: one JSON line per request, written to the configured file", async () => {
  const up = startUpstream(() => new Response("hello"));
  const logPath = Deno.makeTempFileSync({ suffix: ".log" });
  const loom = await startLoom(`
listeners:
  - name: http
    address: "127.0.0.1:\${PORT}"
    protocol: http
access_log:
  enabled: true
  path: "${logPath}"
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: logged
    path: /logged/*
    upstream: up
`);
  try {
    const res = await fetch(loom.url("/logged/a?b=1"), {
      method: "POST",
      body: "12345",
      headers: { "user-agent": "loom-test", "x-request-id": "req-abc" },
    });
    assert.equal(await res.text(), "hello");
    await (await fetch(loom.url("/nowhere"))).body?.cancel();
    const lines = await waitFor("2 access log lines", () => {
      const text = Deno.readTextFileSync(logPath).trim();
      const ls = text === "" ? [] : text.split("\n");
      return ls.length >= 2 ? ls : undefined;
    }, 3000);
    const first = JSON.parse(lines[0]);
    assert.equal(first.request_id, "req-abc");
    assert.equal(first.route, "logged");
    assert.equal(first.method, "POST");
    assert.equal(first.path, "/logged/a");
    assert.equal(first.query, "b=1");
    assert.equal(first.status, 200);
    assert.equal(first.upstream, up.address);
    assert.equal(first.user_agent, "loom-test");
    assert.equal(first.client_ip, "127.0.0.1");
    assert.equal(first.protocol, "HTTP/1.1");
    assert.ok(first.bytes_in > 5, "bytes_in counts head and body");
    assert.ok(first.bytes_out > 5, "bytes_out counts the response");
    assert.ok(typeof first.duration_ms === "number" && first.duration_ms >= 0);
    assert.ok(!Number.isNaN(Date.parse(first.time)));
    const second = JSON.parse(lines[1]);
    assert.equal(second.status, 404);
    assert.equal(second.route, "");
  } finally {
    await loom.close();
    await up.close();
    Deno.removeSync(logPath);
  }
});

itest("access log: fields, sampling; request_id on every response (HTTP/1.1, h2c)", async () => {
  const up = startUpstream((req) =>
    new Response(new URL(req.url).pathname === "/f/fail" ? "no" : "ok", {
      status: new URL(req.url).pathname === "/f/fail" ? 503 : 200,
    })
  );
  const logPath = Deno.makeTempFileSync({ suffix: ".log" });
  const h2Port = freePort();
  const loom = await startLoom(`
listeners:
  - { name: http, address: "127.0.0.1:\${PORT}", protocol: http }
  - { name: h2c, address: "127.0.0.1:${h2Port}", protocol: h2c }
access_log:
  path: "${logPath}"
  fields: [status, method, path, query, host, listener, trace_id]
  sample: 0
request_id: { response_header: true, header: X-Correlation-ID }
upstreams: [{ name: up, endpoints: ["${up.address}"] }]
routes: [{ id: f, path: /f/*, upstream: up }]
`);
  const h2 = Deno.createHttpClient({ http1: false, http2: true });
  try {
    for (const [url, client] of [[loom.url(""), undefined], [`http://127.0.0.1:${h2Port}`, h2]] as const) {
      // A success: the id comes back (the client's, when valid), but the line is sampled out (sample: 0).
      let res = await fetch(url + "/f/ok?a=1", { client, headers: { "x-request-id": "rid-1" } });
      assert.equal(await res.text(), "ok");
      assert.equal(res.headers.get("x-correlation-id"), "rid-1");
      // Loom's own 404 and an upstream's 503: ids too, and always logged.
      res = await fetch(url + "/nowhere", { client });
      await res.body?.cancel();
      assert.match(res.headers.get("x-correlation-id") ?? "", /^[0-9a-f]{16}-[0-9a-f]+$/);
      res = await fetch(url + "/f/fail?x=y", { client });
      await res.body?.cancel();
      assert.equal(res.status, 503);
      assert.ok(res.headers.get("x-correlation-id"));
    }
    const lines = await waitFor("4 error lines", () => {
      const text = Deno.readTextFileSync(logPath).trim();
      const ls = text === "" ? [] : text.split("\n");
      return ls.length >= 4 ? ls.map((l) => JSON.parse(l)) : undefined;
    }, 3000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(Deno.readTextFileSync(logPath).trim().split("\n").length, 4, "successes are not logged");
    assert.deepEqual(Object.keys(lines[1]), [
      "status",
      "method",
      "path",
      "query",
      "host",
      "listener",
      "trace_id",
    ]);
    assert.deepEqual(lines[1], {
      status: 503,
      method: "GET",
      path: "/f/fail",
      query: "x=y",
      host: `127.0.0.1:${loom.port}`,
      listener: "http",
      trace_id: "",
    });
    assert.equal(lines[0].status, 404);
    assert.equal(lines[3].listener, "h2c");
  } finally {
    h2.close();
    await loom.close();
    await up.close();
    Deno.removeSync(logPath);
  }
});
