/**
 * HTTP/2 listeners on `node:http2`: `grpc` (h2c prior knowledge), `grpcs`
 * and TLS listeners that offer ALPN h2, use SNI certificates or verify client
 * certificates (HTTP/1.1 is served on the same TLS port via `allowHTTP1`).
 *
 * Why node:http2 and not Deno.serve: Deno.serve can neither send nor read
 * trailers, and has no SNI callback or client-certificate option; node:http2
 * in Deno does all of these (measured: SNICallback, requestCert +
 * getPeerCertificate, ALPN h2/http1.1, a trailers-only HEADERS frame with
 * END_STREAM). It costs more CPU per request than Loom's HTTP/1.1 engine,
 * so plain `https` listeners without these features keep that engine.
 */
import http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import type { BodyReader, RawStream, ResponseWriter } from "../gateway/body.ts";
import { headText, reasonPhrase } from "../http1/serialize.ts";
import { EMPTY_BODY } from "../gateway/body.ts";
import { type ClientCertificate, RequestContext } from "../gateway/context.ts";
import { HeaderList } from "../gateway/headers.ts";
import type { ListenerConfig } from "../config/types.ts";
import type { ConnectionHooks, RequestHandler } from "./http1.ts";
import { contextFor, type ListenerTls, loadListenerTls, verifyClientCert } from "./tls.ts";
import { logger } from "../observability/logger.ts";

/** Headers on the verified client identity, set by the gateway (client-sent copies are removed). */
export const CLIENT_SUBJECT_HEADER = "x-loom-client-subject";
/** Comma-separated SANs of the verified client certificate. */
export const CLIENT_SAN_HEADER = "x-loom-client-san";

/**
 * Streams served on one HTTP/2 connection before a graceful GOAWAY (clients
 * reconnect). A workaround for a Deno 2.9.6 runtime crash, see onStream.
 */
export const MAX_STREAMS_PER_SESSION = 100;

/** Response fields HTTP/2 forbids (connection-specific). */
function connectionSpecific(k: string): boolean {
  return k === "connection" || k === "keep-alive" || k === "transfer-encoding" || k === "upgrade" ||
    k === "proxy-connection" || k === "content-length";
}

/** A Node readable (HTTP/2 stream or HTTP/1.1 request) as a BodyReader. */
class NodeBodyReader implements BodyReader {
  trailers: HeaderList | null = null;
  private ended = false;
  private error: Error | null = null;
  private waiting: (() => void) | null = null;

  constructor(
    private s: http2.ServerHttp2Stream | IncomingMessage,
    readonly length: number,
    private ctx: RequestContext,
  ) {
    const wake = () => {
      const w = this.waiting;
      this.waiting = null;
      w?.();
    };
    s.on("readable", wake);
    s.on("end", () => {
      this.ended = true;
      const t = (s as IncomingMessage).trailers;
      if (this.trailers === null && t !== undefined && Object.keys(t).length > 0) this.trailers = toList(t);
      wake();
    });
    s.on("error", (e: Error) => {
      this.error = e;
      wake();
    });
    s.on("close", () => {
      if (!this.ended) this.error ??= new Error("client stream closed");
      wake();
    });
    // HTTP/2 request trailers arrive before 'end'.
    (s as NodeJS.EventEmitter).on("trailers", (h: http2.IncomingHttpHeaders) => {
      this.trailers = toList(h);
    });
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      const c = this.s.read() as Uint8Array | null;
      if (c !== null) {
        this.ctx.bytesIn += c.length;
        return c;
      }
      if (this.ended) return null;
      if (this.error !== null) throw this.error;
      await new Promise<void>((r) => this.waiting = r);
    }
  }
}

function toList(h: Record<string, string | string[] | undefined>): HeaderList {
  const l = new HeaderList();
  for (const k in h) {
    if (k[0] === ":") continue;
    const v = h[k];
    if (Array.isArray(v)) { for (const x of v) l.append(k, x); }
    else if (v !== undefined) l.append(k, String(v));
  }
  return l;
}

function toNodeHeaders(headers: HeaderList, into: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  for (let i = 0; i < headers.size; i++) {
    const k = headers.keys[i];
    if (connectionSpecific(k) || k[0] === ":") continue;
    const prev = into[k];
    if (prev === undefined) into[k] = headers.values[i];
    else if (Array.isArray(prev)) prev.push(headers.values[i]);
    else into[k] = [String(prev), headers.values[i]];
  }
  return into;
}

