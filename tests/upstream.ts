/**
 * The fake upstream of the tests, {@linkcode startUpstream}: an HTTP server on
 * 127.0.0.1 (Deno.serve) that answers "ok:<port>" (`/health`: "healthy"), the
 * request echoed as JSON ({@linkcode Echo}) or what a custom handler says,
 * optionally after a delay, counts what it served and can be stopped and
 * started again on its port. With `raw`, it is a TCP server instead that
 * records the exact bytes of every connection and writes any bytes back.
 * {@linkcode startH2Upstream} is its HTTP/2 counterpart (h2c or h2 over TLS).
 */
import { deferred, latin1, type Message, parseMessage } from "./http1_util.ts";
import { H2Connection, type H2Stream } from "../src/http2/connection.ts";

const enc = new TextEncoder();

/** A request handler of a fake upstream. */
export type Handler = (req: Request) => Response | Promise<Response>;

/** Options of {@linkcode startUpstream}. */
export interface UpstreamOptions {
  /** Port to listen on (default: a free one); kept across stop() and start(). */
  port?: number;
  /** Answers every request (nothing below applies then). */
  handler?: Handler;
  /** Answer with the request as JSON ({@linkcode Echo}) tagged with this, instead of "ok:<port>". */
  echo?: string;
  /** Answer this long after the request (its body read). */
  delayMs?: number;
}

/** Options of {@linkcode startUpstream} for a raw TCP upstream. */
export interface RawUpstreamOptions {
  /** A handler driving each connection, or `true`: 200 "ok" to every complete request, kept alive. */
  raw: true | ((c: RawUpstreamConn) => Promise<void>);
}

/** What an echo upstream answers (JSON), with headers `x-upstream-secret` (and `x-deny` for `?deny`). */
export interface Echo {
  /** `echo` of its options. */
  tag: string;
  port: number;
  method: string;
  /** Request target exactly as received (path + query, not re-normalised). */
  target: string;
  /** Path and query as URL parsed them. */
  path: string;
  host: string;
  headers: Record<string, string>;
  body: string;
}

/** A running fake upstream. */
export interface TestUpstream {
  readonly port: number;
  /** 127.0.0.1:port */
  readonly address: string;
  /** Every request, newest last. */
  seen: { method: string; url: string; headers: Headers }[];
  /** Requests received without a handler, health probes aside (counted before any delay). */
  received: number;
  /** Of those, answered. */
  served: number;
  /** Health probes (`/health`, not for an echo upstream) answered. */
  probes: number;
  /** "fail": requests without a handler get 500 "boom" (probes still "healthy"). */
  mode: "ok" | "fail";
  running(): boolean;
  /** Listens again on the same port. */
  start(): void;
  stop(): Promise<void>;
  /** stop() */
  close(): Promise<void>;
}

/** The request target exactly as the upstream received it (Deno keeps req.url raw). */
function rawTarget(req: Request): string {
  const u = req.url;
  const slash = u.indexOf("/", u.indexOf("//") + 2);
  return slash === -1 ? "/" : u.slice(slash);
}

/**
 * Starts a fake upstream on 127.0.0.1: `startUpstream()` answers "ok:<port>",
 * `startUpstream(handler)` what the handler says, `startUpstream({ echo: "a" })`
 * the request as JSON, `startUpstream({ raw: ... })` is a raw TCP upstream.
 */
export function startUpstream(opts: RawUpstreamOptions): RawUpstream;
export function startUpstream(opts?: UpstreamOptions | Handler): TestUpstream;
export function startUpstream(
  opts: UpstreamOptions | Handler | RawUpstreamOptions = {},
): TestUpstream | RawUpstream {
  if ("raw" in opts) return startRawUpstream(opts.raw === true ? undefined : opts.raw);
  const o: UpstreamOptions = typeof opts === "function" ? { handler: opts } : opts;
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  let port = o.port ?? 0;
  const answer = async (req: Request): Promise<Response> => {
    if (o.echo === undefined && new URL(req.url).pathname === "/health") {
      u.probes++;
      return new Response("healthy");
    }
    u.received++;
    const body = await req.text();
    if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
    u.served++;
    if (u.mode === "fail") return new Response("boom", { status: 500 });
    if (o.echo === undefined) return new Response(`ok:${port}`);
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => headers[k] = v);
    const url = new URL(req.url);
    const echo: Echo = {
      tag: o.echo,
      port,
      method: req.method,
      target: rawTarget(req),
      path: url.pathname + url.search,
      host: req.headers.get("host") ?? "",
      headers,
      body,
    };
    return Response.json(echo, {
      headers: { "x-upstream-secret": "s3cr3t", ...(url.searchParams.has("deny") ? { "x-deny": "1" } : {}) },
    });
  };
  const u: TestUpstream = {
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    seen: [],
    received: 0,
    served: 0,
    probes: 0,
    mode: "ok",
    running: () => server !== null,
    start() {
      server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (req) => {
        u.seen.push({ method: req.method, url: req.url, headers: req.headers });
        return o.handler ? o.handler(req) : answer(req);
      });
      port = server.addr.port;
    },
    async stop() {
      const s = server;
      server = null;
      await s?.shutdown();
    },
    close: () => u.stop(),
  };
  u.start();
  return u;
}

