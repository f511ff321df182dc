/**
 * What the HTTP/2 and HTTP/3 listeners share: a request stream's fields
 * become a RequestContext's head, its DATA a BodyReader, and the gateway's
 * response goes back through a ResponseWriter on the same stream. The two
 * stream types (src/http2 H2Stream, src/http3 H3Stream) have the same shape.
 */
import type { BodyReader, ResponseWriter } from "../core/body.ts";
import type { RequestContext } from "../core/context.ts";
import { HeaderList, isConnectionField } from "../core/headers.ts";

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

/** A request stream's DATA as a BodyReader; its trailers once the body ended. */
export class StreamBodyReader implements BodyReader {
  trailers: HeaderList | null = null;

  constructor(private s: FieldStream, readonly length: number, private ctx: RequestContext) {}

  async read(): Promise<Uint8Array | null> {
    const d = await this.s.read();
    if (d === null) {
      if (this.s.trailers !== null) this.trailers = toList(this.s.trailers);
      return null;
    }
    this.ctx.bytesIn += d.length;
    return d;
  }
}

/** Response writer on a server stream; `abortCode` is the protocol's internal-error reset code. */
export class StreamWriter<S extends FieldStream = FieldStream> implements ResponseWriter {
  headSent = false;
  ctx: RequestContext | null = null;
  protected ended = false;

  /** @param extra fields the listener adds to every final response (alt-svc), or null. */
  constructor(
    protected s: S,
    private head: boolean,
    private abortCode: number,
    private extra: readonly string[] | null = null,
  ) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number): void {
    this.headSent = true;
    if (this.ctx) this.ctx.status = status;
    const f = toFields(headers, [":status", String(status)]);
    if (this.extra !== null) f.push(...this.extra);
    if (bodyLength > 0 && !this.head) f.push("content-length", String(bodyLength));
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
    return this.s.end(trailers && trailers.size > 0 ? toFields(trailers, []) : null);
  }

  abort(): void {
    this.s.reset(this.abortCode);
  }
}

/** Answers a stream the gateway never sees (a refusal) with a small JSON body. */
export function refuseStream(s: FieldStream, status: number, message: string): void {
  const body = new TextEncoder().encode(JSON.stringify({ error: message, status }) + "\n");
  s.respond([":status", String(status), "content-type", "application/json"], false);
  s.write(body).then(() => s.end()).catch(() => {});
}
