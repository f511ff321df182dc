/**
 * HTTP/2 conformance of the h2c listener, case by case after the public h2spec suite (its case ids:
 * generic/*, http2/* for RFC 9113 as h2spec numbers it after RFC 7540, hpack/* for RFC 7541), re-expressed
 * as raw-frame tests against a running Loom (gateway, router, proxy to an HTTP/1.1 upstream) with the
 * raw client of tests/h2_raw.ts; plus RFC 9113 rules h2spec does not cover (field values, SETTINGS
 * acknowledgement timeout, keepalive PING, the client's SETTINGS_MAX_HEADER_LIST_SIZE, RST_STREAM(NO_ERROR)
 * after an early response), and how the cleartext h2c/grpc ports tell HTTP/2 from HTTP/1.1.
 *
 * Each table entry names what the server must answer: a connection error (GOAWAY with that code, then
 * the connection closes), a stream error (RST_STREAM with that code; the connection lives on), a bare
 * close, or nothing wrong (the case's own checks, then a PING still answered).
 */
import assert from "node:assert/strict";
import { freePort, itest, startLoom, type TestLoom } from "./helpers.ts";
import { metricValue } from "./gateway_util.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";
import { describe, type Event, frame, RawH2, req, settings, u32s, word } from "./h2_raw.ts";
import { ErrorCode, Flag, FrameType, MAX_WINDOW, PREFACE, SettingId } from "../src/http2/frame.ts";
import { huffmanEncode } from "../src/http2/huffman.ts";
import { field } from "../src/http2/fields.ts";
import { setLogOutput } from "../src/observability/logger.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const E = ErrorCode;
const T = FrameType;

/** What the server must do. */
type Expect =
  | { goaway: number } // connection error: GOAWAY(code), then the connection closes
  | { rst: number } // stream error: RST_STREAM(code); the connection still answers a PING
  | { closed: true } // the connection closes (before HTTP/2 started)
  | { ok: true } // no error: the case checked the answer itself; a PING is still answered
  | { okOrClosed: true }; // a PING answered, or the connection closed (after the client's GOAWAY)

const goaway = (code: number): Expect => ({ goaway: code });
const rst = (code: number): Expect => ({ rst: code });
const OK: Expect = { ok: true };

interface Case {
  id: string;
  desc: string;
  /** Sends the case's frames (after the handshake unless `raw`); may assert on answers itself. */
  run: (c: RawH2) => Promise<void>;
  expect: Expect;
  /** No handshake first (the case starts the connection itself). */
  raw?: boolean;
}

// ------------------------------------------------------------------ blocks and frames

/** GET / as static-table indexes: :method GET, :scheme http, :path /. */
const GET_ROOT = [0x82, 0x86, 0x84];

/** A string literal (RFC 7541 §5.2), Huffman-coded when `huff`. */
function str(s: string, huff = false): number[] {
  const b = huff ? huffmanEncode(s) : enc.encode(s);
  if (b.length >= 127) throw new Error("short strings only");
  return [(huff ? 0x80 : 0) | b.length, ...b];
}

/** :authority 127.0.0.1 as a literal with the given first byte (pattern + name index 1). */
const authority = (first: number, huff = false) => [first, ...str("127.0.0.1", huff)];
/** x-test: conformance as a literal with a new name and the given first byte. */
const newName = (first: number, huff = false) => [first, ...str("x-test", huff), ...str("conformance", huff)];

const ping = (flags = 0, sid = 0, payload: number[] = [1, 2, 3, 4, 5, 6, 7, 8]) =>
  frame(T.PING, flags, sid, payload);
const rstFrame = (sid: number, code: number) => frame(T.RST_STREAM, 0, sid, u32s(code));
const windowUpdate = (sid: number, inc: number) => frame(T.WINDOW_UPDATE, 0, sid, u32s(inc));
const priority = (sid: number, dep: number, weight = 15, exclusive = false) =>
  frame(T.PRIORITY, 0, sid, [...u32s((dep | (exclusive ? 0x80000000 : 0)) >>> 0), weight]);
const settingsFrame = (...pairs: [number, number][]) => frame(T.SETTINGS, 0, 0, settings(...pairs));

/** Sends GET path on sid (END_STREAM) and waits for the complete response. */
async function get(c: RawH2, sid: number, path = "/size/10") {
  await c.send(c.headers(sid, req("GET", path), { end: true }));
  return await c.response(sid);
}

/** A request stream that stays open: POST /echo without END_STREAM (the upstream waits for the body). */
const openPost = (c: RawH2, sid: number) => c.headers(sid, req("POST", "/echo"));

/** A request the upstream answers after a while, so the stream stays half-closed (remote) meanwhile. */
const slowGet = (c: RawH2, sid: number) => c.headers(sid, req("GET", "/slow"), { end: true });

async function assertStatus(c: RawH2, sid: number, status: string, body?: string) {
  const r = await c.response(sid);
  assert.equal(r.status, status, `status on stream ${sid}`);
  if (body !== undefined) assert.equal(dec.decode(r.body), body);
  return r;
}

/** The first DATA frame of sid. */
async function firstData(c: RawH2, sid: number): Promise<Uint8Array> {
  const e = await c.until((e) => typeof e !== "string" && e.type === T.DATA && e.sid === sid);
  if (typeof e === "string") throw new Error(`no DATA on stream ${sid}: ${c.seen.map(describe).join(", ")}`);
  return e.payload;
}

/** Reads up to the ACK of a PING sent now; fails if a DATA frame of sid comes first. */
async function noDataBeforePing(c: RawH2, sid: number): Promise<void> {
  await c.send(ping(0, 0, [9, 9, 9, 9, 9, 9, 9, 9]));
  const e = await c.until((e) =>
    typeof e !== "string" &&
    ((e.type === T.DATA && e.sid === sid) || (e.type === T.PING && e.payload[0] === 9))
  );
  assert.ok(
    typeof e !== "string" && e.type === T.PING,
    `expected no DATA before the PING ACK: ${describe(e)}`,
  );
}

// ------------------------------------------------------------------ the cases

/** A case that sends `frames` (built on the connection, in one write) and expects `expect`. */
const sends = (id: string, desc: string, frames: (c: RawH2) => Uint8Array[], expect: Expect): Case => ({
  id,
  desc,
  run: (c) => c.send(...frames(c)),
  expect,
});

/** Cases of {@linkcode sends}, one row each: id, what is sent, the frames, the expectation. */
const rows = (r: [string, string, (c: RawH2) => Uint8Array[], Expect][]): Case[] =>
  r.map(([id, desc, frames, expect]) => sends(id, desc, frames, expect));

