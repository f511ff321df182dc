/**
 * Loom's own HTTP/1.1 server engine on `Deno.listen` / `Deno.listenTls`.
 *
 * Why not Deno.serve: building Request/Headers/Response objects and streams
 * costs about 2x nginx's CPU per proxied request; a byte-level engine with one
 * read and one write per message matches nginx (see shared notes). The engine
 * parses strictly, fills a RequestContext and hands it to the gateway; it knows
 * nothing of routes or upstreams.
 */
import {
  ChunkedBodyReader,
  ConnReader,
  FramingError,
  LengthBodyReader,
  writeAll,
  writeRest,
} from "../http1/reader.ts";
import { findHeadEnd, hasBareCr, parseRequestHead } from "../http1/parse.ts";
import { DONE, EMPTY_BODY, type RawStream, type UpgradableWriter } from "../core/body.ts";
import { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import { arm, disarm, type Expirable } from "../core/deadline.ts";
import { encodeLatin1Into, headText, reasonPhrase } from "../http1/serialize.ts";
import type { ListenerConfig } from "../config/types.ts";
import { logger } from "../observability/logger.ts";
import type { ListenerTls, TlsUse } from "./tls.ts";
import { TlsMaterial } from "./tls_reload.ts";
import { pool16k } from "../net/buffer_pool.ts";
import { connectionClosed, connectionOpened } from "../net/memory_return.ts";
import { readOpOf } from "../net/read_op.ts";
import { FfiConn, FfiListener } from "../net/ffi/conn.ts";

/** What the engine calls for each request; it must finish `ctx.res`. */
export interface RequestHandler {
  handle(ctx: RequestContext): Promise<void>;
}

/** Hooks for connection accounting (metrics). */
export interface ConnectionHooks {
  opened?(listener: string): void;
  closed?(listener: string): void;
  /** A connection was refused: the listener had `max_connections` open. */
  refused?(listener: string): void;
  /** An HTTP/2 client broke a protocol rule (`code`: the RFC 9113 error name sent back). */
  protocolError?(listener: string, code: string): void;
}

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/** How a fast-path TLS listener uses its TLS block: one certificate, HTTP/1.1 only. */
const FAST_TLS: TlsUse = { alpn: ["http/1.1"], pairOnly: true };

/** Opens a TLS listener socket for Loom's HTTP/1.1 engine (ALPN http/1.1 only). */
function listenTls(cfg: ListenerConfig, port: number, t: ListenerTls, reusePort: boolean) {
  const opts: Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem & { reusePort?: boolean } = {
    hostname: cfg.hostname || "0.0.0.0",
    port,
    transport: "tcp",
    cert: t.cert,
    key: t.key,
    alpnProtocols: ["http/1.1"],
  };
  if (reusePort) opts.reusePort = true;
  return Deno.listenTls(opts);
}

/**
 * `LOOM_HTTP1_IO=ffi`: plaintext HTTP/1.1 listeners take their sockets from
 * net/ffi (libc and epoll through FFI) instead of Deno's. A prototype for
 * measuring (bench/README.md, "An FFI socket path"); read once at load.
 */
const FFI_IO = (() => {
  try {
    return Deno.env.get("LOOM_HTTP1_IO") === "ffi";
  } catch {
    return false;
  }
})();

/** An FfiListener on `l`'s address, which is closed first (SO_REUSEPORT: workers bind it each). */
function onFfiSockets(l: Deno.Listener): Deno.Listener {
  const a = l.addr as Deno.NetAddr;
  l.close();
  return FfiListener.listen({
    hostname: a.hostname,
    port: a.port,
    reusePort: true,
  }) as unknown as Deno.Listener;
}

/** A running HTTP/1.1 listener. */
export class Http1Listener {
  private conns = new Set<Http1Connection>();
  private closing = false;
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  /** Set for `https` listeners opened by `openTls`: the certificate, re-read by reloadTls. */
  private tls: TlsMaterial | null = null;
  /** The socket is in an SO_REUSEPORT group (workers): a reloaded one opens beside it. */
  private reusePort = false;
  /** The old socket was closed for a reloaded certificate; the accept loop binds the new one (rebind). */
  private rebinding = false;
  /** `alt-svc: ...\r\n` when an HTTP/3 listener serves the same port (see setAltSvc), else "". */
  altSvcLine = "";

  /** Advertises HTTP/3 (an `Alt-Svc` value such as `h3=":443"; ma=86400`) on every final response; null stops. */
  setAltSvc(value: string | null): void {
    this.altSvcLine = value === null ? "" : "alt-svc: " + value + "\r\n";
  }

  constructor(
    private listener: Deno.Listener,
    readonly cfg: ListenerConfig,
    readonly handler: RequestHandler,
    readonly hooks: ConnectionHooks = {},
  ) {
    if (FFI_IO && cfg.protocol === "http") this.listener = listener = onFfiSockets(listener);
    this.addr = listener.addr as Deno.NetAddr;
    this.finished = this.acceptLoop();
  }

  /**
   * An `https` listener on `Deno.listenTls`. Why a factory: it remembers the
   * certificate so that reloadTls can reopen the socket when the files change
   * (a Deno TLS listener cannot change its certificate in place).
   */
  static openTls(
    cfg: ListenerConfig,
    handler: RequestHandler,
    hooks: ConnectionHooks,
    reusePort: boolean,
  ): Http1Listener {
    const tls = new TlsMaterial(cfg.name, cfg.tls!, FAST_TLS);
    const l = new Http1Listener(listenTls(cfg, cfg.port, tls.current, reusePort), cfg, handler, hooks);
    l.tls = tls;
    l.reusePort = reusePort;
    return l;
  }

  /**
   * Config reload (see tls_reload.ts): when the certificate or key file
   * changed, new connections get a new listener socket with them; accepted
   * connections keep theirs and are not touched. With SO_REUSEPORT (workers)
   * the new socket opens before the old one closes. Otherwise the old one
   * closes and the new one binds as soon as the port is free (see rebind): a
   * connection attempt in that sub-millisecond gap is refused. Unreadable or
   * bad files keep the current certificate (logged).
   */
  reloadTls(cfg: ListenerConfig): void {
    if (this.tls === null || cfg.tls === undefined || this.closing) return;
    this.tls.reload(cfg.tls, (next) => {
      const old = this.listener;
      if (this.reusePort) {
        // The accept loop moves to the new socket when its pending accept on the old one fails.
        this.listener = listenTls(cfg, this.addr.port, next, true);
        old.close();
        return;
      }
      // A pair the TLS stack refuses must not cost the port: try it on an ephemeral loopback port first.
      listenTls({ ...cfg, hostname: "127.0.0.1" }, 0, next, false).close();
      // Deno frees the port only once the pending accept() on the old socket has failed, so the
      // accept loop binds the new socket then (rebind), with the certificate current by then.
      if (!this.rebinding) old.close();
      this.rebinding = true;
    });
  }

  /** Binds the reloaded certificate's socket on the freed port (retrying briefly while it is in use). */
  private async rebind(): Promise<void> {
    for (let attempt = 0;; attempt++) {
      try {
        this.listener = listenTls(this.cfg, this.addr.port, this.tls!.current, false);
        this.rebinding = false;
        return;
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || attempt >= 100 || this.closing) {
          this.rebinding = false;
          logger.error("TLS listener could not be reopened", { listener: this.cfg.name, error: String(e) });
          return;
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  get connections(): number {
    return this.conns.size;
  }

  private async acceptLoop(): Promise<void> {
    const scheme = this.cfg.protocol === "https" ? "https" : "http";
    for (;;) {
      let conn: Deno.Conn;
      const listener = this.listener;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (this.closing) return;
        // reloadTls swapped the socket (closing the old one): go on with the new one.
        if (listener !== this.listener) continue;
        if (this.rebinding) {
          await this.rebind();
          if (listener !== this.listener) continue;
        }
        if (e instanceof Deno.errors.BadResource) return;
        // EMFILE and friends: back off briefly rather than spin.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (this.cfg.max_connections > 0 && this.conns.size >= this.cfg.max_connections) {
        this.hooks.refused?.(this.cfg.name);
        conn.write(REFUSED).catch(() => {}).finally(() => conn.close());
        continue;
      }
      if (scheme === "http") (conn as Deno.TcpConn).setNoDelay?.(true);
      const c = new Http1Connection(conn, this, scheme);
      this.conns.add(c);
      this.hooks.opened?.(this.cfg.name);
      connectionOpened();
      c.serve().finally(() => {
        this.conns.delete(c);
        this.hooks.closed?.(this.cfg.name);
        connectionClosed();
      });
    }
  }

  /** Stops accepting; idle keep-alive connections are closed, busy ones finish their request. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    try {
      this.listener.close();
    } catch { /* already closed */ }
    for (const c of this.conns) c.shutdown();
  }

  /** Resolves when every connection has ended. */
  async drained(): Promise<void> {
    while (this.conns.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  /** Closes every connection at once. */
  closeAll(): void {
    this.close();
    for (const c of this.conns) c.destroy();
  }
}

const REFUSED_BODY = '{"error":"too many connections","status":503}\n';
const REFUSED = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: " +
    REFUSED_BODY.length + "\r\nconnection: close\r\n\r\n" + REFUSED_BODY,
);
const TIMEOUT_BODY = '{"error":"request timeout","status":408}\n';
/** The answer to a request whose head or body did not arrive in time. */
const REQUEST_TIMEOUT = new TextEncoder().encode(
  "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: " +
    TIMEOUT_BODY.length + "\r\nconnection: close\r\n\r\n" + TIMEOUT_BODY,
);
/** How long a timed-out client has to take its 408 before the connection closes anyway. */
const TIMEOUT_WRITE_MS = 1000;

/** What an HTTP/1.1 connection needs from the listener that accepted it. */
export interface Http1Owner {
  readonly cfg: ListenerConfig;
  readonly handler: RequestHandler;
  /** A field line added to every final response (`alt-svc: ...\r\n`), or "". */
  readonly altSvcLine: string;
}

/**
 * Serves the requests of one client connection, in order. Exported for the
 * HTTP/2 listener, which hands it the connections that turn out to be
 * HTTP/1.1 (ALPN http/1.1 on TLS, no preface on cleartext).
 */
export class Http1Connection implements Expirable {
  readonly r: ConnReader;
  deadline = 0;
  private closed = false;
  /** In a request (between head and response end): shutdown waits for it. */
  private busy = false;
  draining = false;
  /**
   * Output buffer for heads and coalesced small bodies: taken from the pool by the first
   * reserve() of a response (grown on demand), given back when the connection goes idle.
   */
  out: Uint8Array = NO_OUT;
  /** Writes of `out` in flight: it goes back to the pool only when none is. */
  writing = 0;
  /**
   * The most response bytes copied into `out` at once (listener `write_buffer`): a
   * larger chunk is written from where it lies, and nothing is read for the response
   * until a write completes, so a client that does not read holds no more than this.
   */
  readonly coalesce: number;
  ctx: RequestContext | null = null;
  private readonly remoteIp: string;
  private readonly remotePort: number;
  private readonly localIp: string;
  private readonly localPort: number;

  /**
   * @param onContext called for each request's context before the gateway sees it (the TLS identity
   *   and SNI name of a connection accepted by another listener).
   */
  constructor(
    readonly conn: Deno.Conn,
    readonly server: Http1Owner,
    readonly scheme: "http" | "https",
    private onContext?: (ctx: RequestContext) => void,
  ) {
    // Heads are read into a 1 KiB buffer, bodies into a pooled 16 KiB one (idle: only the small one).
    this.r = new ConnReader(conn, pool16k.size, pool16k);
    this.coalesce = server.cfg.write_buffer ?? MAX_COALESCE;
    const ra = conn.remoteAddr as Deno.NetAddr;
    this.remoteIp = ra.hostname ?? "";
    this.remotePort = ra.port ?? 0;
    const la = conn.localAddr as Deno.NetAddr | undefined;
    this.localIp = la?.hostname ?? "";
    this.localPort = la?.port ?? 0;
  }

  /**
   * A deadline passed. A connection that started a request (head bytes
   * received, or its body still coming and no response begun) is told `408
   * Request Timeout` with `Connection: close` before the close; an idle one
   * (nothing received since the last response) just closes, as does one
   * whose response is under way.
   */
  expire(): void {
    if (this.closed) return;
    const ctx = this.ctx;
    if (ctx !== null ? !ctx.res.headSent : this.r.available > 0) this.timedOut(ctx);
    else this.destroy();
  }

  /** Writes the 408 and closes; nothing else is read or answered on this connection from here on. */
  private timedOut(ctx: RequestContext | null): void {
    this.closed = true;
    disarm(this);
    const conn = this.conn;
    let done = false;
    const close = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* already closed */ }
    };
    // A client that does not read even the 408 is not waited for long.
    const timer = setTimeout(close, TIMEOUT_WRITE_MS);
    writeAll(conn, REQUEST_TIMEOUT).then(close, close);
    if (ctx !== null) {
      // The request stops upstream; whatever the proxy answers now goes nowhere (ctx.aborted).
      ctx.abort();
      ctx.status = 408;
      ctx.rejection = "request_timeout";
    }
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    disarm(this);
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.ctx?.abort();
  }

  /** Graceful: close now if idle, else after the current response. */
  shutdown(): void {
    this.draining = true;
    if (!this.busy) this.destroy();
  }

  /** readHead's state: offset from r.start up to which an incomplete head was checked for a bare CR. */
  private crChecked = 0;

  /**
   * A complete head buffered in `r` (empty lines before it skipped): its end
   * offset, or -2 (bare LF), -3 (too large), -4 (bare CR), or NEED_MORE.
   */
  private headIn(): number {
    const r = this.r;
    const cfg = this.server.cfg;
    // RFC 9112 2.2: ignore at least one empty line before the request line.
    while (r.available >= 2 && r.buf[r.start] === 13 && r.buf[r.start + 1] === 10) r.start += 2;
    if (r.available === 0) return NEED_MORE;
    const end = findHeadEnd(r.buf, r.start, r.end);
    // A head that arrived whole in one read must respect the limit too.
    if (end !== -1) return end - r.start > cfg.max_header_bytes ? -3 : end;
    if (r.available >= cfg.max_header_bytes) return -3;
    // Incomplete: a bare CR means it never completes (a head is read whole in one read as a rule).
    if (hasBareCr(r.buf, r.start + this.crChecked, r.end)) return -4;
    this.crChecked = r.available - 1;
    return NEED_MORE;
  }

  /**
   * Reads until a complete head is buffered: its end offset, or -1 (EOF or
   * closed), -2 (bare LF), -3 (too large), -4 (bare CR). The wait is written
   * out in serve (an async call per request less); this is its first look.
   */
  private readHead(): number {
    this.crChecked = 0;
    return this.headIn();
  }

  async serve(): Promise<void> {
    const r = this.r;
    try {
      while (!this.closed && !this.draining) {
        let sawBytes = r.available > 0;
        let end = this.readHead();
        if (end === NEED_MORE) {
          const cfg = this.server.cfg;
          // The timer is set only before waiting (a head already buffered needs none), once per phase:
          // idle until the first bytes, then read_header_timeout (one clock read per request, not two).
          let armed = false;
          try {
            do {
              if (!armed) {
                arm(this, sawBytes ? cfg.read_header_timeout : cfg.idle_timeout);
                armed = true;
              }
              r.idle();
              // Joins the disconnect detector's read when one is in flight (see watchClient).
              if (await r.fill(cfg.max_header_bytes + 4) === 0) {
                end = -1;
                break;
              }
              if (!sawBytes) {
                sawBytes = true;
                armed = false;
              }
              end = this.headIn();
            } while (end === NEED_MORE);
          } catch (e) {
            if (e instanceof FramingError) await this.reject(e.status, e.message);
            return;
          }
        }
        if (end < 0 || this.closed) {
          if (end === -2) await this.reject(400, "bare LF");
          else if (end === -3) await this.reject(431, "request head too large");
          else if (end === -4) await this.reject(400, "bare CR");
          return; // -1: EOF or closed (a timeout answered 408 meanwhile)
        }
        const head = parseRequestHead(r.buf, r.start, end, this.server.cfg.max_headers ?? 100);
        if (head.error) return await this.reject(head.status, head.reason);
        // Any CONNECT, whatever its target form, would turn the upstream connection into a tunnel.
        if (head.method === "CONNECT") return await this.reject(501, "CONNECT not supported");
        const headBytes = end - r.start;
        r.start = end;
        disarm(this);
        this.busy = true;

        let target = head.target;
        let authority = head.host ?? "";
        if (target.charCodeAt(0) !== 47 /* / */) {
          const abs = absoluteForm(target);
          if (abs === null) {
            // Only the asterisk-form of OPTIONS remains valid (CONNECT was refused above).
            if (target !== "*" || head.method !== "OPTIONS") {
              return await this.reject(400, "malformed request target");
            }
          } else {
            // RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
            authority = abs.authority;
            target = abs.pathAndQuery;
          }
        }

        const w = new Http1Writer(this, head.method === "HEAD", head.minor, head.close);
        let body = EMPTY_BODY;
        let br: ChunkedBodyReader | LengthBodyReader | null = null;
        const cfg = this.server.cfg;
        if (head.chunked || head.contentLength > 0) {
          br = head.chunked ? new ChunkedBodyReader(r) : new LengthBodyReader(r, head.contentLength);
          // The first wait for body bytes starts the body timer (and sends 100 Continue when asked).
          br.onFirstRead = head.expectContinue ? this.armBodyContinue : this.armBody;
          const onProgress = (n: number) => {
            ctx.bytesIn += n;
            // 0 = body complete: the timer must not cut a slow upstream answer.
            if (n === 0) disarm(this);
            else arm(this, cfg.body_timeout);
          };
          br.onProgress = onProgress;
          body = br;
        }
        const ctx: RequestContext = new RequestContext(
          head.method,
          target,
          authority,
          this.scheme,
          head.minor === 1 ? "HTTP/1.1" : "HTTP/1.0",
          head.headers,
          body,
          w,
          this.remoteIp,
          this.remotePort,
          cfg.name,
        );
        ctx.bytesIn = headBytes;
        // `Upgrade: h2c` (RFC 7540 3.2) is for the next hop, which is Loom: refused by going on as
        // plain HTTP/1.1 (the header policy drops Upgrade and HTTP2-Settings; nothing is re-announced).
        if (head.upgrade !== undefined) ctx.upgrade = forwardedUpgrade(head.upgrade);
        ctx.localAddr = this.localIp;
        ctx.localPort = this.localPort;
        this.onContext?.(ctx);
        this.ctx = ctx;
        if (body === EMPTY_BODY && ctx.upgrade === undefined) this.watchClient();

        try {
          await this.server.handler.handle(ctx);
        } catch (e) {
          if (e instanceof FramingError && !w.headSent) {
            await this.reject(e.status, e.message);
            return;
          }
          if (!w.headSent && !this.closed) {
            await this.reject(500, "internal error");
          }
          return;
        }
        this.ctx = null;
        this.busy = false;
        if (!w.finished || w.mustClose || this.closed) return;
        // The handler read its body to the end (it saw null), so it holds none of the reader's views.
        const viewsOut = br !== null && !br.ended;
        // Unread request body left behind (e.g. an early response): drain a little, else close.
        if (br !== null && !(await drainBody(br))) return;
        if (this.draining) return;
        // Idle until the next request: the large buffers go back to their pool.
        r.idle(viewsOut);
        if (this.writing === 0) this.releaseOut();
      }
    } catch {
      // Connection-level I/O error: nothing to answer.
    } finally {
      this.destroy();
    }
  }

  /**
   * Issues the next read now (the request has no body left to read), so an EOF
   * while the upstream works tells us the client went away.
   */
  watchClient(): void {
    const r = this.r;
    if (r.pending !== null || this.closed) return;
    // No body to read: the request's buffer goes back, and the read waits with the small one.
    r.idle();
    if (r.end === r.buf.length) return; // pipelined bytes fill the buffer: nothing to watch with
    // Parked on the reader: whoever reads next (head or a pipelined body) joins this read.
    r.park(this.onWatchRead, this.onWatchError);
  }

  // Bound once per connection: body readers' first-wait hooks.
  private readonly armBody = (): Promise<void> => {
    arm(this, this.server.cfg.body_timeout);
    return Promise.resolve();
  };
  private readonly armBodyContinue = (): Promise<void> => {
    arm(this, this.server.cfg.body_timeout);
    return writeAll(this.conn, CONTINUE);
  };

  // Bound once per connection: watchClient runs per request.
  private readonly onWatchRead = (n: number): number => {
    if (n === 0 && this.ctx !== null) this.ctx.abort();
    return n;
  };
  private readonly onWatchError = (): number => {
    this.ctx?.abort();
    return 0;
  };

  /** Answers a protocol error and closes (the stream position is unknown). */
  private async reject(status: number, reason: string): Promise<void> {
    if (this.closed) return;
    const body = `{"error":${JSON.stringify(reason)},"status":${status}}\n`;
    const text = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
    try {
      await writeAll(this.conn, new TextEncoder().encode(text));
    } catch { /* client gone */ }
    this.destroy();
  }

  /** Ensures `out` holds at least `n` bytes, keeping its first `n` bytes... callers fill it in order. */
  reserve(n: number): Uint8Array {
    if (this.out.length < n) {
      if (this.out.length === 0 && n <= pool16k.size) this.out = pool16k.take();
      else {
        const grown = new Uint8Array(Math.max(n, pool16k.size, this.out.length * 2));
        grown.set(this.out);
        this.releaseOut();
        this.out = grown;
      }
    }
    return this.out;
  }

  /** Gives `out` back when no write of it is in flight (else, and when grown, it is left to the collector). */
  releaseOut(): void {
    if (this.out === NO_OUT) return;
    if (this.writing === 0) pool16k.give(this.out);
    this.out = NO_OUT;
  }

  /** Writes `out[0, n)`; `writing` counts it while in flight (and stays up when it fails: `out` is not reused). */
  async writeOut(n: number): Promise<void> {
    this.writing++;
    await writeAll(this.conn, this.out.subarray(0, n));
    this.writing--;
  }

  /** Encodes `text` into `out` at `offset`; returns the end offset. */
  put(text: string, offset: number): number {
    let end = encodeLatin1Into(text, this.out, offset);
    if (end === -1) {
      this.reserve(offset + text.length);
      end = encodeLatin1Into(text, this.out, offset);
    }
    return end;
  }
}

