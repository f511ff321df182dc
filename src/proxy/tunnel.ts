/**
 * The Upgrade path (WebSocket over HTTP/1.1): after the upstream answers 101,
 * the client and upstream streams are spliced byte for byte until both sides
 * have closed. Frames are not parsed here; both peers speak the new protocol, so
 * text and binary messages, ping/pong and close codes pass unchanged. End of
 * stream from one side is passed on as a half-close (the other direction goes
 * on); an error on either side closes both.
 *
 * Before the 101 is relayed, the upstream's Sec-WebSocket-Protocol must be
 * one the client offered (RFC 6455 4.1). Open tunnels are counted in metrics
 * and closed after the listener's idle timeout without a byte either way.
 * A tunnel lives on its own connections (never returned to a pool), so a
 * reload that removes its route or upstream does not cut it.
 *
 * With a {@linkcode TunnelSplicer} in `ctx.vars` (eBPF `splice_tunnels`), a
 * tunnel between two plain TCP connections is handed to the kernel once the
 * bytes already read are written: the kernel then moves the data, and the
 * reads here only see each side's end of stream or error (and forward anything
 * the kernel leaves to the process). Before a half-close is passed on, the
 * bytes the kernel moved from that side must have reached the other socket.
 */
import type { RequestContext } from "../core/context.ts";
import type { RawStream, UpgradableWriter } from "../core/body.ts";
import type { ParsedResponse } from "../http1/parse.ts";
import type { PooledConn } from "../upstream/pool.ts";
import { writeAll } from "../http1/reader.ts";
import { readOpOf } from "../net/read_op.ts";
import { UpstreamFailure } from "./exchange.ts";

/** Key in `ctx.vars` of the observer that counts tunnels (set by the gateway for upgrade requests). */
export const TUNNEL_OBSERVER = "loom.tunnel";

/** Key in `ctx.vars` of the kernel splicer (set by the gateway for upgrade requests when eBPF splicing is on). */
export const TUNNEL_SPLICER = "loom.splicer";

/** A tunnel handed to the kernel; `a` is the client side, `b` the upstream side. */
export interface SplicedTunnel {
  /** Bytes the kernel moved from the client and from the upstream so far. */
  bytes(): { fromA: number; fromB: number };
  /** Resolves once every byte the kernel took from that side is queued on the other socket. */
  drained(from: "a" | "b"): Promise<void>;
  /**
   * Counts bytes the process forwarded to a side after the handover, once written (the drain
   * accounting needs them, and the kernel takes a direction over once the process caught up).
   */
  wrote(to: "a" | "b", n: number): void;
  /** Takes both sockets back from the kernel (before they are closed); idempotent. */
  release(): void;
}

