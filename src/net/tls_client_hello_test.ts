import assert from "node:assert/strict";
import { MAX_CLIENT_HELLO, peekClientHello } from "./tls_client_hello.ts";

/** The bytes a real TLS client (Deno's rustls) sends first, for `serverName` (an IP sends no SNI). */
async function clientHello(serverName: string): Promise<Uint8Array> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const captured = (async () => {
    const conn = await listener.accept();
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buf = new Uint8Array(4096);
    // Read until the whole hello is in (the parser says so), then hang up.
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      total += n;
      const all = new Uint8Array(total);
      let o = 0;
      for (const c of chunks) all.set(c, o), o += c.length;
      if (peekClientHello(all).done) {
        conn.close();
        return all;
      }
    }
    conn.close();
    throw new Error("connection ended before a whole ClientHello");
  })();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const tls = await Deno.startTls(tcp, { hostname: serverName });
  await tls.handshake().catch(() => {}); // the server hangs up: the handshake fails, as intended
  try {
    tls.close();
  } catch { /* closed */ }
  listener.close();
  return await captured;
}

Deno.test("tls_client_hello: the SNI of a real ClientHello, whole and in every split", async () => {
  const hello = await clientHello("Svc.Example.COM");
  const whole = peekClientHello(hello);
  assert.deepEqual(whole, { done: true, sni: "svc.example.com", tls: true });
  // Any prefix: more is needed (never a wrong answer), until the last byte.
  for (let i = 1; i < hello.length; i++) {
    assert.deepEqual(peekClientHello(hello.subarray(0, i)), { done: false }, `prefix of ${i} bytes`);
  }
});

Deno.test("tls_client_hello: a hello split over several handshake records", async () => {
  const hello = await clientHello("a.example");
  const body = hello.subarray(5);
  // Re-frame the handshake message as records of 100 bytes each (TLS allows any fragmentation).
  const records: number[] = [];
  for (let o = 0; o < body.length; o += 100) {
    const frag = body.subarray(o, o + 100);
    records.push(0x16, 0x03, 0x01, frag.length >> 8, frag.length & 0xff, ...frag);
  }
  const bytes = new Uint8Array(records);
  assert.deepEqual(peekClientHello(bytes), { done: true, sni: "a.example", tls: true });
  assert.deepEqual(peekClientHello(bytes.subarray(0, bytes.length - 1)), { done: false });
});

Deno.test("tls_client_hello: no SNI for an IP address, for other protocols and past the cap", async () => {
  const hello = await clientHello("127.0.0.1");
  assert.deepEqual(peekClientHello(hello), { done: true, sni: null, tls: true });
  assert.deepEqual(peekClientHello(new TextEncoder().encode("GET / HTTP/1.1\r\n")), {
    done: true,
    sni: null,
    tls: false,
  });
  assert.deepEqual(peekClientHello(new Uint8Array(0)), { done: false });
  // A handshake message claiming more than the cap is given up at once.
  const huge = new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00]);
  assert.deepEqual(peekClientHello(huge), { done: true, sni: null, tls: true });
  // Endless records of an unending message: given up once past the cap.
  const endless: number[] = [];
  endless.push(0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x3f, 0xff); // hello of 16383 bytes
  while (endless.length < MAX_CLIENT_HELLO + 10) {
    endless.push(0x16, 0x03, 0x01, 0x01, 0x00, ...new Uint8Array(256));
  }
  assert.deepEqual(peekClientHello(new Uint8Array(endless)).done, true);
  // Not a ClientHello (a ServerHello) and not a handshake record.
  assert.deepEqual(peekClientHello(new Uint8Array([0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0, 0, 0])), {
    done: true,
    sni: null,
    tls: true,
  });
  assert.deepEqual(peekClientHello(new Uint8Array([0x17, 0x03, 0x03])).done, true);
});
