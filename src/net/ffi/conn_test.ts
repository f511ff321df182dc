import assert from "node:assert/strict";
import { FfiConn, FfiListener } from "./conn.ts";
import { Poller, poller } from "./poller.ts";
import { netAddr, openLibc, sockaddr } from "./libc.ts";

const linux = Deno.build.os === "linux";

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) parts.push(buf.slice(0, n));
  return new Uint8Array(await new Blob(parts).arrayBuffer());
}

/** An FFI listener on a free loopback port, a Deno client connected to it and the accepted FfiConn. */
async function pair(): Promise<{ l: FfiListener; client: Deno.TcpConn; server: FfiConn }> {
  const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
    l.accept(),
  ]);
  return { l, client, server };
}

/**
 * A Linux-only test on pair()'s sockets; whatever the test left open is closed
 * after it, and the test ends once the poller has nothing left (no FFI call pending).
 */
function pairTest(
  name: string,
  fn: (p: { l: FfiListener; client: Deno.TcpConn; server: FfiConn }) => Promise<void>,
) {
  Deno.test({
    name,
    ignore: !linux,
    async fn() {
      const p = await pair();
      try {
        await fn(p);
      } finally {
        for (const c of [p.client, p.server, p.l]) {
          try {
            c.close();
          } catch { /* closed by the test */ }
        }
        await poller()!.stopped();
      }
    },
  });
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

pairTest(
  "FfiListener/FfiConn: accept, read, write, end of stream, addresses, half-close",
  async ({ l, client, server }) => {
    assert.equal(l.addr.hostname, "127.0.0.1");
    assert.ok(l.addr.port > 0);
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
  },
);

pairTest(
  "FfiConn: 8 MiB each way through full socket buffers (writes wait for the poller), bytes in order",
  async ({ client, server }) => {
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
  },
);

pairTest(
  "FfiConn: data and FIN queued together: a short read, then the end of stream (no edge lost)",
  async ({ client, server }) => {
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
  },
);

pairTest(
  "FfiConn/FfiListener: close fails a pending read and a pending accept with BadResource",
  async ({ l, client, server }) => {
    const read = server.read(new Uint8Array(10));
    server.close();
    await assert.rejects(read, Deno.errors.BadResource);
    await assert.rejects(server.write(new Uint8Array(1)), Deno.errors.BadResource);
    // The client sees the close.
    assert.equal(await client.read(new Uint8Array(10)), null);
    client.close();
    const accept = assert.rejects(l.accept(), Deno.errors.BadResource);
    l.close();
    await accept;
  },
);

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

Deno.test({
  name: "Poller wait mode: Deno's own sockets keep working while it sleeps synchronously (its epolls nested)",
  ignore: !linux,
  async fn() {
    const p = new Poller(openLibc()!, "wait");
    assert.ok(p.nested.length > 0, "Deno's epoll instances were not found in /proc/self/fd");
    const l = FfiListener.listen({ hostname: "127.0.0.1", port: 0 }, p);
    // A Deno echo server beside it: its traffic must get through while the poller sleeps in epoll_wait.
    const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const denoEcho = (async () => {
      const c = await deno.accept();
      const b = new Uint8Array(4096);
      for (let n = await c.read(b); n !== null; n = await c.read(b)) await writeAll(c, b.subarray(0, n));
      c.close();
    })();
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: l.addr.port }),
      l.accept(),
    ]);
    const up = await Deno.connect({ hostname: "127.0.0.1", port: (deno.addr as Deno.NetAddr).port });
    // Each message goes client -> FFI server -> Deno echo -> FFI server -> client.
    const relay = (async () => {
      const b = new Uint8Array(4096);
      for (let n = await server.read(b); n !== null; n = await server.read(b)) {
        await writeAll(up, b.subarray(0, n));
        let got = 0;
        while (got < n) got += (await up.read(b.subarray(got, n)))!;
        await writeAll(server, b.subarray(0, n));
      }
      await server.closeWrite();
    })();
    const buf = new Uint8Array(100);
    for (let i = 0; i < 50; i++) {
      const msg = new TextEncoder().encode(`message ${i}`);
      await writeAll(client, msg);
      let got = 0;
      while (got < msg.length) got += (await client.read(buf.subarray(got)))!;
      assert.equal(new TextDecoder().decode(buf.subarray(0, got)), `message ${i}`);
    }
    await client.closeWrite();
    await relay;
    assert.equal(await client.read(buf), null);
    up.close();
    await denoEcho;
    for (const c of [client, server, l, deno]) c.close();
    await p.stopped();
  },
});
