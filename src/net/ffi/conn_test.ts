import assert from "node:assert/strict";
import { FfiConn, FfiListener } from "./conn.ts";
import { poller } from "./poller.ts";
import { netAddr, sockaddr } from "./libc.ts";

const linux = Deno.build.os === "linux";

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    parts.push(buf.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

async function writeAll(conn: { write(d: Uint8Array): Promise<number> }, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

Deno.test("ffi sockaddr: IPv4 and IPv6 literals round-trip through netAddr", () => {
  assert.deepEqual(netAddr(sockaddr("127.0.0.1", 8080)), {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 8080,
  });
  assert.deepEqual(netAddr(sockaddr("::1", 443)), { transport: "tcp", hostname: "::1", port: 443 });
  assert.equal(netAddr(sockaddr("0.0.0.0", 0)).hostname, "0.0.0.0");
});

Deno.test({
  name: "FfiListener/FfiConn: accept, read, write, end of stream, addresses, half-close",
  ignore: !linux,
  async fn() {
    const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 });
    assert.equal(l.addr.hostname, "127.0.0.1");
    assert.ok(l.addr.port > 0);
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      l.accept(),
    ]);
    assert.ok(server instanceof FfiConn);
    assert.equal(server.remoteAddr.port, (client.localAddr as Deno.NetAddr).port);
    assert.equal(server.localAddr.port, l.addr.port);
    server.setNoDelay(true);

    // A read waits for the poller when nothing has arrived yet.
    const buf = new Uint8Array(100);
    const pending = server.read(buf);
    await client.write(new TextEncoder().encode("hello"));
    assert.equal(await pending, 5);
    assert.equal(new TextDecoder().decode(buf.subarray(0, 5)), "hello");
    // A read into a view at an offset lands there.
    await client.write(new TextEncoder().encode("xy"));
    assert.equal(await server.read(buf.subarray(10, 20)), 2);
    assert.equal(new TextDecoder().decode(buf.subarray(10, 12)), "xy");

    await writeAll(server, new TextEncoder().encode("world"));
    await server.closeWrite();
    assert.equal(new TextDecoder().decode(await readAll(client)), "world");
    client.close();
    assert.equal(await server.read(buf), null);
    server.close();
    assert.throws(() => server.close(), Deno.errors.BadResource);
    l.close();
    await poller()!.stopped();
  },
});

Deno.test({
  name: "FfiConn: 8 MiB each way through full socket buffers (writes wait for the poller), bytes in order",
  ignore: !linux,
  async fn() {
    const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 });
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      l.accept(),
    ]);
    const size = 8 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 13)) & 0xff;
    // Server echoes everything back; the client writes all before it reads, so both sides block.
    const echo = (async () => {
      const b = new Uint8Array(32 * 1024);
      for (;;) {
        const n = await server.read(b);
        if (n === null) break;
        await writeAll(server, b.subarray(0, n));
      }
      await server.closeWrite();
    })();
    const received = readAll(client);
    await writeAll(client, data);
    await client.closeWrite();
    const got = await received;
    await echo;
    assert.equal(got.length, size);
    assert.ok(got.every((v, i) => v === data[i]), "echoed bytes differ");
    client.close();
    server.close();
    l.close();
    await poller()!.stopped();
  },
});

Deno.test({
  name: "FfiConn: data and FIN queued together: a short read, then the end of stream (no edge lost)",
  ignore: !linux,
  async fn() {
    const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 });
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      l.accept(),
    ]);
    const buf = new Uint8Array(1024);
    for (let i = 0; i < 3; i++) {
      // One exchange first, so the server's socket has seen a short read and waits for an edge.
      await client.write(new Uint8Array([i]));
      assert.equal(await server.read(buf), 1);
    }
    // Both are in the server's receive queue before it reads: one edge for the two.
    await client.write(new Uint8Array([7, 8, 9]));
    await client.closeWrite();
    assert.equal(await server.read(buf), 3);
    assert.equal(await server.read(buf), null);
    client.close();
    server.close();
    l.close();
    await poller()!.stopped();
  },
});

Deno.test({
  name: "FfiConn/FfiListener: close fails a pending read and a pending accept with BadResource",
  ignore: !linux,
  async fn() {
    const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 });
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      l.accept(),
    ]);
    const read = server.read(new Uint8Array(10));
    server.close();
    await assert.rejects(read, Deno.errors.BadResource);
    await assert.rejects(server.write(new Uint8Array(1)), Deno.errors.BadResource);
    // The client sees the close.
    assert.equal(await client.read(new Uint8Array(10)), null);
    client.close();
    const accept = l.accept();
    l.close();
    await assert.rejects(accept, Deno.errors.BadResource);
    await poller()!.stopped();
  },
});

Deno.test({
  name: "FfiListener: a port in use is AddrInUse",
  ignore: !linux,
  async fn() {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    assert.throws(
      () => FfiListener.listen({ hostname: "127.0.0.1", port: (taken.addr as Deno.NetAddr).port }),
      Deno.errors.AddrInUse,
    );
    taken.close();
    await poller()!.stopped();
  },
});
