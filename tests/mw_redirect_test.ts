/**
 * A route's `redirect` through a running gateway (HTTP/1.1 and h2c): built
 * from parts taken from the request when absent (scheme only, port only,
 * host, full path, prefix path, every status), the query kept; the `url`
 * template form with its captures, keeping the query unless it has its own.
 */
import assert from "node:assert/strict";
import { itest } from "./helpers.ts";
import { startDualLoom } from "./mw_auth_util.ts";

itest("redirect: parts table, statuses, query kept, url form (HTTP/1.1 and h2c)", async () => {
  const routes = [
    ["scheme", "/scheme/*", "{scheme: https}"],
    ["port", "/port/*", "{port: 8443}"],
    ["port80", "/port80/*", "{port: 80}"],
    ["host", "/host/*", "{hostname: example.com}"],
    ["full", "/full/*", "{path: /new/place}"],
    ["cap", "/cap/{id}", "{path: '/users/{id}/profile'}"],
    ["prefix", "/prefix/*", "{prefix_path: /v2}"],
    ["strip", "/strip/*", "{prefix_path: /}"],
    ["all", "/all/*", "{scheme: https, hostname: example.org, port: 8443, prefix_path: /x/, status: 301}"],
    ["httpsport", "/tls443/*", "{scheme: https, port: 443}"],
    ["s301", "/s301", "{status: 301}"],
    ["s302", "/s302", "{hostname: a.example}"],
    ["s303", "/s303", "{status: 303}"],
    ["s307", "/s307", "{code: 307}"],
    ["s308", "/s308", "{status: 308}"],
    ["url", "/old/{id}", "{url: '/new/{id}', code: 301}"],
    ["urlq", "/own/*", "{url: '/target?a=b'}"],
    ["urlabs", "/abs/*", "'https://example.net/{*}'"],
  ];
  const g = await startDualLoom(`
upstreams: []
routes:
${routes.map(([id, path, r]) => `  - { id: ${id}, path: "${path}", redirect: ${r} }`).join("\n")}
`);
  try {
    for (const [proto, base, client] of g.protocols) {
      const port = new URL(base).port;
      const here = `http://127.0.0.1:${port}`;
      const cases: [string, number, string][] = [
        ["/scheme/a/b?x=1&y=2", 302, "https://127.0.0.1/scheme/a/b?x=1&y=2"],
        ["/port/a?x=1", 302, "http://127.0.0.1:8443/port/a?x=1"],
        ["/port80/a", 302, "http://127.0.0.1/port80/a"],
        ["/host/a?x=1", 302, `http://example.com:${port}/host/a?x=1`],
        ["/full/deep/er?q=%20", 302, `${here}/new/place?q=%20`],
        ["/cap/42", 302, `${here}/users/42/profile`],
        ["/prefix/a/b?k=v", 302, `${here}/v2/a/b?k=v`],
        ["/prefix", 302, `${here}/v2`],
        ["/prefix/", 302, `${here}/v2/`],
        ["/strip/a/b", 302, `${here}/a/b`],
        ["/strip", 302, `${here}/`],
        ["/all/p/q?z=1", 301, "https://example.org:8443/x/p/q?z=1"],
        ["/tls443/a", 302, "https://127.0.0.1/tls443/a"],
        ["/s301", 301, `${here}/s301`],
        ["/s302?a=1", 302, `http://a.example:${port}/s302?a=1`],
        ["/s303", 303, `${here}/s303`],
        ["/s307", 307, `${here}/s307`],
        ["/s308", 308, `${here}/s308`],
        ["/old/7?q=1", 301, "/new/7?q=1"],
        ["/own/x?dropped=1", 302, "/target?a=b"],
        ["/abs/a/b?c=d", 302, "https://example.net/a/b?c=d"],
        // Percent-encoded path bytes stay encoded; an encoded slash stays one.
        ["/prefix/a%20b/c%2Fd", 302, `${here}/v2/a%20b/c%2Fd`],
      ];
      for (const [target, status, location] of cases) {
        const r = await fetch(base + target, { client, redirect: "manual" });
        await r.body?.cancel();
        assert.equal(r.status, status, `${proto} ${target}`);
        assert.equal(r.headers.get("location"), location, `${proto} ${target}`);
      }
      // Any method gets the same answer; a 307/308 tells the client to repeat it.
      const post = await fetch(base + "/s307", { client, method: "POST", body: "x", redirect: "manual" });
      await post.body?.cancel();
      assert.equal(post.status, 307, proto);
    }
  } finally {
    await g.close();
  }
});
