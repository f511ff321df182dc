/**
 * The Upgrade path (WebSocket over HTTP/1.1): after the upstream answers 101,
 * the client and upstream streams are spliced byte for byte until either side
 * closes. Frames are not parsed here; both peers speak the new protocol.
 */
import type { RequestContext } from "../gateway/context.ts";
import type { RawStream, UpgradableWriter } from "../gateway/body.ts";
import type { ParsedResponse } from "../http1/parse.ts";
import type { PooledConn } from "../upstream/pool.ts";
import { writeAll } from "../http1/reader.ts";

/** Relays the 101 response and pipes both directions until one side ends. */
export async function tunnel(ctx: RequestContext, pc: PooledConn, res: ParsedResponse): Promise<void> {
  const w = ctx.res as Partial<UpgradableWriter>;
  if (typeof w.upgrade !== "function") {
    pc.close();
    throw new Error("protocol upgrade not supported on this listener");
  }
  ctx.status = 101;
  const client = await w.upgrade(res.headers);
  const r = pc.r;
  const upLeft = r.buf.slice(r.start, r.end);
  r.start = r.end;
  pc.closed = true; // never back to the pool
  const up: RawStream = {
    leftover: upLeft,
    read: (b) => pc.conn.read(b),
    write: (d) => pc.conn.write(d),
    close: () => {
      try {
        pc.conn.close();
      } catch { /* closed */ }
    },
  };
  const closeBoth = () => {
    client.close();
    up.close();
  };
  await Promise.all([
    pipe(client, up, (n) => ctx.bytesIn += n).finally(closeBoth),
    pipe(up, client, (n) => ctx.bytesOut += n).finally(closeBoth),
  ]);
}

async function pipe(from: RawStream, to: RawStream, count: (n: number) => void): Promise<void> {
  try {
    if (from.leftover.length > 0) {
      await writeAll({ write: (d: Uint8Array) => to.write(d) } as Deno.Conn, from.leftover);
      count(from.leftover.length);
    }
    const buf = new Uint8Array(32 * 1024);
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return;
      await writeAll({ write: (d: Uint8Array) => to.write(d) } as Deno.Conn, buf.subarray(0, n));
      count(n);
    }
  } catch {
    // Either side reset: the tunnel ends.
  }
}
