/**
 * What the HTTP/2 and HTTP/3 listeners share: the one path from a request
 * stream to the gateway (`StreamRequests.serve`). A stream's fields become a
 * RequestContext's head, its DATA a BodyReader, and the gateway's response
 * goes back through a ResponseWriter on the same stream; refusals (431, 400,
 * 501), RFC 8441 extended CONNECT, cancellation and handler failures are
 * handled here once. The two stream types (src/http2 H2Stream, src/http3
 * H3Stream) have the same shape; only frame I/O differs, and it stays in
 * those codecs. (The RFC 9113 §8.3 / RFC 9114 §4.3.1 field checks run in the
 * codecs too, before a stream is delivered: HTTP/2 resets a malformed
 * request stream, HTTP/3 marks it `malformed` and it is answered 400 here.)
 */
import type { BodyReader, RawStream, ResponseWriter } from "../core/body.ts";
import { EMPTY_BODY } from "../core/body.ts";
import { RequestContext } from "../core/context.ts";
import { HeaderList, isConnectionField } from "../core/headers.ts";
import type { ListenerConfig } from "../config/types.ts";
import { arm, disarm, type Expirable } from "../core/deadline.ts";
import type { RequestHandler } from "./http1.ts";
import { fieldSectionSize } from "../http2/fields.ts";

/** A server-side request stream with flat [name, value, ...] field lists. */
export interface FieldStream {
  /** The request fields, pseudo-headers included. */
  readonly headers: string[];
  /** Request trailers once read() returned null, else null. */
  readonly trailers: string[] | null;
  read(): Promise<Uint8Array | null>;
  respond(fields: string[], endStream: boolean): void;
  write(data: Uint8Array): Promise<void>;
  end(trailers?: string[] | null): Promise<void>;
  reset(code: number): void;
  /** The largest field section the client accepts (HTTP/2: its SETTINGS_MAX_HEADER_LIST_SIZE), else absent. */
  readonly peerMaxFieldSection?: number;
  /** HTTP/2: the stream was reset or its connection lost (the client is gone). */
  readonly failed?: boolean;
}

/** A request stream as an HTTP/2 or HTTP/3 server connection delivers it. */
export interface RequestStream extends FieldStream {
  /** The field section exceeded the listener's limit (fields are incomplete): answered 431. */
  readonly oversized: boolean;
  /** HTTP/3: why the head is malformed (answered 400), else null. HTTP/2 resets those itself. */
  readonly malformed?: string | null;
  /** The request ended with its HEADERS: no body. */
  readonly headersEnded: boolean;
  /** The reset code once the stream was reset (either side), else null. */
  readonly rstCode: number | null;
  /** Resolves once the stream is closed both ways or reset. */
  readonly done: Promise<void>;
}

/** HeaderList → flat fields, after `into` (which holds the pseudo-headers). */
export function toFields(headers: HeaderList, into: string[], skip = isConnectionField): string[] {
  for (let i = 0; i < headers.size; i++) {
    const k = headers.keys[i];
    if (k[0] !== ":" && !skip(k)) into.push(k, headers.values[i]);
  }
  return into;
}

/** Flat fields → HeaderList (pseudo-headers skipped). */
export function toList(f: string[]): HeaderList {
  const l = new HeaderList();
  for (let i = 0; i < f.length; i += 2) if (f[i][0] !== ":") l.append(f[i], f[i + 1]);
  return l;
}

/** The request head carried by a stream's fields. */
export interface StreamRequestHead {
  method: string;
  path: string;
  authority: string;
  /** `:protocol` (RFC 8441 extended CONNECT), lower-cased; "" when absent. */
  protocol: string;
  headers: HeaderList;
}

