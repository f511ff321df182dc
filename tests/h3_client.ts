/**
 * A minimal HTTP/3 test client on Deno.connectQuic (no Debian tool needed), a GET field list, and the
 * pieces of an http3 listener for a test config ({@linkcode h3Listener}, {@linkcode withH3Loom}).
 */
import { concat } from "../src/net/bytes.ts";
import { freePort, startLoom, type TestLoom } from "./helpers.ts";
import { TestCa } from "./tls_util.ts";
import { encodeFrame, encodeSettings, FrameType, StreamReader, StreamType } from "../src/http3/frame.ts";
import { decodeFieldSection, encodeFieldSection } from "../src/http3/qpack.ts";
import { encodeVarint } from "../src/http3/varint.ts";

/**
 * A minimal HTTP/3 client on Deno.connectQuic for what gtlsclient cannot send
 * (custom, oversized, malformed or dynamic-table header sections).
 */
export async function h3Client(port: number, caPem: string, serverName = "localhost") {
  const conn = await Deno.connectQuic({
    hostname: "127.0.0.1",
    port,
    serverName,
    alpnProtocols: ["h3"],
    caCerts: [caPem],
  });
  // The control stream must stay open for the connection's life: keep its writer referenced, since a
  // collected QUIC send stream is finished (the server then closes with H3_CLOSED_CRITICAL_STREAM).
  const control = (await conn.createUnidirectionalStream()).getWriter();
  await control.write(concat([encodeVarint(StreamType.CONTROL), encodeSettings(new Map())]));
  /** The server's control stream frames, as they arrive. */
  const serverFrames: { type: number; payload: Uint8Array }[] = [];
  (async () => {
    for await (const uni of conn.incomingUnidirectionalStreams) {
      const rd = uni.getReader();
      const sr = new StreamReader(async () => {
        const x = await rd.read();
        return x.done ? null : x.value;
      });
      if (await sr.varint() !== StreamType.CONTROL) continue;
      for (;;) {
        const h = await sr.frameHeader();
        if (h === null) break;
        serverFrames.push({ type: h.type, payload: (await sr.exact(h.length)).slice() });
      }
    }
  })().catch(() => {});
  return {
    conn,
    control,
    serverFrames,
    /**
     * Sends one request (a HEADERS frame from `fields`, or `raw` bytes); returns the response head and body
     * (text and bytes). `open`: the request stream is left unfinished (an upload that stalls).
     */
    async request(
      fields: string[],
      raw?: Uint8Array,
      open = false,
    ): Promise<{ fields: string[]; body: string; bytes: Uint8Array }> {
      const s = await conn.createBidirectionalStream();
      const w = s.writable.getWriter();
      await w.write(raw ?? encodeFrame(FrameType.HEADERS, encodeFieldSection(fields)));
      if (!open) await w.close();
      const rd = s.readable.getReader();
      const sr = new StreamReader(async () => {
        const x = await rd.read();
        return x.done ? null : x.value;
      });
      const h = await sr.frameHeader();
      if (h === null || h.type !== FrameType.HEADERS) throw new Error("no response HEADERS");
      const head = decodeFieldSection(await sr.exact(h.length)).fields;
      const parts: Uint8Array[] = [];
      for (;;) {
        const d = await sr.frameHeader();
        if (d === null) break;
        parts.push((await sr.exact(d.length)).slice());
      }
      const bytes = concat(parts);
      return { fields: head, body: new TextDecoder().decode(bytes), bytes };
    },
  };
}

/** The field list of a `method` request for `path` on authority localhost, plus `extra` name/value pairs. */
const fieldsOf = (method: string, path: string, extra: string[]) => [
  ":method",
  method,
  ":scheme",
  "https",
  ":authority",
  "localhost",
  ":path",
  path,
  ...extra,
];

/** The field list of a GET for `path` on authority localhost, plus `extra` name/value pairs. */
export const GET = (path: string, extra: string[] = []) => fieldsOf("GET", path, extra);

/** The field list of a POST for `path` on authority localhost, plus `extra` name/value pairs. */
export const POST = (path: string, extra: string[] = []) => fieldsOf("POST", path, extra);

/**
 * An http3 listener for a test config: a CA and a localhost certificate (openssl) in a temp folder, a free
 * port, the listener's line of a `listeners:` list, a client that trusts the CA, and `remove` for the folder.
 */
export async function h3Listener(name = "h3") {
  const dir = Deno.makeTempDirSync();
  const ca = await TestCa.create(dir);
  const cert = await ca.leaf("server", "localhost", ["DNS:localhost"]);
  const port = freePort();
  return {
    port,
    yaml: `  - { name: ${name}, address: "127.0.0.1:${port}", protocol: http3, ` +
      `tls: { cert_file: "${cert.cert}", key_file: "${cert.key}" } }`,
    client: () => h3Client(port, Deno.readTextFileSync(ca.cert)),
    remove: () => Deno.removeSync(dir, { recursive: true }),
  };
}

/** The client {@linkcode h3Client} returns. */
export type H3Client = Awaited<ReturnType<typeof h3Client>>;

/**
 * Runs `fn` with a Loom whose only listener is HTTP/3 (the config: that listener, then `rest`: upstreams,
 * routes, ...) and a client on it; client, Loom and certificates are gone after.
 */
export async function withH3Loom(
  rest: string,
  fn: (c: H3Client, loom: TestLoom) => Promise<void>,
): Promise<void> {
  const h3 = await h3Listener();
  try {
    const loom = await startLoom(`listeners:\n${h3.yaml}\n${rest}`);
    try {
      const c = await h3.client();
      try {
        await fn(c, loom);
      } finally {
        c.conn.close();
      }
    } finally {
      await loom.close();
    }
  } finally {
    h3.remove();
  }
}
