import assert from "node:assert/strict";
import { itest, startLoom, startUpstream } from "./helpers.ts";

/** A self-signed leaf certificate for localhost (CA:FALSE, as rustls requires). */
async function makeCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/cert.pem`, key = `${dir}/key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return { cert, key };
}

itest("https listener: HTTP/1.1 over TLS on Loom's own engine", async () => {
  const dir = Deno.makeTempDirSync();
  const { cert, key } = await makeCert(dir);
  const up = startUpstream((req) => new Response(`proto=${req.headers.get("x-forwarded-proto")}`));
  const loom = await startLoom(`
listeners:
  - name: tls
    address: "127.0.0.1:\${PORT}"
    protocol: https
    tls: { cert_file: "${cert}", key_file: "${key}" }
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
  const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(cert)] });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`https://localhost:${loom.port}/x`, { client });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "proto=https");
    }
  } finally {
    client.close();
    await loom.close();
    await up.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

itest("h2c listener: HTTP/2 prior knowledge through Deno.serve", async () => {
  const up = startUpstream((req) => new Response(`via=${req.headers.get("via")}`));
  const loom = await startLoom(`
listeners:
  - name: h2
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
upstreams:
  - name: up
    endpoints: ["${up.address}"]
routes:
  - id: all
    path: /*
    upstream: up
`);
  const client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const res = await fetch(loom.url("/h2"), { client });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "via=2 loom");
    const post = await fetch(loom.url("/h2"), { client, method: "POST", body: "x".repeat(100_000) });
    assert.equal(post.status, 200);
    await post.body?.cancel();
  } finally {
    client.close();
    await loom.close();
    await up.close();
  }
});