/** Waits for 'drain', or gives up when the stream closes first. */
function drainOrClose(s: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = () => (s.off("close", gone), resolve());
    const gone = () => (s.off("drain", ok), reject(new Error("stream closed")));
    s.once("drain", ok);
    s.once("close", gone);
  });
}

/** Response writer on an HTTP/2 server stream; trailers go out on 'wantTrailers'. */
class H2StreamWriter implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  private trailers: http2.OutgoingHttpHeaders = {};
  private ended = false;

  constructor(private s: http2.ServerHttp2Stream, private head: boolean) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number): void {
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    const h = toNodeHeaders(headers, { ":status": status });
    if (bodyLength > 0 && !this.head) h["content-length"] = bodyLength;
    if (this.s.destroyed || this.s.closed) throw new Error("stream closed");
    if (bodyLength === 0 || this.head || status === 204 || status === 304) {
      // One HEADERS frame with END_STREAM: a gRPC trailers-only response when it carries grpc-status.
      this.ended = true;
      this.s.respond(h, { endStream: true });
      return;
    }
    this.s.respond(h, { waitForTrailers: true });
    // 'wantTrailers' is emitted from inside nghttp2's data callback; calling sendTrailers there
    // corrupts memory in Deno 2.9.6 under concurrency (free(): invalid pointer, nghttp2 assertion;
    // reproduced with h2load). Sending them on the next turn is safe.
    this.s.on("wantTrailers", () =>
      setImmediate(() => {
        try {
          this.s.sendTrailers(this.trailers);
        } catch { /* stream gone */ }
      }));
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.ended) return;
    if (this.ctx) this.ctx.bytesOut += chunk.length;
    // The caller reuses its buffer: the stream keeps a reference, so copy.
    if (!this.s.write(chunk.slice())) await drainOrClose(this.s);
  }

  end(trailers?: HeaderList | null): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    if (trailers) toNodeHeaders(trailers, this.trailers);
    this.s.end();
    return Promise.resolve();
  }

  abort(): void {
    if (!this.s.closed) this.s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}

/** Upgrade response fields that have no place in an RFC 8441 200 (the HTTP/2 stream is the tunnel). */
function notForExtendedConnect(k: string): boolean {
  return connectionSpecific(k) || k === "sec-websocket-accept";
}

/**
 * Response writer for an RFC 8441 extended CONNECT stream (`:protocol:
 * websocket`): the request went upstream as an HTTP/1.1 Upgrade; the
 * upstream's 101 becomes a 200 on the stream, whose DATA frames then carry
 * the WebSocket bytes both ways (the tunnel in proxy/tunnel.ts).
 */
class H2ConnectWriter extends H2StreamWriter {
  constructor(private stream: http2.ServerHttp2Stream, private idleTimeout: number) {
    super(stream, false);
  }

  upgrade(headers: HeaderList): Promise<RawStream> {
    if (this.headSent) throw new Error("response head already sent");
    this.headSent = true;
    if (this.ctx) this.ctx.status = 200;
    const h: http2.OutgoingHttpHeaders = { ":status": 200 };
    for (let i = 0; i < headers.size; i++) {
      const k = headers.keys[i];
      if (!notForExtendedConnect(k) && k[0] !== ":") h[k] = headers.values[i];
    }
    const s = this.stream;
    if (s.destroyed || s.closed) throw new Error("stream closed");
    s.respond(h);
    // Ending our side (END_STREAM) rather than RST_STREAM: the WebSocket close frames went through.
    return Promise.resolve(socketStream(s, new Uint8Array(0), this.idleTimeout, () => {
      if (!s.closed) s.end();
      setTimeout(() => s.destroyed || s.close(http2.constants.NGHTTP2_CANCEL), 1000);
    }));
  }
}

/** Response writer on Node's HTTP/1.1 response (TLS listener, ALPN http/1.1). */
class Http1ResWriter implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  private ended = false;

  constructor(private res: ServerResponse) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    const h = toNodeHeaders(headers, {});
    for (const k in h) this.res.setHeader(k, h[k] as string | string[]);
    if (bodyLength >= 0) this.res.setHeader("content-length", bodyLength);
    this.res.writeHead(status, reason);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.ended) return;
    if (this.ctx) this.ctx.bytesOut += chunk.length;
    if (!this.res.write(chunk.slice())) await drainOrClose(this.res);
  }

  end(trailers?: HeaderList | null): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    if (trailers && trailers.size > 0 && !this.res.hasHeader("content-length")) {
      this.res.addTrailers(toNodeHeaders(trailers, {}) as Record<string, string>);
    }
    return new Promise((resolve) => this.res.end(() => resolve()));
  }

  abort(): void {
    this.res.destroy();
  }
}

