/** Options of the `compress` middleware (src/middleware/compress/). */
import { type Field, opt, t } from "../dsl.ts";

/** Codings the middleware can produce (zstd only where the runtime has it). */
export const COMPRESS_ENCODINGS = ["zstd", "br", "gzip"] as const;

/** A coding of {@linkcode COMPRESS_ENCODINGS}. */
export type CompressEncoding = typeof COMPRESS_ENCODINGS[number];

/** Media types compressed by default (the usual text, JSON, JavaScript, XML and SVG types). */
export const DEFAULT_COMPRESS_TYPES: readonly string[] = [
  "text/*",
  "application/json",
  "application/*+json",
  "application/javascript",
  "application/x-javascript",
  "application/ecmascript",
  "application/xml",
  "application/*+xml",
  "application/x-ndjson",
  "application/wasm",
  "image/svg+xml",
  "image/x-icon",
  "font/ttf",
  "font/otf",
];

// RFC 9110 token characters but "*", which only stands for a wildcard here.
const TOKEN = "[!#$%&'+.^_`|~0-9a-z-]+";
const MEDIA_PATTERN = new RegExp(`^(\\*/\\*|${TOKEN}/(\\*|\\*\\+${TOKEN}|${TOKEN}))$`, "i");

/** A media type pattern: "type/subtype", "type/*", "type/*+suffix" or "*\/*". */
export const mediaPattern = t.string({
  check: (v) =>
    MEDIA_PATTERN.test(v)
      ? undefined
      : `"${v}" is not a media type pattern; expected "text/html", "text/*", "application/*+json" or "*/*"`,
});

/** `compress: {...}`. */
export const compressOptions: Field = opt(
  t.object({
    encodings: opt(
      t.list(t.enum(COMPRESS_ENCODINGS), { minItems: 1 }),
      [...COMPRESS_ENCODINGS],
      "Codings offered, in order of preference when the client's q-values tie (zstd is skipped where the runtime lacks it).",
    ),
    types: opt(
      t.list(mediaPattern),
      [...DEFAULT_COMPRESS_TYPES],
      'Media types compressed ("text/*", "application/*+json" wildcards); others pass untouched.',
    ),
    min_length: opt(
      t.size(),
      "1KB",
      "Smallest body compressed, by Content-Length; a body of unknown length is compressed.",
    ),
    gzip_level: opt(t.int({ min: 1, max: 9 }), 6, "gzip level (1 fastest .. 9 smallest)."),
    brotli_quality: opt(t.int({ min: 0, max: 11 }), 4, "Brotli quality (0 fastest .. 11 smallest)."),
    zstd_level: opt(t.int({ min: 1, max: 19 }), 3, "zstd level (1 fastest .. 19 smallest)."),
  }),
  undefined,
  "Compresses responses (zstd, br, gzip) negotiated from Accept-Encoding, streamed chunk by chunk.",
);

/** The normalised options. */
export interface CompressOptions {
  encodings: CompressEncoding[];
  types: string[];
  /** Bytes. */
  min_length: number;
  gzip_level: number;
  brotli_quality: number;
  zstd_level: number;
}
