/**
 * Integration tests for the HTTP/2 connection layer on loopback, against real
 * peers: curl / nghttp / h2load for the server role, Deno.serve (h2c) for the
 * client role, our own client ↔ server, and raw bytes for protocol errors.
 */
import assert from "node:assert/strict";
import { H2Connection, H2Error, type H2Options, type H2Stream } from "./connection.ts";
import { ErrorCode, Flag, FrameType, PREFACE } from "./frame.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";
import { toolTest } from "../../tests/tools.ts";
import { frame } from "../../tests/h2_raw.ts";

// ------------------------------------------------------------------ helpers

/** Runs fn, failing if it takes longer than ms. */
async function bounded<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves true when p settles within ms, else false (only to assert that something does NOT happen). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([p.then(() => true, () => true), t]);
  } finally {
    clearTimeout(timer);
  }
}

function field(fields: string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

async function readAll(s: H2Stream): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let c = await s.read(); c !== null; c = await s.read()) chunks.push(c);
  return concat(chunks);
}

function pattern(n: number, seed = 7): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >>> 10)) & 0xff;
  return b;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function writeChunked(s: H2Stream, data: Uint8Array, chunk = 64 * 1024): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) await s.write(data.subarray(off, off + chunk));
}

/** Echo: 200 with the request body, then the request trailers plus `x-t: 1` as trailers. */
async function echo(s: H2Stream): Promise<void> {
  s.respond([":status", "200", "content-type", "application/octet-stream"], false);
  for (let c = await s.read(); c !== null; c = await s.read()) await s.write(c);
  await s.end([...(s.trailers ?? []), "x-t", "1"]);
}

interface TestServer {
  port: number;
  conns: H2Connection[];
  /** Streams seen so far. */
  streams: number;
  /** Resolves with the next stream that arrives. */
  nextStream(): Promise<H2Stream>;
  close(): Promise<void>;
}

/** A loopback HTTP/2 (h2c prior knowledge) server running `handler` per stream. */
function startServer(handler: (s: H2Stream, c: H2Connection) => Promise<void> | void, opts: H2Options = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: H2Connection[] = [];
  const handlers: Promise<void>[] = [];
  const waiters: ((s: H2Stream) => void)[] = [];
  const server: TestServer = {
    port: (listener.addr as Deno.NetAddr).port,
    conns,
    streams: 0,
    nextStream: () => new Promise((resolve) => waiters.push(resolve)),
    close: async () => {
      listener.close();
      await accepting;
      for (const c of conns) c.destroy();
      await Promise.all(conns.map((c) => c.closed));
      await Promise.all(handlers);
    },
  };
  const accepting = (async () => {
    try {
      for await (const tcp of listener) {
        tcp.setNoDelay(true);
        const c: H2Connection = H2Connection.server(tcp, {
          ...opts,
          onStream: (s) => {
            server.streams++;
            waiters.shift()?.(s);
            handlers.push((async () => {
              try {
                await handler(s, c);
              } catch (e) {
                if (!(e instanceof H2Error)) throw e;
              }
            })());
          },
        });
        conns.push(c);
      }
    } catch {
      // listener closed
    }
  })();
  return server;
}

async function connectClient(port: number, opts: H2Options = {}): Promise<H2Connection> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  tcp.setNoDelay(true);
  const c = H2Connection.client(tcp, opts);
  await c.ready;
  return c;
}

function req(port: number, method: string, path: string, extra: string[] = []): string[] {
  return [":method", method, ":scheme", "http", ":authority", `127.0.0.1:${port}`, ":path", path, ...extra];
}

async function closeClient(c: H2Connection): Promise<void> {
  c.destroy();
  await c.closed;
}

/** Runs a CLI with a timeout; returns its exit code and output. */
async function run(cmd: string, args: string[], ms = 60_000) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", signal: ac.signal })
      .output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------- server role: CLIs

