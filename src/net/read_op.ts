/**
 * Reads from a Deno connection through the runtime's read op, without
 * `Deno.Conn.read`'s wrapper (issue 16 items 2 and 3).
 *
 * Why: in Deno 2.9 `Conn.read` is an async function that adds each pending
 * read to a per-connection Set, kept only for `ref()`/`unref()`. A connection
 * outlives a few scavenges, so its Set ends up in V8's old generation, and the
 * add/delete churn rehashes the Set's table there: about 0.2 KB of old-space
 * garbage per proxied request at c64, so a full mark-compact about every
 * second, and with a heap of Loom's size each one stalls the event loop for
 * 15–20 ms (bench/README.md, "The tail at c64"). The op itself is what
 * `Conn.read` awaits. Loom never unrefs a connection, so nothing is lost.
 *
 * Where the runtime's internals are not there (another Deno) or the
 * connection is not one of Deno's own (Loom's wrappers, the FFI prototype),
 * the connection's `read` is used.
 *
 * @module
 */
import { coreRead } from "./deno_core.ts";

/** Reads into `buf` (never empty): the number of bytes; 0 (the op) or null (a connection's read) at EOF. */
export type ReadOp = (buf: Uint8Array) => Promise<number | null>;

let ridSymbol: symbol | null | undefined;

function ridOf(conn: Readable): number | null {
  if (ridSymbol === undefined) {
    ridSymbol = Object.getOwnPropertySymbols(conn).find((s) => s.description === "Deno.internal.rid") ?? null;
  }
  if (ridSymbol === null) return null;
  const rid = (conn as unknown as Record<symbol, unknown>)[ridSymbol];
  return typeof rid === "number" ? rid : null;
}

/** What can be read from: a `Deno.Conn` or a wrapper with the same `read`. */
export interface Readable {
  read(p: Uint8Array): Promise<number | null>;
}

/** The read op of `conn` (one closure per connection), or its own `read`. */
export function readOpOf(conn: Readable): ReadOp {
  const rid = coreRead !== null && isDenoConn(conn) ? ridOf(conn) : null;
  if (rid !== null) {
    const read = coreRead!;
    return (buf) => read(rid, buf);
  }
  return (buf) => conn.read(buf);
}

/** Verdicts by the prototype that defines a connection's `read`. */
const verdicts = new Map<object, boolean>();

/**
 * Whether `conn.read` is Deno's own `Conn.read` (TcpConn, TlsConn, UnixConn), the one that wraps the op
 * with the Set: its source names the Set. Anything else (a wrapper, a Deno whose read differs) keeps its read.
 */
function isDenoConn(conn: Readable): boolean {
  let p = Object.getPrototypeOf(conn);
  while (p !== null && !Object.prototype.hasOwnProperty.call(p, "read")) p = Object.getPrototypeOf(p);
  if (p === null) return false;
  let v = verdicts.get(p);
  if (v === undefined) {
    v = String(p.read).includes("#pendingReadPromises");
    verdicts.set(p, v);
  }
  return v;
}
