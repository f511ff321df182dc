/**
 * Keep-alive connection pool for one upstream endpoint.
 *
 * LIFO reuse (the most recently used connection is the least likely to have
 * been closed by the upstream), `max_idle` idle connections kept, idle ones
 * closed after `idle_timeout`, and at most `max_connections` open at once
 * (callers wait for a free one, bounded by their connect timeout).
 */
import type { PoolConfig } from "../config/types.ts";
import { ConnReader } from "../http1/reader.ts";
import { dialTls, type UpstreamTlsMaterial } from "./tls.ts";

/**
 * A pooled upstream connection with its own read and write buffers. It also
 * carries the state of the exchange running on it (deadline, abort flags), so
 * a proxied request allocates no extra timer or closure objects.
 */
export class PooledConn {
  /** Expirable: absolute deadline of the current exchange (0 = none). */
  deadline = 0;
  timedOut = false;
  clientGone = false;
  /** Why the request-body upload failed (client framing error or disconnect). */
  uploadError: unknown = null;
  uploadDone = false;
  /** Bound once: the context's abort hook for exchanges on this connection. */
  readonly onClientAbort = (): void => {
    this.clientGone = true;
    this.close();
  };
  readonly r: ConnReader;
  /** Scratch for the request head (+ first body bytes), grown on demand. */
  out: Uint8Array;
  /** True when this connection served an earlier request (it may be stale). */
  reused = false;
  idleSince = 0;
  closed = false;

  constructor(readonly conn: Deno.TcpConn, readonly pool: ConnectionPool) {
    this.r = new ConnReader(conn, 16 * 1024);
    this.out = new Uint8Array(8 * 1024);
  }

  /** Resets the per-exchange state. */
  begin(): void {
    this.timedOut = this.clientGone = this.uploadDone = false;
    this.uploadError = null;
  }

  /** Deadline expiry closes the connection so pending I/O fails at once. */
  expire(): void {
    this.timedOut = true;
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** Raised when a connection could not be obtained. */
export class ConnectError extends Error {
  constructor(readonly kind: "refused" | "timeout", message: string) {
    super(message);
  }
}

interface Waiter {
  resolve(c: PooledConn | null): void;
}

/** Opens a TCP connection; replaceable for in-process benchmarks of the JS path. */
export type Dialer = (hostname: string, port: number) => Promise<Deno.TcpConn>;
let dial: Dialer = (hostname, port) => Deno.connect({ hostname, port, transport: "tcp" });

/** Replaces how pools open connections (bench/inproc only); returns the previous dialer. */
export function setDialer(d: Dialer): Dialer {
  const prev = dial;
  dial = d;
  return prev;
}

const pools = new Set<ConnectionPool>();
let sweeper: ReturnType<typeof setInterval> | undefined;

function sweepIdle(): void {
  const now = Date.now();
  for (const p of pools) p.closeIdle(now);
}

/** One endpoint's pool. */
export class ConnectionPool {
  private idle: PooledConn[] = [];
  private waiters: Waiter[] = [];
  /** Open connections (busy + idle + connecting). */
  open = 0;
  private closedForGood = false;

  /** Runs once when the pool closes for good (HTTP/2 sessions of the endpoint hang off it). */
  readonly closeHooks: (() => void)[] = [];

  constructor(
    readonly hostname: string,
    readonly port: number,
    public cfg: PoolConfig,
    /** TLS towards the endpoint (null = plain TCP); replaced on reload. */
    public tls: UpstreamTlsMaterial | null = null,
  ) {
    pools.add(this);
    if (sweeper === undefined) {
      const t = setInterval(sweepIdle, 1000);
      Deno.unrefTimer(t);
      sweeper = t;
    }
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Takes an idle connection if one is fresh enough (synchronous: the hot path). */
  takeIdle(now: number): PooledConn | null {
    const idle = this.idle;
    while (idle.length > 0) {
      const c = idle.pop()!;
      if (now - c.idleSince >= this.cfg.idle_timeout || c.closed) {
        this.dispose(c);
        continue;
      }
      c.reused = true;
      return c;
    }
    return null;
  }

  /** Takes an idle connection or opens one; waits when `max_connections` is reached. */
  async acquire(connectTimeoutMs: number): Promise<PooledConn> {
    const c = this.takeIdle(Date.now());
    if (c !== null) return c;
    return await this.openNew(connectTimeoutMs);
  }

  /** Opens a new connection (or waits for a free slot). */
  async openNew(connectTimeoutMs: number): Promise<PooledConn> {
    if (this.cfg.max_connections > 0 && this.open >= this.cfg.max_connections) {
      const c = await this.wait(connectTimeoutMs);
      if (c === null) throw new ConnectError("timeout", "timed out waiting for a pooled connection");
      return c;
    }
    return await this.connect(connectTimeoutMs);
  }

  private wait(ms: number): Promise<PooledConn | null> {
    return new Promise((resolve) => {
      const w: Waiter = {
        resolve: (c) => {
          clearTimeout(t);
          resolve(c);
        },
      };
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i !== -1) this.waiters.splice(i, 1);
        resolve(null);
      }, ms);
      this.waiters.push(w);
    });
  }