/** A case that sends `frames` and checks stream 1's complete response (status; body when given). */
const answered = (
  id: string,
  desc: string,
  frames: (c: RawH2) => Uint8Array[],
  status = "200",
  body?: string,
) =>
  ({
    id,
    desc,
    run: async (c) => {
      await c.send(...frames(c));
      await assertStatus(c, 1, status, body);
    },
    expect: OK,
  }) as Case;

/** A case that first completes GET on stream 1 (the stream is then closed), then sends `frames`. */
const afterResponse = (
  id: string,
  desc: string,
  frames: (c: RawH2) => Uint8Array[],
  expect: Expect,
): Case => ({
  id,
  desc,
  run: async (c) => {
    await get(c, 1);
    await c.send(...frames(c));
  },
  expect,
});

/** A case that handshakes with the client SETTINGS `own`, sends GET `path` on stream 1, then runs `then`. */
const getWith = (
  id: string,
  desc: string,
  own: Uint8Array,
  path: string,
  then: (c: RawH2) => Promise<void>,
) =>
  ({
    id,
    desc,
    raw: true,
    run: async (c) => {
      await c.handshake(own);
      await c.send(c.headers(1, req("GET", path), { end: true }));
      await then(c);
    },
    expect: OK,
  }) as Case;

/** A case that handshakes with the client SETTINGS `own`, GETs 100 bytes and checks the first DATA frame's size. */
const firstDataOf = (id: string, desc: string, own: Uint8Array, size: number): Case =>
  getWith(id, desc, own, "/size/100", async (c) => assert.equal((await firstData(c, 1)).length, size));

/** A case that waits for the server's next SETTINGS frame after `frames` and checks it is an empty ACK. */
const settingsAcked = (id: string, desc: string, frames: Uint8Array[]): Case => ({
  id,
  desc,
  run: async (c) => {
    await c.send(...frames);
    const e = await c.until((e) => typeof e !== "string" && e.type === T.SETTINGS);
    assert.ok(typeof e !== "string" && e.flags === Flag.ACK && e.payload.length === 0, describe(e));
  },
  expect: OK,
});

/** GET /size/3's header block (with `extra` fields) cut at `cuts`: HEADERS, then CONTINUATION frames. */
function continued(c: RawH2, cuts: number[], extra: string[] = []): Uint8Array[] {
  const block = c.enc.encode(req("GET", "/size/3", extra));
  const ends = [...cuts, block.length];
  return ends.map((end, i) => {
    const part = block.subarray(i === 0 ? 0 : ends[i - 1], end);
    const last = i === ends.length - 1;
    return i === 0
      ? c.headersBlock(1, part, { end: true, endHeaders: last })
      : frame(T.CONTINUATION, last ? Flag.END_HEADERS : 0, 1, part);
  });
}

/** HEADERS of GET / cut after its first byte, without END_HEADERS: a header block left open. */
const openBlock = (c: RawH2, end = true) =>
  c.headersBlock(1, GET_ROOT.slice(0, 1), { end, endHeaders: false });
/** A CONTINUATION carrying the rest of {@linkcode openBlock}'s block. */
const restOfBlock = (flags: number, sid = 1) => frame(T.CONTINUATION, flags, sid, GET_ROOT.slice(1));
/** A CONTINUATION with a complete small block of its own (a: a). */
const strayContinuation = (sid = 1) => frame(T.CONTINUATION, Flag.END_HEADERS, sid, [0x40, 1, 0x61, 1, 0x61]);
/** HEADERS (END_STREAM) with GET / from static indexes, then `rest` (raw HPACK bytes). */
const rootBlock = (c: RawH2, rest: readonly number[]) =>
  c.headersBlock(1, [...GET_ROOT, ...rest], { end: true });
const big = (n: number) => new Uint8Array(n).fill(0x61);
const GET3 = (c: RawH2, o: { pad?: number; priority?: [number, number, boolean] } = {}) =>
  c.headers(1, req("GET", "/size/3"), { end: true, ...o });
const goawayFrame = (sid: number, code: number) => frame(T.GOAWAY, 0, sid, u32s(0, code));

/** The client connection preface and an empty SETTINGS: the server's SETTINGS (not an ACK) come first. */
const preface = (id: string, desc: string): Case => ({
  id,
  desc,
  raw: true,
  run: async (c) => {
    await c.send(PREFACE, frame(T.SETTINGS, 0, 0));
    const e = await c.next();
    assert.ok(typeof e !== "string" && e.type === T.SETTINGS && e.flags === 0, describe(e));
  },
  expect: OK,
});

