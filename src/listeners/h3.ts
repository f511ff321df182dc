/**
 * The HTTP/3 listener (`protocol: http3`): a Deno.QuicEndpoint on the
 * listener's UDP port with ALPN h3, and Loom's own HTTP/3 framing and QPACK
 * (src/http3) on each connection. Request streams become RequestContexts
 * exactly like HTTP/2 streams do (stream_request.ts), so routing, plugins and
 * upstreams see no difference but `protocol: "HTTP/3"`.
 *
 * Deno's QUIC API takes one certificate and no client-certificate settings,
 * so SNI certificate lists and mTLS are not available on this listener.
 *
 * A listener is rebuilt on its endpoint by a certificate reload, and handed
 * the endpoint (the UDP socket) by a reload that changes its settings. Deno
 * 2.9.6: once a stopped QuicListener is garbage-collected, its endpoint takes
 * no new handshakes for the listener opened after it, silently (measured:
 * `incoming()` never resolves again; open connections keep working).
 * {@link QuicSocket} keeps every stopped listener referenced while its
 * endpoint lives, and each listener checks now and then that it still
 * accepts (a handshake to itself over loopback when it saw none for a while):
 * one that does not is logged, counted (`acceptFailed`) and reopened.
 */
import type { ListenerConfig, TlsConfig } from "../config/types.ts";
import { H3Connection } from "../http3/connection.ts";
import { H3Error } from "../http3/frame.ts";
import type { ConnectionHooks, RequestHandler } from "./http1.ts";
import { type StreamConnInfo, type StreamProtocol, StreamRequests } from "./stream_request.ts";
import type { ListenerTls, TlsUse } from "./tls.ts";
import { TlsMaterial } from "./tls_reload.ts";
import { logger } from "../observability/logger.ts";

/**
 * HTTP/3 above its frames. No SETTINGS_ENABLE_CONNECT_PROTOCOL: WebSocket over HTTP/3 (RFC 9220) is not
 * offered, so CONNECT gets 501. (Deno 2.9.6 cannot reset a QUIC stream with a code: see H3Stream.reset.)
 */
const HTTP3: StreamProtocol = { name: "HTTP/3", abortCode: H3Error.INTERNAL_ERROR, connectCancelCode: null };

/** The listener's TLS block: one certificate (Deno's QUIC API takes no SNI list and no client certificates). */
export function quicTls(cfg: ListenerConfig): TlsConfig {
  const t = cfg.tls;
  if (t === undefined) throw new Error("http3 listener needs a tls block");
  if (t.client_auth !== undefined && t.client_auth !== "none") {
    // Refuse rather than serve without the client check the config asks for.
    throw new Error(
      "http3 listener: client_auth is not supported (Deno's QUIC API has no client certificates)",
    );
  }
  return t;
}

/** How this listener uses its TLS block. */
export const QUIC_TLS: TlsUse = { alpn: ["h3"], pairOnly: true };

/** Hooks of an HTTP/3 listener: a listener found not accepting new handshakes (then reopened). */
export interface H3Hooks extends ConnectionHooks {
  acceptFailed?(listener: string): void;
}

/** How long a listener may go without a new connection before it checks that it still accepts. */
export const ACCEPT_CHECK_INTERVAL_MS = 30_000;
/** How long a self-check waits for its handshake to arrive. */
const ACCEPT_CHECK_TIMEOUT_MS = 3_000;

/**
 * One UDP socket (a QUIC endpoint) and the QUIC listeners opened on it. Stopped listeners stay
 * referenced until the endpoint closes: collecting one stops the endpoint from taking new handshakes
 * (Deno 2.9.6; see the module doc).
 */
export class QuicSocket {
  /** Stopped listeners, kept for the endpoint's life. */
  readonly stopped: Deno.QuicListener[] = [];
  constructor(readonly endpoint: Deno.QuicEndpoint) {}

  stop(l: Deno.QuicListener): void {
    try {
      l.stop();
    } catch { /* stopped */ }
    if (!this.stopped.includes(l)) this.stopped.push(l);
  }

  close(): void {
    try {
      this.endpoint.close();
    } catch { /* closed */ }
    this.stopped.length = 0;
  }
}

