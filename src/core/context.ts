/**
 * The protocol-agnostic request context. Every engine (HTTP/1.1, HTTP/2, ...)
 * fills one per request; routing, middleware, plugins and the proxy only ever
 * see this object, never a socket. Request/Response objects are not created on
 * the hot path; `toRequest()` builds one lazily for middleware that wants it.
 */
import type { BodyReader, ResponseWriter } from "./body.ts";
import type { HeaderList } from "./headers.ts";
import type { PhaseHooks } from "./middleware.ts";
import type { RequestTrace } from "./trace.ts";

/** A verified TLS client certificate (mTLS), as routing, headers and plugins see it. */
export interface ClientCertificate {
  /** Subject distinguished name, e.g. "CN=client-1,O=Example". */
  readonly subject: string;
  /** Subject alternative names as written by OpenSSL: "DNS:a.example", "URI:spiffe://...", "IP Address:10.0.0.1". */
  readonly sans: readonly string[];
  /** SHA-256 fingerprint (colon-separated hex). */
  readonly fingerprint256: string;
  /**
   * Subject attributes by short name ("CN", "O", "OU", ...), each value in order. Unambiguous where
   * `subject` is not: a value may itself contain "," or "OU=".
   */
  readonly subjectAttrs: ReadonlyMap<string, readonly string[]>;
}

/** Request field with the verified client certificate's subject (TLS listeners with `client_auth`). */
export const CLIENT_SUBJECT_HEADER = "x-loom-client-subject";
/** Request field with the verified client certificate's SANs, ", "-separated. */
export const CLIENT_SAN_HEADER = "x-loom-client-san";

/** gRPC flavour of a request: 0 none, 1 native gRPC, 2 gRPC-Web binary, 3 gRPC-Web text. */
export type GrpcKind = 0 | 1 | 2 | 3;

/** The route fields the context exposes to later phases (see snapshot.ts). */
export interface RouteRef {
  readonly id: string;
}

const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** One request in flight. */
export class RequestContext {
  /** Request id (X-Request-ID from the client when valid, else generated). */
  id = "";
  method: string;
  /** The request-target as received. */
  target: string;
  /** Normalised path used for routing and forwarding (set by the gateway). */
  path = "";
  /** Raw query string without "?" ("" when none). */
  query = "";
  /** Lower-cased host without port, for routing. */
  host = "";
  /** Host as received (Host header or :authority), port included. */
  authority: string;
  scheme: "http" | "https";
  protocol: string;
  headers: HeaderList;
  body: BodyReader;
  res: ResponseWriter;
  /**
   * The client's address: the socket peer, or the address a trusted proxy
   * reported (src/net/client_ip.ts). Logs, IP filters and rate limits use it.
   */
  clientIp: string;
  /** The socket peer's address (the previous hop): trust and X-Forwarded-For use it. */
  readonly peerIp: string;
  clientPort: number;
  listener: string;
  /** Upgrade protocol requested (e.g. "websocket"), when Connection lists upgrade. */
  upgrade: string | undefined = undefined;
  /** gRPC flavour (set by the gateway for POSTs): gateway errors then become gRPC statuses. */
  grpc: GrpcKind = 0;
  /** The verified client certificate on an mTLS listener, else null. */
  clientCert: ClientCertificate | null = null;
  /** SNI server name the client asked for on a TLS listener ("" when none). */
  sni = "";
  /** Local IP the connection arrived on (the listener's side; "" when unknown). */
  localAddr = "";
  /** Local port the connection arrived on (0 when unknown). */
  localPort = 0;

  // Routing results.
  route: RouteRef | null = null;
  params: Record<string, string> = NO_PARAMS;
  /** What the route's catch-all matched, without leading slash ("" if none). */
  pathRest = "";
  /** The route's middleware hooks after the request phase (null: none, the common case). */
  hooks: PhaseHooks | null = null;
  /** The request's trace when tracing is on and it was sampled (src/core/trace.ts), else null. */
  trace: RequestTrace | null = null;
  /** Why a middleware refused the request ("" when none did), e.g. "jwt_expired": metrics and access log. */
  rejection = "";
  /** Path and query to send upstream (set after routing; rewrites and plugins may change it). */
  upstreamTarget = "";

  // Response facts, for logs and metrics.
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  upstreamAddr = "";
  /** Why the last upstream attempt failed on the protocol level (for the error answer), else "". */
  upstreamError = "";
  /** performance.now() at arrival. */
  readonly start: number;
  /** performance.now() when the proxy finished (0 = not set): saves a clock read when logging. */
  endTime = 0;

  /** Set once the client went away; `onAbort` lets the proxy stop work. */
  aborted = false;
  onAbort: (() => void) | null = null;

  private _vars: Map<string, unknown> | null = null;

  constructor(
    method: string,
    target: string,
    authority: string,
    scheme: "http" | "https",
    protocol: string,
    headers: HeaderList,
    body: BodyReader,
    res: ResponseWriter,
    clientIp: string,
    clientPort: number,
    listener: string,
  ) {
    this.method = method;
    this.target = target;
    this.authority = authority;
    this.scheme = scheme;
    this.protocol = protocol;
    this.headers = headers;
    this.body = body;
    this.res = res;
    this.clientIp = clientIp;
    this.peerIp = clientIp;
    this.clientPort = clientPort;
    this.listener = listener;
    this.start = performance.now();
  }

  /** A request header by lower-case name (all values joined). Router input. */
  header(name: string): string | undefined {
    return this.headers.getJoined(name);
  }

  /** Per-request values shared between middleware (Hono's c.set/c.get). */
  get vars(): Map<string, unknown> {
    return this._vars ??= new Map();
  }

  /** Marks the client as gone and runs the abort hook once. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const f = this.onAbort;
    this.onAbort = null;
    f?.();
  }

  /** Builds a fetch-API Request on demand (costly: only for middleware that needs it). */
  toRequest(): Request {
    const url = `${this.scheme}://${this.authority || "localhost"}${this.target}`;
    const headers = new Headers();
    for (let i = 0; i < this.headers.size; i++) headers.append(this.headers.names[i], this.headers.values[i]);
    const body = this.body.length === 0 ? null : new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        const chunk = await this.body.read();
        if (chunk === null) ctrl.close();
        else ctrl.enqueue(chunk.slice());
      },
    });
    return new Request(url, { method: this.method, headers, body });
  }
}