/** Pseudo-headers → method, path, authority; the rest → a HeaderList (cookies joined for HTTP/1.1 hops). */
export function requestHead(f: string[]): StreamRequestHead {
  let method = "GET", path = "/", authority = "", protocol = "";
  const headers = new HeaderList();
  let cookie: string | undefined;
  for (let i = 0; i < f.length; i += 2) {
    const k = f[i];
    if (k[0] === ":") {
      if (k === ":method") method = f[i + 1];
      else if (k === ":path") path = f[i + 1];
      else if (k === ":authority") authority = f[i + 1];
      else if (k === ":protocol") protocol = f[i + 1].toLowerCase();
    } else if (k === "cookie") {
      // RFC 9113 8.2.3 / RFC 9114 4.2.1: split cookie fields are joined again for HTTP/1.1 hops.
      cookie = cookie === undefined ? f[i + 1] : cookie + "; " + f[i + 1];
    } else headers.append(k, f[i + 1]);
  }
  if (cookie !== undefined) headers.append("cookie", cookie);
  if (authority === "") authority = headers.get("host") ?? "";
  return { method, path, authority, protocol, headers };
}

/**
 * A request stream's DATA as a BodyReader; its trailers once the body ended.
 * While the gateway waits for DATA the listener's `body_timeout` runs (as
 * HTTP/1.1's): a client that stalls its upload before any response began
 * gets `408 Request Timeout` and the request stops upstream. Once the
 * response has begun the stream is left alone (bidirectional streams).
 */
export class StreamBodyReader implements BodyReader, Expirable {
  trailers: HeaderList | null = null;
  deadline = 0;

  constructor(
    private s: FieldStream,
    readonly length: number,
    private ctx: RequestContext,
    private w: StreamWriter,
    private timeoutMs: number,
  ) {}

  async read(): Promise<Uint8Array | null> {
    // Only while no response has begun: a stream that is answering (a gRPC or other bidirectional
    // stream) may keep its upload open and quiet as long as it likes.
    if (this.timeoutMs > 0 && !this.w.headSent) arm(this, this.timeoutMs);
    let d: Uint8Array | null;
    try {
      d = await this.s.read();
    } finally {
      disarm(this);
    }
    if (d === null) {
      if (this.s.trailers !== null) this.trailers = toList(this.s.trailers);
      return null;
    }
    this.ctx.bytesIn += d.length;
    return d;
  }

  expire(): void {
    const ctx = this.ctx;
    if (ctx.aborted || this.w.headSent) return;
    // The request stops upstream; whatever the proxy answers now goes nowhere (the writer is finished).
    ctx.abort();
    this.w.timedOut();
    ctx.status = 408;
    ctx.rejection = "request_timeout";
  }
}

/** Response writer on a server stream; `abortCode` is the protocol's internal-error reset code. */
export class StreamWriter<S extends FieldStream = FieldStream> implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  protected ended = false;
  private timed = false;

  /** @param extra fields the listener adds to every final response (alt-svc), or null. */
  constructor(
    protected s: S,
    private head: boolean,
    private abortCode: number,
    private extra: readonly string[] | null = null,
  ) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number): void {
    // Finished already (the request timed out): a late answer has no stream to go to.
    if (this.ended) return;
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    // The client is gone (it reset the stream or broke its connection): nobody to answer, and no
    // failure of Loom's. Body writes then fail, which ends the exchange as a client that went away.
    if (this.s.failed === true) return;
    const f = toFields(headers, [":status", String(status)]);
    if (this.extra !== null) f.push(...this.extra);
    if (bodyLength > 0 && !this.head) f.push("content-length", String(bodyLength));
    const limit = this.s.peerMaxFieldSection;
    if (limit !== undefined && limit !== Infinity && fieldSectionSize(f) > limit) {
      // A head the client refuses to take (RFC 9113 §6.5.2) is never sent: a bare 500 instead.
      if (this.ctx) this.ctx.status = 500;
      this.ended = true;
      try {
        this.s.respond([":status", "500"], true);
      } catch { /* even that is too large: the stream was reset */ }
      return;
    }
    if (bodyLength === 0 || this.head || status === 204 || status === 304) {
      // One HEADERS frame ending the stream: a gRPC trailers-only response when it carries grpc-status.
      this.ended = true;
      this.s.respond(f, true);
      return;
    }
    this.s.respond(f, false);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.ended) return;
    if (this.ctx) this.ctx.bytesOut += chunk.length;
    await this.s.write(chunk);
  }

  end(trailers?: HeaderList | null): Promise<void> {
    if (this.ended) return Promise.resolve();
    this.ended = true;
    return this.s.end(trailers && trailers.size > 0 ? toFields(trailers, []) : null).catch((e) => {
      // A stream the client reset or whose connection it lost has nobody left to finish for.
      if (this.s.failed !== true) throw e;
    });
  }

  abort(): void {
    // After a timeout's 408 the stream is the 408's: the aborted exchange must not reset it.
    if (!this.timed) this.s.reset(this.abortCode);
  }

  /** The request body stalled past body_timeout before any response: answered 408. */
  timedOut(): void {
    if (this.ended || this.headSent) return;
    this.ended = true;
    this.timed = true;
    this.headSent = true;
    // A complete 408 while the upload is unfinished: the codecs then stop it without error (RFC 9113 §8.1,
    // RFC 9114 §4.1).
    refuseStream(this.s, 408, "request timeout");
  }

  /** The response is complete (its last frame is on its way). */
  get complete(): boolean {
    return this.ended;
  }
}

