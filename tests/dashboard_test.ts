/**
 * The live dashboard in headless Chromium (tests/cdp.ts): the page loads with
 * nothing from another origin, its charts draw the sampled traffic, the
 * totals it shows match /metrics, recent errors and reloads are listed, no
 * console error, no horizontal scrolling on a phone; a screenshot is saved.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor, writeConfig } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { openPage } from "./cdp.ts";

function total(text: string, name: string, status?: (s: number) => boolean): number {
  let n = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{")) continue;
    const st = Number(/status="(\d+)"/.exec(line)?.[1] ?? "0");
    if (status === undefined || status(st)) n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

const YAML = (extra = "") => `
workers: 2
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
upstreams: [{ name: shop, endpoints: ["UP"] }]
routes:
  - { id: api, path: /api/*, upstream: shop }
  - { id: other, path: /other/*, upstream: shop }
admin:
  address: "127.0.0.1:\${ADMIN_PORT}"
  dashboard: { sample_interval: 400ms }
${extra}`;

itest(
  "dashboard: live page in headless Chromium matches /metrics; offline, no console errors, phone-sized",
  async () => {
    const up = startUpstream((req) => {
      const path = new URL(req.url).pathname;
      return new Response(path.endsWith("/fail") ? "boom" : "ok", {
        status: path.endsWith("/fail") ? 500 : 200,
      });
    });
    const loom = await startLoom(YAML().replace("UP", up.address));
    const page = await openPage();
    try {
      // Traffic over a few samples: mostly 200, some 500s.
      for (let round = 0; round < 6; round++) {
        await Promise.all(Array.from({ length: 15 }, async (_, i) => {
          const path = i % 5 === 0 ? "/api/fail" : i % 2 ? "/api/x" : "/other/y";
          await (await fetch(loom.url(path))).body?.cancel();
        }));
        await new Promise((r) => setTimeout(r, 250));
      }
      // A reload, for the history.
      writeConfig(loom, YAML("trusted_proxies: [10.0.0.0/8]").replace("UP", up.address));
      const reload = await fetch(loom.admin("/reload"), { method: "POST", headers: { "x-loom-admin": "1" } });
      assert.equal(reload.status, 200);
      await reload.body?.cancel();

      await page.phone(390, 844);
      await page.goto(loom.admin("/dashboard"));
      // Live: the page polled, the three charts have lines.
      await waitFor(
        "the charts drawn with data",
        () =>
          page.evaluate<boolean>(`(() => {
        if (!document.body.dataset.updated) return false;
        const lines = (id) => document.querySelectorAll('#' + id + ' polyline').length;
        const pts = (id) => (document.querySelector('#' + id + ' polyline')?.getAttribute('points') ?? '').split(' ').length;
        return lines('chart-rps') >= 1 && pts('chart-rps') >= 3 && lines('chart-errors') >= 1 &&
          lines('chart-latency') >= 3;
      })()`),
        15_000,
        200,
      );

      // The totals shown match /metrics (no traffic now: one poll after the scrape gives the same).
      const updated = await page.evaluate<string>("document.body.dataset.updated");
      await waitFor(
        "a poll after the traffic",
        () => page.evaluate<boolean>(`document.body.dataset.updated !== ${JSON.stringify(updated)}`),
        5000,
        100,
      );
      const metrics = await (await fetch(loom.admin("/metrics"))).text();
      const shown = await page.evaluate<Record<string, string>>(`(() => {
      const v = (id) => document.getElementById(id).textContent;
      return { requests: v('total-requests'), errors: v('total-errors'), rps: v('rps'), p99: v('p99') };
    })()`);
      const requests = total(metrics, "loom_requests_total");
      const errors = total(metrics, "loom_requests_total", (s) => s >= 500);
      assert.equal(requests, 90);
      assert.ok(
        Math.abs(Number(shown.requests) - requests) <= 1,
        `shown ${shown.requests}, /metrics ${requests}`,
      );
      assert.ok(Math.abs(Number(shown.errors) - errors) <= 1, `shown ${shown.errors}, /metrics ${errors}`);
      assert.equal(errors, 18);
      assert.match(shown.p99, /ms$|–/);

      // Tables: routes with their counts, the upstream's endpoint, recent errors, the reload.
      const tables = await page.evaluate<Record<string, string[][]>>(`(() => {
      const t = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')].map((r) =>
        [...r.cells].map((c) => c.textContent));
      return { routes: t('routes'), upstreams: t('upstreams'), errors: t('errors'), reloads: t('reloads'),
        plugins: t('plugins') };
    })()`);
      const api = tables.routes.find((r) => r[0] === "api")!;
      assert.equal(
        Number(api[3]),
        total(metrics.split("\n").filter((l) => l.includes('route="api"')).join("\n"), "loom_requests_total"),
      );
      assert.equal(Number(api[4]), 18);
      assert.deepEqual(tables.upstreams[0].slice(1, 4), [up.address, "healthy", "closed"]);
      assert.ok(tables.errors.length >= 10, JSON.stringify(tables.errors));
      assert.equal(tables.errors[0][1], "500");
      assert.equal(tables.errors[0][3], "GET /api/fail");
      assert.equal(tables.reloads[0][1], "admin");
      assert.equal(tables.reloads[0][2], "applied");
      assert.deepEqual(tables.plugins, [["no plugins"]]);

      // Offline: every request went to the admin origin; nothing failed in the console.
      const origin = new URL(loom.admin("/")).origin;
      assert.ok(page.requests.length >= 4, JSON.stringify(page.requests));
      assert.deepEqual(page.requests.filter((u) => !u.startsWith(origin) && !u.startsWith("data:")), []);
      assert.deepEqual(page.errors, []);
      // Readable on a phone: nothing wider than the screen.
      const overflow = await page.evaluate<number>(
        "document.documentElement.scrollWidth - window.innerWidth",
      );
      assert.ok(overflow <= 1, `the page is ${overflow}px wider than a 390px screen`);

      const dir = await Deno.makeTempDir({ prefix: "loom-dashboard-" });
      const shot = `${dir}/dashboard-phone.png`;
      await Deno.writeFile(shot, await page.screenshot());
      await page.send("Emulation.setDeviceMetricsOverride", {
        width: 1280,
        height: 900,
        deviceScaleFactor: 1,
        mobile: false,
      });
      await new Promise((r) => setTimeout(r, 300));
      await Deno.writeFile(`${dir}/dashboard-desktop.png`, await page.screenshot());
      console.log(`dashboard screenshots: ${shot} and ${dir}/dashboard-desktop.png`);
    } finally {
      await page.close();
      await loom.close();
      await up.close();
    }
  },
  { needs: ["chromium"], timeoutMs: 90_000 },
);

itest("dashboard: the admin API's rules apply (auth, Host)", async () => {
  const up = startUpstream(() => new Response("ok"));
  const loom = await startLoom(`
listeners: [{ name: http, address: "127.0.0.1:\${PORT}", protocol: http }]
upstreams: [{ name: shop, endpoints: ["${up.address}"] }]
routes: [{ id: api, path: /api/*, upstream: shop }]
admin:
  address: "127.0.0.1:\${ADMIN_PORT}"
  auth: { token: "0123456789abcdef0123" }
`);
  try {
    let res = await fetch(loom.admin("/dashboard"));
    assert.equal(res.status, 401);
    await res.body?.cancel();
    res = await fetch(loom.admin("/dashboard/state"), {
      headers: { authorization: "Bearer 0123456789abcdef0123" },
    });
    assert.equal(res.status, 200);
    const state = await res.json();
    assert.equal(state.routes[0].id, "api");
    assert.equal(typeof state.totals.requests, "number");
    res = await fetch(loom.admin("/dashboard"), {
      headers: { authorization: "Bearer 0123456789abcdef0123" },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.match(await res.text(), /<script src="\/dashboard\/app.js">/);
  } finally {
    await loom.close();
    await up.close();
  }
});