/** A running HTTP/3 listener. */
export class H3Listener {
  readonly addr: Deno.NetAddr;
  private socket: QuicSocket;
  private listener: Deno.QuicListener;
  private tls: TlsMaterial;
  private conns = new Set<H3Connection>();
  private readonly streams: StreamRequests;
  private closing = false;
  /** The listener that took over this one's UDP socket (a reload changed it): new connections go there. */
  private successor: H3Listener | null = null;
  /** Connection attempts seen (any listener of this one's); the accept check compares it. */
  private incomingSeen = 0;
  private seenAtLastCheck = -1;
  private checkTimer: ReturnType<typeof setInterval> | undefined;
  private checking: Promise<boolean> | null = null;

  /**
   * @param replaces a closed listener on the same address (reload): its UDP socket is taken over, since
   *   it stays open while the old connections drain and a second bind would fail.
   */
  constructor(
    readonly cfg: ListenerConfig,
    readonly handler: RequestHandler,
    private hooks: H3Hooks = {},
    replaces?: H3Listener,
  ) {
    this.streams = new StreamRequests(cfg, handler, HTTP3);
    this.tls = new TlsMaterial(cfg.name, quicTls(cfg), QUIC_TLS);
    const taken = replaces?.canHandOver(cfg) ? replaces.socket : undefined;
    this.socket = taken ??
      new QuicSocket(new Deno.QuicEndpoint({ hostname: cfg.hostname || "0.0.0.0", port: cfg.port }));
    this.addr = this.socket.endpoint.addr;
    try {
      this.listener = this.listen(this.tls.current);
    } catch (e) {
      if (taken === undefined) this.socket.close();
      throw e;
    }
    if (taken !== undefined) replaces!.successor = this;
    this.acceptLoop(this.listener);
    this.checkTimer = setInterval(() => void this.checkAccepting(), ACCEPT_CHECK_INTERVAL_MS);
    Deno.unrefTimer(this.checkTimer);
  }

  /** Whether `next` may take over this listener's socket: this one is closed and bound to the same address. */
  canHandOver(next: ListenerConfig): boolean {
    return this.closing && this.successor === null && next.port !== 0 && next.port === this.addr.port &&
      (next.hostname || "0.0.0.0") === (this.cfg.hostname || "0.0.0.0");
  }

  private listen(t: ListenerTls): Deno.QuicListener {
    return this.socket.endpoint.listen({
      alpnProtocols: ["h3"],
      cert: t.cert,
      key: t.key,
      // QUIC's own idle timeout closes quiet connections (RFC 9114 §5.1); 0 = none.
      maxIdleTimeout: this.cfg.idle_timeout > 0 ? this.cfg.idle_timeout : undefined,
      // QUIC MAX_STREAMS enforces the limit: clients wait for credit instead of being refused.
      maxConcurrentBidirectionalStreams: this.cfg.http2?.max_concurrent_streams ?? 100,
    });
  }

  private full(): boolean {
    return this.cfg.max_connections > 0 && this.conns.size >= this.cfg.max_connections;
  }

  private async acceptLoop(l: Deno.QuicListener): Promise<void> {
    for (;;) {
      let inc: Deno.QuicIncoming;
      try {
        inc = await l.incoming();
      } catch (e) {
        // Stopped (close or certificate reload), or failed: then this listener takes nothing more.
        if (!this.closing && l === this.listener) this.acceptFailed(`the listener failed: ${e}`);
        return;
      }
      this.incomingSeen++;
      // A stopped QUIC listener's pending incoming() still takes the next connection (Deno 2.9.6), and
      // accepting it applies the socket's current listen options: pass it on to whoever serves now,
      // then let the stopped listener's loop end.
      try {
        this.admit(inc);
      } catch (e) {
        // refuse()/accept() on a connection that is already gone (NotConnected): nothing to serve.
        logger.debug("HTTP/3 connection attempt failed", { error: String(e) });
      }
      if (this.closing || l !== this.listener) return;
    }
  }

  /**
   * Whether this listener still takes new handshakes: when it saw no connection attempt since the last
   * check, it makes one to itself (over loopback; the handshake fails on the certificate, its arrival is
   * what counts). One that does not arrive is logged and counted, and the listener is reopened.
   * Runs every {@link ACCEPT_CHECK_INTERVAL_MS}; concurrent calls share one check.
   */
  checkAccepting(): Promise<boolean> {
    if (this.closing || this.successor !== null) return Promise.resolve(true);
    if (this.incomingSeen !== this.seenAtLastCheck && this.seenAtLastCheck !== -1) {
      this.seenAtLastCheck = this.incomingSeen;
      return Promise.resolve(true);
    }
    this.checking ??= this.selfHandshake().finally(() => this.checking = null);
    return this.checking;
  }