/** Reads and discards up to 256 KiB of leftover body; false when more remains or it failed. */
async function drainBody(body: { read(): Promise<Uint8Array | null> }): Promise<boolean> {
  let total = 0;
  try {
    for (;;) {
      const c = await body.read();
      if (c === null) return true;
      total += c.length;
      if (total > 256 * 1024) return false;
    }
  } catch {
    return false;
  }
}

const HTTP2_UPGRADE = /^(h2c?|http\/2(\.0)?)$/i;

/**
 * The protocols of a client's Upgrade that go upstream: all but HTTP/2's
 * (`h2c`; `h2`, which RFC 7540 3.3 keeps to TLS; `HTTP/2.0`), which Loom does
 * not offer over an upgrade. Undefined when none is left.
 */
export function forwardedUpgrade(value: string): string | undefined {
  if (!/\bh2c?\b|http\/2/i.test(value)) return value;
  const kept = value.split(",").map((p) => p.trim()).filter((p) => p !== "" && !HTTP2_UPGRADE.test(p));
  return kept.length === 0 ? undefined : kept.join(", ");
}

function absoluteForm(target: string): { authority: string; pathAndQuery: string } | null {
  const m = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(target);
  if (m === null || m[1] === "" || m[1].includes("@")) return null;
  return { authority: m[1], pathAndQuery: m[2] === "" ? "/" : m[2].startsWith("?") ? "/" + m[2] : m[2] };
}

