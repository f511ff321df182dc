/**
 * Protocol-agnostic message bodies: how the gateway core reads a request body
 * and writes a response, whatever engine (HTTP/1.1, HTTP/2, ...) carries them.
 */
import type { HeaderList } from "./headers.ts";

/** A streaming body source. */
export interface BodyReader {
  /** Exact length in bytes, 0 for none, -1 when unknown (chunked, streamed). */
  readonly length: number;
  /**
   * The next chunk, or null at the end. The returned view may point into a
   * reused buffer: it is valid only until the next call.
   */
  read(): Promise<Uint8Array | null>;
  /** Trailer fields, available after read() returned null. */
  readonly trailers: HeaderList | null;
}

/** The empty body. */
export const EMPTY_BODY: BodyReader = {
  length: 0,
  trailers: null,
  read: () => Promise.resolve(null),
};

/** A body held in memory. */
export function bytesBody(data: Uint8Array): BodyReader {
  let sent = data.length === 0;
  return {
    length: data.length,
    trailers: null,
    read() {
      if (sent) return Promise.resolve(null);
      sent = true;
      return Promise.resolve(data);
    },
  };
}

/**
 * A settled promise that writers return from `write`/`end` when nothing was
 * left to wait for; callers on hot paths may skip awaiting it (a microtask less).
 */
export const DONE: Promise<void> = Promise.resolve();

/**
 * Where the gateway writes a response. Engines implement it; the HTTP/1.1
 * one defers the head so head and first body bytes leave in one write.
 */
export interface ResponseWriter {
  /** Whether writeHead was called. */
  readonly headSent: boolean;
  /**
   * Starts the response. `bodyLength` >= 0 is exact (Content-Length), -1 means
   * streamed (chunked on HTTP/1.1). The headers must already be free of
   * hop-by-hop fields.
   */
  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void;
  /** Writes body bytes; the view may be reused by the caller after the promise settles. */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the response, with optional trailers. */
  end(trailers?: HeaderList | null): Promise<void>;
  /** Gives up on the response (connection reset / stream reset). */
  abort(): void;
}

/** A raw byte stream after a protocol switch (HTTP/1.1 Upgrade). */
export interface RawStream {
  /** Bytes the client already sent after its request head. */
  readonly leftover: Uint8Array;
  /** Reads into `buf` (never empty): the number of bytes; 0 or null at EOF. */
  read(buf: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
  /** Close the tunnel after this many ms without bytes either way (the listener's idle_timeout); 0 = never. */
  readonly idleTimeout?: number;
  /** Ends the writing side (TCP half-close); absent where the stream cannot (then it is closed whole). */
  closeWrite?(): Promise<void>;
  /** The plain TCP connection under the stream (no TLS, no wrapper), which the kernel may splice. */
  readonly conn?: Deno.Conn;
}

/** Implemented by the HTTP/1.1 engine: takes a head already serialised as bytes. */
export interface RawHeadWriter extends ResponseWriter {
  /** `prefix` = status line + field lines (no framing, no final CRLF). */
  writeHeadRaw(status: number, prefix: Uint8Array, bodyLength: number): void;
}

/** Implemented by engines that can switch protocols (HTTP/1.1). */
export interface UpgradableWriter extends RawHeadWriter {
  /** Sends the 101 head and hands over the client stream. */
  upgrade(headers: HeaderList): Promise<RawStream>;
}
