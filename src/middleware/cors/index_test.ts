import assert from "node:assert/strict";
import { cors, originMatcher } from "./index.ts";
import { HeaderList } from "../../core/headers.ts";
import { testContext } from "../test_context.ts";
import type { CorsOptions } from "../../config/middleware/cors.ts";

const base: CorsOptions = {
  enabled: true,
  allow_origins: [
    "https://app.example",
    "https://*.example.org",
    "regex:^https://pr-\\d+\\.preview\\.example$",
  ],
  allow_methods: ["GET", "POST"],
  allow_headers: ["content-type", "x-token"],
  expose_headers: ["x-request-id"],
  max_age: 600,
  allow_credentials: true,
  allow_private_network: true,
};

function request(method: string, headers: Record<string, string>) {
  const t = testContext();
  t.ctx.method = method;
  for (const [k, v] of Object.entries(headers)) t.ctx.headers.append(k, v);
  return t;
}

Deno.test("cors: origin matching: exact, subdomain wildcard (not the apex), regex, *", () => {
  const m = originMatcher(base.allow_origins);
  assert.ok(m.test("https://app.example"));
  assert.ok(m.test("HTTPS://APP.EXAMPLE"));
  assert.ok(m.test("https://a.example.org"));
  assert.ok(m.test("https://a.b.example.org"));
  assert.ok(!m.test("https://example.org"));
  assert.ok(!m.test("https://evil-example.org"));
  assert.ok(!m.test("http://a.example.org"));
  assert.ok(m.test("https://pr-12.preview.example"));
  assert.ok(!m.test("https://pr-x.preview.example"));
  assert.ok(!m.test("https://app.example.evil"));
  assert.ok(originMatcher(["*"]).test("https://anything"));
});

Deno.test("cors: a preflight from an allowed origin is answered 204 with the allowed lists", async () => {
  const { ctx, sent } = request("OPTIONS", {
    origin: "https://a.example.org",
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type",
    "access-control-request-private-network": "true",
  });
  let reached = false;
  await cors(base).request!(ctx, () => (reached = true, Promise.resolve()));
  assert.equal(reached, false);
  assert.equal(sent.status, 204);
  const h = Object.fromEntries(sent.headers.entries());
  assert.equal(h["access-control-allow-origin"], "https://a.example.org");
  assert.equal(h["access-control-allow-credentials"], "true");
  assert.equal(h["access-control-allow-methods"], "GET, POST");
  assert.equal(h["access-control-allow-headers"], "content-type, x-token");
  assert.equal(h["access-control-max-age"], "600");
  assert.equal(h["access-control-allow-private-network"], "true");
  assert.match(h["vary"], /Origin/);
});

Deno.test("cors: a preflight from another origin is refused without CORS headers; plain OPTIONS goes on", async () => {
  const { ctx, sent } = request("OPTIONS", {
    origin: "https://evil.example",
    "access-control-request-method": "GET",
  });
  await cors(base).request!(ctx, () => Promise.resolve());
  assert.equal(sent.status, 403);
  assert.equal(sent.headers.get("access-control-allow-origin"), undefined);
  assert.equal(ctx.rejection, "cors/origin");
  const plain = request("OPTIONS", { origin: "https://app.example" });
  let reached = false;
  await cors(base).request!(plain.ctx, () => (reached = true, Promise.resolve()));
  assert.ok(reached);
});

Deno.test("cors: actual responses: allowed origin gets ACAO/credentials/expose + Vary; others nothing but Vary", () => {
  const m = cors(base);
  const ok = request("GET", { origin: "https://app.example" });
  const h = new HeaderList();
  h.append("vary", "Accept-Encoding");
  m.response!(ok.ctx, { status: 200, headers: h, bodyLength: 0 });
  assert.equal(h.get("access-control-allow-origin"), "https://app.example");
  assert.equal(h.get("access-control-allow-credentials"), "true");
  assert.equal(h.get("access-control-expose-headers"), "x-request-id");
  assert.equal(h.get("vary"), "Accept-Encoding, Origin");
  const bad = request("GET", { origin: "https://evil.example" });
  const h2 = new HeaderList();
  m.response!(bad.ctx, { status: 200, headers: h2, bodyLength: 0 });
  assert.deepEqual(h2.entries(), [["vary", "Origin"]]);
});

Deno.test("cors: * without credentials answers *, with credentials echoes the origin; any header echoes the request", async () => {
  const star = cors({ ...base, allow_origins: ["*"], allow_credentials: false, allow_headers: ["*"] });
  const r = request("GET", { origin: "https://x.example" });
  const h = new HeaderList();
  star.response!(r.ctx, { status: 200, headers: h, bodyLength: 0 });
  assert.equal(h.get("access-control-allow-origin"), "*");
  assert.equal(h.get("vary"), undefined);
  const pf = request("OPTIONS", {
    origin: "https://x.example",
    "access-control-request-method": "PUT",
    "access-control-request-headers": "x-a, x-b",
  });
  await star.request!(pf.ctx, () => Promise.resolve());
  assert.equal(pf.sent.headers.get("access-control-allow-headers"), "x-a, x-b");
  const cred = cors({ ...base, allow_origins: ["*"], allow_credentials: true });
  const c = request("GET", { origin: "https://x.example" });
  const h3 = new HeaderList();
  cred.response!(c.ctx, { status: 200, headers: h3, bodyLength: 0 });
  assert.equal(h3.get("access-control-allow-origin"), "https://x.example");
  assert.equal(cors({ ...base, enabled: false }).request, undefined);
});
