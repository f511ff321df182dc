/**
 * Access log: one JSON line per request, written in batches.
 *
 * `log()` only formats and buffers; a short timer (or a full buffer) flushes
 * the batch with one encode and one write, so requests never wait on I/O.
 * Files are opened in append mode and each batch is written in one call, so
 * several worker isolates can share a file without interleaving lines.
 *
 * @module
 */

import type { AccessLogConfig } from "../config/types.ts";
import { type AccessLogField, DEFAULT_ACCESS_LOG_FIELDS } from "../config/observability.ts";
import { logger } from "./logger.ts";

/** One request, as the proxy reports it. */
export interface AccessLogEntry {
  /** When the request started (epoch ms); the time of `log()` when omitted. */
  time?: number;
  request_id: string;
  /** Matched route id; "" when none matched. */
  route: string;
  method: string;
  /** The path as received, without the query. */
  path: string;
  /** The raw query string ("" when none). */
  query: string;
  status: number;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  /** "upstream/endpoint" or "" when not proxied. */
  upstream: string;
  client_ip: string;
  /** e.g. "HTTP/1.1". */
  protocol: string;
  user_agent: string;
  /** gRPC requests only: the grpc-status sent ("0".."16", "other", "none"); omitted from the line otherwise. */
  grpc_status?: string;
  /** Requests a middleware refused: "middleware/reason"; omitted from the line otherwise. */
  rejection?: string;
  /** Filled only when the configured fields name them (see {@link AccessLog.extras}). */
  host?: string;
  referer?: string;
  listener?: string;
  /** The W3C trace id of a traced request ("" otherwise). */
  trace_id?: string;
}

/** A batching access-log writer. */
export interface AccessLog {
  /** Buffers one line; never blocks on I/O. */
  log(entry: AccessLogEntry): void;
  /** Writes whatever is buffered. */
  flush(): Promise<void>;
  /** Flushes and closes the output (the file; stdout stays open). */
  close(): Promise<void>;
  /** Lines dropped because output could not keep up (see {@link MAX_PENDING_CHARS}). */
  readonly dropped: number;
  /** The configured fields include host, referer, listener or trace_id: the caller fills them. */
  readonly extras: boolean;
}

/** Minimal writer interface (Deno.FsFile and Deno.stdout both fit). */
export interface LogSink {
  write(p: Uint8Array): Promise<number>;
  close?(): void;
}

/** A batch is flushed this long after its first line. */
export const FLUSH_INTERVAL_MS = 100;
/** ... or as soon as it holds this many characters. */
export const FLUSH_THRESHOLD_CHARS = 64 * 1024;
/** Beyond this much unwritten output, new lines are dropped rather than growing memory without bound. */
export const MAX_PENDING_CHARS = 16 * 1024 * 1024;

/** Opens the configured access log, or returns null when disabled. */
export function createAccessLog(cfg: AccessLogConfig): AccessLog | null {
  if (!cfg.enabled) return null;
  const opts = { fields: cfg.fields, sample: cfg.sample };
  if (cfg.path === "stdout") return new BatchedAccessLog(Deno.stdout, false, opts);
  const file = Deno.openSync(cfg.path, { append: true, create: true });
  return new BatchedAccessLog(file, true, opts);
}

/** What a line may hold, by field name. */
const FIELD_VALUES: Record<AccessLogField, (e: AccessLogEntry) => unknown> = {
  time: (e) => isoTime(e.time ?? Date.now()),
  request_id: (e) => e.request_id,
  route: (e) => e.route,
  method: (e) => e.method,
  path: (e) => e.path,
  query: (e) => e.query,
  status: (e) => e.status,
  bytes_in: (e) => e.bytes_in,
  bytes_out: (e) => e.bytes_out,
  duration_ms: (e) => Math.round(e.duration_ms * 1000) / 1000,
  upstream: (e) => e.upstream,
  client_ip: (e) => e.client_ip,
  protocol: (e) => e.protocol,
  user_agent: (e) => e.user_agent,
  grpc_status: (e) => e.grpc_status,
  rejection: (e) => e.rejection,
  host: (e) => e.host ?? "",
  referer: (e) => e.referer ?? "",
  listener: (e) => e.listener ?? "",
  trace_id: (e) => e.trace_id ?? "",
};

/** Fields the caller fills only on request (see {@link AccessLog.extras}). */
const EXTRA_FIELDS: ReadonlySet<AccessLogField> = new Set(["host", "referer", "listener", "trace_id"]);

