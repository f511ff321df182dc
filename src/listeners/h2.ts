/**
 * HTTP/2 listeners on Loom's own HTTP/2 stack (src/http2): `h2c` and `grpc`
 * (cleartext; HTTP/1.1 on the same port), and `grpcs` and `https` listeners
 * that offer ALPN h2, pick certificates by SNI or verify client certificates.
 *
 * Cleartext connections are sniffed: the HTTP/2 preface goes to an
 * H2Connection, anything else to the HTTP/1.1 engine. TLS is `node:tls`
 * (the only TLS in Deno with an SNI callback and client certificate
 * requests); after the handshake, ALPN picks HTTP/2 or the HTTP/1.1 engine.
 * Why not node:http2: Deno 2.9.6's node:http2 server aborts the process
 * under load, and Deno.serve cannot send trailers.
 */
import tls from "node:tls";
import type { Socket } from "node:net";
import {
  CLIENT_SAN_HEADER,
  CLIENT_SUBJECT_HEADER,
  type ClientCertificate,
  type RequestContext,
} from "../core/context.ts";
import type { ListenerConfig } from "../config/types.ts";
import { H2Connection } from "../http2/connection.ts";
import { ErrorCode, errorCodeName, PREFACE } from "../http2/frame.ts";
import { NodeSocketConn, PrefixedConn } from "../net/node_conn.ts";
import { type ConnectionHooks, Http1Connection, type RequestHandler } from "./http1.ts";
import { type StreamConnInfo, type StreamProtocol, StreamRequests } from "./stream_request.ts";
import { contextFor, peerChain, verifyClientCert } from "./tls.ts";
import { TlsMaterial } from "./tls_reload.ts";
import { logger } from "../observability/logger.ts";
import { arm, disarm } from "../core/deadline.ts";
import { connectionClosed, connectionOpened } from "../net/memory_return.ts";

/** Length of the preface's request line, `PRI * HTTP/2.0\r\n`: no HTTP/1.1 request starts with it. */
const PREFACE_LINE = 16;

/** What a connection's requests share: scheme, addresses, SNI name and the verified client identity. */
interface ConnInfo extends StreamConnInfo {
  sni: string;
  id: ClientCertificate | null;
}

/** HTTP/2 above its frames: RFC 8441 extended CONNECT is offered (SETTINGS_ENABLE_CONNECT_PROTOCOL). */
const HTTP2: StreamProtocol = {
  name: "HTTP/2",
  abortCode: ErrorCode.INTERNAL_ERROR,
  connectCancelCode: ErrorCode.CANCEL,
};

/** A running HTTP/2 listener (h2c/grpc cleartext, or TLS with h2 and HTTP/1.1). */
export class H2Listener {
  private tls: TlsMaterial | null;
  private listener: Deno.Listener | null = null;
  private server: tls.Server | null = null;
  private h2 = new Map<H2Connection, { idleSince: number }>();
  private h1 = new Set<Http1Connection>();
  private sockets = new Set<Socket>();
  private closing = false;
  private sweeper: ReturnType<typeof setInterval>;
  private readonly settings;
  readonly addr: Deno.NetAddr;
  /** node:tls binds asynchronously: resolves once the server accepts, rejects when it cannot bind. */
  readonly listening: Promise<void> | undefined;
  /** The HTTP/1.1 connections' `alt-svc` line (see setAltSvc). */
  altSvcLine = "";
  private readonly streams: StreamRequests;

  /** Advertises HTTP/3 (an `Alt-Svc` value such as `h3=":443"; ma=86400`) on every final response; null stops. */
  setAltSvc(value: string | null): void {
    this.altSvcLine = value === null ? "" : "alt-svc: " + value + "\r\n";
    this.streams.responseFields = value === null ? null : ["alt-svc", value];
  }

