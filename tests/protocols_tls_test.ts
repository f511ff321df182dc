/**
 * TLS listeners end to end with curl: SNI certificate selection (exact and
 * wildcard), ALPN h2 and http/1.1 on one port, minimum version, mTLS
 * (require / optional) with the verified identity available to routing and
 * upstream headers, and certificates re-read on reload.
 */
import assert from "node:assert/strict";
import { itest, startLoom, waitFor } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { curl, TestCa } from "./tls_util.ts";

itest(
  "tls listener: SNI picks the certificate (exact, wildcard), ALPN h2 and http/1.1, min version",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const main = await ca.leaf("main", "main.test", ["DNS:main.test", "DNS:localhost"]);
    const wild = await ca.leaf("wild", "wild.test", ["DNS:*.wild.test"]);
    const other = await ca.leaf("other", "other.test", ["DNS:other.test"]);
    const up = startUpstream((req) =>
      new Response(`host=${new URL(req.url).host} proto=${req.headers.get("x-forwarded-proto")}`)
    );
    const loom = await startLoom(`
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls:
      cert_file: "${main.cert}"
      key_file: "${main.key}"
      min_version: "1.3"
      alpn: [h2, http/1.1]
      certificates:
        - { cert_file: "${wild.cert}", key_file: "${wild.key}" }
        - { cert_file: "${other.cert}", key_file: "${other.key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
    const at = (
      name: string,
    ) => [
      "--cacert",
      ca.cert,
      "--resolve",
      `${name}:${loom.port}:127.0.0.1`,
      `https://${name}:${loom.port}/x`,
    ];
    try {
      // curl verifies the name against the served certificate: success means SNI chose the right one.
      for (const name of ["main.test", "api.wild.test", "other.test"]) {
        const r = await curl(["-w", "\n%{http_version}", ...at(name)]);
        assert.ok(r.ok, `${name}: ${r.stderr}`);
        const [body, version] = r.stdout.split("\n");
        assert.equal(body, `host=${name}:${loom.port} proto=https`);
        assert.equal(version, "2", "ALPN h2 negotiated");
      }
      // A wildcard covers one label only: deep.api.wild.test gets the default certificate, which fails verification.
      const deep = await curl(at("deep.api.wild.test"));
      assert.ok(!deep.ok, "deep name must not match *.wild.test");
      // HTTP/1.1 on the same port (ALPN http/1.1).
      const h1 = await curl(["--http1.1", "-w", "\n%{http_version}", ...at("main.test")]);
      assert.ok(h1.ok, h1.stderr);
      assert.equal(h1.stdout.split("\n")[1], "1.1");
      // min_version 1.3: a TLS 1.2-only client is refused.
      const old = await curl(["--tlsv1.2", "--tls-max", "1.2", ...at("main.test")]);
      assert.ok(!old.ok, "TLS 1.2 must be refused");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);

itest(
  "tls listener: mTLS require rejects missing/foreign certificates; identity reaches routing and upstream",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const foreignCa = await TestCa.create(dir, "foreign");
    const server = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const alice = await ca.leaf("alice", "alice", ["DNS:alice.example", "URI:spiffe://loom/alice"]);
    const bob = await ca.leaf("bob", "bob", ["URI:spiffe://loom/bob"]);
    const mallory = await foreignCa.leaf("mallory", "alice", ["URI:spiffe://loom/alice"]);
    const up = startUpstream((req) =>
      new Response(`${req.headers.get("x-loom-client-subject")}|${req.headers.get("x-loom-client-san")}`)
    );
    const loom = await startLoom(`
listeners:
  - name: mtls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls:
      cert_file: "${server.cert}"
      key_file: "${server.key}"
      client_auth: require
      client_ca_file: "${ca.cert}"
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: alice-only
    path: /alice/*
    headers:
      x-loom-client-san: { regex: "spiffe://loom/alice" }
    upstream: up
  - id: any
    path: /any/*
    upstream: up
`);
    const base = ["--cacert", ca.cert, "--resolve", `localhost:${loom.port}:127.0.0.1`];
    const url = (p: string) => `https://localhost:${loom.port}${p}`;
    try {
      const noCert = await curl([...base, url("/any/x")]);
      assert.ok(!noCert.ok, "no client certificate must be rejected");
      const foreign = await curl([...base, "--cert", mallory.cert, "--key", mallory.key, url("/any/x")]);
      assert.ok(!foreign.ok, "a certificate from another CA must be rejected");
      const a = await curl([
        ...base,
        "--cert",
        alice.cert,
        "--key",
        alice.key,
        "-H",
        "x-loom-client-subject: forged",
        url("/alice/x"),
      ]);
      assert.ok(a.ok, a.stderr);
      assert.equal(a.stdout, "CN=alice|DNS:alice.example, URI:spiffe://loom/alice");
      // Routing on the verified SAN: bob's certificate is valid but does not match the alice route.
      const b = await curl([
        ...base,
        "--cert",
        bob.cert,
        "--key",
        bob.key,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url("/alice/x"),
      ]);
      assert.equal(b.stdout, "404");
      const b2 = await curl([...base, "--http1.1", "--cert", bob.cert, "--key", bob.key, url("/any/x")]);
      assert.equal(b2.stdout, "CN=bob|URI:spiffe://loom/bob");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);

itest(
  "tls listener: mTLS optional serves without a certificate and strips forged identity headers",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const server = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const carol = await ca.leaf("carol", "carol", ["DNS:carol.example"]);
    const up = startUpstream((req) => new Response(`${req.headers.get("x-loom-client-subject")}`));
    const loom = await startLoom(`
listeners:
  - name: mtls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls:
      cert_file: "${server.cert}"
      key_file: "${server.key}"
      client_auth: optional
      client_ca_file: "${ca.cert}"
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: any
    path: /*
    upstream: up
`);
    const base = ["--cacert", ca.cert, "--resolve", `localhost:${loom.port}:127.0.0.1`];
    const url = `https://localhost:${loom.port}/x`;
    try {
      const anon = await curl([...base, "-H", "x-loom-client-subject: CN=admin", url]);
      assert.ok(anon.ok, anon.stderr);
      assert.equal(anon.stdout, "null");
      const c = await curl([...base, "--cert", carol.cert, "--key", carol.key, url]);
      assert.equal(c.stdout, "CN=carol");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);

itest(
  "tls listener: certificates are re-read on reload (new connections get the new certificate)",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const first = await ca.leaf("first", "first.test", ["DNS:first.test"]);
    const second = await ca.leaf("second", "second.test", ["DNS:second.test"]);
    const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` };
    Deno.copyFileSync(first.cert, live.cert);
    Deno.copyFileSync(first.key, live.key);
    const up = startUpstream(() => new Response("ok"));
    const loom = await startLoom(`
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${live.cert}", key_file: "${live.key}", alpn: [h2, http/1.1] }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
    const get = (name: string) =>
      curl([
        "--cacert",
        ca.cert,
        "--resolve",
        `${name}:${loom.port}:127.0.0.1`,
        `https://${name}:${loom.port}/`,
      ]);
    try {
      assert.ok((await get("first.test")).ok);
      assert.ok(!(await get("second.test")).ok);
      Deno.copyFileSync(second.cert, live.cert);
      Deno.copyFileSync(second.key, live.key);
      const r = await loom.sup.reload();
      assert.ok(r.ok, JSON.stringify(r));
      const after = await get("second.test");
      assert.ok(after.ok, after.stderr);
      assert.equal(after.stdout, "ok");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);

/** One request on an open HTTP/1.1 connection; returns the raw response (body "ok" expected). */
async function keptAliveGet(conn: Deno.Conn): Promise<string> {
  await conn.write(new TextEncoder().encode("GET /k HTTP/1.1\r\nHost: loom\r\n\r\n"));
  const buf = new Uint8Array(4096);
  let text = "";
  while (!text.endsWith("\r\n\r\nok")) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

for (const workers of [1, 2]) {
  itest(
    `https fast path (workers: ${workers}): a reload with renewed files serves the new certificate; ` +
      "a kept-alive connection opened before goes on",
    async () => {
      const dir = Deno.makeTempDirSync();
      const ca = await TestCa.create(dir);
      const first = await ca.leaf("first", "first.test", ["DNS:first.test", "IP:127.0.0.1"]);
      const second = await ca.leaf("second", "second.test", ["DNS:second.test"]);
      const live = { cert: `${dir}/live.pem`, key: `${dir}/live.key` };
      Deno.copyFileSync(first.cert, live.cert);
      Deno.copyFileSync(first.key, live.key);
      const up = startUpstream(() => new Response("ok"));
      const loom = await startLoom(`
workers: ${workers}
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${live.cert}", key_file: "${live.key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
      const get = (name: string) =>
        curl([
          "--http1.1",
          "--cacert",
          ca.cert,
          "--resolve",
          `${name}:${loom.port}:127.0.0.1`,
          `https://${name}:${loom.port}/`,
        ]);
      const kept = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: loom.port,
        caCerts: [Deno.readTextFileSync(ca.cert)],
      });
      try {
        assert.match(await keptAliveGet(kept), /^HTTP\/1\.1 200 /);
        assert.ok((await get("first.test")).ok);
        assert.ok(!(await get("second.test")).ok);
        Deno.copyFileSync(second.cert, live.cert);
        Deno.copyFileSync(second.key, live.key);
        const r = await loom.sup.reload();
        assert.ok(r.ok, JSON.stringify(r));
        // With one worker the new socket binds once the old one's pending accept failed (README: a
        // connection attempt in that gap is refused): wait for it rather than race it.
        await waitFor("the reopened TLS socket", async () => {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: loom.port });
          c.close();
          return true;
        });
        // Fresh connections (several, so both workers are likely hit) get the new certificate.
        for (let i = 0; i < 6; i++) {
          const after = await get("second.test");
          assert.ok(after.ok, after.stderr);
          assert.equal(after.stdout, "ok");
          assert.ok(!(await get("first.test")).ok, "the old certificate is no longer served");
        }
        // The connection accepted by the old socket still serves requests.
        assert.match(await keptAliveGet(kept), /^HTTP\/1\.1 200 /);
        // A reload with unchanged files keeps the socket (and the connection) as they are.
        assert.ok((await loom.sup.reload()).ok);
        assert.match(await keptAliveGet(kept), /^HTTP\/1\.1 200 /);
      } finally {
        kept.close();
        await loom.close();
        await up.close();
        Deno.removeSync(dir, { recursive: true });
      }
    },
    { needs: ["openssl", "curl"] },
  );
}

