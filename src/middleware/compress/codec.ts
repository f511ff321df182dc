/**
 * The compressors of the `compress` middleware as body filters, on
 * `node:zlib` (gzip, Brotli, and zstd where the runtime has it). Each chunk is
 * compressed and flushed at once (Z_SYNC_FLUSH, BROTLI_OPERATION_FLUSH,
 * ZSTD_e_flush), so a streamed response (server-sent events, long polls)
 * reaches the client as it is produced; memory is the codec's state plus one
 * chunk's output.
 *
 * @module
 */
import * as zlib from "node:zlib";
import type { Transform } from "node:stream";
import type { BodyFilter } from "../../core/middleware.ts";
import { concat } from "../../net/bytes.ts";
import type { CompressEncoding } from "../../config/middleware/compress.ts";

const C = zlib.constants;
const EMPTY = new Uint8Array(0);

// createZstdCompress is recent (Node 22.15; Deno 2.x has it): looked up, not assumed.
const createZstd = (zlib as { createZstdCompress?: (o?: object) => Transform }).createZstdCompress;

/** Whether this runtime can produce `encoding`. */
export function supported(encoding: CompressEncoding): boolean {
  return encoding !== "zstd" || typeof createZstd === "function";
}

/** Codec settings, from the middleware's options. */
export interface CodecLevels {
  gzip_level: number;
  brotli_quality: number;
  zstd_level: number;
}

/** A new compressor for `encoding`; `sizeHint` is the body length when known (else -1). */
export function createCompressor(
  encoding: CompressEncoding,
  levels: CodecLevels,
  sizeHint: number,
): BodyFilter {
  switch (encoding) {
    case "gzip":
      return new StreamFilter(zlib.createGzip({ level: levels.gzip_level, flush: C.Z_SYNC_FLUSH }));
    case "br": {
      const params: Record<number, number> = {
        [C.BROTLI_PARAM_QUALITY]: levels.brotli_quality,
        [C.BROTLI_PARAM_MODE]: C.BROTLI_MODE_TEXT,
      };
      if (sizeHint > 0) params[C.BROTLI_PARAM_SIZE_HINT] = sizeHint;
      return new StreamFilter(zlib.createBrotliCompress({ flush: C.BROTLI_OPERATION_FLUSH, params }));
    }
    case "zstd": {
      const z = createZstd!({
        flush: C.ZSTD_e_flush,
        params: { [C.ZSTD_c_compressionLevel]: levels.zstd_level },
      });
      return new StreamFilter(z);
    }
  }
}

/**
 * A node:zlib transform as a body filter: `push` writes one chunk (the
 * stream's flush mode flushes it) and resolves with what came out; `flush`
 * ends the stream; `abort` frees the codec.
 */
class StreamFilter implements BodyFilter {
  private out: Uint8Array[] = [];
  private error: Error | null = null;

  constructor(private readonly z: Transform) {
    z.on("data", (d: Uint8Array) => this.out.push(d));
    z.on("error", (e: Error) => this.error ??= e);
  }

  push(chunk: Uint8Array): Promise<Uint8Array> {
    if (this.error !== null) return Promise.reject(this.error);
    // The chunk may be a view into a reused buffer: the write callback comes once it was consumed.
    return new Promise((resolve, reject) => {
      this.z.write(chunk, (e) => e ? reject(e) : resolve(this.take()));
    });
  }

  flush(): Promise<Uint8Array> {
    if (this.error !== null) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.z.once("end", () => resolve(this.take()));
      this.z.once("error", reject);
      this.z.end();
    });
  }

  abort(): void {
    this.z.destroy();
  }

  private take(): Uint8Array {
    const out = this.out;
    if (out.length === 0) return EMPTY;
    this.out = [];
    return out.length === 1 ? out[0] : concat(out);
  }
}