toolTest(["curl"], "server: curl --http2-prior-knowledge GET and 1 MiB POST", async () => {
  const srv = startServer(echo);
  const dir = await Deno.makeTempDir();
  try {
    await bounded(60_000, async () => {
      const url = `http://127.0.0.1:${srv.port}/echo`;
      const get = await run("curl", [
        "-sS",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        url,
      ]);
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, "2 200");

      const body = pattern(1 << 20);
      await Deno.writeFile(`${dir}/in`, body);
      const post = await run("curl", [
        "-sS",
        "--http2-prior-knowledge",
        "--data-binary",
        `@${dir}/in`,
        "-H",
        "content-type: application/octet-stream",
        "-o",
        `${dir}/out`,
        "-w",
        "%{http_code}",
        url,
      ]);
      assert.equal(post.code, 0, post.stderr);
      assert.equal(post.stdout, "200");
      assert.ok(sameBytes(await Deno.readFile(`${dir}/out`), body), "echoed body differs");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await srv.close();
  }
});

toolTest(["nghttp"], "server: nghttp -v shows the trailers", async () => {
  const srv = startServer(echo);
  try {
    await bounded(30_000, async () => {
      const r = await run("nghttp", ["-v", "-d", "-", `http://127.0.0.1:${srv.port}/echo`], 30_000);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /:status: 200/);
      // The trailers arrive as a second HEADERS frame with END_STREAM (nghttp prints fields before the frame).
      assert.match(
        r.stdout,
        /recv \(stream_id=\d+\) x-t: 1\n[^\n]*recv HEADERS frame <[^>]*>\n\s*; END_STREAM/,
      );
    });
  } finally {
    await srv.close();
  }
});

toolTest(["h2load"], "server: h2load -n 20000 -c 10 -m 20", async () => {
  const srv = startServer(echo);
  try {
    await bounded(120_000, async () => {
      const r = await run("h2load", [
        "-n",
        "20000",
        "-c",
        "10",
        "-m",
        "20",
        `http://127.0.0.1:${srv.port}/echo`,
      ], 120_000);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(
        r.stdout,
        /requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored/,
      );
      const rps = r.stdout.match(/finished in [^,]+, ([\d.]+) req\/s/)?.[1];
      console.log(`h2load echo: ${rps} req/s`);
    });
  } finally {
    await srv.close();
  }
});

// ------------------------------------------------- client role: Deno.serve

Deno.test("client: against Deno.serve (h2c): GET, 5 MiB POST, 200 multiplexed requests", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    (r) => r.method === "POST" ? new Response(r.body) : new Response(`hello ${new URL(r.url).pathname}`),
  );
  const port = server.addr.port;
  const c = await connectClient(port);
  try {
    await bounded(60_000, async () => {
      const g = c.request(req(port, "GET", "/x"), true);
      const head = await g.response;
      assert.equal(field(head, ":status"), "200");
      assert.equal(new TextDecoder().decode(await readAll(g)), "hello /x");
      await g.done;

      const body = pattern(5 << 20, 3);
      const p = c.request(req(port, "POST", "/echo"), false);
      const sent = (async () => {
        await writeChunked(p, body);
        await p.end();
      })();
      assert.equal(field(await p.response, ":status"), "200");
      const got = await readAll(p);
      await sent;
      assert.ok(sameBytes(got, body), "5 MiB echo differs");

      const limit = Math.min(200, c.peerMaxConcurrentStreams);
      let next = 0;
      let ok = 0;
      let maxActive = 0;
      const worker = async () => {
        while (next < 200) {
          const i = next++;
          const s = c.request(req(port, "GET", `/m${i}`), true);
          maxActive = Math.max(maxActive, c.activeStreams);
          assert.equal(field(await s.response, ":status"), "200");
          assert.equal(new TextDecoder().decode(await readAll(s)), `hello /m${i}`);
          ok++;
        }
      };
      await Promise.all(Array.from({ length: limit }, worker));
      assert.equal(ok, 200);
      assert.ok(maxActive > 1, "requests were multiplexed");
      assert.equal(c.activeStreams, 0);
    });
  } finally {
    await closeClient(c);
    ac.abort();
    await server.finished;
  }
});

// --------------------------------------------- client ↔ our own server

