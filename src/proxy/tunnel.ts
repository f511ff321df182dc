/**
 * The Upgrade path (WebSocket over HTTP/1.1): after the upstream answers 101,
 * the client and upstream streams are spliced byte for byte until either side
 * closes. Frames are not parsed here; both peers speak the new protocol, so
 * text and binary messages, ping/pong and close codes pass unchanged.
 *
 * Before the 101 is relayed, the upstream's Sec-WebSocket-Protocol must be
 * one the client offered (RFC 6455 4.1). Open tunnels are counted in metrics
 * and closed after the listener's idle timeout without a byte either way.
 * A tunnel lives on its own connections (never returned to a pool), so a
 * reload that removes its route or upstream does not cut it.
 */
import type { RequestContext } from "../core/context.ts";
import type { RawStream, UpgradableWriter } from "../core/body.ts";
import type { ParsedResponse } from "../http1/parse.ts";
import type { PooledConn } from "../upstream/pool.ts";
import { writeAll } from "../http1/reader.ts";
import { UpstreamFailure } from "./exchange.ts";

/** Key in `ctx.vars` of the observer that counts tunnels (set by the gateway for upgrade requests). */
export const TUNNEL_OBSERVER = "loom.tunnel";

/** Counts WebSocket tunnels (GatewayMetrics implements it). */
export interface TunnelObserver {
  websocketOpened(route: string): void;
  websocketClosed(route: string): void;
}

/** The subprotocol the upstream chose, if the client did not offer it (else undefined). */
export function unofferedSubprotocol(ctx: RequestContext, res: ParsedResponse): string | undefined {
  const chosen = res.headers.get("sec-websocket-protocol");
  if (chosen === undefined) return undefined;
  // Subprotocol names compare case-sensitively (RFC 6455 11.3.4), so no lower-casing token parser.
  const offered = (ctx.headers.getJoined("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
  return offered.includes(chosen.trim()) ? undefined : chosen;
}

/** Relays the 101 response and pipes both directions until one side ends. */
export async function tunnel(ctx: RequestContext, pc: PooledConn, res: ParsedResponse): Promise<void> {
  const w = ctx.res as Partial<UpgradableWriter>;
  if (typeof w.upgrade !== "function") {
    pc.close();
    throw new Error("protocol upgrade not supported on this listener");
  }
  const bad = unofferedSubprotocol(ctx, res);
  if (bad !== undefined) {
    pc.close();
    throw new UpstreamFailure(
      "protocol",
      `upstream chose WebSocket subprotocol "${bad}" the client did not offer`,
    );
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
  const obs = ctx.vars.get(TUNNEL_OBSERVER) as TunnelObserver | undefined;
  const route = ctx.route?.id ?? "";
  obs?.websocketOpened(route);
  // Idle timeout: one coarse timer per tunnel checks the time of the last byte.
  let last = Date.now();
  const idle = client.idleTimeout ?? 0;
  const timer = idle > 0
    ? setInterval(() => {
      if (Date.now() - last >= idle) closeBoth();
    }, Math.max(50, Math.min(1000, idle / 4)))
    : undefined;
  try {
    await Promise.all([
      pipe(client, up, (n) => (ctx.bytesIn += n, last = Date.now())).finally(closeBoth),
      pipe(up, client, (n) => (ctx.bytesOut += n, last = Date.now())).finally(closeBoth),
    ]);
  } finally {
    clearInterval(timer);
    obs?.websocketClosed(route);
  }
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