const CASES: Case[] = [
  // ---- generic: one of each frame, HTTP exchanges, HPACK representations
  preface("generic/1.1", "client connection preface: the server's SETTINGS come first"),
  ...rows([
    ["generic/2.1", "PRIORITY on an idle stream", () => [priority(1, 0)], OK],
    [
      "generic/2.2",
      "WINDOW_UPDATE on a half-closed (remote) stream",
      (c) => [slowGet(c, 1), windowUpdate(1, 9)],
      OK,
    ],
    ["generic/2.3", "PRIORITY on a half-closed (remote) stream", (c) => [slowGet(c, 1), priority(1, 0)], OK],
    [
      "generic/2.4",
      "RST_STREAM on a half-closed (remote) stream",
      (c) => [slowGet(c, 1), rstFrame(1, E.CANCEL)],
      OK,
    ],
  ]),
  afterResponse("generic/2.5", "PRIORITY on a closed stream", () => [priority(1, 0)], OK),
  answered(
    "generic/3.1.1",
    "DATA frame",
    (c) => [openPost(c, 1), c.data(1, "hello", { end: true })],
    "200",
    "hello",
  ),
  answered(
    "generic/3.1.2",
    "multiple DATA frames",
    (c) => [openPost(c, 1), c.data(1, "hel"), c.data(1, "lo"), c.data(1, "", { end: true })],
    "200",
    "hello",
  ),
  answered(
    "generic/3.1.3",
    "DATA frame with padding",
    (c) => [openPost(c, 1), c.data(1, "hello", { end: true, pad: 8 })],
    "200",
    "hello",
  ),
  answered("generic/3.2.1", "HEADERS frame", (c) => [GET3(c)], "200", "xxx"),
  answered("generic/3.2.2", "HEADERS frame with padding", (c) => [GET3(c, { pad: 10 })], "200", "xxx"),
  answered("generic/3.2.3", "HEADERS frame with priority", (c) => [GET3(c, { priority: [0, 255, false] })]),
  answered("generic/3.3.1", "PRIORITY frame with weight 1", (c) => [priority(1, 0, 0), GET3(c)]),
  answered("generic/3.3.2", "PRIORITY frame with weight 256", (c) => [priority(1, 0, 255), GET3(c)]),
  answered("generic/3.3.3", "PRIORITY frame with a stream dependency", (c) => [priority(1, 3), GET3(c)]),
  answered("generic/3.3.4", "PRIORITY frame, exclusive", (c) => [priority(1, 3, 15, true), GET3(c)]),
  answered(
    "generic/3.3.5",
    "PRIORITY for an idle stream, then HEADERS on a lower stream id",
    (c) => [priority(3, 0), GET3(c)],
  ),
  ...rows([
    ["generic/3.4.1", "RST_STREAM frame", (c) => [openPost(c, 1), rstFrame(1, E.CANCEL)], OK],
  ]),
  settingsAcked("generic/3.5.1", "SETTINGS frame: acknowledged", [
    settingsFrame([SettingId.MAX_CONCURRENT_STREAMS, 50]),
  ]),
  { id: "generic/3.7.1", desc: "PING frame: acknowledged", run: (c) => c.pingOk(), expect: OK },
  ...rows([
    ["generic/3.8.1", "GOAWAY frame", () => [goawayFrame(0, E.NO_ERROR)], { okOrClosed: true }],
    ["generic/3.9.1", "WINDOW_UPDATE frame on stream 0", () => [windowUpdate(0, 1)], OK],
    [
      "generic/3.9.2",
      "WINDOW_UPDATE frame on an open stream",
      (c) => [openPost(c, 1), windowUpdate(1, 1)],
      OK,
    ],
  ]),
  answered("generic/3.10.1", "CONTINUATION frame", (c) => continued(c, [4])),
  answered(
    "generic/3.10.2",
    "multiple CONTINUATION frames",
    (c) => continued(c, [4, 20, 50], ["x-a", "a".repeat(99)]),
  ),
  {
    id: "generic/4.1",
    desc: "GET request",
    run: async (c) => assert.equal((await get(c, 1, "/size/20")).body.length, 20),
    expect: OK,
  },
  {
    id: "generic/4.2",
    desc: "HEAD request: no body",
    run: async (c) => {
      await c.send(c.headers(1, req("HEAD", "/size/20"), { end: true }));
      assert.deepEqual((await assertStatus(c, 1, "200")).dataFrames, []);
    },
    expect: OK,
  },
  answered(
    "generic/4.3",
    "POST request",
    (c) => [openPost(c, 1), c.data(1, "posted", { end: true })],
    "200",
    "posted",
  ),
  answered(
    "generic/4.4",
    "POST request with trailers",
    (c) => [
      c.headers(1, req("POST", "/echo", ["te", "trailers"])),
      c.data(1, "posted"),
      c.headers(1, ["x-trailer", "1"], { end: true }),
    ],
    "200",
    "posted",
  ),
  // "/" has no route in this config: 404 is a complete, well-formed answer.
  answered("generic/5.1", "indexed header field representation", (c) => [rootBlock(c, [])], "404"),
  // generic/5.2-5.13: literals with incremental indexing, without indexing and never indexed (RFC 7541
  // 6.2.1-6.2.3), each with an indexed or a new name, plain or Huffman-coded.
  ...([["with incremental indexing", 0x40], ["without indexing", 0x00], ["never indexed", 0x10]] as const)
    .flatMap(([kind, bits], k) =>
      [[false, false], [false, true], [true, false], [true, true]].map(([fresh, huff], i) =>
        answered(
          `generic/5.${2 + 4 * k + i}`,
          `literal ${kind}, ${fresh ? "new" : "indexed"} name${huff ? ", Huffman" : ""}`,
          (c) => [rootBlock(c, fresh ? newName(bits, huff) : authority(bits | 1, huff))],
          "404",
        )
      )
    ),
  answered(
    "generic/5.14",
    "dynamic table size update",
    (c) => [c.headersBlock(1, [0x3f, 0xe1, 0x1f, ...GET_ROOT], { end: true })], // to 4096
    "404",
  ),
  answered(
    "generic/5.15",
    "multiple dynamic table size updates",
    (c) => [c.headersBlock(1, [0x20, 0x3f, 0xe1, 0x1f, ...GET_ROOT], { end: true })], // to 0, then 4096
    "404",
  ),

  // ---- http2/3.5: the connection preface
  preface("http2/3.5.1", "client connection preface: answered with SETTINGS"),

  {
    ...sends(
      "http2/3.5.2",
      "invalid connection preface (not HTTP/2: the HTTP/1.1 engine refuses it, closes)",
      () => [
        enc.encode("INVALID CONNECTION PREFACE\r\n\r\n"),
      ],
      { closed: true },
    ),
    raw: true,
  },
  {
    ...sends("http2/3.5.2+", "connection preface broken after its request line", () => [
      enc.encode("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
    ], goaway(E.PROTOCOL_ERROR)),
    raw: true,
  },

  // ---- http2/4: frame format, frame size, header compression
  ...rows([
    ["http2/4.1.1", "frame of unknown type", () => [frame(0x16, 0, 0, [1, 2])], OK],
    ["http2/4.1.2", "frame with undefined flags", () => [ping(0x16)], OK],
    ["http2/4.1.3", "frame with the reserved stream id bit set", () => [ping(0, 0x80000000)], OK],
  ]),
  {
    id: "http2/4.2.1",
    desc: "DATA frame of 2^14 octets",
    run: async (c) => {
      await c.send(openPost(c, 1), c.data(1, big(16384), { end: true }));
      assert.equal((await assertStatus(c, 1, "200")).body.length, 16384);
    },
    expect: OK,
  },
  ...rows([
    [
      "http2/4.2.2",
      "DATA frame larger than SETTINGS_MAX_FRAME_SIZE",
      (c) => [openPost(c, 1), c.data(1, big(16385))],
      goaway(E.FRAME_SIZE_ERROR),
    ],
    // 17000 bytes Huffman coding does not shrink
    [
      "http2/4.2.3",
      "HEADERS frame larger than SETTINGS_MAX_FRAME_SIZE",
      (c) => [c.headers(1, req("GET", "/", ["x-big", "{".repeat(17000)]), { end: true })],
      goaway(E.FRAME_SIZE_ERROR),
    ],
    // a literal whose 5-byte name has 1 byte
    [
      "http2/4.3.1",
      "invalid header block fragment",
      (c) => [rootBlock(c, [0x00, 0x05, 0x61])],
      goaway(E.COMPRESSION_ERROR),
    ],
    [
      "http2/4.3.2",
      "PRIORITY frame in the middle of a header block",
      (c) => [openBlock(c), priority(1, 0)],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/4.3.3",
      "HEADERS frame to another stream in the middle of a header block",
      (c) => [openBlock(c), c.headersBlock(3, GET_ROOT)],
      goaway(E.PROTOCOL_ERROR),
    ],

    // ---- http2/5.1: stream states
    ["http2/5.1.1", "idle: DATA", (c) => [c.data(1, "x")], goaway(E.PROTOCOL_ERROR)],
    ["http2/5.1.2", "idle: RST_STREAM", () => [rstFrame(1, E.CANCEL)], goaway(E.PROTOCOL_ERROR)],
    ["http2/5.1.3", "idle: WINDOW_UPDATE", () => [windowUpdate(1, 100)], goaway(E.PROTOCOL_ERROR)],
    ["http2/5.1.4", "idle: CONTINUATION", () => [restOfBlock(Flag.END_HEADERS)], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/5.1.5",
      "half-closed (remote): DATA",
      (c) => [slowGet(c, 1), c.data(1, "x")],
      rst(E.STREAM_CLOSED),
    ],
    [
      "http2/5.1.6",
      "half-closed (remote): HEADERS",
      (c) => [slowGet(c, 1), c.headers(1, ["x-trailer", "1"], { end: true })],
      rst(E.STREAM_CLOSED),
    ],
    [
      "http2/5.1.7",
      "half-closed (remote): CONTINUATION",
      (c) => [slowGet(c, 1), strayContinuation()],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/5.1.8",
      "closed: DATA after RST_STREAM",
      (c) => [openPost(c, 1), rstFrame(1, E.CANCEL), c.data(1, "x")],
      rst(E.STREAM_CLOSED),
    ],
    [
      "http2/5.1.9",
      "closed: HEADERS after RST_STREAM",
      (c) => [openPost(c, 1), rstFrame(1, E.CANCEL), c.headers(1, req("GET", "/"), { end: true })],
      goaway(E.STREAM_CLOSED),
    ],
    [
      "http2/5.1.10",
      "closed: CONTINUATION after RST_STREAM",
      (c) => [openPost(c, 1), rstFrame(1, E.CANCEL), strayContinuation()],
      goaway(E.PROTOCOL_ERROR),
    ],
  ]),
  afterResponse("http2/5.1.11", "closed: DATA", (c) => [c.data(1, "x")], rst(E.STREAM_CLOSED)),
  afterResponse(
    "http2/5.1.12",
    "closed: HEADERS",
    (c) => [c.headers(1, req("GET", "/"), { end: true })],
    goaway(E.STREAM_CLOSED),
  ),
  afterResponse(
    "http2/5.1.13",
    "closed: CONTINUATION",
    () => [strayContinuation()],
    goaway(E.PROTOCOL_ERROR),
  ),
  ...rows([
    [
      "http2/5.1.1.1",
      "even-numbered stream id",
      (c) => [c.headers(2, req("GET", "/"), { end: true })],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/5.1.1.2",
      "stream id lower than a previous one",
      (c) => [c.headers(5, req("GET", "/slow"), { end: true }), c.headers(3, req("GET", "/"), { end: true })],
      goaway(E.PROTOCOL_ERROR),
    ],
  ]),
  {
    id: "http2/5.1.2.1",
    desc: "more streams than SETTINGS_MAX_CONCURRENT_STREAMS",
    run: async (c) => {
      const max = c.serverSettings.get(SettingId.MAX_CONCURRENT_STREAMS)!;
      assert.equal(max, 5);
      await c.send(...Array.from({ length: max + 1 }, (_, i) => openPost(c, 1 + 2 * i)));
      const e = await c.errorEvent();
      assert.ok(typeof e !== "string" && e.type === T.RST_STREAM && e.sid === 1 + 2 * max, describe(e));
      assert.equal(word(e.payload, 0), E.REFUSED_STREAM);
    },
    expect: OK,
  },

  // ---- http2/5.3, 5.4, 5.5: priority, error handling, extensions
  ...rows([
    [
      "http2/5.3.1.1",
      "HEADERS depending on its own stream",
      (c) => [GET3(c, { priority: [1, 15, false] })],
      rst(E.PROTOCOL_ERROR),
    ],
    ["http2/5.3.1.2", "PRIORITY depending on its own stream", () => [priority(1, 1)], rst(E.PROTOCOL_ERROR)],
    [
      "http2/5.4.1.1",
      "invalid PING frame: GOAWAY",
      () => [frame(T.PING, 0, 0, [1, 2, 3, 4, 5, 6])],
      goaway(E.FRAME_SIZE_ERROR),
    ],
    [
      "http2/5.4.1.2",
      "invalid PING frame: the connection closes after the GOAWAY",
      () => [ping(0, 3)],
      goaway(E.PROTOCOL_ERROR),
    ],
    ["http2/5.5.1", "unknown extension frame", () => [frame(0xfe, 0, 0, [1])], OK],
    [
      "http2/5.5.2",
      "unknown extension frame in the middle of a header block",
      (c) => [openBlock(c), frame(0xfe, 0, 1, [1])],
      goaway(E.PROTOCOL_ERROR),
    ],

    // ---- http2/6.1-6.4: DATA, HEADERS, PRIORITY, RST_STREAM
    ["http2/6.1.1", "DATA on stream 0", (c) => [c.data(0, "x")], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/6.1.2",
      "DATA on a stream neither open nor half-closed (local)",
      (c) => [slowGet(c, 1), c.data(1, "x")],
      rst(E.STREAM_CLOSED),
    ],
    [
      "http2/6.1.3",
      "DATA with a pad length beyond its payload",
      (c) => [openPost(c, 1), frame(T.DATA, Flag.PADDED, 1, [6, 0x61, 0x61, 0, 0, 0])],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.2.1",
      "HEADERS without END_HEADERS, then PRIORITY",
      (c) => [openBlock(c), priority(1, 0)],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.2.2",
      "HEADERS to another stream while a header block is open",
      (c) => [openBlock(c), c.headersBlock(3, GET_ROOT, { end: true })],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.2.3",
      "HEADERS on stream 0",
      (c) => [c.headersBlock(0, GET_ROOT, { end: true })],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.2.4",
      "HEADERS with a pad length beyond its payload",
      () => [frame(T.HEADERS, Flag.PADDED | Flag.END_HEADERS | Flag.END_STREAM, 1, [8, ...GET_ROOT])],
      goaway(E.PROTOCOL_ERROR),
    ],
    ["http2/6.3.1", "PRIORITY on stream 0", () => [priority(0, 1)], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/6.3.2",
      "PRIORITY of a length other than 5",
      () => [frame(T.PRIORITY, 0, 1, [0, 0, 0, 0])],
      rst(E.FRAME_SIZE_ERROR),
    ],
    ["http2/6.4.1", "RST_STREAM on stream 0", () => [rstFrame(0, E.CANCEL)], goaway(E.PROTOCOL_ERROR)],
    ["http2/6.4.2", "RST_STREAM on an idle stream", () => [rstFrame(1, E.CANCEL)], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/6.4.3",
      "RST_STREAM of a length other than 4",
      (c) => [openPost(c, 1), frame(T.RST_STREAM, 0, 1, [0, 0, 0])],
      goaway(E.FRAME_SIZE_ERROR),
    ],

    // ---- http2/6.5: SETTINGS
    [
      "http2/6.5.1",
      "SETTINGS ACK with a payload",
      () => [frame(T.SETTINGS, Flag.ACK, 0, [0, 0])],
      goaway(E.FRAME_SIZE_ERROR),
    ],
    ["http2/6.5.2", "SETTINGS on a stream", () => [frame(T.SETTINGS, 0, 1)], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/6.5.3",
      "SETTINGS of a length not a multiple of 6",
      () => [frame(T.SETTINGS, 0, 0, [0, 3, 0, 0, 0])],
      goaway(E.FRAME_SIZE_ERROR),
    ],
  ]),
  ...([
    ["http2/6.5.2.1", "SETTINGS_ENABLE_PUSH other than 0 or 1", SettingId.ENABLE_PUSH, 2, E.PROTOCOL_ERROR],
    [
      "http2/6.5.2.2",
      "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
      SettingId.INITIAL_WINDOW_SIZE,
      2 ** 31,
      E.FLOW_CONTROL_ERROR,
    ],
    [
      "http2/6.5.2.3",
      "SETTINGS_MAX_FRAME_SIZE below its initial value",
      SettingId.MAX_FRAME_SIZE,
      16383,
      E.PROTOCOL_ERROR,
    ],
    [
      "http2/6.5.2.4",
      "SETTINGS_MAX_FRAME_SIZE above 2^24-1",
      SettingId.MAX_FRAME_SIZE,
      2 ** 24,
      E.PROTOCOL_ERROR,
    ],
    ["http2/6.5.2.5", "SETTINGS with an unknown identifier", 0xff, 1, -1],
    [
      "http2/6.9.2.3",
      "SETTINGS_INITIAL_WINDOW_SIZE above the maximum window",
      SettingId.INITIAL_WINDOW_SIZE,
      2 ** 31,
      E.FLOW_CONTROL_ERROR,
    ],
  ] as const).map(([id, desc, setting, value, code]) =>
    sends(id, desc, () => [settingsFrame([setting, value])], code < 0 ? OK : goaway(code))
  ),
  firstDataOf(
    "http2/6.5.3.1",
    "SETTINGS_INITIAL_WINDOW_SIZE twice in one frame: the last one counts",
    settings([SettingId.INITIAL_WINDOW_SIZE, 100], [SettingId.INITIAL_WINDOW_SIZE, 1]),
    1,
  ),
  settingsAcked("http2/6.5.3.2", "SETTINGS without ACK: acknowledged", [
    settingsFrame([SettingId.HEADER_TABLE_SIZE, 4096]),
  ]),

  // ---- http2/6.7-6.8: PING, GOAWAY
  {
    id: "http2/6.7.1",
    desc: "PING: ACK with the same payload",
    run: async (c) => {
      await c.send(ping(0, 0, [8, 7, 6, 5, 4, 3, 2, 1]));
      const e = await c.until((e) => typeof e !== "string" && e.type === T.PING);
      assert.ok(typeof e !== "string" && e.flags === Flag.ACK, describe(e));
      assert.deepEqual([...e.payload], [8, 7, 6, 5, 4, 3, 2, 1]);
    },
    expect: OK,
  },
  {
    id: "http2/6.7.2",
    desc: "PING with ACK: not answered",
    run: async (c) => {
      await c.send(ping(Flag.ACK, 0, [7, 7, 7, 7, 7, 7, 7, 7]), ping(0, 0, [6, 6, 6, 6, 6, 6, 6, 6]));
      const e = await c.until((e) => typeof e !== "string" && e.type === T.PING);
      assert.ok(
        typeof e !== "string" && e.payload[0] === 6,
        `only the second PING is answered: ${describe(e)}`,
      );
    },
    expect: OK,
  },
  ...rows([
    ["http2/6.7.3", "PING on a stream", () => [ping(0, 1)], goaway(E.PROTOCOL_ERROR)],
    [
      "http2/6.7.4",
      "PING of a length other than 8",
      () => [frame(T.PING, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8, 9])],
      goaway(E.FRAME_SIZE_ERROR),
    ],
    ["http2/6.8.1", "GOAWAY on a stream", () => [goawayFrame(1, E.NO_ERROR)], goaway(E.PROTOCOL_ERROR)],

    // ---- http2/6.9: WINDOW_UPDATE and flow control
    [
      "http2/6.9.1",
      "WINDOW_UPDATE of 0 on stream 0",
      () => [windowUpdate(0, 0)],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.9.2",
      "WINDOW_UPDATE of 0, a stream",
      (c) => [openPost(c, 1), windowUpdate(1, 0)],
      rst(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.9.3",
      "WINDOW_UPDATE of length 3",
      () => [frame(T.WINDOW_UPDATE, 0, 0, [0, 0, 1])],
      goaway(E.FRAME_SIZE_ERROR),
    ],
  ]),
  firstDataOf(
    "http2/6.9.1.1",
    "initial window of 1: DATA of 1 octet",
    settings([SettingId.INITIAL_WINDOW_SIZE, 1]),
    1,
  ),
  ...rows([
    [
      "http2/6.9.1.2",
      "connection window above 2^31-1",
      () => [windowUpdate(0, MAX_WINDOW)],
      goaway(E.FLOW_CONTROL_ERROR),
    ],
    [
      "http2/6.9.1.3",
      "stream window above 2^31-1",
      (c) => [openPost(c, 1), windowUpdate(1, MAX_WINDOW)],
      rst(E.FLOW_CONTROL_ERROR),
    ],
  ]),
  getWith(
    "http2/6.9.2.1",
    "SETTINGS_INITIAL_WINDOW_SIZE changed after HEADERS",
    settings([SettingId.INITIAL_WINDOW_SIZE, 0]),
    "/size/100",
    async (c) => {
      await c.until((e) => typeof e !== "string" && e.type === T.HEADERS && e.sid === 1);
      await noDataBeforePing(c, 1);
      await c.send(settingsFrame([SettingId.INITIAL_WINDOW_SIZE, 1]));
      assert.equal((await firstData(c, 1)).length, 1);
    },
  ),
  getWith(
    "http2/6.9.2.2",
    "SETTINGS_INITIAL_WINDOW_SIZE making a window negative: tracked",
    settings([SettingId.INITIAL_WINDOW_SIZE, 3]),
    "/size/100",
    async (c) => {
      let got = 0;
      while (got < 3) got += (await firstData(c, 1)).length;
      assert.equal(got, 3);
      // Window 0, then 1 - 3 = -2; +2 is still no room; +1 more is room for one octet.
      await c.send(settingsFrame([SettingId.INITIAL_WINDOW_SIZE, 1]), windowUpdate(1, 2));
      await noDataBeforePing(c, 1);
      await c.send(windowUpdate(1, 1));
      assert.equal((await firstData(c, 1)).length, 1);
    },
  ),

  // ---- http2/6.10: CONTINUATION
  answered(
    "http2/6.10.1",
    "several CONTINUATION frames after HEADERS",
    (c) => continued(c, [2, 3]),
    "200",
    "xxx",
  ),
  ...rows([
    [
      "http2/6.10.2",
      "CONTINUATION followed by a frame other than CONTINUATION",
      (c) => [openBlock(c), restOfBlock(0), c.data(1, "x")],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.10.3",
      "CONTINUATION on stream 0",
      (c) => [openBlock(c), restOfBlock(Flag.END_HEADERS, 0)],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.10.4",
      "CONTINUATION after HEADERS with END_HEADERS",
      (c) => [openPost(c, 1), strayContinuation()],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.10.5",
      "CONTINUATION after a CONTINUATION with END_HEADERS",
      (c) => [openBlock(c, false), restOfBlock(Flag.END_HEADERS), strayContinuation()],
      goaway(E.PROTOCOL_ERROR),
    ],
    [
      "http2/6.10.6",
      "CONTINUATION after DATA",
      (c) => [openPost(c, 1), c.data(1, "x"), restOfBlock(Flag.END_HEADERS)],
      goaway(E.PROTOCOL_ERROR),
    ],

    // ---- http2/7: error codes
    ["http2/7.1", "GOAWAY with an unknown error code", () => [goawayFrame(0, 0xff)], { okOrClosed: true }],
    ["http2/7.2", "RST_STREAM with an unknown error code", (c) => [openPost(c, 1), rstFrame(1, 0xff)], OK],

    // ---- http2/8.1: HTTP request/response exchange, header fields
    [
      "http2/8.1.1",
      "a second HEADERS without END_STREAM",
      (c) => [openPost(c, 1), c.data(1, "x"), c.headers(1, ["x-trailer", "1"])],
      rst(E.PROTOCOL_ERROR),
    ],
  ]),
  ...([
    ["http2/8.1.2.1", "upper-case header field name", req("GET", "/", ["X-Test", "1"])],
    ["http2/8.1.2.1.1", "unknown pseudo-header", req("GET", "/", [":foo", "1"])],
    ["http2/8.1.2.1.2", "response pseudo-header in a request", [":status", "200", ...req("GET", "/")]],
    [
      "http2/8.1.2.1.4",
      "pseudo-header after a regular field",
      [":method", "GET", ":scheme", "http", "x-test", "1", ":path", "/"],
    ],
    ["http2/8.1.2.2.1", "connection-specific field", req("GET", "/", ["connection", "keep-alive"])],
    ["http2/8.1.2.2.2", 'TE other than "trailers"', req("GET", "/", ["te", "trailers, deflate"])],
    ["http2/8.1.2.3.1", "empty :path", [":method", "GET", ":scheme", "http", ":path", "", ":authority", "a"]],
    ["http2/8.1.2.3.2", "no :method", [":scheme", "http", ":path", "/", ":authority", "a"]],
    ["http2/8.1.2.3.3", "no :scheme", [":method", "GET", ":path", "/", ":authority", "a"]],
    ["http2/8.1.2.3.4", "no :path", [":method", "GET", ":scheme", "http", ":authority", "a"]],
    ["http2/8.1.2.3.5", "duplicated :method", [":method", "GET", ...req("GET", "/")]],
    ["http2/8.1.2.3.6", "duplicated :scheme", [":scheme", "http", ...req("GET", "/")]],
    ["http2/8.1.2.3.7", "duplicated :path", [":path", "/", ...req("GET", "/")]],
    ["rfc9113/8.2.1a", "field value with CR LF", req("GET", "/", ["x-test", "a\r\nx-evil: 1"])],
    ["rfc9113/8.2.1b", "field value with NUL", req("GET", "/", ["x-test", "a\0b"])],
    ["rfc9113/8.2.1c", "field value with leading whitespace", req("GET", "/", ["x-test", " a"])],
    ["rfc9113/8.2.1d", "field name with a space", req("GET", "/", ["x test", "a"])],
    ["rfc9113/8.3.1", "content-length on a request without a body", req("GET", "/", ["content-length", "5"])],
  ] as const).map(([id, desc, fields]) =>
    sends(id, desc, (c) => [c.headers(1, [...fields], { end: true })], rst(E.PROTOCOL_ERROR))
  ),
  ...rows([
    [
      "http2/8.1.2.1.3",
      "pseudo-header in trailers",
      (c) => [openPost(c, 1), c.data(1, "x"), c.headers(1, [":method", "POST"], { end: true })],
      rst(E.PROTOCOL_ERROR),
    ],
    [
      "http2/8.1.2.6.1",
      "content-length not the DATA frame's length",
      (c) => [c.headers(1, req("POST", "/echo", ["content-length", "1"])), c.data(1, "test", { end: true })],
      rst(E.PROTOCOL_ERROR),
    ],
    [
      "http2/8.1.2.6.2",
      "content-length not the sum of the DATA frames' lengths",
      (
        c,
      ) => [
        c.headers(1, req("POST", "/echo", ["content-length", "1"])),
        c.data(1, "test"),
        c.data(1, "test", { end: true }),
      ],
      rst(E.PROTOCOL_ERROR),
    ],
    [
      "http2/8.2.1",
      "PUSH_PROMISE from a client",
      (c) => [openPost(c, 1), frame(T.PUSH_PROMISE, Flag.END_HEADERS, 1, [0, 0, 0, 2, ...GET_ROOT])],
      goaway(E.PROTOCOL_ERROR),
    ],
  ]),

  // ---- hpack: decoding errors (each block follows GET /)
  ...([
    ["hpack/2.3.3.1", "indexed field with an index beyond both tables", [0xbe]], // 62: the table is empty
    ["hpack/2.3.3.2", "literal field with a name index beyond both tables", [0x7e, 1, 0x61]],
    ["hpack/4.2.1", "dynamic table size update at the end of a block", [0x20]],
    ["hpack/5.2.1", "Huffman string with padding longer than 7 bits", [0x41, 0x82, 0x1f, 0xff]],
    ["hpack/5.2.2", "Huffman string padded with zeros", [0x41, 0x81, 0x18]],
    ["hpack/5.2.3", "Huffman string containing EOS", [0x41, 0x84, 0xff, 0xff, 0xff, 0xff]],
    ["hpack/6.1.1", "indexed field with index 0", [0x80]],
  ] as const).map(([id, desc, rest]) =>
    sends(id, desc, (c) => [rootBlock(c, rest)], goaway(E.COMPRESSION_ERROR))
  ),
  ...rows([
    // a size update to 4097 (the table is 4096)
    [
      "hpack/6.3.1",
      "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE",
      (c) => [c.headersBlock(1, [0x3f, 0xe2, 0x1f, ...GET_ROOT], { end: true })],
      goaway(E.COMPRESSION_ERROR),
    ],
  ]),

  // ---- RFC 9113 rules beyond h2spec
  getWith(
    "rfc9113/6.5.2",
    "a response head above the client's SETTINGS_MAX_HEADER_LIST_SIZE is not sent: a bare 500",
    settings([SettingId.MAX_HEADER_LIST_SIZE, 1000]),
    "/bighead",
    async (c) => {
      const r = await assertStatus(c, 1, "500");
      assert.equal(field(r.fields, "x-big"), undefined);
      // The next response fits and goes out whole.
      assert.equal((await get(c, 3, "/size/3")).status, "200");
    },
  ),
  {
    id: "rfc9113/8.1",
    desc: "a complete response while the request body is still coming: RST_STREAM(NO_ERROR) after it",
    run: async (c) => {
      await c.send(c.headers(1, req("POST", "/early")), c.data(1, "part of a longer body"));
      await assertStatus(c, 1, "200", "early");
      const e = await c.until((e) => typeof e !== "string" && e.type === T.RST_STREAM);
      assert.ok(typeof e !== "string" && e.sid === 1 && word(e.payload, 0) === E.NO_ERROR, describe(e));
      // The rest of the body, already on its way, is ignored, not an error.
      await c.send(c.data(1, "the rest", { end: true }));
    },
    expect: OK,
  },
  {
    id: "rfc9113/4.3",
    desc: "a header block above SETTINGS_MAX_HEADER_LIST_SIZE is still decoded: 431, HPACK in step",
    run: async (c) => {
      await c.send(...continued(c, [16000], ["x-big", "{".repeat(12_000), "x-big2", "}".repeat(8000)]));
      await assertStatus(c, 1, "431");
      assert.equal((await get(c, 3, "/size/3")).status, "200");
    },
    expect: OK,
  },
];

// ------------------------------------------------------------------ running

async function check(c: RawH2, x: Expect): Promise<void> {
  const seen = () => c.seen.map(describe).join(", ");
  if ("ok" in x) return await c.pingOk();
  if ("okOrClosed" in x) {
    try {
      return await c.pingOk();
    } catch {
      assert.ok(await c.closedWithin(), `neither a PING answer nor a close: ${seen()}`);
      return;
    }
  }
  if ("closed" in x) {
    const e = await c.until((e) => e === "closed" || (typeof e !== "string" && e.type === T.GOAWAY), 5000);
    assert.ok(e === "closed" || (await c.closedWithin()), `expected a close: ${seen()}`);
    return;
  }
  const e = await c.errorEvent();
  if ("goaway" in x) {
    assert.ok(typeof e !== "string" && e.type === T.GOAWAY, `expected GOAWAY: ${seen()}`);
    assert.equal(word(e.payload, 4), x.goaway, `GOAWAY code: ${seen()}`);
    assert.ok(await c.closedWithin(), `the connection should close after GOAWAY: ${seen()}`);
    return;
  }
  assert.ok(typeof e !== "string" && e.type === T.RST_STREAM, `expected RST_STREAM: ${seen()}`);
  assert.equal(word(e.payload, 0), x.rst, `RST_STREAM code: ${seen()}`);
  await c.pingOk();
}

/** An upstream whose answers the cases ask for by path. */
function upstream(): TestUpstream {
  return startUpstream(async (r) => {
    const path = new URL(r.url).pathname;
    if (path.startsWith("/size/")) return new Response("x".repeat(Number(path.slice(6))));
    if (path === "/echo") return new Response(await r.arrayBuffer());
    if (path === "/early") return new Response("early"); // the body is never read
    if (path === "/slow") {
      await new Promise((res) => setTimeout(res, 1500));
      return new Response("slow");
    }
    if (path === "/bighead") return new Response("big", { headers: { "x-big": "b".repeat(2000) } });
    return new Response("ok");
  });
}

const ROUTES = `
routes:
  - { id: size, path: "/size/*", upstream: up }
  - { id: echo, path: "/echo", upstream: up }
  - { id: early, path: "/early", upstream: up }
  - { id: slow, path: "/slow", upstream: up }
  - { id: bighead, path: "/bighead", upstream: up }
`;

function yaml(up: TestUpstream, listeners: string): string {
  return `listeners:\n${listeners}\nupstreams:\n  - { name: up, endpoints: ["${up.address}"] }\n${ROUTES}`;
}

async function withLoom(listeners: string, fn: (loom: TestLoom) => Promise<void>): Promise<void> {
  const up = upstream();
  const loom = await startLoom(yaml(up, listeners));
  try {
    await fn(loom);
  } finally {
    await loom.close();
    await up.close();
  }
}

itest("h2spec cases, one connection each, against the h2c listener", async () => {
  const lines: string[] = [];
  const prev = setLogOutput((l) => lines.push(l));
  try {
    await withLoom(
      `  - name: h2c
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
    http2: { max_concurrent_streams: 5, max_header_list_size: 16KB }`,
      async (loom) => {
        const failures: string[] = [];
        const ids = new Set<string>();
        // H2SPEC_CASE=<id prefix> runs only those cases (and skips the metric checks).
        const only = Deno.env.get("H2SPEC_CASE");
        for (const k of CASES) {
          assert.ok(!ids.has(k.id), `duplicate case id ${k.id}`);
          ids.add(k.id);
          if (only !== undefined && !k.id.startsWith(only)) continue;
          const c = await RawH2.open(loom.port);
          try {
            if (!k.raw) await c.handshake();
            await k.run(c);
            await check(c, k.expect);
          } catch (e) {
            failures.push(`${k.id} (${k.desc}): ${(e as Error).message}`);
          } finally {
            c.close();
          }
        }
        assert.deepEqual(failures, [], `${failures.length} of ${CASES.length} cases failed`);
        // Client protocol errors are counted by listener and code, and never logged as errors.
        const metrics = await (await fetch(loom.admin("/metrics"))).text();
        const codes = only === undefined
          ? ["PROTOCOL_ERROR", "FRAME_SIZE_ERROR", "COMPRESSION_ERROR", "STREAM_CLOSED", "FLOW_CONTROL_ERROR"]
          : [];
        for (const code of codes) {
          assert.ok(
            metricValue(metrics, "loom_http2_protocol_errors_total", { listener: "h2c", code }) > 0,
            `loom_http2_protocol_errors_total{code="${code}"}`,
          );
        }
        const errors = lines.filter((l) => JSON.parse(l).level === "error");
        assert.deepEqual(errors, []);
      },
    );
  } finally {
    setLogOutput(prev);
  }
}, { timeoutMs: 180_000 });

itest(
  "SETTINGS never acknowledged: GOAWAY(SETTINGS_TIMEOUT); keepalive PINGs, an unanswered one closes",
  async () => {
    await withLoom(
      `  - name: h2c
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
    http2: { settings_timeout: 300ms, keepalive_interval: 200ms, keepalive_timeout: 300ms }`,
      async (loom) => {
        // Our SETTINGS unacknowledged.
        const quiet = await RawH2.open(loom.port);
        try {
          await quiet.send(PREFACE, frame(T.SETTINGS, 0, 0));
          const e = await quiet.until((e) => typeof e !== "string" && e.type === T.GOAWAY, 3000);
          assert.ok(typeof e !== "string" && e.type === T.GOAWAY, describe(e));
          assert.equal(word(e.payload, 4), E.SETTINGS_TIMEOUT);
          assert.ok(await quiet.closedWithin());
        } finally {
          quiet.close();
        }
        // A client that answers keepalive PINGs stays connected through several intervals.
        const live = await RawH2.open(loom.port);
        try {
          await live.handshake();
          let pings = 0;
          const until = Date.now() + 2000;
          while (Date.now() < until) {
            const e: Event = await live.next(until - Date.now());
            if (e === "timeout") break;
            assert.ok(e !== "closed" && e.type !== T.GOAWAY, `closed while answering PINGs: ${describe(e)}`);
            if (e.type === T.PING && e.flags === 0) {
              pings++;
              await live.send(frame(T.PING, Flag.ACK, 0, e.payload));
            }
          }
          assert.ok(pings >= 2, `keepalive PINGs seen: ${pings}`);
          assert.equal((await get(live, 1, "/size/3")).status, "200");
        } finally {
          live.close();
        }
        // One that does not answer is closed.
        const dead = await RawH2.open(loom.port);
        try {
          await dead.handshake();
          const e = await dead.until(
            (e) => typeof e !== "string" && e.type === T.PING && e.flags === 0,
            2000,
          );
          assert.ok(typeof e !== "string", "a keepalive PING");
          assert.ok(await dead.closedWithin(3000), `not closed: ${dead.seen.map(describe).join(", ")}`);
        } finally {
          dead.close();
        }
      },
    );
  },
);

// ------------------------------------------------------------------ HTTP/2 or HTTP/1.1 on cleartext ports

/** Writes `parts` one write each (pausing between), then reads to EOF. */
async function exchange(port: number, parts: Uint8Array[], pauseMs = 5): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  try {
    for (const p of parts) {
      await conn.write(p);
      if (parts.length > 1) await new Promise((r) => setTimeout(r, pauseMs));
    }
    const chunks: number[] = [];
    const buf = new Uint8Array(16384);
    const timer = setTimeout(() => conn.close(), 5000);
    try {
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        chunks.push(...buf.subarray(0, n));
      }
    } catch { /* closed by the timer */ }
    clearTimeout(timer);
    return new Uint8Array(chunks);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Bytes split into pieces of `size`. */
function pieces(b: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

itest(
  "h2c and grpc ports: HTTP/2 only on the exact preface, HTTP/1.1 otherwise, however the bytes arrive",
  async () => {
    const grpcPort = freePort();
    await withLoom(
      `  - name: h2c
    address: "127.0.0.1:\${PORT}"
    protocol: h2c
  - name: grpc
    address: "127.0.0.1:${grpcPort}"
    protocol: grpc`,
      async (loom) => {
        const request = enc.encode("GET /size/4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        for (const port of [loom.port, grpcPort]) {
          // HTTP/1.1 in one write (as curl sends it): longer than the preface, first bytes unlike it.
          let text = dec.decode(await exchange(port, [request]));
          assert.match(text, /^HTTP\/1\.1 200 /, `one write, port ${port}`);
          assert.match(text, /\r\n\r\nxxxx$/);
          // In many small writes, one and three bytes at a time.
          for (const size of [1, 3]) {
            text = dec.decode(await exchange(port, pieces(request, size), 1));
            assert.match(text, /^HTTP\/1\.1 200 /, `${size}-byte writes, port ${port}`);
          }
          // A request line starting like the preface's ("PRI ..." as an HTTP/1.1 method) is HTTP/1.1 too.
          text = dec.decode(
            await exchange(port, [enc.encode("PRI /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")]),
          );
          assert.match(text, /^HTTP\/1\.1 /, `PRI as an HTTP/1.1 method, port ${port}`);

          // The preface split over several writes, then a request: HTTP/2.
          const c = await RawH2.open(port);
          try {
            for (const p of pieces(PREFACE, 5)) {
              await c.send(p);
              await new Promise((r) => setTimeout(r, 5));
            }
            await c.send(frame(T.SETTINGS, 0, 0), c.headers(1, req("GET", "/size/4"), { end: true }));
            const r = await c.response(1);
            assert.equal(r.status, "200");
            assert.equal(dec.decode(r.body), "xxxx");
          } finally {
            c.close();
          }

          // A preface broken after its request line: GOAWAY(PROTOCOL_ERROR), then the close.
          for (const size of [64, 4]) {
            const b = await RawH2.open(port);
            try {
              for (const p of pieces(enc.encode("PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n"), size)) await b.send(p);
              const e = await b.until((e) => typeof e !== "string" && e.type === T.GOAWAY);
              assert.ok(typeof e !== "string" && e.type === T.GOAWAY, describe(e));
              assert.equal(word(e.payload, 4), E.PROTOCOL_ERROR);
              assert.ok(await b.closedWithin());
            } finally {
              b.close();
            }
          }
        }
      },
    );
  },
);