/** Bytes of a head or small text as latin1 (obs-text passes unchanged, as in the HTTP/1.1 engine). */
function latin1(text: string): Uint8Array {
  const b = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) b[i] = text.charCodeAt(i);
  return b;
}

/** Writes `data` to a node socket; resolves once it is handed to the kernel (backpressure for the tunnel). */
function socketWrite(sock: Duplex, data: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    // The tunnel reuses its buffer: the socket keeps a reference, so copy.
    sock.write(data.slice(), (e?: Error | null) => e ? reject(e) : resolve(data.length));
  });
}

/**
 * The client side of a tunnel on a node socket: read() in the Deno.Conn style
 * over 'data' events, pausing the socket while a chunk waits to be read.
 */
function socketStream(
  sock: Duplex,
  leftover: Uint8Array,
  idleTimeout: number,
  close: () => void = () => sock.destroy(),
): RawStream {
  const queue: Uint8Array[] = [];
  let ended = false;
  let waiting: (() => void) | null = null;
  const wake = () => {
    const w = waiting;
    waiting = null;
    w?.();
  };
  sock.on("data", (d: Uint8Array) => {
    queue.push(d);
    sock.pause();
    wake();
  });
  const end = () => {
    ended = true;
    wake();
  };
  sock.on("end", end);
  sock.on("close", end);
  sock.on("error", end);
  sock.resume();
  return {
    leftover,
    idleTimeout,
    async read(buf: Uint8Array): Promise<number | null> {
      while (queue.length === 0) {
        if (ended) return null;
        await new Promise<void>((r) => waiting = r);
      }
      const head = queue[0];
      const n = Math.min(head.length, buf.length);
      buf.set(head.subarray(0, n));
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
      if (queue.length === 0 && !ended) sock.resume();
      return n;
    },
    write: (d) => socketWrite(sock, d),
    close,
  };
}

/**
 * Response writer for an HTTP/1.1 Upgrade request on the node:http2 TLS
 * listener: node hands over the raw socket ('upgrade' event), so the 101 (and
 * any refusal: 404, 502, ...) is written as bytes. A refusal closes the
 * connection, as node no longer parses HTTP on it.
 */
class UpgradeSocketWriter implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  private ended = false;

  constructor(
    private sock: Duplex,
    private head: Uint8Array,
    private isHead: boolean,
    private idleTimeout: number,
  ) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    const list = new HeaderList();
    for (let i = 0; i < headers.size; i++) {
      if (!connectionSpecific(headers.keys[i])) list.append(headers.names[i], headers.values[i]);
    }
    const framing = (bodyLength >= 0 ? "content-length: " + bodyLength + "\r\n" : "") +
      "connection: close\r\n";
    this.sock.write(
      latin1(headText(`HTTP/1.1 ${status} ${reason || reasonPhrase(status)}\r\n`, list, framing)),
    );
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.ended || this.isHead) return;
    if (this.ctx) this.ctx.bytesOut += chunk.length;
    await socketWrite(this.sock, chunk);
  }

  end(): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    return new Promise((resolve) => this.sock.end(() => resolve()));
  }

  abort(): void {
    this.sock.destroy();
  }

  /** Sends the 101 and hands the socket to the tunnel (with what the client sent after its head). */
  async upgrade(headers: HeaderList): Promise<RawStream> {
    if (this.headSent) throw new Error("response head already sent");
    this.headSent = true;
    this.ended = true;
    await socketWrite(this.sock, latin1(headText("HTTP/1.1 101 Switching Protocols\r\n", headers, "")));
    return socketStream(this.sock, this.head, this.idleTimeout);
  }
}

