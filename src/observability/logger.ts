/**
 * Structured logger: one JSON line per message on stderr,
 * `{"time","level","msg",...fields}`.
 *
 * @module
 */

/** Log levels, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra key/values of a log line. */
export type LogFields = Record<string, unknown>;

/** A logger, possibly carrying fields added with {@link Logger.child}. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{worker: 1}`). */
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = RANK.info;
const encoder = new TextEncoder();
let output: (line: string) => void = (line) => {
  // Synchronous so lines keep their order and survive a crash right after.
  const data = encoder.encode(line);
  let off = 0;
  while (off < data.length) off += Deno.stderr.writeSync(data.subarray(off));
};

/** Sets the minimum level logged, process-wide (all loggers and children). */
export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

/** The current minimum level. */
export function getLogLevel(): LogLevel {
  return (Object.keys(RANK) as LogLevel[]).find((l) => RANK[l] === threshold)!;
}

/** Whether `level` would currently be logged (to skip building costly fields). */
export function isLevelEnabled(level: LogLevel): boolean {
  return RANK[level] >= threshold;
}

/** Redirects log lines (each ending in "\n"); for tests. Returns the previous output. */
export function setLogOutput(write: (line: string) => void): (line: string) => void {
  const prev = output;
  output = write;
  return prev;
}

/** Errors have no enumerable fields; spell them out so they are not logged as `{}`. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  if (typeof value === "bigint") return value.toString();
  return value;
}

class JsonLogger implements Logger {
  constructor(private readonly base: LogFields) {}

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] < threshold) return;
    const record = { time: new Date().toISOString(), level, msg, ...this.base, ...fields };
    let line: string;
    try {
      line = JSON.stringify(record, replacer);
    } catch {
      // Cyclic or otherwise unserialisable fields: keep the message at least.
      line = JSON.stringify({ time: record.time, level, msg, fields_error: "unserialisable fields" });
    }
    output(line + "\n");
  }

  debug(msg: string, fields?: LogFields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#write("error", msg, fields);
  }
  child(fields: LogFields): Logger {
    return new JsonLogger({ ...this.base, ...fields });
  }
}

/** Creates a logger with base fields. */
export function createLogger(fields: LogFields = {}): Logger {
  return new JsonLogger({ ...fields });
}

/** The root logger. */
export const logger: Logger = createLogger();
