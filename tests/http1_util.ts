/**
 * The raw HTTP/1.1 side of the tests: time-bounded tests, a lenient message
 * parser, and the raw TCP client ({@linkcode RawClient}, {@linkcode rawRequest})
 * that writes bytes as given and parses what comes back. The raw upstream is
 * tests/upstream.ts (`startUpstream({ raw })`).
 */

/** Bytes to a string, one char per byte (offsets stay valid). */
export function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 8192)));
  }
  return s;
}

/** A string to bytes, one byte per char. */
export function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}

/** Rejects after `ms` with `what` in the message. */
export function within<T>(p: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Deno.test without op/resource sanitizers, failing when `fn` runs longer than `ms`. */
export function btest(name: string, ms: number, fn: (t: Deno.TestContext) => Promise<void>): void {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn: (t) => within(fn(t), ms, name) });
}

/** A resolvable promise. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

// ---------------------------------------------------------------------------
// Message parsing (test side, lenient enough to observe what the gateway sent)

/** One parsed HTTP/1.1 message (request or response). */
export interface Message {
  /** Start line without CRLF. */
  start: string;
  /** Status code for responses, 0 for requests. */
  status: number;
  /** [name, value] in order, names as received. */
  fields: [string, string][];
  /** Decoded body. */
  body: Uint8Array;
  /** Trailer fields of a chunked body. */
  trailers: [string, string][];
  /** The exact bytes of the message as received. */
  raw: string;
}

/** All values of `name` (case-insensitive). */
export function fieldValues(m: Message, name: string): string[] {
  const k = name.toLowerCase();
  return m.fields.filter(([n]) => n.toLowerCase() === k).map(([, v]) => v);
}

/** The first value of `name`, or undefined. */
export function field(m: Message, name: string): string | undefined {
  return fieldValues(m, name)[0];
}

/**
 * Parses one message from the start of `s` (latin1). Returns null when more
 * bytes are needed. `noBody` for responses to HEAD; requests without framing
 * have no body, responses without framing run to `eof`.
 */
export function parseMessage(
  s: string,
  opts: { noBody?: boolean; eof?: boolean } = {},
): { msg: Message; used: number } | null {
  const headEnd = s.indexOf("\r\n\r\n");
  if (headEnd < 0) return null;
  const lines = s.slice(0, headEnd).split("\r\n");
  const start = lines[0];
  const isResponse = start.startsWith("HTTP/");
  const status = isResponse ? Number(start.slice(9, 12)) : 0;
  const fields: [string, string][] = lines.slice(1).map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i), l.slice(i + 1).trim()];
  });
  const get = (n: string) => fields.find(([k]) => k.toLowerCase() === n)?.[1];
  let p = headEnd + 4;
  const trailers: [string, string][] = [];
  let body = "";
  const noBody = opts.noBody || status === 204 || status === 304 || (status >= 100 && status < 200);
  const te = get("transfer-encoding");
  const cl = get("content-length");
  if (noBody) { /* none */ }
  else if (te !== undefined && /chunked/i.test(te)) {
    for (;;) {
      const le = s.indexOf("\r\n", p);
      if (le < 0) return null;
      const size = parseInt(s.slice(p, le).split(";")[0], 16);
      if (Number.isNaN(size)) throw new Error("bad chunk size line: " + JSON.stringify(s.slice(p, le)));
      p = le + 2;
      if (size === 0) {
        for (;;) {
          const te2 = s.indexOf("\r\n", p);
          if (te2 < 0) return null;
          const line = s.slice(p, te2);
          p = te2 + 2;
          if (line === "") break;
          const i = line.indexOf(":");
          trailers.push([line.slice(0, i), line.slice(i + 1).trim()]);
        }
        break;
      }
      if (s.length < p + size + 2) return null;
      body += s.slice(p, p + size);
      if (s.slice(p + size, p + size + 2) !== "\r\n") throw new Error("missing CRLF after chunk");
      p += size + 2;
    }
  } else if (cl !== undefined) {
    const n = Number(cl);
    if (s.length < p + n) return null;
    body = s.slice(p, p + n);
    p += n;
  } else if (isResponse) {
    if (!opts.eof) return null;
    body = s.slice(p);
    p = s.length;
  }
  return { msg: { start, status, fields, body: bytes(body), trailers, raw: s.slice(0, p) }, used: p };
}