/** A running node:http2 listener (h2c, or TLS with h2 and HTTP/1.1). */
export class NodeH2Listener {
  private server: http2.Http2Server | http2.Http2SecureServer;
  private sessions = new Set<http2.ServerHttp2Session>();
  private sockets = new Set<Socket>();
  private active = 0;
  private tls: ListenerTls | null;
  /** Verified identity per TLS socket (computed once per connection). */
  private identities = new WeakMap<object, ClientCertificate | null>();
  /** Streams opened per session (see MAX_STREAMS_PER_SESSION). */
  private streamCounts = new WeakMap<http2.Http2Session, number>();
  readonly addr: Deno.NetAddr;
  private closing = false;
  private maxHeaderList: number;

  /**
   * @param reusePort join an SO_REUSEPORT group (`workers: N`): every worker isolate opens the same
   *   port and the kernel spreads connections over them.
   */
  constructor(
    readonly cfg: ListenerConfig,
    private handler: RequestHandler,
    private hooks: ConnectionHooks = {},
    reusePort = false,
  ) {
    const limits = {
      maxConcurrentStreams: cfg.http2?.max_concurrent_streams ?? 100,
      maxHeaderListSize: cfg.http2?.max_header_list_size ?? 64 * 1024,
      // Large enough for gRPC messages in flight without stalling on window updates.
      initialWindowSize: 1024 * 1024,
      // RFC 8441: WebSocket over HTTP/2 (extended CONNECT with :protocol), tunnelled like an Upgrade.
      enableConnectProtocol: true,
    };
    this.maxHeaderList = limits.maxHeaderListSize;
    const secure = cfg.protocol !== "grpc";
    this.tls = secure ? loadListenerTls(cfg.tls!, ["h2", "http/1.1"]) : null;
    if (this.tls !== null) {
      const t = this.tls;
      this.server = http2.createSecureServer({
        cert: t.cert,
        key: t.key,
        minVersion: t.minVersion,
        ALPNProtocols: t.alpn,
        allowHTTP1: t.alpn.includes("http/1.1"),
        // Read `this.tls` at handshake time: reload swaps it.
        SNICallback: (name, cb) => cb(null, contextFor(this.tls!, name)),
        requestCert: t.clientAuth !== "none",
        // Verification is ours (verifyClientCert): Deno's node:tls does not check client chains.
        rejectUnauthorized: false,
        settings: limits,
        maxSessionMemory: 64,
      });
      this.server.on("secureConnection", (s: TLSSocket) => this.onSecure(s));
    } else {
      this.server = http2.createServer({ settings: limits, maxSessionMemory: 64 });
    }
    this.server.on("connection", (s: Socket) => {
      this.sockets.add(s);
      this.hooks.opened?.(cfg.name);
      s.on("close", () => {
        this.sockets.delete(s);
        this.hooks.closed?.(cfg.name);
      });
    });
    this.server.on("session", (s: http2.ServerHttp2Session) => {
      this.streamCounts.set(s, 0);
      this.sessions.add(s);
      s.on("close", () => this.sessions.delete(s));
      s.on("error", () => {});
    });
    const onStream = (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, flags: number) =>
      this.onStream(s, h, flags);
    this.server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      if (req.httpVersionMajor === 2) return; // served by onStream
      this.onHttp1(req, res);
    });
    // A 'request' listener makes node:http2 add its compatibility layer as a 'stream' listener,
    // which would answer HTTP/2 streams too; only HTTP/1.1 (allowHTTP1) should use it.
    for (const l of this.server.listeners("stream")) this.server.off("stream", l as () => void);
    // HTTP/1.1 Upgrade (WebSocket) on the TLS port: node passes the raw socket here (without a
    // listener it would destroy it), and the gateway's tunnel takes over as on the HTTP/1.1 engine.
    this.server.on("upgrade", (req: IncomingMessage, sock: Duplex, head: Uint8Array) => {
      this.onUpgrade(req, sock, head);
    });
    this.server.on("stream", onStream);
    this.server.on("sessionError", () => {});
    const hostname = cfg.hostname || "0.0.0.0";
    // node's listen reports failures asynchronously; a synchronous probe bind makes a taken
    // port fail start-up like the other engines do (and resolves port 0 first). With reusePort the
    // probe joins the group too (else the sibling workers' sockets would make it fail); it is
    // closed in the same turn, so at most a connection arriving in those microseconds is reset.
    const probeOpts: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port: cfg.port };
    if (reusePort) probeOpts.reusePort = true;
    const probe = Deno.listen(probeOpts);
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    this.server.on(
      "error",
      (e: Error) => logger.error("listener failed", { listener: cfg.name, error: String(e) }),
    );
    // Deno 2.9.6's node:net honours `reusePort` (measured: two servers on one port share its
    // connections; without it the second gets EADDRINUSE), so workers each run their own server.
    this.server.listen({ port, host: hostname, reusePort });
    this.addr = { transport: "tcp", hostname, port };
  }

  /** Re-reads certificates, SNI names and client CAs (config reload). Keeps the old ones on error. */
  reloadTls(cfg: ListenerConfig): void {
    if (this.tls === null || cfg.tls === undefined) return;
    try {
      this.tls = loadListenerTls(cfg.tls, ["h2", "http/1.1"]);
    } catch (e) {
      logger.error("TLS reload failed; keeping the previous certificates", {
        listener: cfg.name,
        error: String(e),
      });
    }
  }

  private onSecure(s: TLSSocket): void {
    const t = this.tls!;
    if (t.clientAuth === "none") return;
    const id = verifyClientCert(t, (s.getPeerCertificate(true) as { raw?: Uint8Array } | null)?.raw);
    this.identities.set(s, id);
    // require: no verified certificate, no service (the handshake itself cannot fail: see tls.ts).
    if (id === null && t.clientAuth === "require") s.destroy();
  }

  private identity(socket: TLSSocket | undefined): ClientCertificate | null {
    if (socket === undefined || this.tls === null || this.tls.clientAuth === "none") return null;
    if (this.identities.has(socket)) return this.identities.get(socket)!;
    const id = verifyClientCert(
      this.tls,
      (socket.getPeerCertificate(true) as { raw?: Uint8Array } | null)?.raw,
    );
    this.identities.set(socket, id);
    return id;
  }

  /** Removes client-sent identity headers and sets the verified ones. */
  private stampIdentity(ctx: RequestContext, id: ClientCertificate | null): void {
    if (this.tls === null || this.tls.clientAuth === "none") return;
    ctx.headers.delete(CLIENT_SUBJECT_HEADER);
    ctx.headers.delete(CLIENT_SAN_HEADER);
    ctx.clientCert = id;
    if (id !== null) {
      ctx.headers.append(CLIENT_SUBJECT_HEADER, id.subject);
      ctx.headers.append(CLIENT_SAN_HEADER, id.sans.join(", "));
    }
  }

  private run(ctx: RequestContext, w: { abort(): void }, onDone: (f: () => void) => void): void {
    this.active++;
    let finished = false;
    onDone(() => {
      if (!finished) ctx.abort();
    });
    this.handler.handle(ctx).catch(() => w.abort()).finally(() => {
      finished = true;
      this.active--;
    });
  }

  private onStream(s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, flags: number): void {
    const sess = s.session;
    if (sess !== undefined) {
      const n = (this.streamCounts.get(sess) ?? 0) + 1;
      this.streamCounts.set(sess, n);
      // Deno 2.9.6's node:http2 server crashes the process (free(): invalid pointer, or an nghttp2
      // assertion on GOAWAY) once a session has served somewhere between 100 and 200 streams
      // (reproduced with h2load, with and without bodies or trailers). A graceful GOAWAY at
      // MAX_STREAMS_PER_SESSION makes clients reconnect before that; streams in flight finish.
      if (n === MAX_STREAMS_PER_SESSION) sess.close();
    }
    const method = String(h[":method"] ?? "GET");
    const headers = toList(h);
    // RFC 9113 size (name + value + 32 per field): Deno's node:http2 advertises the setting but does
    // not enforce it, so the limit is checked here.
    let size = 0;
    for (let i = 0; i < headers.size; i++) size += headers.keys[i].length + headers.values[i].length + 32;
    if (size > this.maxHeaderList) {
      try {
        s.respond({ ":status": 431, "content-type": "application/json" });
        s.end('{"error":"request header fields too large","status":431}\n');
      } catch { /* stream gone */ }
      return;
    }
    const session = s.session;
    // session.socket is a proxy in Node; the TLS socket identity is looked up through it once per session.
    let id: ClientCertificate | null = null;
    let sni = "";
    if (this.tls !== null && session !== undefined) {
      const sock = session.socket as TLSSocket;
      const key = session as object;
      if (this.identities.has(key)) id = this.identities.get(key)!;
      else {
        id = this.identity(sock);
        this.identities.set(key, id);
      }
      sni = (sock as { servername?: string | false }).servername || "";
    }
    // RFC 8441: `CONNECT` with `:protocol: websocket` is a WebSocket handshake; routing, plugins and
    // the upstream (an HTTP/1.1 Upgrade) see it as the GET it replaces. Other CONNECTs are refused.
    const extended = method === "CONNECT" ? String(h[":protocol"] ?? "").toLowerCase() : "";
    if (method === "CONNECT" && extended !== "websocket") {
      try {
        s.respond({ ":status": 501, "content-type": "application/json" });
        s.end('{"error":"CONNECT not supported","status":501}\n');
      } catch { /* stream gone */ }
      return;
    }
    if (extended !== "") {
      // An HTTP/1.1 upstream needs a key to answer 101; RFC 8441 clients send none (the stream proves intent).
      if (headers.get("sec-websocket-key") === undefined) {
        headers.append(
          "sec-websocket-key",
          btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16)))),
        );
      }
    }
    const w = extended !== ""
      ? new H2ConnectWriter(s, this.cfg.idle_timeout)
      : new H2StreamWriter(s, method === "HEAD");
    const cl = h["content-length"];
    const ctx = new RequestContext(
      extended !== "" ? "GET" : method,
      String(h[":path"] ?? "/"),
      String(h[":authority"] ?? h["host"] ?? ""),
      this.tls !== null ? "https" : "http",
      "HTTP/2",
      headers,
      EMPTY_BODY,
      w,
      session?.socket?.remoteAddress ?? "",
      session?.socket?.remotePort ?? 0,
      this.cfg.name,
    );
    ctx.sni = sni;
    if (extended !== "") ctx.upgrade = extended;
    else if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) === 0) {
      ctx.body = new NodeBodyReader(s, cl !== undefined ? Number(cl) : -1, ctx);
    }
    this.stampIdentity(ctx, id);
    w.ctx = ctx;
    s.on("error", () => {});
    this.run(ctx, w, (f) => s.on("close", f));
  }

  private onHttp1(req: IncomingMessage, res: ServerResponse): void {
    const headers = new HeaderList();
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
    const sock = req.socket as TLSSocket;
    const w = new Http1ResWriter(res);
    const cl = req.headers["content-length"];
    const te = req.headers["transfer-encoding"];
    const ctx = new RequestContext(
      req.method ?? "GET",
      req.url ?? "/",
      req.headers.host ?? "",
      "https",
      "HTTP/1.1",
      headers,
      EMPTY_BODY,
      w,
      sock.remoteAddress ?? "",
      sock.remotePort ?? 0,
      this.cfg.name,
    );
    ctx.sni = (sock as { servername?: string | false }).servername || "";
    if (te !== undefined || (cl !== undefined && cl !== "0")) {
      ctx.body = new NodeBodyReader(req, cl !== undefined && te === undefined ? Number(cl) : -1, ctx);
    }
    this.stampIdentity(ctx, this.identity(sock));
    w.ctx = ctx;
    this.run(ctx, w, (f) => res.on("close", f));
  }

  private onUpgrade(req: IncomingMessage, sock: Duplex, head: Uint8Array): void {
    const headers = new HeaderList();
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
    const tlsSock = sock as TLSSocket;
    const method = req.method ?? "GET";
    const w = new UpgradeSocketWriter(sock, new Uint8Array(head), method === "HEAD", this.cfg.idle_timeout);
    const ctx = new RequestContext(
      method,
      req.url ?? "/",
      req.headers.host ?? "",
      this.tls !== null ? "https" : "http",
      "HTTP/1.1",
      headers,
      EMPTY_BODY,
      w,
      tlsSock.remoteAddress ?? "",
      tlsSock.remotePort ?? 0,
      this.cfg.name,
    );
    ctx.upgrade = String(req.headers.upgrade ?? "");
    ctx.sni = (tlsSock as { servername?: string | false }).servername || "";
    this.stampIdentity(ctx, this.identity(tlsSock));
    w.ctx = ctx;
    sock.on("error", () => {});
    this.run(ctx, w, (f) => sock.on("close", f));
  }

  /** Stops accepting; sessions get GOAWAY and finish their streams. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.server.close();
    for (const s of this.sessions) s.close();
  }

  async drained(): Promise<void> {
    while (this.active > 0 || this.sessions.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  closeAll(): void {
    this.close();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}