/** A formatter of lines with `fields`, in that order (built once per log). */
export function fieldFormatter(fields: readonly AccessLogField[]): (e: AccessLogEntry) => string {
  const getters = fields.map((f) => [f, FIELD_VALUES[f]] as const);
  return (e) => {
    const o: Record<string, unknown> = {};
    for (const [f, get] of getters) o[f] = get(e);
    return JSON.stringify(o) + "\n";
  };
}

/**
 * Formats one entry as a JSON line (with trailing newline).
 *
 * JSON.stringify of a fixed-shape literal, chosen by access_log_bench.ts:
 * hand-built concatenation is ~1.4x cheaper per call, but its rope strings
 * must be flattened when the batch is joined, so format+join+encode ends up
 * even or slightly in JSON.stringify's favour. It also escapes controls and
 * lone surrogates and turns NaN into null for free.
 */
export function formatAccessLogLine(e: AccessLogEntry): string {
  return JSON.stringify({
    time: isoTime(e.time ?? Date.now()),
    request_id: e.request_id,
    route: e.route,
    method: e.method,
    path: e.path,
    query: e.query,
    status: e.status,
    bytes_in: e.bytes_in,
    bytes_out: e.bytes_out,
    duration_ms: Math.round(e.duration_ms * 1000) / 1000,
    upstream: e.upstream,
    client_ip: e.client_ip,
    protocol: e.protocol,
    user_agent: e.user_agent,
    // undefined (not gRPC) is left out by JSON.stringify; the literal keeps one shape.
    grpc_status: e.grpc_status,
    rejection: e.rejection,
  }) + "\n";
}

// Many requests finish within the same millisecond: reuse the formatted time.
let lastMs = NaN;
let lastIso = "";
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** The {@link AccessLog} implementation over any {@link LogSink}. */
export class BatchedAccessLog implements AccessLog {
  readonly extras: boolean;
  readonly #format: (e: AccessLogEntry) => string;
  /** Fraction of 1xx-3xx lines kept. */
  readonly #sample: number;
  #lines: string[] = [];
  #chars = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Serialises writes so batches stay in order. */
  #writing: Promise<void> = Promise.resolve();
  #inFlightChars = 0;
  #dropped = 0;
  #closed = false;
  readonly #encoder = new TextEncoder();

  /**
   * @param sink where batches go.
   * @param ownsSink close the sink on {@link close}.
   */
  constructor(
    private readonly sink: LogSink,
    private readonly ownsSink: boolean,
    opts: { fields?: readonly AccessLogField[]; sample?: number } = {},
  ) {
    const fields = opts.fields;
    const custom = fields !== undefined && fields.join() !== DEFAULT_ACCESS_LOG_FIELDS.join();
    this.#format = custom ? fieldFormatter(fields) : formatAccessLogLine;
    this.extras = custom && fields.some((f) => EXTRA_FIELDS.has(f));
    this.#sample = opts.sample ?? 1;
  }

  get dropped(): number {
    return this.#dropped;
  }

  log(entry: AccessLogEntry): void {
    if (this.#closed) return;
    // Sampling spares successful requests only: 4xx, 5xx and failed ones (status 0) are always logged.
    const st = entry.status;
    if (this.#sample < 1 && st > 0 && st < 400 && Math.random() >= this.#sample) return;
    if (this.#chars + this.#inFlightChars > MAX_PENDING_CHARS) {
      this.#dropped++;
      return;
    }
    const line = this.#format(entry);
    this.#lines.push(line);
    this.#chars += line.length;
    if (this.#chars >= FLUSH_THRESHOLD_CHARS) {
      void this.flush();
    } else if (this.#timer === undefined) {
      const timer = setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
      // The log must not keep the process alive; shutdown calls close().
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#lines.length === 0) return this.#writing;
    const text = this.#lines.join("");
    const chars = this.#chars;
    this.#lines = [];
    this.#chars = 0;
    this.#inFlightChars += chars;
    this.#writing = this.#writing.then(async () => {
      try {
        await writeAll(this.sink, this.#encoder.encode(text));
      } catch (err) {
        logger.error("access log write failed", { error: err });
      } finally {
        this.#inFlightChars -= chars;
      }
    });
    return this.#writing;
  }

  async close(): Promise<void> {
    if (this.#closed) return this.#writing;
    // Mark closed first so no line sneaks in after the final flush.
    this.#closed = true;
    await this.flush();
    if (this.ownsSink) {
      try {
        this.sink.close?.();
      } catch {
        // Already closed: nothing left to release.
      }
    }
  }
}

async function writeAll(sink: LogSink, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await sink.write(data.subarray(off));
}
