/**
 * TLS reload (src/listeners/tls_reload.ts), the one path of every TLS
 * listener kind: the unchanged / changed / invalid decision on its own, then
 * the three kinds (fast-path https on Deno.listenTls, https with h2 on
 * node:tls, http3 on QUIC) in one Loom: a reload with a key that does not
 * match its certificate is refused and all three keep the old certificate,
 * a good pair replaces it, and a reload with unchanged files changes nothing.
 */
import assert from "node:assert/strict";
import type { TlsConfig } from "../src/config/types.ts";
import type { ListenerTls } from "../src/listeners/tls.ts";
import { TlsMaterial } from "../src/listeners/tls_reload.ts";
import { freePort, itest, startLoom } from "./helpers.ts";
import { startUpstream } from "./upstream.ts";
import { type CertFiles, TestCa } from "./tls_util.ts";

/**
 * A CA and two leaves it signed (first.test, second.test) in a temp dir, and the "live" files a listener
 * reads, holding the first pair; `install` copies a pair (or one file of it) over them.
 */
async function renewablePair() {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const first = await ca.leaf("first", "first.test", ["DNS:first.test"]);
  const second = await ca.leaf("second", "second.test", ["DNS:second.test"]);
  const live: CertFiles = { cert: `${dir}/live.pem`, key: `${dir}/live.key` };
  const install = (from: Partial<CertFiles>) => {
    if (from.cert !== undefined) Deno.copyFileSync(from.cert, live.cert);
    if (from.key !== undefined) Deno.copyFileSync(from.key, live.key);
  };
  install(first);
  return { dir, ca, caPem: Deno.readTextFileSync(ca.cert), first, second, live, install };
}

