import assert from "node:assert/strict";
import { readOpOf } from "./read_op.ts";

async function pair(): Promise<{ client: Deno.TcpConn; server: Deno.TcpConn; close(): void }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = l.accept();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port });
  const server = await accepted;
  l.close();
  return {
    client,
    server,
    close: () => {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

Deno.test("read op: Deno's TcpConn is read through the op (0 at EOF, as the op says)", async () => {
  const p = await pair();
  try {
    const read = readOpOf(p.server);
    await p.client.write(new TextEncoder().encode("hello"));
    const buf = new Uint8Array(16);
    const n = await read(buf);
    assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "hello");
    p.client.closeWrite();
    // Conn.read says null at EOF; only the op itself says 0.
    assert.equal(await read(buf), 0);
  } finally {
    p.close();
  }
});

Deno.test("read op: a closed connection's pending read fails, as Conn.read's does", async () => {
  const p = await pair();
  try {
    const pending = readOpOf(p.server)(new Uint8Array(16));
    p.server.close();
    await assert.rejects(pending);
  } finally {
    p.close();
  }
});

Deno.test("read op: a connection that is not Deno's keeps its own read", async () => {
  const p = await pair();
  try {
    let calls = 0;
    // A wrapper (as src/net/node_conn.ts makes): its read, not the op under it.
    const wrapper = {
      read: (b: Uint8Array) => {
        calls++;
        return p.server.read(b);
      },
    } as unknown as Deno.Conn;
    const read = readOpOf(wrapper);
    p.client.closeWrite();
    assert.equal(await read(new Uint8Array(4)), null);
    assert.equal(calls, 1);
  } finally {
    p.close();
  }
});