Deno.test("client↔server: request and response trailers, trailers-only response", async () => {
  const srv = startServer((s) => {
    if (field(s.headers, ":path") === "/trailers-only") {
      s.respond([":status", "200", "content-type", "application/grpc", "grpc-status", "0"], true);
      return;
    }
    return echo(s);
  });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      const s = c.request(req(srv.port, "POST", "/echo", ["te", "trailers"]), false);
      await s.write(new TextEncoder().encode("abc"));
      await s.end(["x-req", "r1"]);
      assert.equal(field(await s.response, ":status"), "200");
      assert.equal(new TextDecoder().decode(await readAll(s)), "abc");
      assert.ok(s.remoteEnded);
      assert.deepEqual(s.trailers, ["x-req", "r1", "x-t", "1"]);
      await s.done;

      const t = c.request(req(srv.port, "POST", "/trailers-only"), true);
      const head = await t.response;
      assert.ok(t.remoteEnded, "remoteEnded set when the trailers-only response resolves");
      assert.equal(field(head, "grpc-status"), "0");
      assert.equal(t.trailers, null);
      assert.equal(await t.read(), null);
      await t.done;
      assert.equal(c.activeStreams, 0);
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: stream reset in both directions", async () => {
  const srv = startServer(async (s) => {
    if (field(s.headers, ":path") === "/reset") {
      s.reset(ErrorCode.CANCEL);
      return;
    }
    await echo(s);
  });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      // Server resets.
      const a = c.request(req(srv.port, "GET", "/reset"), true);
      await assert.rejects(a.response, (e) => e instanceof H2Error && e.code === ErrorCode.CANCEL);
      assert.equal(a.rstCode, ErrorCode.CANCEL);
      await a.done;

      // Client resets while the server is reading the body.
      const serverSide = srv.nextStream();
      const b = c.request(req(srv.port, "POST", "/echo"), false);
      await b.write(new Uint8Array(10));
      const ss = await serverSide;
      assert.equal(field(await b.response, ":status"), "200");
      b.reset(ErrorCode.CANCEL);
      assert.equal(b.rstCode, ErrorCode.CANCEL);
      await assert.rejects(b.read(), H2Error);
      await assert.rejects(b.write(new Uint8Array(1)), H2Error);
      await ss.done;
      assert.equal(ss.rstCode, ErrorCode.CANCEL);
      await b.done;
      assert.equal(c.activeStreams, 0);
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: graceful GOAWAY lets in-flight streams finish and refuses new ones", async () => {
  const release = Promise.withResolvers<void>();
  const srv = startServer(async (s) => {
    await release.promise;
    await echo(s);
  });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      const gotGoaway = new Promise<[number, number]>((resolve) =>
        c.onGoaway = (l, code) => resolve([l, code])
      );
      const serverSide = srv.nextStream();
      const a = c.request(req(srv.port, "GET", "/a"), true);
      await serverSide;
      const sc = srv.conns[0];
      sc.goaway();
      assert.ok(sc.goingAway);
      assert.deepEqual(await gotGoaway, [a.id, ErrorCode.NO_ERROR]);
      assert.ok(c.goingAway);
      assert.throws(
        () => c.request(req(srv.port, "GET", "/b"), true),
        (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM,
      );
      release.resolve();
      assert.equal(field(await a.response, ":status"), "200");
      assert.equal((await readAll(a)).length, 0);
      await a.done;
      // Both ends close once the last stream is done.
      await sc.closed;
      await c.closed;
    });
  } finally {
    release.resolve();
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: received GOAWAY fails streams above its last id with REFUSED_STREAM", async () => {
  // A raw server that answers the preface with SETTINGS, then GOAWAY(last=0) after the first HEADERS.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    const tcp = await listener.accept();
    const frames = rawFrames(tcp, PREFACE.length);
    await tcp.write(frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0)));
    for (let f = await frames.next(); f !== null; f = await frames.next()) {
      if (f.type === FrameType.HEADERS) {
        await tcp.write(frame(FrameType.GOAWAY, 0, 0, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0])));
        break;
      }
    }
    // Wait for the client to close.
    for (let f = await frames.next(); f !== null; f = await frames.next());
    tcp.close();
  })();
  const c = await connectClient(port);
  try {
    await bounded(10_000, async () => {
      const s = c.request(req(port, "GET", "/"), true);
      await assert.rejects(s.response, (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM);
      await c.closed;
    });
  } finally {
    await closeClient(c);
    await serving;
    listener.close();
  }
});