/** Upgrade response fields that have no place in an RFC 8441 200 (the stream is the tunnel). */
function notForExtendedConnect(k: string): boolean {
  return isConnectionField(k) || k === "sec-websocket-accept";
}

/**
 * Response writer for an RFC 8441 extended CONNECT stream (`:protocol:
 * websocket`): the request went upstream as an HTTP/1.1 Upgrade; the
 * upstream's 101 becomes a 200 on the stream, whose DATA frames then carry
 * the WebSocket bytes both ways (the tunnel in proxy/tunnel.ts).
 */
class ConnectWriter extends StreamWriter<RequestStream> {
  constructor(s: RequestStream, abortCode: number, private cancelCode: number, private idleTimeout: number) {
    super(s, false, abortCode);
  }

  upgrade(headers: HeaderList): Promise<RawStream> {
    if (this.headSent) throw new Error("response head already sent");
    this.headSent = true;
    this.ended = true;
    if (this.ctx) this.ctx.status = 200;
    const s = this.s, cancelCode = this.cancelCode;
    s.respond(toFields(headers, [":status", "200"], notForExtendedConnect), false);
    let pending: Uint8Array | null = null;
    return Promise.resolve({
      leftover: new Uint8Array(0),
      idleTimeout: this.idleTimeout,
      async read(buf: Uint8Array): Promise<number | null> {
        if (pending === null) {
          try {
            pending = await s.read();
          } catch {
            return null;
          }
          if (pending === null) return null;
        }
        const n = Math.min(buf.length, pending.length);
        buf.set(pending.subarray(0, n));
        pending = n === pending.length ? null : pending.subarray(n);
        return n;
      },
      write: (d: Uint8Array) => s.write(d).then(() => d.length),
      close: () => {
        // Ending our side rather than resetting: the WebSocket close frames went through.
        s.end().catch(() => {});
        const t = setTimeout(() => s.reset(cancelCode), 1000);
        s.done.then(() => clearTimeout(t));
      },
    });
  }
}

/** Answers a stream the gateway never sees (a refusal) with a small JSON body. */
export function refuseStream(s: FieldStream, status: number, message: string): void {
  const body = new TextEncoder().encode(JSON.stringify({ error: message, status }) + "\n");
  s.respond([":status", String(status), "content-type", "application/json"], false);
  s.write(body).then(() => s.end()).catch(() => {});
}

/** What the requests of one connection share. */
export interface StreamConnInfo {
  scheme: "http" | "https";
  remoteIp: string;
  remotePort: number;
  localIp: string;
  localPort: number;
  /** Called with each request's context before the gateway sees it (TLS: SNI name, client identity), or null. */
  stamp: ((ctx: RequestContext) => void) | null;
}

