/**
 * HTTP/2 (h2c prior knowledge, and HTTP/1.1 on the same port) on `Deno.serve`:
 * an adapter from Request/Response to the gateway's RequestContext. Slower per
 * request than the HTTP/1.1 engine, but HTTP/2 framing, HPACK and flow control
 * come from the runtime.
 */
import type { BodyReader, ResponseWriter } from "../gateway/body.ts";
import { EMPTY_BODY } from "../gateway/body.ts";
import { RequestContext } from "../gateway/context.ts";
import { HeaderList } from "../gateway/headers.ts";
import type { ListenerConfig } from "../config/types.ts";
import type { ConnectionHooks, RequestHandler } from "./http1.ts";
import { grpcKindOf, respondGrpcError } from "../proxy/grpc.ts";

/** Reads a ReadableStream as a BodyReader. */
class StreamBodyReader implements BodyReader {
  readonly trailers = null;
  private reader: ReadableStreamDefaultReader<Uint8Array>;
  constructor(
    stream: ReadableStream<Uint8Array>,
    readonly length: number,
    private ctx: RequestContext,
  ) {
    this.reader = stream.getReader();
  }
  async read(): Promise<Uint8Array | null> {
    const { value, done } = await this.reader.read();
    if (done) return null;
    this.ctx.bytesIn += value.length;
    return value;
  }
}

/** Builds the Response once the gateway writes the head; streams the body through a TransformStream. */
class StreamResponseWriter implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  private writer: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private resolve!: (r: Response) => void;
  private reject!: (e: unknown) => void;
  readonly response: Promise<Response>;

  constructor() {
    this.response = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  writeHead(status: number, headers: HeaderList, bodyLength: number): void {
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    const h = new Headers();
    for (let i = 0; i < headers.size; i++) {
      try {
        h.append(headers.names[i], headers.values[i]);
      } catch { /* a field HTTP/2 cannot carry */ }
    }
    if (bodyLength === 0 || status === 204 || status === 304) {
      this.resolve(new Response(null, { status, headers: h }));
      return;
    }
    const ts = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 4 });
    this.writer = ts.writable.getWriter();
    this.resolve(new Response(ts.readable, { status, headers: h }));
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.writer === null) return;
    if (this.ctx) this.ctx.bytesOut += chunk.length;
    // The caller reuses its buffer: the stream needs its own copy.
    await this.writer.write(chunk.slice());
  }

  async end(): Promise<void> {
    if (this.writer !== null) await this.writer.close().catch(() => {});
  }

  abort(): void {
    if (!this.headSent) this.reject(new Error("aborted"));
    this.writer?.abort().catch(() => {});
  }
}

/** A running Deno.serve listener. */
export class Http2Listener {
  private server: Deno.HttpServer<Deno.NetAddr>;
  readonly addr: Deno.NetAddr;
  private ac = new AbortController();

  constructor(
    readonly cfg: ListenerConfig,
    handler: RequestHandler,
    _hooks: ConnectionHooks = {},
    reusePort = false,
  ) {
    const scheme = cfg.tls ? "https" : "http";
    const opts: Deno.ServeTcpOptions = {
      hostname: cfg.hostname || "0.0.0.0",
      port: cfg.port,
      signal: this.ac.signal,
      onListen: () => {},
      onError: () => new Response('{"error":"internal error","status":500}\n', { status: 500 }),
    };
    if (reusePort) (opts as { reusePort?: boolean }).reusePort = true;
    this.server = Deno.serve(opts, async (req, info) => {
      const w = new StreamResponseWriter();
      const headers = new HeaderList();
      for (const [k, v] of req.headers) headers.append(k, v);
      const url = new URL(req.url);
      const cl = req.headers.get("content-length");
      const ctx = new RequestContext(
        req.method,
        url.pathname + url.search,
        req.headers.get("host") ?? url.host,
        scheme,
        req.headers.has("host") ? "HTTP/1.1" : "HTTP/2",
        headers,
        EMPTY_BODY,
        w,
        info.remoteAddr.hostname,
        info.remoteAddr.port,
        cfg.name,
      );
      if (req.body !== null) ctx.body = new StreamBodyReader(req.body, cl !== null ? Number(cl) : -1, ctx);
      w.ctx = ctx;
      if (req.method === "POST" && grpcKindOf(req.headers.get("content-type") ?? undefined) === 1) {
        // Native gRPC needs trailers, which Deno.serve cannot send: say so as a gRPC status.
        ctx.grpc = 1;
        respondGrpcError(
          ctx,
          404,
          "gRPC needs a grpc or grpcs listener (this h2c listener cannot send trailers)",
        );
        return await w.response;
      }
      // `completed` rejects when the client goes away before the response is delivered.
      info.completed.catch(() => ctx.abort());
      handler.handle(ctx).catch(() => w.abort());
      return await w.response;
    });
    this.addr = this.server.addr;
    this.server.finished.then(() => this.done = true, () => this.done = true);
  }

  /** The server has fully stopped (aborting it then would throw inside Deno). */
  private done = false;

  close(): void {
    this.server.shutdown();
  }

  async drained(): Promise<void> {
    await this.server.finished;
  }

  closeAll(): void {
    if (!this.done) this.ac.abort();
  }
}