itest(
  "tls listener: mTLS accepts a client chain through an intermediate CA; an unsent or foreign intermediate fails",
  async () => {
    const dir = Deno.makeTempDirSync();
    const ca = await TestCa.create(dir);
    const foreignCa = await TestCa.create(dir, "foreign");
    const team = await ca.intermediate("team");
    const rogue = await foreignCa.intermediate("rogue");
    const server = await ca.leaf("server", "localhost", ["DNS:localhost"]);
    const dave = await team.leaf("dave", "dave", ["URI:spiffe://loom/dave"]);
    const eve = await rogue.leaf("eve", "eve", ["URI:spiffe://loom/eve"]);
    // What a client sends: its certificate followed by the intermediate.
    const daveChain = `${dir}/dave-chain.pem`;
    Deno.writeTextFileSync(daveChain, Deno.readTextFileSync(dave.cert) + Deno.readTextFileSync(team.cert));
    const eveChain = `${dir}/eve-chain.pem`;
    Deno.writeTextFileSync(eveChain, Deno.readTextFileSync(eve.cert) + Deno.readTextFileSync(rogue.cert));
    const up = startUpstream((req) => new Response(`${req.headers.get("x-loom-client-san")}`));
    const loom = await startLoom(`
listeners:
  - name: mtls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${server.cert}", key_file: "${server.key}", client_auth: require, client_ca_file: "${ca.cert}" }
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
routes:
  - { id: any, path: /*, upstream: up }
`);
    const base = ["--cacert", ca.cert, "--resolve", `localhost:${loom.port}:127.0.0.1`];
    const url = `https://localhost:${loom.port}/x`;
    try {
      const ok = await curl([...base, "--cert", daveChain, "--key", dave.key, url]);
      assert.ok(ok.ok, ok.stderr);
      assert.equal(ok.stdout, "URI:spiffe://loom/dave");
      const h2 = await curl([...base, "--http2", "--cert", daveChain, "--key", dave.key, url]);
      assert.equal(h2.stdout, "URI:spiffe://loom/dave");
      // Without the intermediate there is no path to the configured CA.
      const leafOnly = await curl([...base, "--cert", dave.cert, "--key", dave.key, url]);
      assert.ok(!leafOnly.ok, "a leaf without its intermediate must be rejected");
      // A chain to another root, however complete, is not trusted.
      const foreign = await curl([...base, "--cert", eveChain, "--key", eve.key, url]);
      assert.ok(!foreign.ok, "a chain to a foreign root must be rejected");
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl", "curl"] },
);