  private async selfHandshake(): Promise<boolean> {
    const before = this.incomingSeen;
    const host = this.addr.hostname;
    (async () => {
      const c = await Deno.connectQuic({
        hostname: host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host,
        port: this.addr.port,
        serverName: "loom-accept-check.invalid",
        alpnProtocols: ["h3"],
        maxIdleTimeout: ACCEPT_CHECK_TIMEOUT_MS,
      });
      c.close();
    })().catch(() => {}); // the certificate is not trusted here: the handshake fails, as it may
    const deadline = Date.now() + ACCEPT_CHECK_TIMEOUT_MS;
    while (this.incomingSeen === before && Date.now() < deadline && !this.closing) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.seenAtLastCheck = this.incomingSeen;
    if (this.incomingSeen !== before || this.closing || this.successor !== null) return true;
    this.acceptFailed(`no handshake to itself arrived within ${ACCEPT_CHECK_TIMEOUT_MS} ms`);
    return false;
  }

  /** The current QUIC listener takes no new connections: logged, counted, and a new one is opened. */
  private acceptFailed(why: string): void {
    logger.error("HTTP/3 listener is not accepting new connections; reopening it", {
      listener: this.cfg.name,
      address: `${this.addr.hostname}:${this.addr.port}`,
      error: why,
    });
    this.hooks.acceptFailed?.(this.cfg.name);
    try {
      this.socket.stop(this.listener);
      this.listener = this.listen(this.tls.current);
      this.acceptLoop(this.listener);
    } catch (e) {
      logger.error("HTTP/3 listener could not be reopened", { listener: this.cfg.name, error: String(e) });
    }
  }

  private admit(inc: Deno.QuicIncoming): void {
    if (this.successor !== null) return this.successor.admit(inc);
    if (this.closing || this.full()) return inc.refuse();
    // Every failure inside is handled there; this only keeps a surprise from being an unhandled rejection.
    this.accept(inc).catch((e) => logger.debug("HTTP/3 connection failed", { error: String(e) }));
  }

  private async accept(inc: Deno.QuicIncoming): Promise<void> {
    let quic: Deno.QuicConn;
    try {
      quic = await inc.accept();
      await quic.handshake;
    } catch {
      return; // failed handshake
    }
    // Addresses come from the connection: in Deno 2.9.6 reading a QuicIncoming field invalidates it.
    // A client that already closed makes these getters throw (NotConnected): nothing to serve then.
    let info: StreamConnInfo;
    try {
      const ra = quic.remoteAddr;
      const sni = quic.serverName ?? "";
      info = {
        scheme: "https",
        remoteIp: ra.hostname,
        remotePort: ra.port,
        localIp: this.addr.hostname,
        localPort: this.addr.port,
        stamp: (ctx) => {
          ctx.sni = sni;
        },
      };
    } catch {
      return;
    }
    const c: H3Connection = new H3Connection(quic, {
      maxFieldSectionSize: this.cfg.http2?.max_header_list_size ?? 64 * 1024,
      readHeaderTimeout: this.cfg.read_header_timeout,
      onStream: (s) => this.streams.serve(s, info),
    });
    this.conns.add(c);
    this.hooks.opened?.(this.cfg.name);
    c.closed.then(() => {
      this.conns.delete(c);
      this.hooks.closed?.(this.cfg.name);
    });
    c.serve().catch(() => c.destroy());
    if (this.closing) c.goaway();
  }

  /**
   * Re-reads the certificate (config reload; see tls_reload.ts): a new QUIC
   * listener on the same endpoint takes new handshakes; open connections keep
   * theirs.
   */
  reloadTls(cfg: ListenerConfig): void {
    if (this.closing || cfg.tls === undefined) return;
    this.tls.reload(cfg.tls, (next) => {
      this.socket.stop(this.listener);
      try {
        this.listener = this.listen(next);
      } catch (e) {
        this.listener = this.listen(this.tls.current);
        throw e;
      } finally {
        this.acceptLoop(this.listener);
      }
    });
  }

  /** Stops accepting; connections get GOAWAY and close once their streams are done. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.checkTimer);
    this.socket.stop(this.listener);
    for (const c of this.conns) c.goaway();
  }

  async drained(): Promise<void> {
    while (this.streams.active > 0 || this.conns.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  closeAll(): void {
    this.close();
    for (const c of this.conns) c.destroy();
    if (this.successor !== null) return; // the socket is the successor's now
    this.socket.close();
  }
}