const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");

/**
 * ResponseWriter for HTTP/1.1. The head is encoded into the connection's out
 * buffer and held back, so head and first body bytes (often the whole body)
 * leave in one write.
 */
class Http1Writer implements UpgradableWriter {
  headSent = false;
  finished = false;
  /** The connection cannot carry another request after this response. */
  mustClose: boolean;
  private chunked = false;
  private noBody: boolean;
  /** Bytes of encoded head waiting in `c.out`. */
  private pending = 0;

  constructor(readonly c: Http1Connection, isHead: boolean, readonly minor: number, close: boolean) {
    this.mustClose = close;
    this.noBody = isHead;
  }

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    const framing = this.begin(status, bodyLength);
    const text = headText(
      "HTTP/1.1 " + status + " " + (reason || reasonPhrase(status)) + "\r\n",
      headers,
      framing,
    );
    this.pending = this.c.put(text, 0);
  }

  /**
   * Starts the response from a ready head prefix (status line + field lines,
   * already free of hop-by-hop fields), adding only framing. Used by the proxy
   * to pass an upstream head through as bytes.
   */
  writeHeadRaw(status: number, prefix: Uint8Array, bodyLength: number): void {
    const framing = this.begin(status, bodyLength);
    const c = this.c;
    c.reserve(prefix.length + framing.length + 2).set(prefix, 0);
    this.pending = c.put(framing + "\r\n", prefix.length);
  }

  /** Records the status and decides framing; returns the framing/connection lines. */
  private begin(status: number, bodyLength: number): string {
    if (this.headSent) throw new Error("response head already sent");
    this.headSent = true;
    const ctx = this.c.ctx;
    if (ctx !== null) ctx.status = status;
    const informational = status < 200;
    if (status === 204 || status === 304 || informational) this.noBody = true;
    let framing: string;
    if (status === 204 || informational) framing = "";
    else if (bodyLength >= 0) framing = "content-length: " + bodyLength + "\r\n";
    else if (this.noBody) framing = "";
    else if (this.minor === 1) {
      framing = "transfer-encoding: chunked\r\n";
      this.chunked = true;
    } else {
      // HTTP/1.0 client and unknown length: the close delimits the body.
      framing = "";
      this.mustClose = true;
    }
    if (this.mustClose || this.c.draining) {
      this.mustClose = true;
      framing += "connection: close\r\n";
    } else if (this.minor === 0) framing += "connection: keep-alive\r\n";
    if (!informational) framing += this.c.server.altSvcLine;
    return framing;
  }

  private count(n: number): void {
    const ctx = this.c.ctx;
    if (ctx !== null) ctx.bytesOut += n;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (!this.headSent) throw new Error("write before writeHead");
    if (this.noBody || chunk.length === 0) return;
    const c = this.c;
    const prefix = this.chunked ? chunk.length.toString(16) + "\r\n" : "";
    const total = this.pending + prefix.length + chunk.length + (this.chunked ? 2 : 0);
    if (total <= c.coalesce) {
      // One write: pending head + framing + data, copied into the out buffer.
      let o = this.pending;
      if (prefix !== "") o = c.put(prefix, o);
      const out = c.reserve(o + chunk.length + 2);
      out.set(chunk, o);
      o += chunk.length;
      if (this.chunked) {
        out[o++] = 13;
        out[o++] = 10;
      }
      this.pending = 0;
      const data = out.subarray(0, o);
      c.writing++;
      const n = await c.conn.write(data);
      if (n < o) await writeRest(c.conn, data, n);
      c.writing--;
      this.count(o);
      return;
    }
    let o = this.pending;
    if (prefix !== "") o = c.put(prefix, o);
    if (o > 0) await c.writeOut(o);
    this.pending = 0;
    await writeAll(c.conn, chunk);
    if (this.chunked) await writeAll(c.conn, CRLF);
    this.count(o + chunk.length + (this.chunked ? 2 : 0));
  }

  end(trailers?: HeaderList | null): Promise<void> {
    if (this.finished) return DONE;
    if (!this.headSent) throw new Error("end before writeHead");
    const c = this.c;
    let o = this.pending;
    this.pending = 0;
    if (this.chunked) {
      if (trailers && trailers.size > 0) o = c.put(headText("0\r\n", trailers, ""), o);
      else {
        c.reserve(o + 5).set(LAST_CHUNK, o);
        o += 5;
      }
    }
    this.finished = true;
    if (o === 0) return DONE; // the common case: the body already carried everything
    this.count(o);
    return c.writeOut(o);
  }

  abort(): void {
    this.mustClose = true;
    this.c.destroy();
  }

  async upgrade(headers: HeaderList): Promise<RawStream> {
    if (this.headSent) throw new Error("response head already sent");
    this.headSent = true;
    this.mustClose = true; // the connection never returns to HTTP
    const c = this.c;
    const o = c.put(headText("HTTP/1.1 101 Switching Protocols\r\n", headers, ""), 0);
    await c.writeOut(o);
    const r = c.r;
    const leftover = r.buf.slice(r.start, r.end);
    r.start = r.end;
    return {
      leftover,
      read: readOpOf(c.conn),
      write: (d) => c.conn.write(d),
      close: () => c.destroy(),
      idleTimeout: c.server.cfg.idle_timeout,
      closeWrite: () => c.conn.closeWrite(),
      // TLS listeners' connections carry records; the splicer also refuses wrappers (sniffed h2c).
      conn: c.scheme === "http" && !(c.conn instanceof FfiConn) ? c.conn : undefined,
    };
  }
}

const CRLF = new Uint8Array([13, 10]);
/** headIn: no complete head buffered yet. */
const NEED_MORE = -5;
/** `out` of a connection that holds no output buffer (between responses). */
const NO_OUT = new Uint8Array(0);
/** Largest head+body written with one copy and one syscall, unless the listener says (`write_buffer`). */
const MAX_COALESCE = 64 * 1024;