// ---------------------------------------------------------------------------
// Raw upstream

export interface RawUpstreamConn {
  conn: Deno.TcpConn;
  /** Everything received on this connection so far (latin1). */
  received(): string;
  /** Resolves with the next complete request on this connection (null on EOF). */
  nextRequest(): Promise<Message | null>;
  write(data: string | Uint8Array): Promise<void>;
  close(): void;
  /** Resolves when the peer closes or resets. */
  closed: Promise<void>;
}

/** A raw TCP upstream recording the exact bytes of every connection. */
export interface RawUpstream {
  port: number;
  address: string;
  /** Accepted connections. */
  conns: number;
  /** Complete requests parsed so far, in arrival order. */
  requests: Message[];
  /** Raw bytes received per connection, latin1. */
  raw: string[];
  /** Per connection: the peer closed or reset it. */
  ended: boolean[];
  close(): void;
}

/** A test server's connections: each accepted one until the listener closes, and `close` for all. */
export interface ServedConns<C extends Deno.Conn> {
  /** The connections still open (a handler deletes one when it ends). */
  readonly open: Set<C>;
  /** Closes the listener and every open connection. */
  close(): void;
}

/** Accepts on `listener` until it is closed, handing each connection to `onConn` and tracking it in `open`. */
export function serveConns<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  onConn: (conn: C) => void,
): ServedConns<C> {
  const open = new Set<C>();
  (async () => {
    for (;;) {
      let conn: C;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      open.add(conn);
      onConn(conn);
    }
  })();
  return {
    open,
    close: () => {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Starts the raw flavour of {@linkcode startUpstream}. */
function startRawUpstream(handler?: (c: RawUpstreamConn) => Promise<void>): RawUpstream {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const up: RawUpstream = {
    port,
    address: `127.0.0.1:${port}`,
    conns: 0,
    requests: [],
    raw: [],
    ended: [],
    close: () => served.close(),
  };
  const served = serveConns(listener, (conn) => {
    const idx = up.conns++;
    up.raw[idx] = "";
    up.ended[idx] = false;
    let parsedUpTo = 0;
    let eof = false;
    let wake = null as (() => void) | null;
    const closed = deferred();
    const buf = new Uint8Array(64 * 1024);
    (async () => {
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          up.raw[idx] += latin1(buf.subarray(0, n));
          wake?.();
        }
      } catch { /* reset */ }
      eof = true;
      up.ended[idx] = true;
      served.open.delete(conn);
      closed.resolve();
      wake?.();
    })();
    const c: RawUpstreamConn = {
      conn,
      received: () => up.raw[idx],
      async nextRequest() {
        for (;;) {
          const p = parseMessage(up.raw[idx].slice(parsedUpTo));
          if (p !== null) {
            parsedUpTo += p.used;
            up.requests.push(p.msg);
            return p.msg;
          }
          if (eof) return null;
          await new Promise<void>((r) => wake = r);
          wake = null;
        }
      },
      write: async (data) => {
        const b = typeof data === "string" ? enc.encode(data) : data;
        let off = 0;
        while (off < b.length) off += await conn.write(b.subarray(off));
      },
      close: () => {
        try {
          conn.close();
        } catch { /* closed */ }
      },
      closed: closed.promise,
    };
    (handler ?? defaultRawHandler)(c).catch(() => {});
  });
  return up;
}

async function defaultRawHandler(c: RawUpstreamConn): Promise<void> {
  for (;;) {
    const req = await c.nextRequest();
    if (req === null) return c.close();
    await c.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  }
}

// ---------------------------------------------------------------------------
// HTTP/2 upstream

/** An HTTP/2 fake upstream (see {@linkcode startH2Upstream}). */
export interface H2Upstream {
  port: number;
  /** 127.0.0.1:port */
  address: string;
  /** Connections accepted so far. */
  connections(): number;
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

/**
 * An HTTP/2 upstream on 127.0.0.1 (Loom's own H2Connection server): h2c with
 * prior knowledge, or h2 over TLS (ALPN h2) with `tls`. Every request stream
 * goes to `onStream`, which answers it.
 */
export function startH2Upstream(
  onStream: (s: H2Stream) => void,
  tls?: { cert: string; key: string },
): H2Upstream {
  let connections = 0;
  const conns = new Set<H2Connection>();
  const listener = tls
    ? Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: Deno.readTextFileSync(tls.cert),
      key: Deno.readTextFileSync(tls.key),
      alpnProtocols: ["h2"],
    })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      connections++;
      const h2 = H2Connection.server(conn, { onStream });
      conns.add(h2);
      h2.closed.then(() => conns.delete(h2));
    }
  })().catch(() => {/* listener closed */});
  const port = listener.addr.port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    connections: () => connections,
    close: async () => {
      listener.close();
      for (const c of conns) c.destroy();
      await Promise.all([...conns].map((c) => c.closed));
    },
  };
}
