import assert from "node:assert/strict";
import { ChunkedBodyReader, ConnReader, FramingError, LengthBodyReader } from "./reader.ts";
import { BufferPool } from "../net/buffer_pool.ts";

const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const dec = (b: Uint8Array) => String.fromCharCode(...b);

/** A Deno.Conn stand-in that hands out `data` in pieces of `step` bytes per read(), then EOF. */
class SlowConn {
  pos = 0;
  reads = 0;
  constructor(readonly data: Uint8Array, readonly step = 1) {}
  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    if (this.pos >= this.data.length) return Promise.resolve(null);
    const n = Math.min(this.step, p.length, this.data.length - this.pos);
    p.set(this.data.subarray(this.pos, this.pos + n));
    this.pos += n;
    return Promise.resolve(n);
  }
  asConn(): Deno.Conn {
    return this as unknown as Deno.Conn;
  }
}

async function readAll(r: { read(): Promise<Uint8Array | null> }): Promise<string> {
  let s = "";
  for (;;) {
    const c = await r.read();
    if (c === null) return s;
    s += dec(c); // copy now: the view is only valid until the next read
  }
}

const CHUNKED = '5;ext="v"\r\nhello\r\n1\r\n,\r\nB\r\n 0123456789\r\n0\r\nX-T: 1\r\nX-U:  two \r\n\r\nNEXT';

for (const step of [1, 2, 3, 7, 1000]) {
  Deno.test(`ChunkedBodyReader: decodes across ${step}-byte reads, trailers parsed, stops at the message end`, async () => {
    const conn = new SlowConn(enc(CHUNKED), step);
    const r = new ConnReader(conn.asConn(), 16);
    const br = new ChunkedBodyReader(r);
    let progress = 0, completions = 0;
    br.onProgress = (n) => n === 0 ? completions++ : progress += n;
    assert.equal(await readAll(br), "hello, 0123456789");
    assert.equal(progress, 17);
    assert.equal(completions, 1);
    assert.deepEqual(br.trailers?.entries(), [["X-T", "1"], ["X-U", "two"]]);
    // The bytes after the body stay for the next message.
    let rest = dec(r.buf.subarray(r.start, r.end));
    while (rest.length < 4) {
      if (await r.fill() === 0) break;
      rest = dec(r.buf.subarray(r.start, r.end));
    }
    assert.equal(rest, "NEXT");
    assert.equal(await br.read(), null);
  });
}

Deno.test("ChunkedBodyReader: malformed framing throws FramingError (400 request, 502 response), one byte at a time", async () => {
  const bad = [
    "zz\r\nhello\r\n0\r\n\r\n",
    "0000000000001\r\nx\r\n0\r\n\r\n",
    "\r\nx\r\n0\r\n\r\n",
    "5 \r\nhello\r\n0\r\n\r\n",
    "5\nhello\r\n0\r\n\r\n",
    "5\r\nhelloXX0\r\n\r\n",
    "5\r\nhello\n0\r\n\r\n",
    "5;a=\x01\r\nhello\r\n0\r\n\r\n",
    "5;a=\x7f\r\nhello\r\n0\r\n\r\n",
    "0\r\nBad Trailer: x\r\n\r\n",
    "0\r\n folded: x\r\n\r\n",
    "0\r\nX: a\x01b\r\n\r\n",
    "5\r\nhel", // ends early
    "5\r\nhello\r\n", // no last chunk
  ];
  for (const isRequest of [true, false]) {
    for (const s of bad) {
      for (const step of [1, 1000]) {
        const br = new ChunkedBodyReader(
          new ConnReader(new SlowConn(enc(s), step).asConn(), 64),
          1024,
          isRequest,
        );
        await assert.rejects(
          () => readAll(br),
          (e: unknown) => e instanceof FramingError && e.status === (isRequest ? 400 : 502),
          `${JSON.stringify(s)} step ${step}`,
        );
      }
    }
  }
});

Deno.test("ChunkedBodyReader: a bad CRLF after data already buffered fails before the data is handed out", async () => {
  const br = new ChunkedBodyReader(new ConnReader(new SlowConn(enc("5\r\nhelloXX"), 1000).asConn(), 64));
  await assert.rejects(() => br.read(), FramingError);
});

Deno.test("ChunkedBodyReader: trailers over the limit are rejected", async () => {
  const s = "0\r\n" + "X-Long: " + "a".repeat(200) + "\r\n\r\n";
  const br = new ChunkedBodyReader(new ConnReader(new SlowConn(enc(s), 7).asConn(), 1024), 100);
  await assert.rejects(() => readAll(br), FramingError);
});

Deno.test("LengthBodyReader: exact length across 1-byte reads, early EOF is an error", async () => {
  const conn = new SlowConn(enc("hello worldEXTRA"), 1);
  const r = new ConnReader(conn.asConn(), 4);
  const br = new LengthBodyReader(r, 11);
  let completions = 0, firstWaits = 0;
  br.onProgress = (n) => n === 0 && completions++;
  br.onFirstRead = () => {
    firstWaits++;
    return Promise.resolve();
  };
  assert.equal(await readAll(br), "hello world");
  assert.equal(completions, 1);
  assert.equal(firstWaits, 1);
  assert.equal(conn.pos, 11, "no byte beyond the body is read");

  const short = new LengthBodyReader(new ConnReader(new SlowConn(enc("abc"), 1).asConn(), 4), 10);
  await assert.rejects(() => readAll(short), FramingError);
});

