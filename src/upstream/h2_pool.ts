/**
 * Upstream HTTP/2 client: a few multiplexed connections of Loom's own HTTP/2
 * stack (src/http2) per endpoint, h2 over TLS (ALPN) or h2c prior knowledge.
 *
 * Why our own and not node:http2: it carries trailers both ways (gRPC needs
 * them; fetch drops them) and does not take the process down under load, as
 * Deno 2.9.6's node:http2 does. A new connection is opened only when every
 * open one has reached the peer's MAX_CONCURRENT_STREAMS, up to MAX_SESSIONS.
 */
import { H2Connection } from "../http2/connection.ts";
import type { ConnectionPool } from "./pool.ts";

const MAX_SESSIONS = 4;

interface Tracked {
  c: H2Connection;
  /** Streams leased and not yet released. */
  active: number;
}

/** A leased stream slot on one connection; `done` must be called once per lease. */
export interface H2Lease {
  conn: H2Connection;
  done: () => void;
}

/** The HTTP/2 connections of one endpoint. */
export class H2SessionPool {
  private sessions: Tracked[] = [];
  private closed = false;
  private connecting: Promise<Tracked> | null = null;

  constructor(private pool: ConnectionPool) {
    pool.closeHooks.push(() => this.close());
  }

  /** Whether the pool talks TLS (h2) rather than h2c. */
  get secure(): boolean {
    return this.pool.tls !== null;
  }

  /** A connection with a free stream slot, opening one when needed. The caller must call `done` per stream. */
  async acquire(connectTimeout: number): Promise<H2Lease> {
    for (const t of this.sessions) {
      if (t.c.goingAway) continue;
      if (t.active < t.c.peerMaxConcurrentStreams) return this.lease(t);
    }
    // A connection being opened will take these streams too: wait for it rather than open more.
    if (this.connecting !== null) return this.lease(await this.connecting);
    const live = this.sessions.filter((t) => !t.c.goingAway);
    if (live.length >= MAX_SESSIONS) {
      // All full: queue on the least busy one (its streams wait for the peer's slots).
      let best = live[0];
      for (const t of live) if (t.active < best.active) best = t;
      return this.lease(best);
    }
    const opening = this.connecting = this.open(connectTimeout);
    try {
      return this.lease(await opening);
    } finally {
      if (this.connecting === opening) this.connecting = null;
    }
  }

  private lease(t: Tracked): H2Lease {
    t.active++;
    let released = false;
    return {
      conn: t.c,
      done: () => {
        if (released) return;
        released = true;
        t.active--;
      },
    };
  }

  private async open(timeoutMs: number): Promise<Tracked> {
    const started = Date.now();
    const conn = await this.pool.dialRaw(timeoutMs, "h2");
    const c = H2Connection.client(conn);
    const t: Tracked = { c, active: 0 };
    this.sessions.push(t);
    c.closed.then(() => {
      const i = this.sessions.indexOf(t);
      if (i !== -1) this.sessions.splice(i, 1);
    });
    // The peer's SETTINGS (its stream limit) before the first stream; a dead peer fails the connect.
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        c.ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("no HTTP/2 SETTINGS from the upstream")),
            Math.max(1, timeoutMs - (Date.now() - started)),
          );
        }),
      ]);
    } catch (e) {
      c.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (this.closed) c.goaway();
    return t;
  }

  /** Closes every connection once its streams finish. */
  close(): void {
    this.closed = true;
    for (const t of this.sessions.splice(0)) t.c.goaway();
  }
}

const byPool = new WeakMap<ConnectionPool, H2SessionPool>();

/** The HTTP/2 connection pool that belongs to an endpoint's connection pool. */
export function h2PoolFor(pool: ConnectionPool): H2SessionPool {
  let p = byPool.get(pool);
  if (p === undefined) {
    p = new H2SessionPool(pool);
    byPool.set(pool, p);
  }
  return p;
}