Deno.test("client: a peer that sends GOAWAY and closes at once refuses the stream; a failed write does not hide it", async () => {
  // The server answers the first HEADERS with GOAWAY(last=0) and closes: the client's body writes then fail,
  // but the GOAWAY that arrived first still says the stream was never processed (safe to retry).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    const tcp = await listener.accept();
    const frames = rawFrames(tcp, PREFACE.length);
    await tcp.write(frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0)));
    for (let f = await frames.next(); f !== null; f = await frames.next()) {
      if (f.type === FrameType.HEADERS) {
        await tcp.write(frame(FrameType.GOAWAY, 0, 0, new Uint8Array(8)));
        break;
      }
    }
    tcp.close();
  })();
  const c = await connectClient(port);
  try {
    await bounded(10_000, async () => {
      const s = c.request(req(port, "POST", "/"), false);
      const writing = (async () => {
        for (let i = 0; i < 64; i++) await s.write(pattern(16 * 1024, i));
      })().catch(() => {});
      await assert.rejects(s.response, (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM);
      await writing;
      await c.closed;
    });
  } finally {
    await closeClient(c);
    await serving;
    listener.close();
  }
});

Deno.test("server: a graceful GOAWAY keeps the connection until the peer acknowledged it", async () => {
  const srv = startServer(echo);
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      const first = c.request(req(srv.port, "GET", "/a"), true);
      await first.response;
      await readAll(first);
      const sc = srv.conns[0];
      sc.goaway();
      // Sent before the client saw the GOAWAY: refused (retryable), not cut by a closed socket.
      const raced = c.request(req(srv.port, "GET", "/b"), true);
      await assert.rejects(
        raced.response,
        (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM,
      );
      await sc.closed;
      await c.closed;
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: streams over maxConcurrentStreams are refused", async () => {
  const release = Promise.withResolvers<void>();
  const srv = startServer(async (s) => {
    await release.promise;
    await echo(s);
  }, { maxConcurrentStreams: 2 });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      assert.equal(c.peerMaxConcurrentStreams, 2);
      const a = c.request(req(srv.port, "GET", "/1"), true);
      const b = c.request(req(srv.port, "GET", "/2"), true);
      const x = c.request(req(srv.port, "GET", "/3"), true);
      await assert.rejects(x.response, (e) => e instanceof H2Error && e.code === ErrorCode.REFUSED_STREAM);
      assert.equal(x.rstCode, ErrorCode.REFUSED_STREAM);
      assert.equal(srv.streams, 2);
      release.resolve();
      assert.equal(field(await a.response, ":status"), "200");
      assert.equal(field(await b.response, ":status"), "200");
      await Promise.all([readAll(a), readAll(b)]);
      await Promise.all([a.done, b.done]);
      assert.equal(c.activeStreams, 0);
    });
  } finally {
    release.resolve();
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: oversized header list is flagged; a client never sends one", async () => {
  const srv = startServer((s) => {
    if (s.oversized) s.respond([":status", "431"], true);
    else return echo(s);
  }, { maxHeaderListSize: 1024 });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      // Our client honours the server's SETTINGS_MAX_HEADER_LIST_SIZE: no stream is opened.
      assert.throws(
        () => c.request(req(srv.port, "GET", "/", ["x-big", "a".repeat(4000)]), true),
        (e) => e instanceof H2Error && e.code === ErrorCode.INTERNAL_ERROR,
      );
      const small = c.request(req(srv.port, "GET", "/", ["x-small", "a"]), true);
      assert.equal(field(await small.response, ":status"), "200");
      await readAll(small);
      // A raw client that ignores it: the list is still decoded (HPACK stays in step) and flagged.
      const block = new HpackEncoder().encode([
        ":method",
        "GET",
        ":scheme",
        "http",
        ":path",
        "/",
        "x-big",
        "a".repeat(4000),
      ]);
      const r = await rawSession(
        srv.port,
        concat([
          PREFACE,
          SETTINGS_EMPTY,
          frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block),
        ]),
        (f) => f.type === FrameType.HEADERS && f.sid === 1,
      );
      assert.ok(r.match, "a response on stream 1");
      assert.equal(field(new HpackDecoder().decode(r.match.payload), ":status"), "431");
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: 10 MiB both ways with 16 KiB stream windows", async () => {
  const small = { initialWindowSize: 16 * 1024, connectionWindowSize: 64 * 1024 };
  const srv = startServer(echo, small);
  const c = await connectClient(srv.port, small);
  try {
    await bounded(60_000, async () => {
      const body = pattern(10 << 20, 11);
      const s = c.request(req(srv.port, "POST", "/echo"), false);
      const sending = (async () => {
        await writeChunked(s, body, 1 << 20);
        await s.end();
      })();
      assert.equal(field(await s.response, ":status"), "200");
      const got = await readAll(s);
      await sending;
      assert.ok(sameBytes(got, body), "10 MiB echo differs");
      assert.deepEqual(s.trailers, ["x-t", "1"]);
      await s.done;
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: a slow reader back-pressures the writer", async () => {
  const startReading = Promise.withResolvers<void>();
  const srv = startServer(async (s) => {
    await startReading.promise;
    await echo(s);
  }, { initialWindowSize: 16 * 1024 });
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      const s = c.request(req(srv.port, "POST", "/slow"), false);
      // Far more than the 16 KiB stream window: cannot be queued until the server reads.
      const w = s.write(pattern(256 * 1024));
      assert.equal(await settlesWithin(w, 300), false, "write resolved without the reader reading");
      startReading.resolve();
      await w;
      await s.end();
      assert.equal((await readAll(s)).length, 256 * 1024);
    });
  } finally {
    startReading.resolve();
    await closeClient(c);
    await srv.close();
  }
});