Deno.test("ConnReader: fill() joins a read already in flight instead of racing it", async () => {
  let release!: (n: number | null) => void;
  let target: Uint8Array | null = null;
  let reads = 0;
  const conn = {
    read(p: Uint8Array) {
      reads++;
      target = p;
      return new Promise<number | null>((r) => release = r);
    },
  } as unknown as Deno.Conn;
  const r = new ConnReader(conn, 16);
  r.pending = r.fill(); // e.g. the engine's disconnect detector
  const br = new LengthBodyReader(r, 5);
  const got = br.read();
  await Promise.resolve();
  assert.equal(reads, 1, "a second concurrent read was issued");
  target!.set(enc("hello"));
  release(5);
  assert.equal(dec((await got)!), "hello");
  assert.equal(r.pending, null);
});

Deno.test("ConnReader with a pool: heads in the small buffer, bodies in a pooled one that goes back when idle", async () => {
  const pool = new BufferPool(64, 4);
  const head = "GET / HTTP/1.1\r\n\r\n";
  const body = "x".repeat(40);
  const conn = new SlowConn(enc(head + body + head), 1000);
  const r = new ConnReader(conn.asConn(), pool.size, pool, 32);
  const small = r.buf;
  assert.equal(small.length, 32);
  // The first read fills the small buffer (the head and the start of the body)...
  await r.fill();
  assert.equal(r.buf, small);
  r.start += head.length;
  // ...and the body, which is longer than what is buffered, is read whole with a pooled buffer.
  const br = new LengthBodyReader(r, body.length);
  assert.equal(dec((await br.read())!), body);
  assert.equal(r.buf.length, 64);
  assert.equal(await br.read(), null);
  assert.ok(br.ended);
  // Between messages, the next head is already buffered: the pooled buffer stays.
  r.idle();
  assert.equal(r.buf.length, 64);
  r.start = r.end;
  r.idle();
  assert.equal(r.buf, small);
  assert.equal(pool.idle, 1);
});

Deno.test("ConnReader with a pool: a buffer whose views may still be held is not given back", async () => {
  const pool = new BufferPool(64, 4);
  const conn = new SlowConn(enc("x".repeat(50)), 1000);
  const r = new ConnReader(conn.asConn(), pool.size, pool, 16);
  const br = new LengthBodyReader(r, 50);
  const view = (await br.read())!;
  assert.equal(view.length, 50);
  // The handler did not read on to the end: its view must not be handed to another connection.
  r.idle(!br.ended);
  assert.equal(r.buf.length, 16);
  assert.equal(pool.idle, 0);
});

Deno.test("ConnReader with a pool: a head larger than the small buffer grows into a pooled one", async () => {
  const pool = new BufferPool(64, 4);
  const head = "GET /" + "a".repeat(30) + " HTTP/1.1\r\n\r\n";
  const r = new ConnReader(new SlowConn(enc(head), 1000).asConn(), pool.size, pool, 16);
  while (r.available < head.length) await r.fill(1024);
  assert.equal(dec(r.buf.subarray(r.start, r.end)), head);
  assert.equal(r.buf.length, 64);
});

Deno.test("ConnReader.readMore/filled: the caller awaits the read and records it; 0 at EOF", async () => {
  const conn = new SlowConn(enc("abcdef"), 4);
  const r = new ConnReader(conn.asConn(), 16);
  assert.equal(r.filled(await r.readMore()), 4);
  assert.equal(r.filled(await r.readMore()), 2);
  assert.equal(dec(r.buf.subarray(r.start, r.end)), "abcdef");
  assert.equal(r.filled(await r.readMore()), 0);
  assert.equal(r.eof, true);
});

Deno.test("ConnReader.readMore: a full buffer at its size limit rejects with 431, as fill() does", async () => {
  const conn = new SlowConn(enc("x".repeat(64)), 64);
  const r = new ConnReader(conn.asConn(), 8);
  assert.equal(r.filled(await r.readMore(8)), 8);
  await assert.rejects(r.readMore(8), (e) => e instanceof FramingError && e.status === 431);
  await assert.rejects(r.fill(8), (e) => e instanceof FramingError && e.status === 431);
});

Deno.test("ConnReader.park: the parked read runs its continuation once, and the next fill() joins it", async () => {
  const conn = new SlowConn(enc("GET / HTTP/1.1\r\n"), 5);
  const r = new ConnReader(conn.asConn(), 64);
  const seen: number[] = [];
  r.park((n) => {
    seen.push(n);
    return n;
  }, () => -1);
  assert.notEqual(r.pending, null);
  assert.equal(await r.fill(), 5); // joins the parked read: no second read into the buffer
  assert.equal(conn.reads, 1);
  assert.deepEqual(seen, [5]);
  assert.equal(r.pending, null);
  assert.equal(dec(r.buf.subarray(r.start, r.end)), "GET /");
  // A read error goes to `otherwise`, whose value the joined fill() gets.
  const failing = { read: () => Promise.reject(new Error("reset")) } as unknown as Deno.Conn;
  const f = new ConnReader(failing, 64);
  f.park((n) => n, () => 0);
  assert.equal(await f.fill(), 0);
});

Deno.test("ConnReader.park: with no room left, `otherwise` gets the 431 later, as for a failed read", async () => {
  const conn = new SlowConn(enc("x".repeat(16)), 16);
  const r = new ConnReader(conn.asConn(), 16);
  assert.equal(await r.fill(16), 16);
  const errors: unknown[] = [];
  r.park((n) => n, (e) => {
    errors.push(e);
    return 0;
  });
  assert.equal(errors.length, 0); // not run inside park
  assert.equal(await r.fill(), 0);
  assert.ok(errors[0] instanceof FramingError && errors[0].status === 431);
});
