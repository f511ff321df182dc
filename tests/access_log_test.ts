import assert from "node:assert/strict";
import { itest, startLoom, waitFor } from "./helpers.ts";
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
    assert.equal(first.path, "/logged/a?b=1");
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