Deno.test("client↔server: connection loss fails open streams", async () => {
  // The handler never answers; its stream ends when the connection dies.
  const srv = startServer((s) => s.done);
  const c = await connectClient(srv.port);
  try {
    await bounded(10_000, async () => {
      const serverSide = srv.nextStream();
      const s = c.request(req(srv.port, "GET", "/"), true);
      await serverSide;
      srv.conns[0].destroy();
      await assert.rejects(s.response, H2Error);
      await assert.rejects(s.read(), H2Error);
      await c.closed;
      assert.equal(c.activeStreams, 0);
      assert.ok(c.goingAway);
      assert.throws(() => c.request(req(srv.port, "GET", "/"), true), H2Error);
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});

// ------------------------------------------------ raw protocol errors

interface RawFrame {
  type: number;
  flags: number;
  sid: number;
  payload: Uint8Array;
}

/** Reads frames off a raw connection, after skipping `skip` bytes (the client preface). */
function rawFrames(conn: Deno.Conn, skip = 0) {
  let buf: Uint8Array = new Uint8Array(0);
  const tmp = new Uint8Array(65536);
  return {
    async next(): Promise<RawFrame | null> {
      while (true) {
        if (skip > 0 && buf.length >= skip) {
          buf = buf.slice(skip);
          skip = 0;
        }
        if (skip === 0 && buf.length >= 9) {
          const len = (buf[0] << 16) | (buf[1] << 8) | buf[2];
          if (buf.length >= 9 + len) {
            const f = {
              type: buf[3],
              flags: buf[4],
              sid: new DataView(buf.buffer, buf.byteOffset).getUint32(5) & 0x7fffffff,
              payload: buf.slice(9, 9 + len),
            };
            buf = buf.slice(9 + len);
            return f;
          }
        }
        let n: number | null;
        try {
          n = await conn.read(tmp);
        } catch {
          n = null;
        }
        if (n === null) return null;
        buf = concat([buf, tmp.subarray(0, n)]);
      }
    },
  };
}

async function rawSession(port: number, bytes: Uint8Array, want: (f: RawFrame) => boolean) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes);
    const frames = rawFrames(conn);
    const seen: RawFrame[] = [];
    for (let f = await frames.next(); f !== null; f = await frames.next()) {
      seen.push(f);
      if (want(f)) return { match: f, seen };
    }
    return { match: null, seen };
  } finally {
    conn.close();
  }
}

