/**
 * A request body limit that holds for streamed bodies too: {@linkcode limitBody}
 * wraps a {@link BodyReader} of unknown length (HTTP/1.1 chunked, HTTP/2 and
 * HTTP/3 streams without content-length) and counts the bytes as they pass,
 * nothing buffered. The read that goes past the limit throws
 * {@linkcode BodyLimitError}, which the proxy answers with its `status` (413)
 * instead of a 502 when no response head was sent yet (else the response is
 * reset), after aborting the upstream request.
 *
 * In core because the `body_limit` middleware raises it and the proxy, below
 * the middleware folders, maps it.
 *
 * @module
 */
import type { BodyReader } from "./body.ts";
import type { HeaderList } from "./headers.ts";

/** The client's request body went past a configured limit: answer `status` (413 Content Too Large). */
export class BodyLimitError extends Error {
  readonly status = 413;
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
    this.name = "BodyLimitError";
  }
}

/**
 * `body` with at most `max` bytes: the read that brings the count past `max`
 * calls `onExceeded` once and throws {@linkcode BodyLimitError}, as does every
 * later read. Length and trailers are the source's.
 */
export function limitBody(body: BodyReader, max: number, onExceeded?: () => void): BodyReader {
  return new LimitedBody(body, max, onExceeded ?? null);
}

class LimitedBody implements BodyReader {
  private seen = 0;
  private error: BodyLimitError | null = null;

  constructor(
    private readonly src: BodyReader,
    private readonly max: number,
    private readonly onExceeded: (() => void) | null,
  ) {}

  get length(): number {
    return this.src.length;
  }

  get trailers(): HeaderList | null {
    return this.src.trailers;
  }

  read(): Promise<Uint8Array | null> {
    if (this.error !== null) return Promise.reject(this.error);
    return this.src.read().then(this.count);
  }

  // Bound once per body: runs per chunk.
  private readonly count = (chunk: Uint8Array | null): Uint8Array | null => {
    if (chunk === null) return null;
    this.seen += chunk.length;
    if (this.seen > this.max) {
      this.error = new BodyLimitError(this.max);
      this.onExceeded?.();
      throw this.error;
    }
    return chunk;
  };
}