// ---------------------------------------------------------------------------
// Raw client

/** How a read-to-close ended. */
export type CloseKind = "eof" | "reset" | "timeout";

/** A raw TCP client on 127.0.0.1 with an accumulating read buffer. */
export class RawClient {
  buf = "";
  closedBy: CloseKind | null = null;
  private readBuf = new Uint8Array(64 * 1024);
  private reading: Promise<void> | null = null;

  private constructor(readonly conn: Deno.TcpConn) {}

  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async write(data: string | Uint8Array): Promise<void> {
    const b = typeof data === "string" ? bytes(data) : data;
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  /** One read into `buf`; sets closedBy on EOF/reset. */
  private readOnce(): Promise<void> {
    if (this.reading === null) {
      this.reading = this.conn.read(this.readBuf).then((n) => {
        this.reading = null;
        if (n === null) this.closedBy = "eof";
        else this.buf += latin1(this.readBuf.subarray(0, n));
      }, () => {
        this.reading = null;
        this.closedBy = "reset";
      });
    }
    return this.reading;
  }

  /** Reads until `pred(buf)` holds or the connection ends; throws after `ms`. */
  async until(pred: (buf: string) => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.buf)) {
      if (this.closedBy !== null) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting; got " + JSON.stringify(this.buf.slice(0, 300)));
      await within(this.readOnce(), left, "read").catch(() => {});
    }
  }

  /** Reads and removes one response from the buffer. */
  async response(opts: { noBody?: boolean; ms?: number } = {}): Promise<Message> {
    let parsed: ReturnType<typeof parseMessage> = null;
    await this.until((b) => (parsed = parseMessage(b, opts)) !== null, opts.ms ?? 3000);
    if (parsed === null) parsed = parseMessage(this.buf, { ...opts, eof: true });
    if (parsed === null) throw new Error("connection ended mid-response: " + JSON.stringify(this.buf));
    const { msg, used } = parsed as { msg: Message; used: number };
    this.buf = this.buf.slice(used);
    return msg;
  }

  /** Waits for the server to close; "timeout" when it did not within `ms`. */
  async waitClose(ms = 3000): Promise<CloseKind> {
    const deadline = Date.now() + ms;
    while (this.closedBy === null) {
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      try {
        await within(this.readOnce(), left, "read");
      } catch {
        return "timeout";
      }
    }
    return this.closedBy;
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** A request {@linkcode rawRequest} writes: `METHOD target HTTP/1.1`, Host, `headers`, `Connection: close`. */
export interface RawTarget {
  /** Written byte for byte (fetch() would normalise it). */
  target: string;
  method?: string;
  headers?: Record<string, string>;
  /** Default 127.0.0.1. */
  host?: string;
}

/**
 * Sends `data` (or the request of a {@linkcode RawTarget}) on a fresh connection; returns the first
 * response, how the connection ended and the bytes received until then.
 */
export async function rawRequest(
  port: number,
  data: string | Uint8Array | RawTarget,
  ms = 3000,
  waitClose = true,
): Promise<{ res: Message | null; close: CloseKind; text: string }> {
  let noBody = false;
  if (typeof data === "object" && !(data instanceof Uint8Array)) {
    const method = data.method ?? "GET";
    noBody = method === "HEAD";
    const lines = [`${method} ${data.target} HTTP/1.1`, `Host: ${data.host ?? "127.0.0.1"}`];
    for (const [k, v] of Object.entries(data.headers ?? {})) lines.push(`${k}: ${v}`);
    lines.push("Connection: close", "", "");
    data = new TextEncoder().encode(lines.join("\r\n"));
  }
  const c = await RawClient.connect(port);
  try {
    await c.write(data).catch(() => {});
    await c.until((b) => parseMessage(b, { noBody }) !== null, ms).catch(() => {});
    const text = c.buf;
    const p = parseMessage(c.buf, { noBody, eof: c.closedBy !== null });
    const close = waitClose ? await c.waitClose(ms) : c.closedBy ?? "timeout";
    return { res: p?.msg ?? null, close, text };
  } finally {
    c.close();
  }
}
