/**
 * Acceptance: reloads under load. 20 reloads (valid edits and one invalid
 * file) during a 10-second load lose no request and reset no connection; a
 * long SSE stream survives 5 reloads; listeners added or removed by a reload
 * open and close without disturbing the others.
 *
 * The SSE stream lasts LOOM_SSE_SECONDS (default 6 s here to keep
 * `deno task test` short; `deno task chaos` runs it for 30 s).
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, waitFor, writeConfig, yamlOf } from "./helpers.ts";
import { postReload } from "./gateway_util.ts";
import { setLogOutput } from "../src/observability/logger.ts";
import { runLoad } from "./resilience_util.ts";
import { startUpstream } from "./upstream.ts";

const SSE_SECONDS = Number(Deno.env.get("LOOM_SSE_SECONDS") ?? "6");

itest(
  "resilience: 20 reloads during a 10 s load: no failed request, no reset; the invalid file is rejected",
  async () => {
    const ups = [startUpstream(), startUpstream(), startUpstream()];
    const variant = (i: number) =>
      yamlOf({
        upstreams: [{
          name: "svc",
          // Endpoints come and go, balancer and retry settings change.
          endpoints: i % 3 === 2 ? ups.slice(0, 2).map((u) => u.address) : ups.map((u) => u.address),
          load_balancer: i % 2 === 0 ? "round_robin" : "least_conn",
          ...(i % 4 === 1 ? { retry: { max_retries: 1 } } : {}),
          ...(i % 5 === 3 ? { circuit_breaker: { failure_threshold: 50 } } : {}),
        }],
        routes: [
          { id: "main", path: "/x", upstream: "svc" },
          ...(i % 2 === 0 ? [{ id: `extra-${i}`, path: `/extra/${i}`, upstream: "svc" }] : []),
        ],
        extra: "workers: 2",
      });
    const loom = await startLoom(variant(0));
    const logs: string[] = [];
    const prev = setLogOutput((l) => logs.push(l));
    try {
      const results: number[] = [];
      const reloads = (async () => {
        for (let i = 1; i <= 20; i++) {
          await new Promise((r) => setTimeout(r, 450));
          if (i === 10) {
            writeConfig(
              loom,
              variant(i).replace('upstream: "svc"', 'upstream: "missing"').replace(
                '"upstream":"svc"',
                '"upstream":"missing"',
              ),
            );
          } else writeConfig(loom, variant(i));
          results.push((await postReload(loom)).status);
        }
      })();
      const load = await runLoad({ url: loom.url("/x"), concurrency: 16, durationMs: 10_000 });
      await reloads;
      assert.equal(load.failed, 0, `failed: ${load.samples.join("; ")}`);
      assert.deepEqual(results, results.map((_, i) => i === 9 ? 400 : 200));
      assert.ok(
        logs.some((l) => l.includes("reload rejected") && l.includes("missing")),
        "invalid file logged",
      );
      console.log(
        `reload: ${load.sent} requests, ${load.failed} failed, p99 ${load.p99.toFixed(1)} ms, 20 reloads`,
      );
    } finally {
      setLogOutput(prev);
      await loom.close();
      for (const u of ups) await u.stop();
    }
  },
);

itest(`resilience: an SSE stream of ${SSE_SECONDS} s survives 5 reloads without a break`, async () => {
  const events = SSE_SECONDS * 10;
  const sse = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    let n = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        timer = setInterval(() => {
          if (n === events) {
            clearInterval(timer);
            c.enqueue(new TextEncoder().encode("event: end\ndata: done\n\n"));
            c.close();
            return;
          }
          c.enqueue(new TextEncoder().encode(`id: ${n}\ndata: tick ${n}\n\n`));
          n++;
        }, 100);
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const addr = `127.0.0.1:${sse.addr.port}`;
  const cfg = (i: number) =>
    yamlOf({
      upstreams: [{ name: "sse", endpoints: [addr], ...(i % 2 ? { retry: { max_retries: 1 } } : {}) }],
      routes: [{ id: "events", path: "/events", upstream: "sse", timeout: "10m" }, {
        id: `r${i}`,
        path: `/r${i}`,
        upstream: "sse",
      }],
    });
  const loom = await startLoom(cfg(0));
  try {
    const res = await fetch(loom.url("/events"));
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let reloads = 0;
    const spacing = (SSE_SECONDS * 1000) / 6;
    let next = Date.now() + spacing;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (reloads < 5 && Date.now() >= next) {
        reloads++;
        next += spacing;
        writeConfig(loom, cfg(reloads));
        assert.equal((await postReload(loom)).status, 200);
      }
    }
    assert.equal(reloads, 5);
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(ids, Array.from({ length: events }, (_, i) => i), "every event, in order");
    assert.ok(text.endsWith("event: end\ndata: done\n\n"), "the stream ended normally");
  } finally {
    await loom.close();
    await sse.shutdown();
  }
});

itest(
  "resilience: listeners added and removed by a reload open and close; the others are untouched",
  async () => {
    const up = startUpstream();
    const extraPort = freePort();
    const base = (extra: boolean) =>
      [
        "listeners:",
        '  - name: http\n    address: "127.0.0.1:${PORT}"\n    protocol: http',
        extra ? `  - name: extra\n    address: "127.0.0.1:${extraPort}"\n    protocol: http` : "",
        `upstreams: [{name: svc, endpoints: ["${up.address}"]}]`,
        'routes: [{id: r, path: "/*", upstream: svc}]',
      ].join("\n") + "\n";
    const loom = await startLoom(base(false));
    try {
      // A keep-alive connection on the main listener, used across both reloads.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
      const ask = async () => {
        await conn.write(new TextEncoder().encode("GET /k HTTP/1.1\r\nHost: a\r\n\r\n"));
        const buf = new Uint8Array(4096);
        let got = "";
        while (!/\r\n\r\nok:\d+$/.test(got)) {
          const n = await conn.read(buf);
          if (n === null) throw new Error("main listener connection closed: " + got);
          got += new TextDecoder().decode(buf.subarray(0, n));
        }
        return got;
      };
      assert.match(await ask(), /^HTTP\/1.1 200/);
      await assert.rejects(fetch(`http://127.0.0.1:${extraPort}/x`));

      writeConfig(loom, base(true));
      assert.equal((await postReload(loom)).status, 200);
      const r = await fetch(`http://127.0.0.1:${extraPort}/x`);
      assert.equal(r.status, 200);
      await r.text();
      assert.match(await ask(), /^HTTP\/1.1 200/);

      writeConfig(loom, base(false));
      assert.equal((await postReload(loom)).status, 200);
      await waitFor("extra listener closed", async () => {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: extraPort });
          c.close();
          return false;
        } catch {
          return true;
        }
      }, 3000);
      assert.match(await ask(), /^HTTP\/1.1 200/, "the main listener's connection was not disturbed");
      conn.close();
    } finally {
      await loom.close();
      await up.stop();
    }
  },
);
