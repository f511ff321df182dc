/**
 * The request body through the on_request_body plugins, between the client
 * and the upstream: decided before the upstream is contacted whether it
 * goes with an exact length or streams, and how a plugin that ends the
 * request mid-upload is answered.
 *
 * @module
 */
import { type BodyReader, bytesBody, type ResponseWriter } from "../core/body.ts";
import type { HeaderList } from "../core/headers.ts";
import { passChunk, REQUEST_BODY } from "./body_window.ts";
import { type ChainRun, stopWith } from "./chain.ts";
import { Stop, type Stream } from "./stream.ts";

const EMPTY = new Uint8Array(0);

/** Where the proxy's writes go once a plugin ended a request mid-upload (the client already got its answer). */
const SINK: ResponseWriter = {
  headSent: true,
  writeHead: () => {},
  write: () => Promise.resolve(),
  end: () => Promise.resolve(),
  abort: () => {},
};

/**
 * Streams the request body through the on_request_body plugins per client
 * chunk (body_window.ts); what they let through goes to the upstream. Client
 * trailers go to `on_request_trailers`.
 */
class RequestBodyPump {
  readonly src: BodyReader;
  readonly streams: Stream[];
  private seen = 0;
  /** The end_of_stream (or trailers) callbacks ran. */
  ended = false;
  private lastChunk: Uint8Array = EMPTY;

  constructor(readonly run: ChainRun) {
    this.src = run.ctx.body;
    this.streams = run.streams.filter((s) => !s.dead && s.plugin.wantsRequestBody);
  }

  /** The next bytes the plugins let through (valid until the next call); null at the end. */
  async next(): Promise<Uint8Array | null> {
    const len = this.src.length;
    while (!this.ended) {
      const chunk = await this.src.read();
      let eos: boolean;
      let trailers: HeaderList | null = null;
      if (chunk === null) {
        const t = this.src.trailers;
        eos = t === null || t.size === 0;
        if (!eos) trailers = t;
      } else {
        this.lastChunk = chunk;
        if (chunk.length === 0) continue;
        this.seen += chunk.length;
        // A known length tells the last chunk, as the downstream codec's end_stream does in Envoy.
        eos = len >= 0 && this.seen >= len;
      }
      const out = await passChunk(this.run, this.streams, REQUEST_BODY, chunk ?? EMPTY, eos, trailers, len);
      if (eos || trailers !== null) this.ended = true;
      if (out.length > 0) return out;
    }
    // Ended by the length: let the reader see its end too.
    while ((await this.src.read()) !== null) { /* nothing past Content-Length */ }
    return null;
  }

  /** Whether `data` lies in the reader's (reused) memory. */
  fromReader(data: Uint8Array): boolean {
    return data.length > 0 && data.buffer === this.lastChunk.buffer;
  }

  /** A plugin ended the request while the upstream already had part of the body. */
  async stopMidUpload(e: Stop): Promise<void> {
    const ctx = this.run.ctx;
    ctx.res = this.run.clientRes;
    if (ctx.res.headSent) ctx.res.abort();
    else await stopWith(this.run, e);
    // The proxy sees the upload fail next: its error reply must not reach the client.
    ctx.res = SINK;
  }
}

/**
 * Starts the request body through the body plugins before the upstream is
 * contacted: when they finish the whole body before any byte may leave, it
 * goes upstream with its exact (possibly new) length; otherwise it streams
 * (chunked on HTTP/1.1), since later chunks may still be resized.
 */
export async function startRequestBody(run: ChainRun): Promise<void> {
  const pump = new RequestBodyPump(run);
  if (pump.streams.length === 0) return; // nothing to run: the body streams past untouched
  const src = pump.src;
  let first = await pump.next();
  if (pump.ended) {
    let data = first ?? EMPTY;
    // Still the reader's memory (every plugin continued untouched): copied before the reader moves on.
    if (pump.fromReader(data)) data = data.slice();
    await pump.next(); // lets the reader see its end
    run.ctx.body = { ...bytesBody(data), trailers: src.trailers };
    return;
  }
  run.ctx.body = {
    length: -1,
    get trailers() {
      return src.trailers;
    },
    read: async () => {
      if (first !== null) {
        const d = first;
        first = null;
        return d;
      }
      try {
        return await pump.next();
      } catch (e) {
        if (!(e instanceof Stop)) throw e;
        await pump.stopMidUpload(e);
        throw new Error("request ended by a plugin");
      }
    },
  };
}