  /**
   * @param reusePort join an SO_REUSEPORT group (`workers: N`): every worker isolate opens the same
   *   port and the kernel spreads connections over them.
   */
  constructor(
    readonly cfg: ListenerConfig,
    readonly handler: RequestHandler,
    private hooks: ConnectionHooks = {},
    reusePort = false,
  ) {
    this.streams = new StreamRequests(cfg, handler, HTTP2);
    this.settings = {
      maxConcurrentStreams: cfg.http2?.max_concurrent_streams ?? 100,
      maxHeaderListSize: cfg.http2?.max_header_list_size ?? 64 * 1024,
      // Large enough for gRPC messages in flight without stalling on window updates.
      initialWindowSize: 1024 * 1024,
      // RFC 8441: WebSocket over HTTP/2 (extended CONNECT with :protocol), tunnelled like an Upgrade.
      enableConnectProtocol: true,
      settingsTimeout: cfg.http2?.settings_timeout ?? 10_000,
      keepaliveInterval: cfg.http2?.keepalive_interval ?? 0,
      keepaliveTimeout: cfg.http2?.keepalive_timeout ?? 20_000,
      // A client that stops reading holds about this much, whatever windows it granted.
      maxBufferedOutput: cfg.write_buffer,
    };
    const secure = cfg.protocol === "grpcs" || cfg.protocol === "https";
    const hostname = cfg.hostname || "0.0.0.0";
    this.tls = secure ? new TlsMaterial(cfg.name, cfg.tls!, { alpn: ["h2", "http/1.1"] }) : null;
    if (this.tls !== null) {
      const t = this.tls.current;
      const server = this.server = tls.createServer({
        cert: t.cert,
        key: t.key,
        minVersion: t.minVersion,
        ALPNProtocols: t.alpn,
        // Read `this.tls` at handshake time: reload swaps it.
        SNICallback: (name, cb) => cb(null, contextFor(this.tls!.current, name)),
        requestCert: t.clientAuth !== "none",
        // Verification is ours (verifyClientCert): Deno's node:tls does not check client chains.
        rejectUnauthorized: false,
      });
      server.on("connection", (s: Socket) => {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
      });
      server.on("secureConnection", (s: tls.TLSSocket) => this.onTls(s));
      server.on("tlsClientError", () => {});
      server.on(
        "error",
        (e: Error) => logger.error("listener failed", { listener: cfg.name, error: String(e) }),
      );
      // node's listen reports failures asynchronously; a synchronous probe bind makes a taken port
      // fail start-up like the other engines do (and resolves port 0 first). With reusePort the probe
      // joins the group too; it is closed in the same turn.
      const probeOpts: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port: cfg.port };
      if (reusePort) probeOpts.reusePort = true;
      const probe = Deno.listen(probeOpts);
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      // Deno 2.9.6's node:net honours `reusePort`, so workers each run their own server.
      this.listening = new Promise<void>((resolve, reject) => {
        server.once("listening", resolve);
        server.once("error", reject);
      });
      server.listen({ port, host: hostname, reusePort });
      this.addr = { transport: "tcp", hostname, port };
    } else {
      const opts: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port: cfg.port };
      if (reusePort) opts.reusePort = true;
      this.listener = Deno.listen(opts);
      this.addr = this.listener.addr as Deno.NetAddr;
      this.acceptLoop(this.listener);
    }
    // Idle HTTP/2 connections (no stream for idle_timeout) get a GOAWAY.
    this.sweeper = setInterval(() => this.sweepIdle(), Math.min(1000, Math.max(50, cfg.idle_timeout / 4)));
    Deno.unrefTimer(this.sweeper);
  }

  private get connections(): number {
    return this.h2.size + this.h1.size;
  }

  private full(): boolean {
    return this.cfg.max_connections > 0 && this.connections >= this.cfg.max_connections;
  }

  private async acceptLoop(l: Deno.Listener): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await l.accept();
      } catch (e) {
        if (this.closing || e instanceof Deno.errors.BadResource) return;
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (this.full()) {
        this.hooks.refused?.(this.cfg.name);
        conn.close();
        continue;
      }
      (conn as Deno.TcpConn).setNoDelay?.(true);
      const ra = conn.remoteAddr as Deno.NetAddr;
      const la = conn.localAddr as Deno.NetAddr;
      this.sniff(conn, {
        scheme: "http",
        sni: "",
        id: null,
        remoteIp: ra.hostname,
        remotePort: ra.port,
        localIp: la.hostname,
        localPort: la.port,
        stamp: null,
      });
    }
  }

  /**
   * Reads until the bytes either are the HTTP/2 preface or cannot be (at most its 24 bytes, over as
   * many reads as it takes); then hands the connection over. Only the exact preface is HTTP/2; bytes
   * that leave it before the end of its request line (`PRI * HTTP/2.0\r\n`) go to the HTTP/1.1 engine
   * with what was read. A preface broken after that line is an HTTP/2 client's mistake: the HTTP/2
   * engine checks it and answers GOAWAY(PROTOCOL_ERROR).
   */
  private async sniff(conn: Deno.Conn, info: ConnInfo): Promise<void> {
    const buf = new Uint8Array(PREFACE.length);
    let n = 0;
    // Leading bytes equal to the preface's.
    let same = 0;
    // The shared deadline sweeper, not a timer per connection.
    const deadline = { deadline: 0, expire: () => conn.close() };
    try {
      while (same === n && n < PREFACE.length) {
        arm(deadline, this.cfg.read_header_timeout);
        let got: number | null;
        try {
          got = await conn.read(buf.subarray(n));
        } finally {
          disarm(deadline);
        }
        if (got === null) break;
        n += got;
        while (same < n && buf[same] === PREFACE[same]) same++;
      }
    } catch {
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    if (same === PREFACE.length) this.serveH2(conn, info, PREFACE);
    else if (n === 0) {
      try {
        conn.close();
      } catch { /* closed */ }
    } else if (same >= PREFACE_LINE) this.serveH2(conn, info, buf.slice(0, n));
    else this.serveH1(new PrefixedConn(conn, buf.slice(0, n)) as unknown as Deno.Conn, info);
  }

  private onTls(sock: tls.TLSSocket): void {
    if (this.closing || this.full()) {
      if (!this.closing) this.hooks.refused?.(this.cfg.name);
      sock.destroy();
      return;
    }
    const t = this.tls!.current;
    let id: ClientCertificate | null = null;
    if (t.clientAuth !== "none") {
      id = verifyClientCert(t, peerChain(sock));
      // require: no verified certificate, no service (the handshake itself cannot fail: see tls.ts).
      if (id === null && t.clientAuth === "require") {
        sock.destroy();
        return;
      }
    }
    sock.setNoDelay(true);
    sock.on("error", () => {});
    const info: ConnInfo = {
      scheme: "https",
      sni: (sock as { servername?: string | false }).servername || "",
      id,
      remoteIp: sock.remoteAddress ?? "",
      remotePort: sock.remotePort ?? 0,
      localIp: sock.localAddress ?? "",
      localPort: sock.localPort ?? 0,
      stamp: (ctx) => this.stamp(ctx, info),
    };
    const conn = new NodeSocketConn(sock) as unknown as Deno.Conn;
    if (sock.alpnProtocol === "h2") this.serveH2(conn, info, new Uint8Array(0));
    else this.serveH1(conn, info);
  }

  private serveH1(conn: Deno.Conn, info: ConnInfo): void {
    const c = new Http1Connection(conn, this, info.scheme, info.stamp ?? undefined);
    this.h1.add(c);
    this.hooks.opened?.(this.cfg.name);
    connectionOpened();
    c.serve().finally(() => {
      this.h1.delete(c);
      this.hooks.closed?.(this.cfg.name);
      connectionClosed();
    });
  }

  /** `leftover`: bytes already read (the sniffed preface, given back so the connection checks it itself). */
  private serveH2(conn: Deno.Conn, info: ConnInfo, leftover: Uint8Array): void {
    const st = { idleSince: Date.now() };
    const c = H2Connection.server(conn, {
      ...this.settings,
      leftover,
      onStream: (s) => {
        st.idleSince = Date.now();
        this.streams.serve(s, info);
      },
      onProtocolError: (code, message, streamId) => this.protocolError(code, message, streamId, info),
    });
    this.h2.set(c, st);
    this.hooks.opened?.(this.cfg.name);
    connectionOpened();
    c.closed.then(() => {
      this.h2.delete(c);
      this.hooks.closed?.(this.cfg.name);
      connectionClosed();
    });
    c.ready.catch(() => {});
    if (this.closing) c.goaway();
  }

  /** A client broke an HTTP/2 rule: its mistake, not Loom's, so counted and logged at debug level only. */
  private protocolError(code: number, message: string, streamId: number, info: ConnInfo): void {
    const name = errorCodeName(code);
    this.hooks.protocolError?.(this.cfg.name, name);
    logger.debug("HTTP/2 protocol error", {
      listener: this.cfg.name,
      code: name,
      stream: streamId,
      error: message,
      client: info.remoteIp,
    });
  }

  private sweepIdle(): void {
    const now = Date.now();
    const idle = this.cfg.idle_timeout;
    if (idle <= 0) return;
    for (const [c, st] of this.h2) {
      if (c.activeStreams > 0) st.idleSince = now;
      else if (now - st.idleSince >= idle && !c.goingAway) c.goaway();
    }
  }

  /** Re-reads certificates, SNI names and client CAs (config reload; see tls_reload.ts). */
  reloadTls(cfg: ListenerConfig): void {
    if (this.tls === null || cfg.tls === undefined) return;
    this.tls.reload(cfg.tls, (next) => {
      // Clients that send no SNI name get the server's own context.
      try {
        this.server?.setSecureContext({ cert: next.cert, key: next.key, minVersion: next.minVersion });
      } catch { /* SNI clients still get the new certificates */ }
    });
  }

  /** Removes client-sent identity headers and sets the verified ones (TLS listeners with client_auth). */
  private stamp(ctx: RequestContext, info: ConnInfo): void {
    ctx.sni = info.sni;
    if (this.tls === null || this.tls.current.clientAuth === "none") return;
    ctx.headers.delete(CLIENT_SUBJECT_HEADER);
    ctx.headers.delete(CLIENT_SAN_HEADER);
    ctx.clientCert = info.id;
    if (info.id !== null) {
      ctx.headers.append(CLIENT_SUBJECT_HEADER, info.id.subject);
      ctx.headers.append(CLIENT_SAN_HEADER, info.id.sans.join(", "));
    }
  }

  /** Stops accepting; HTTP/2 connections get GOAWAY and finish their streams, HTTP/1.1 ones their request. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.sweeper);
    try {
      this.listener?.close();
    } catch { /* closed */ }
    this.server?.close();
    for (const c of this.h2.keys()) c.goaway();
    for (const c of this.h1) c.shutdown();
  }

  async drained(): Promise<void> {
    while (this.streams.active > 0 || this.connections > 0) await new Promise((r) => setTimeout(r, 20));
  }

  closeAll(): void {
    this.close();
    for (const c of this.h2.keys()) c.destroy();
    for (const c of this.h1) c.destroy();
    for (const s of this.sockets) s.destroy();
  }
}