const SETTINGS_EMPTY = frame(FrameType.SETTINGS, 0, 0, new Uint8Array(0));

Deno.test("raw: bad preface closes the connection", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const bad = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      const r = await rawSession(srv.port, bad, () => false);
      assert.equal(r.match, null); // reached EOF
      await srv.conns[0].closed;
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: DATA on stream 0 is a connection PROTOCOL_ERROR", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const bytes = concat([PREFACE, SETTINGS_EMPTY, frame(FrameType.DATA, 0, 0, new Uint8Array([1, 2]))]);
      const r = await rawSession(srv.port, bytes, (f) => f.type === FrameType.GOAWAY);
      assert.ok(r.match, "GOAWAY expected");
      assert.equal(new DataView(r.match.payload.buffer).getUint32(4), ErrorCode.PROTOCOL_ERROR);
      await srv.conns[0].closed;
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: an uppercase header name is a stream PROTOCOL_ERROR", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const name = new TextEncoder().encode("X-Up");
      // :method GET, :scheme http, :path / (static table), then a literal field without indexing.
      const block = new Uint8Array([0x82, 0x86, 0x84, 0x00, name.length, ...name, 1, 0x76]);
      const headers = frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block);
      const r = await rawSession(
        srv.port,
        concat([PREFACE, SETTINGS_EMPTY, headers]),
        (f) => f.type === FrameType.RST_STREAM || f.type === FrameType.GOAWAY,
      );
      assert.ok(r.match);
      assert.equal(r.match.type, FrameType.RST_STREAM);
      assert.equal(r.match.sid, 1);
      assert.equal(new DataView(r.match.payload.buffer).getUint32(0), ErrorCode.PROTOCOL_ERROR);
      assert.equal(srv.streams, 0);
    });
  } finally {
    await srv.close();
  }
});

/** :method POST, :scheme http, :path / from the static table. */
const POST_ROOT = [0x83, 0x86, 0x84];

Deno.test("raw: PING is acknowledged with the same payload", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
      const r = await rawSession(
        srv.port,
        concat([PREFACE, SETTINGS_EMPTY, frame(FrameType.PING, 0, 0, payload)]),
        (f) => f.type === FrameType.PING,
      );
      assert.ok(r.match);
      assert.equal(r.match.flags, Flag.ACK);
      assert.deepEqual(r.match.payload, payload);
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: a header block split over CONTINUATION frames is assembled", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const block = new Uint8Array([0x82, 0x86, 0x84, 0x41, 1, 0x61]); // GET http / :authority a
      const bytes = concat([
        PREFACE,
        SETTINGS_EMPTY,
        frame(
          FrameType.HEADERS,
          Flag.END_STREAM | Flag.PADDED,
          1,
          new Uint8Array([2, ...block.subarray(0, 2), 0, 0]),
        ),
        frame(FrameType.CONTINUATION, 0, 1, block.subarray(2, 4)),
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(4)),
      ]);
      const r = await rawSession(srv.port, bytes, (f) => f.sid === 1 && (f.flags & Flag.END_STREAM) !== 0);
      assert.ok(r.match, "a complete response on stream 1");
      assert.ok(!r.seen.some((f) => f.type === FrameType.RST_STREAM || f.type === FrameType.GOAWAY));
      assert.equal(srv.streams, 1);
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: a frame interleaved in a header block is a connection PROTOCOL_ERROR", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const bytes = concat([
        PREFACE,
        SETTINGS_EMPTY,
        frame(FrameType.HEADERS, Flag.END_STREAM, 1, new Uint8Array([0x82, 0x86])),
        frame(FrameType.PING, 0, 0, new Uint8Array(8)),
      ]);
      const r = await rawSession(srv.port, bytes, (f) => f.type === FrameType.GOAWAY);
      assert.ok(r.match);
      assert.equal(new DataView(r.match.payload.buffer).getUint32(4), ErrorCode.PROTOCOL_ERROR);
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: content-length not matching the DATA is a stream PROTOCOL_ERROR", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      // content-length (static index 28) literal without indexing: "5", then only 2 bytes of DATA.
      const block = new Uint8Array([...POST_ROOT, 0x0f, 0x0d, 1, 0x35]);
      const bytes = concat([
        PREFACE,
        SETTINGS_EMPTY,
        frame(FrameType.HEADERS, Flag.END_HEADERS, 1, block),
        frame(FrameType.DATA, Flag.END_STREAM, 1, new Uint8Array([1, 2])),
      ]);
      const r = await rawSession(srv.port, bytes, (f) => f.type === FrameType.RST_STREAM);
      assert.ok(r.match);
      assert.equal(r.match.sid, 1);
      assert.equal(new DataView(r.match.payload.buffer).getUint32(0), ErrorCode.PROTOCOL_ERROR);
    });
  } finally {
    await srv.close();
  }
});