  private async connect(ms: number): Promise<PooledConn> {
    this.open++;
    try {
      return new PooledConn(await this.dialRaw(ms, "http/1.1"), this);
    } catch (e) {
      this.open--;
      this.wakeWaiter();
      throw e;
    }
  }

  /**
   * Opens one connection to the endpoint (TLS with ALPN `alpn` when the pool
   * has TLS) outside the pool's accounting: the HTTP/2 client keeps its own.
   * Throws ConnectError (refused or timeout after `ms`).
   */
  async dialRaw(ms: number, alpn: string): Promise<Deno.TcpConn> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const connecting = this.tls === null
      ? dial(this.hostname, this.port)
      : dialTls(this.hostname, this.port, this.tls, alpn);
    try {
      const conn = await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            reject(new ConnectError("timeout", `connect to ${this.hostname}:${this.port} timed out`));
          }, ms);
        }),
      ]);
      clearTimeout(timer);
      conn.setNoDelay(true);
      return conn;
    } catch (e) {
      clearTimeout(timer);
      if (timedOut) connecting.then((c) => c.close(), () => {});
      if (e instanceof ConnectError) throw e;
      throw new ConnectError(
        "refused",
        `connect to ${this.hostname}:${this.port} failed: ${(e as Error).message}`,
      );
    }
  }

  /** Returns a connection: kept idle when `reusable`, closed otherwise. */
  release(c: PooledConn, reusable: boolean): void {
    if (reusable && !c.closed && !this.closedForGood) {
      const w = this.waiters.shift();
      if (w !== undefined) {
        c.reused = true;
        w.resolve(c);
        return;
      }
      if (this.idle.length < this.cfg.max_idle) {
        c.idleSince = Date.now();
        c.r.reset();
        this.idle.push(c);
        return;
      }
    }
    this.dispose(c);
  }

  private dispose(c: PooledConn): void {
    c.close();
    this.open--;
    this.wakeWaiter();
  }

  /** A freed slot lets one waiter open a new connection. */
  private wakeWaiter(): void {
    const w = this.waiters.shift();
    if (w === undefined) return;
    this.connect(5000).then((c) => w.resolve(c), () => w.resolve(null));
  }

  /** Closes idle connections older than the idle timeout. */
  closeIdle(now: number): void {
    const idle = this.idle;
    let w = 0;
    for (let i = 0; i < idle.length; i++) {
      const c = idle[i];
      if (now - c.idleSince >= this.cfg.idle_timeout || c.closed) {
        c.close();
        this.open--;
      } else idle[w++] = c;
    }
    idle.length = w;
  }

  /** Closes idle connections and stops pooling (the endpoint left the config). */
  close(): void {
    this.closedForGood = true;
    for (const c of this.idle) c.close();
    this.open -= this.idle.length;
    this.idle.length = 0;
    pools.delete(this);
    for (const f of this.closeHooks.splice(0)) f();
  }
}
