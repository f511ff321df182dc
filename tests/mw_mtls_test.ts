/**
 * The `mtls` middleware through a running gateway: an `https` listener with
 * `client_auth: optional` and a root CA; clients present leaf certificates
 * issued by an intermediate (sent with the leaf) over HTTP/1.1 and HTTP/2
 * (ALPN h2): no certificate 401, allow-list misses 403, SPIFFE prefix, DNS and
 * O/OU rules, identity fields forwarded (forged ones replaced), rejections
 * counted.
 */
import assert from "node:assert/strict";
import { itest, startLoom } from "./helpers.ts";
import { mtlsListenerYaml, TestCa } from "./tls_util.ts";
import { echoUpstream, listening, rejections } from "./mw_auth_util.ts";

itest(
  "mtls: client certificate chains over HTTP/1.1 and HTTP/2; allow rules; identity headers upstream",
  async () => {
    const dir = Deno.makeTempDirSync();
    const root = await TestCa.create(dir, "root");
    const issuing = await root.intermediate("issuing");
    const server = await root.leaf("server", "localhost", ["DNS:localhost", "IP:127.0.0.1"]);
    // TestCa writes -subj "/CN=<cn>": more attributes ride along after the CN.
    const billing = await issuing.leaf("billing", "billing-1/O=Acme/OU=payments", [
      "URI:spiffe://corp.example/ns/billing/sa/api",
      "DNS:billing.clients.corp.example",
    ]);
    const web = await issuing.leaf("web", "web", ["DNS:web.clients.corp.example"]);
    const stranger = await issuing.leaf("stranger", "stranger/O=Acme/OU=sales", [
      "URI:spiffe://corp.example.evil/ns/billing/sa/api",
    ]);
    const up = echoUpstream();
    const loom = await startLoom(`${mtlsListenerYaml(server, root.cert, "optional")}
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
routes:
  - id: svc
    path: /svc/*
    upstream: up
    middleware:
      - mtls:
          allow:
            - { uri: "spiffe://corp.example/ns/billing/*" }
            - { dns: "*.clients.corp.example", cn: web }
  - id: org
    path: /org/*
    upstream: up
    middleware:
      - mtls:
          allow: [{ o: Acme, ou: [payments, ops] }]
          headers: { subject: x-client-dn, fingerprint: "" }
  - id: open
    path: /open/*
    upstream: up
`);
    const pem = (f: string) => Deno.readTextFileSync(f);
    const caCerts = [pem(root.cert)];
    const clients: Deno.HttpClient[] = [];
    const client = (who: { cert: string; key: string } | null, h2: boolean) => {
      const c = Deno.createHttpClient({
        caCerts,
        http1: !h2,
        http2: h2,
        // The leaf and the intermediate that issued it; the listener knows only the root.
        ...(who === null ? {} : { cert: pem(who.cert) + pem(issuing.cert), key: pem(who.key) }),
      });
      clients.push(c);
      return c;
    };
    const base = `https://127.0.0.1:${loom.port}`;
    try {
      await listening(loom.port);
      for (const h2 of [false, true]) {
        const proto = h2 ? "HTTP/2" : "HTTP/1.1";
        const get = async (client: Deno.HttpClient, path: string, headers: Record<string, string> = {}) => {
          const r = await fetch(base + path, { client, headers });
          const body = await r.json();
          return { status: r.status, body };
        };
        const anon = client(null, h2);
        const b = client(billing, h2);
        const w = client(web, h2);
        const s = client(stranger, h2);

        // No certificate: 401 from the middleware; a route without it still serves.
        const none = await get(anon, "/svc/x");
        assert.equal(none.status, 401, proto);
        assert.equal(none.body.error, "client certificate required", proto);
        assert.equal((await get(anon, "/open/x")).status, 200, proto);

        // SPIFFE prefix rule; forged identity fields are replaced or removed.
        const ok = await get(b, "/svc/x", {
          "x-loom-client-spiffe-id": "spiffe://corp.example/ns/admin",
          "x-loom-client-subject": "CN=admin",
        });
        assert.equal(ok.status, 200, proto);
        const hb = ok.body.headers;
        assert.equal(hb.via, h2 ? "2 loom" : "1.1 loom", "the client's protocol");
        assert.equal(hb["x-loom-client-spiffe-id"], "spiffe://corp.example/ns/billing/sa/api", proto);
        assert.equal(hb["x-loom-client-subject"], "CN=billing-1,O=Acme,OU=payments", proto);
        assert.equal(
          hb["x-loom-client-san"],
          "URI:spiffe://corp.example/ns/billing/sa/api, DNS:billing.clients.corp.example",
          proto,
        );
        assert.equal(hb["x-loom-client-cn"], "billing-1", proto);
        assert.match(hb["x-loom-client-cert-sha256"], /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, proto);

        // DNS wildcard + CN rule; a certificate without a SPIFFE ID gets no (forged) SPIFFE field.
        const okWeb = await get(w, "/svc/x", {
          "x-loom-client-spiffe-id": "spiffe://corp.example/ns/billing/x",
        });
        assert.equal(okWeb.status, 200, proto);
        assert.equal(okWeb.body.headers["x-loom-client-spiffe-id"], undefined, proto);
        assert.equal(okWeb.body.headers["x-loom-client-cn"], "web", proto);

        // Another trust domain with the same path: 403.
        const denied = await get(s, "/svc/x");
        assert.equal(denied.status, 403, proto);
        assert.equal(denied.body.error, "client certificate not allowed", proto);

        // O and OU rule, renamed and disabled identity fields.
        const org = await get(b, "/org/x");
        assert.equal(org.status, 200, proto);
        assert.equal(org.body.headers["x-client-dn"], "CN=billing-1,O=Acme,OU=payments", proto);
        assert.equal(org.body.headers["x-loom-client-cert-sha256"], undefined, proto);
        assert.equal((await get(s, "/org/x")).status, 403, proto);
        assert.equal((await get(w, "/org/x")).status, 403, proto);
      }
      const counted = await rejections(loom.admin("/metrics"), "mtls");
      assert.equal(counted.get("svc/no_certificate"), 2);
      assert.equal(counted.get("svc/not_allowed"), 2);
      assert.equal(counted.get("org/not_allowed"), 4);
    } finally {
      for (const c of clients) c.close();
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