Deno.test("raw: WINDOW_UPDATE of 0 and bad SETTINGS values are connection errors", async () => {
  const srv = startServer(echo);
  try {
    await bounded(10_000, async () => {
      const cases: [Uint8Array, number][] = [
        [frame(FrameType.WINDOW_UPDATE, 0, 0, new Uint8Array(4)), ErrorCode.PROTOCOL_ERROR],
        // SETTINGS_INITIAL_WINDOW_SIZE = 2^31
        [
          frame(FrameType.SETTINGS, 0, 0, new Uint8Array([0, 4, 0x80, 0, 0, 0])),
          ErrorCode.FLOW_CONTROL_ERROR,
        ],
        // SETTINGS_MAX_FRAME_SIZE = 100
        [frame(FrameType.SETTINGS, 0, 0, new Uint8Array([0, 5, 0, 0, 0, 100])), ErrorCode.PROTOCOL_ERROR],
        // SETTINGS with a length that is not a multiple of 6
        [frame(FrameType.SETTINGS, 0, 0, new Uint8Array(5)), ErrorCode.FRAME_SIZE_ERROR],
        // frame larger than our SETTINGS_MAX_FRAME_SIZE
        [frame(FrameType.DATA, 0, 1, new Uint8Array(16385)), ErrorCode.FRAME_SIZE_ERROR],
      ];
      for (const [bad, code] of cases) {
        const r = await rawSession(
          srv.port,
          concat([PREFACE, SETTINGS_EMPTY, bad]),
          (f) => f.type === FrameType.GOAWAY,
        );
        assert.ok(r.match);
        assert.equal(new DataView(r.match.payload.buffer).getUint32(4), code);
      }
    });
  } finally {
    await srv.close();
  }
});

/** What an idle connection holds: its read buffer's size and its two frame writers' buffer sizes. */
function buffers(c: H2Connection): { read: number; out: number; spare: number } {
  const i = c as unknown as { rbuf: Uint8Array; out: { buf: Uint8Array }; spare: { buf: Uint8Array } };
  return { read: i.rbuf.length, out: i.out.buf.length, spare: i.spare.buf.length };
}

Deno.test("client↔server: an idle connection holds a 1 KiB read buffer and no frame buffers, after 2 MiB both ways", async () => {
  const srv = startServer(echo);
  const c = await connectClient(srv.port);
  try {
    await bounded(20_000, async () => {
      const idle = { read: 1024, out: 0, spare: 0 };
      // Fresh: SETTINGS exchanged, nothing else.
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(buffers(c), idle);
      assert.deepEqual(buffers(srv.conns[0]), idle);
      const body = pattern(2 * 1024 * 1024);
      const s = c.request(req(srv.port, "POST", "/echo"), false);
      const upload = writeChunked(s, body).then(() => s.end());
      assert.equal(field(await s.response, ":status"), "200");
      assert.ok(sameBytes(await readAll(s), body));
      await upload;
      await s.done;
      // Streaming took the large buffers; idle again, they went back to their pools.
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(buffers(c), idle);
      assert.deepEqual(buffers(srv.conns[0]), idle);
    });
  } finally {
    await closeClient(c);
    await srv.close();
  }
});