itest("TlsMaterial: unchanged, changed and invalid reloads; apply runs only for a change", async () => {
  const { dir, ca, first, second, live, install } = await renewablePair();
  try {
    const sni = await ca.leaf("sni", "sni.test", ["DNS:sni.test"]);
    const cfg: TlsConfig = {
      cert_file: live.cert,
      key_file: live.key,
      client_auth: "optional",
      client_ca_file: ca.cert,
    };
    const m = new TlsMaterial("t", cfg, { alpn: ["h2", "http/1.1"] });
    assert.deepEqual(m.current.sni.map((e) => e.names), [["first.test"]]);
    assert.equal(m.current.clientCas.length, 1);
    const applied: ListenerTls[] = [];
    const apply = (t: ListenerTls) => void applied.push(t);

    assert.equal(m.reload(cfg, apply), "unchanged");
    assert.equal(applied.length, 0);

    install(second);
    assert.equal(m.reload(cfg, apply), "changed");
    assert.equal(applied.length, 1);
    assert.equal(m.current, applied[0]);
    assert.equal(m.current.cert, Deno.readTextFileSync(second.cert));

    // A key that is not the certificate's, an unreadable file, an apply that throws: the old stays.
    install({ key: first.key });
    assert.equal(m.reload(cfg, apply), "invalid");
    Deno.removeSync(live.key);
    assert.equal(m.reload(cfg, apply), "invalid");
    install({ key: second.key });
    assert.equal(m.reload(cfg, apply), "unchanged", "the same files again: nothing to do");
    assert.equal(
      m.reload({ ...cfg, client_ca_file: second.cert }, () => {
        throw new Error("socket refused");
      }),
      "invalid",
    );
    assert.equal(applied.length, 1);
    assert.equal(m.current, applied[0]);

    // SNI certificates and client CAs are part of the material.
    const withSni = { ...cfg, certificates: [{ cert_file: sni.cert, key_file: sni.key }] };
    assert.equal(m.reload(withSni, apply), "changed");
    assert.deepEqual(m.current.sni.map((e) => e.names), [["sni.test"], ["second.test"]]);
    Deno.writeTextFileSync(sni.key, Deno.readTextFileSync(first.key));
    assert.equal(m.reload(withSni, apply), "invalid", "an SNI pair is checked too");

    // pairOnly (Deno.listenTls, QUIC): only cert_file and key_file are read.
    const pair = new TlsMaterial("p", { ...withSni, client_ca_file: `${dir}/missing.pem` }, {
      alpn: ["h3"],
      pairOnly: true,
    });
    assert.equal(pair.current.sni.length, 1);
    assert.equal(pair.current.clientAuth, "none");

    // At start a bad pair throws, naming the file.
    install({ key: first.key });
    assert.throws(() => new TlsMaterial("s", cfg, { alpn: [] }), /live\.key is not the private key of/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}, { needs: ["openssl"] });

/** Whether a TLS handshake naming `name` succeeds on a TCP port (retried while a reloaded socket rebinds). */
async function tcpServes(port: number, name: string, caPem: string): Promise<boolean> {
  for (let attempt = 0;; attempt++) {
    let tcp: Deno.TcpConn;
    try {
      tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch (e) {
      if (attempt < 20) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      throw e;
    }
    try {
      const c = await Deno.startTls(tcp, { hostname: name, caCerts: [caPem] });
      try {
        await c.handshake();
        return true;
      } finally {
        c.close();
      }
    } catch {
      return false;
    }
  }
}

/** Whether a QUIC handshake (ALPN h3) naming `name` succeeds. */
async function quicServes(port: number, name: string, caPem: string): Promise<boolean> {
  try {
    const c = await Deno.connectQuic({
      hostname: "127.0.0.1",
      port,
      serverName: name,
      alpnProtocols: ["h3"],
      caCerts: [caPem],
    });
    c.close();
    return true;
  } catch {
    return false;
  }
}

itest(
  "TLS reload on the three listener kinds: a mismatched key keeps the old certificate, a good pair replaces it",
  async () => {
    const { dir, caPem, second, live, install } = await renewablePair();
    const up = startUpstream(() => new Response("ok"));
    const fast = freePort(), h2 = freePort(), h3 = freePort();
    const tls = `cert_file: "${live.cert}", key_file: "${live.key}"`;
    const loom = await startLoom(`
listeners:
  - { name: fast, address: "127.0.0.1:${fast}", protocol: https, tls: { ${tls} } }
  - { name: h2, address: "127.0.0.1:${h2}", protocol: https, tls: { ${tls}, alpn: [h2, http/1.1] } }
  - { name: h3, address: "127.0.0.1:${h3}", protocol: http3, tls: { ${tls} } }
upstreams:
  - { name: up, endpoints: ["${up.address}"] }
routes:
  - { id: all, path: "/*", upstream: up }
`);
    const serves = async (name: string) => [
      await tcpServes(fast, name, caPem),
      await tcpServes(h2, name, caPem),
      await quicServes(h3, name, caPem),
    ];
    try {
      assert.deepEqual(await serves("first.test"), [true, true, true]);
      assert.deepEqual(await serves("second.test"), [false, false, false]);

      // The new certificate with the old key: the reload is refused (naming each listener's key file) and
      // every listener keeps the old pair.
      install({ cert: second.cert });
      const refused = await loom.sup.reload();
      assert.ok(!refused.ok);
      for (const i of [0, 1, 2]) {
        assert.ok(
          refused.errors.some((e) =>
            e.includes(`listeners[${i}].tls.key_file: ${live.key} is not the private key of ${live.cert}`)
          ),
          refused.errors.join("\n"),
        );
      }
      assert.deepEqual(await serves("first.test"), [true, true, true]);

      install({ key: second.key });
      assert.ok((await loom.sup.reload()).ok);
      assert.deepEqual(await serves("second.test"), [true, true, true]);
      assert.deepEqual(await serves("first.test"), [false, false, false]);

      assert.ok((await loom.sup.reload()).ok, "unchanged files");
      assert.deepEqual(await serves("second.test"), [true, true, true]);
    } finally {
      await loom.close();
      await up.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
  { needs: ["openssl"] },
);
