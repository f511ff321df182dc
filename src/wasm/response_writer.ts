/**
 * The response through the response-side plugins: a ResponseWriter wrapper
 * between the proxy and the client's writer (filter.ts installs it).
 *
 * @module
 */
import type { ResponseWriter } from "../core/body.ts";
import { HeaderList } from "../core/headers.ts";
import { respond, respondError } from "../core/respond.ts";
import { passChunk, RESPONSE_BODY } from "./body_window.ts";
import type { ChainRun } from "./chain.ts";
import type { Plugin } from "./plugin.ts";
import { Stop, type Stream } from "./stream.ts";

const EMPTY = new Uint8Array(0);

/**
 * Holds the response head back until response-side plugins ran on it (they
 * may pause, edit headers or answer locally), then streams the body through
 * the on_response_body plugins chunk by chunk (body_window.ts), as the
 * reference host does. Upstream trailers go to `on_response_trailers`.
 * Nothing is buffered unless a plugin asks for it.
 */
export class PluginResponseWriter implements ResponseWriter {
  headSent = false;
  private ready: Promise<boolean> | null = null;
  private length = -1;
  /** Live streams whose phase is on_response_body, in chain order; empty = pass-through. */
  private bodyStreams: Stream[] = [];
  /** Body bytes received from the upstream. */
  private seen = 0;
  /** The end_of_stream callbacks ran. */
  private ended = false;
  /** The head went to the client. */
  private innerHead = false;
  /** A local reply / failure replaced or aborted the response. */
  private replaced = false;
  private status = 0;
  private headers: HeaderList | null = null;

  constructor(readonly inner: ResponseWriter, readonly run: ChainRun) {}

  writeHead(status: number, headers: HeaderList, bodyLength: number, _reason?: string): void {
    this.headSent = true;
    this.length = bodyLength;
    this.status = status;
    this.headers = headers;
    this.ready = this.onHead();
    this.ready.catch(() => {});
  }

  /** Runs on_response_headers; false = the response was replaced (local reply / failure). */
  private async onHead(): Promise<boolean> {
    const run = this.run;
    run.resStatus = this.status;
    run.resHeaders = this.headers;
    const respSide = (p: Plugin) => p.wantsResponseHeaders;
    try {
      await run.phase(
        "proxy_on_response_headers",
        "on_response_headers",
        respSide,
        this.headers!.size + 1,
        this.length === 0 ? 1 : 0,
      );
    } catch (e) {
      if (!(e instanceof Stop)) throw e;
      await this.replace(e);
      return false;
    }
    this.bodyStreams = run.streams.filter((s) => !s.dead && s.plugin.wantsResponseBody);
    if (this.bodyStreams.length === 0) this.sendHead(this.length);
    return true;
  }

  private sendHead(length: number): void {
    this.innerHead = true;
    this.inner.writeHead(this.run.resStatus, this.headers!, length);
  }

  private async replace(e: Stop): Promise<void> {
    this.replaced = true;
    const run = this.run;
    const inner = this.inner;
    const ctx = run.ctx;
    ctx.res = inner; // error/local replies go straight to the client
    if (e.kind === "reset" || this.innerHead) {
      // Body bytes already left: the response can only be cut short.
      inner.abort();
      return;
    }
    if (e.kind === "local") {
      const l = run.localResponse()!;
      const h = new HeaderList();
      for (const [k, v] of l.headers) h.append(k, v);
      await respond(ctx, l.status || 500, h, l.body);
    } else await respondError(ctx, 500, "plugin failed");
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (!(await this.ready)) return;
    if (this.bodyStreams.length === 0) return this.inner.write(chunk);
    if (chunk.length === 0 || this.replaced || this.ended) return;
    this.seen += chunk.length;
    // A known length tells the last chunk, as the upstream codec's end_stream does in Envoy.
    await this.push(chunk, this.length >= 0 && this.seen >= this.length, null);
  }

  async end(trailers?: HeaderList | null): Promise<void> {
    if (!(await this.ready)) return;
    if (this.bodyStreams.length === 0) return this.inner.end(trailers);
    if (this.replaced) return;
    if (!this.ended) {
      if (trailers != null && trailers.size > 0) await this.push(EMPTY, false, trailers);
      // No body at all (empty, HEAD, 304): headers already carried end_of_stream.
      else if (this.seen > 0 || this.length < 0) await this.push(EMPTY, true, null);
      if (this.replaced) return;
    }
    if (!this.innerHead) this.sendHead(this.seen === 0 && this.length > 0 ? this.length : 0);
    await this.inner.end(trailers);
  }

  /**
   * Runs one chunk through the body plugins and writes what they let
   * through. `trailers` non-null: the body ended with trailers (each plugin
   * gets on_response_trailers, then releases what it held back).
   */
  private async push(chunk: Uint8Array, eos: boolean, trailers: HeaderList | null): Promise<void> {
    let cur: Uint8Array; // what the plugins let through
    try {
      cur = await passChunk(this.run, this.bodyStreams, RESPONSE_BODY, chunk, eos, trailers, this.length);
    } catch (e) {
      if (!(e instanceof Stop)) throw e;
      await this.replace(e);
      return;
    }
    const final = eos || trailers !== null;
    if (final) this.ended = true;
    if (!this.innerHead) {
      if (cur.length === 0 && !final) return; // everything held back so far
      // Exact length only when the whole body is known before the first byte leaves;
      // otherwise plugins may still resize it: stream it (chunked on HTTP/1.1).
      if (final && trailers === null) {
        this.sendHead(this.seen === 0 && this.length > 0 ? this.length : cur.length);
      } else this.sendHead(-1);
    }
    if (cur.length > 0) await this.inner.write(cur);
  }

  abort(): void {
    this.inner.abort();
  }
}