/** What differs between the protocols above the frames. */
export interface StreamProtocol {
  /** `ctx.protocol`. */
  readonly name: "HTTP/2" | "HTTP/3";
  /** Reset code for a response that failed after its head went out (the protocol's internal error). */
  readonly abortCode: number;
  /**
   * Reset code for an extended CONNECT tunnel whose peer does not end its side after ours; null when
   * extended CONNECT (WebSocket, RFC 8441) is not offered, and CONNECT gets 501.
   */
  readonly connectCancelCode: number | null;
}

/** A listener's request streams: turns each into a RequestContext and runs the gateway on it. */
export class StreamRequests {
  /** Requests in the gateway (a listener is drained when this and its connections are 0). */
  active = 0;
  /** Fields added to every final response (`alt-svc`), or null. */
  responseFields: readonly string[] | null = null;

  constructor(
    private readonly cfg: ListenerConfig,
    private readonly handler: RequestHandler,
    private readonly proto: StreamProtocol,
  ) {}

  /** Serves one request stream whose HEADERS arrived. */
  serve(s: RequestStream, conn: StreamConnInfo): void {
    if (s.oversized) return refuseStream(s, 431, "request header fields too large");
    if (typeof s.malformed === "string") return refuseStream(s, 400, `malformed request: ${s.malformed}`);
    const { method, path, authority, protocol, headers } = requestHead(s.headers);
    // The listener's max_headers, as for HTTP/1.1 (split cookie crumbs count once: they are one field there).
    if (headers.size > (this.cfg.max_headers ?? 100)) return refuseStream(s, 431, "too many header fields");
    const proto = this.proto;
    // RFC 8441: `CONNECT` with `:protocol: websocket` is a WebSocket handshake; routing, plugins and
    // the upstream (an HTTP/1.1 Upgrade) see it as the GET it replaces. Other CONNECTs are refused.
    const extended = method === "CONNECT";
    if (extended && (proto.connectCancelCode === null || protocol !== "websocket")) {
      return refuseStream(s, 501, "CONNECT not supported");
    }
    if (extended && headers.get("sec-websocket-key") === undefined) {
      // An HTTP/1.1 upstream needs a key to answer 101; RFC 8441 clients send none (the stream proves intent).
      headers.append(
        "sec-websocket-key",
        btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16)))),
      );
    }
    const w = extended
      ? new ConnectWriter(s, proto.abortCode, proto.connectCancelCode!, this.cfg.idle_timeout)
      : new StreamWriter(s, method === "HEAD", proto.abortCode, this.responseFields);
    const ctx = new RequestContext(
      extended ? "GET" : method,
      path,
      authority,
      conn.scheme,
      proto.name,
      headers,
      EMPTY_BODY,
      w,
      conn.remoteIp,
      conn.remotePort,
      this.cfg.name,
    );
    ctx.localAddr = conn.localIp;
    ctx.localPort = conn.localPort;
    if (extended) ctx.upgrade = protocol;
    else if (!s.headersEnded) {
      const cl = headers.get("content-length");
      ctx.body = new StreamBodyReader(s, cl !== undefined ? Number(cl) : -1, ctx, w, this.cfg.body_timeout);
    }
    if (conn.stamp !== null) conn.stamp(ctx);
    w.ctx = ctx;
    this.active++;
    let finished = false;
    // A reset stream (client cancel, connection loss) aborts the request upstream; not the reset that
    // follows a complete response (RFC 9113 §8.1: the rest of the request body is not wanted).
    s.done.then(() => {
      if (!finished && s.rstCode !== null && !(w.complete && s.rstCode === 0 /* HTTP/2 NO_ERROR */)) {
        ctx.abort();
      }
    });
    this.handler.handle(ctx).catch(() => w.abort()).finally(() => {
      finished = true;
      this.active--;
    });
  }
}