/** Hands tunnels between two plain TCP connections to the kernel (src/ebpf/splice.ts implements it). */
export interface TunnelSplicer {
  /**
   * `forward(toClient, toUpstream)` writes bytes still found in the sockets' queues before the
   * handover. Null: the tunnel stays in user space.
   */
  splice(
    client: Deno.Conn,
    upstream: Deno.Conn,
    forward: (toClient: Uint8Array, toUpstream: Uint8Array) => Promise<void>,
  ): Promise<SplicedTunnel | null>;
}

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
    read: readOpOf(pc.conn),
    write: (d) => pc.conn.write(d),
    close: () => {
      try {
        pc.conn.close();
      } catch { /* closed */ }
    },
    closeWrite: () => pc.conn.closeWrite(),
    // Plain TCP only: an upstream TLS connection's bytes are records.
    conn: pc.pool.tls === null ? pc.conn : undefined,
  };
  let spliced: SplicedTunnel | null = null;
  const closeBoth = () => {
    spliced?.release();
    client.close();
    up.close();
  };
  const obs = ctx.vars.get(TUNNEL_OBSERVER) as TunnelObserver | undefined;
  const route = ctx.route?.id ?? "";
  obs?.websocketOpened(route);
  // Idle timeout: one coarse timer per tunnel checks the time of the last byte.
  let last = Date.now();
  let kernelBytes = 0;
  const idle = client.idleTimeout ?? 0;
  const timer = idle > 0
    ? setInterval(() => {
      if (spliced !== null) {
        // Bytes the kernel moves do not pass here: its counters tell whether any moved.
        const b = spliced.bytes();
        if (b.fromA + b.fromB !== kernelBytes) {
          kernelBytes = b.fromA + b.fromB;
          last = Date.now();
        }
      }
      if (Date.now() - last >= idle) closeBoth();
    }, Math.max(50, Math.min(1000, idle / 4)))
    : undefined;
  const toUp = (n: number) => (ctx.bytesIn += n, last = Date.now());
  const toClient = (n: number) => (ctx.bytesOut += n, last = Date.now());
  try {
    const splicer = ctx.vars.get(TUNNEL_SPLICER) as TunnelSplicer | undefined;
    if (splicer !== undefined && client.conn !== undefined && up.conn !== undefined) {
      // What was read with the heads goes first, by the process; then the kernel takes over.
      await Promise.all([drainLeftover(client, up, toUp), drainLeftover(up, client, toClient)]);
      spliced = await splicer.splice(client.conn, up.conn, async (c, u) => {
        if (c.length > 0) await writeAll(client as unknown as Deno.Conn, c);
        if (u.length > 0) await writeAll(up as unknown as Deno.Conn, u);
        toClient(c.length);
        toUp(u.length);
      }).catch(() => null);
    }
    // Each direction ends with end of stream (passed on as a half-close once drained) or an error
    // (both sides closed at once); the tunnel ends when both have.
    const end = (ok: boolean) => {
      if (!ok) closeBoth();
    };
    const fromClient: Handover = {
      drained: () => spliced?.drained("a"),
      wrote: (n) => spliced?.wrote("b", n),
    };
    const fromUpstream: Handover = {
      drained: () => spliced?.drained("b"),
      wrote: (n) => spliced?.wrote("a", n),
    };
    await Promise.all([
      pipe(client, up, toUp, fromClient).then(end),
      pipe(up, client, toClient, fromUpstream).then(end),
    ]);
  } catch {
    // A write of the leftovers failed: the tunnel ends.
  } finally {
    clearInterval(timer);
    if (spliced !== null) {
      const b = spliced.bytes();
      ctx.bytesIn += b.fromA;
      ctx.bytesOut += b.fromB;
    }
    closeBoth();
    obs?.websocketClosed(route);
  }
}

/** Writes `from`'s leftover bytes to `to` (once). */
async function drainLeftover(from: RawStream, to: RawStream, count: (n: number) => void): Promise<void> {
  if (from.leftover.length === 0) return;
  const data = from.leftover;
  (from as { leftover: Uint8Array }).leftover = new Uint8Array(0);
  await writeAll({ write: (d: Uint8Array) => to.write(d) } as Deno.Conn, data);
  count(data.length);
}

/** A direction of a spliced tunnel: the kernel's bytes of it, and the process's own writes. */
interface Handover {
  /** Undefined when not spliced; else resolves once the kernel's bytes of this direction have arrived. */
  drained(): Promise<void> | undefined;
  wrote(n: number): void;
}

/**
 * Copies `from` to `to` until end of stream, then half-closes `to`. True at end of stream, false on
 * an error or where a half-close is not possible (the caller closes both). In a spliced tunnel,
 * bytes read here arrived after what the kernel moved (a socket leaves the kernel's map when it
 * closes, and its last bytes come this way): they, and the half-close, wait until the kernel's
 * bytes of this direction have been queued on `to`.
 */
async function pipe(
  from: RawStream,
  to: RawStream,
  count: (n: number) => void,
  h: Handover,
): Promise<boolean> {
  try {
    await drainLeftover(from, to, count);
    const buf = new Uint8Array(32 * 1024);
    for (;;) {
      const n = await from.read(buf);
      if (n === null || n === 0) break;
      const kernelFirst = h.drained();
      if (kernelFirst !== undefined) await kernelFirst;
      await writeAll({ write: (d: Uint8Array) => to.write(d) } as Deno.Conn, buf.subarray(0, n));
      if (kernelFirst !== undefined) h.wrote(n);
      count(n);
    }
    await h.drained();
    if (to.closeWrite === undefined) return false;
    await to.closeWrite();
    return true;
  } catch {
    // Either side reset: the tunnel ends.
    return false;
  }
}
