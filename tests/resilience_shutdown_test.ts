/**
 * Acceptance: SIGTERM during load. Every request accepted before the signal
 * completes with its normal response, readiness turns false (the admin API
 * keeps answering /ready with 503 during the drain), the listener stops
 * accepting, the process exits 0; a second signal exits at once.
 */
import assert from "node:assert/strict";
import { freePort, itest, waitFor, writeTempConfig } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function startProcess(
  upstream: string,
): Promise<{ child: Deno.ChildProcess; port: number; admin: number }> {
  const port = freePort();
  const admin = freePort();
  const cfg = writeTempConfig(
    [
      "listeners:",
      `  - {name: http, address: "127.0.0.1:${port}", protocol: http}`,
      `upstreams: [{name: svc, endpoints: ["${upstream}"]}]`,
      'routes: [{id: r, path: "/*", upstream: svc}]',
      `admin: {address: "127.0.0.1:${admin}"}`,
      "access_log: {enabled: false}",
      "drain_timeout: 10s",
    ].join("\n") + "\n",
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", MAIN, "run", "-c", cfg, "--log-level", "warn"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitFor(
    "loom ready",
    async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${admin}/ready`);
        await r.text();
        return r.status === 200;
      } catch {
        return false;
      }
    },
    20_000,
    50,
  );
  return { child, port, admin };
}

itest(
  "resilience: SIGTERM during load: accepted requests complete, /ready 503 while draining, exit 0",
  async () => {
    const up = startUpstream({ delayMs: 1000 });
    const { child, port, admin } = await startProcess(up.address);
    try {
      const n = 20;
      const inflight = Array.from(
        { length: n },
        (_, i) =>
          fetch(`http://127.0.0.1:${port}/r${i}`).then(async (r) => [r.status, await r.text()] as const),
      );
      await waitFor("all requests accepted upstream", () => up.received >= n, 5000);
      child.kill("SIGTERM");
      await waitFor("/ready is 503 while draining", async () => {
        const r = await fetch(`http://127.0.0.1:${admin}/ready`);
        await r.text();
        return r.status === 503;
      }, 2000);
      await assert.rejects(
        Deno.connect({ hostname: "127.0.0.1", port }).then((c) => c.close()),
        "the listener stopped accepting",
      );
      const results = await Promise.all(inflight);
      for (const [status, text] of results) {
        assert.equal(status, 200);
        assert.match(text, /^ok:\d+$/);
      }
      const { code } = await child.status;
      assert.equal(code, 0);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await up.stop();
    }
  },
);

itest("resilience: a second signal exits at once", async () => {
  const up = startUpstream({ delayMs: 3000 });
  const { child, port, admin } = await startProcess(up.address);
  try {
    const pending = fetch(`http://127.0.0.1:${port}/slow`).then((r) => r.text()).catch(() => "");
    await waitFor("request accepted", () => up.received >= 1, 5000);
    child.kill("SIGTERM");
    await waitFor("draining", async () => {
      const r = await fetch(`http://127.0.0.1:${admin}/ready`);
      await r.text();
      return r.status === 503;
    }, 2000);
    const t0 = Date.now();
    child.kill("SIGINT");
    const { code } = await child.status;
    assert.notEqual(code, 0);
    assert.ok(Date.now() - t0 < 2000, "exited without waiting for the drain");
    await pending;
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await up.stop();
  }
});
