/**
 * Upstream HTTP/2 client: a few multiplexed `node:http2` sessions per
 * endpoint (h2 over TLS, or h2c prior knowledge).
 *
 * Why node:http2: it is the only client in Deno that sends and receives
 * trailers (fetch drops them), which gRPC needs; it also multiplexes many
 * streams on one connection. A new session is opened only when every open
 * one has reached the peer's MAX_CONCURRENT_STREAMS, up to MAX_SESSIONS.
 */
import http2 from "node:http2";
import { ConnectError, type ConnectionPool } from "../upstream/pool.ts";
import { tlsOptions } from "../upstream/tls.ts";

const MAX_SESSIONS = 4;

interface Tracked {
  s: http2.ClientHttp2Session;
  active: number;
  ready: boolean;
}

/** The HTTP/2 sessions of one endpoint. */
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

  /** A session with a free stream slot, opening one when needed. The caller must call `done` per stream. */
  async acquire(connectTimeout: number): Promise<{ session: http2.ClientHttp2Session; done: () => void }> {
    for (const t of this.sessions) {
      if (!t.ready || t.s.closed || t.s.destroyed) continue;
      const limit = t.s.remoteSettings?.maxConcurrentStreams ?? 100;
      if (t.active < limit) return this.lease(t);
    }
    // A session being opened will take these streams too: wait for it rather than open more.
    if (this.connecting !== null) return this.lease(await this.connecting);
    if (this.sessions.length >= MAX_SESSIONS) {
      // All sessions full: queue on the least busy one (nghttp2 queues streams past the limit).
      let best = this.sessions[0];
      for (const t of this.sessions) if (t.active < best.active) best = t;
      if (best.ready) return this.lease(best);
    }
    const opening = this.connecting = this.open(connectTimeout);
    try {
      return this.lease(await opening);
    } finally {
      if (this.connecting === opening) this.connecting = null;
    }
  }

  private lease(t: Tracked): { session: http2.ClientHttp2Session; done: () => void } {
    t.active++;
    let released = false;
    return {
      session: t.s,
      done: () => {
        if (released) return;
        released = true;
        t.active--;
      },
    };
  }

  private open(timeoutMs: number): Promise<Tracked> {
    const { hostname, port, tls } = this.pool;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const authority = `${tls !== null ? "https" : "http"}://${host}:${port}`;
    const opts: http2.SecureClientSessionOptions = tls !== null
      ? { ...tlsOptions(hostname, tls), ALPNProtocols: ["h2"] }
      : {};
    const s = http2.connect(authority, opts);
    const t: Tracked = { s, active: 0, ready: false };
    this.sessions.push(t);
    const drop = () => {
      const i = this.sessions.indexOf(t);
      if (i !== -1) this.sessions.splice(i, 1);
    };
    s.on("close", drop);
    s.on("goaway", drop);
    // Errors after connect surface on the streams; this keeps them from being unhandled.
    s.on("error", () => drop());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        drop();
        s.destroy();
        reject(new ConnectError("timeout", `connect to ${hostname}:${port} timed out`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        t.ready = true;
        if (this.closed) s.close();
        resolve(t);
      });
      s.once("error", (e: Error) => {
        clearTimeout(timer);
        reject(new ConnectError("refused", `connect to ${hostname}:${port} failed: ${e.message}`));
      });
    });
  }

  /** Closes every session once its streams finish. */
  close(): void {
    this.closed = true;
    for (const t of this.sessions.splice(0)) t.s.close();
  }
}

const byPool = new WeakMap<ConnectionPool, H2SessionPool>();

/** The HTTP/2 session pool that belongs to an endpoint's connection pool. */
export function h2PoolFor(pool: ConnectionPool): H2SessionPool {
  let p = byPool.get(pool);
  if (p === undefined) {
    p = new H2SessionPool(pool);
    byPool.set(pool, p);
  }
  return p;
}
