/**
 * The writer that runs the `response` and `response_body` phases: it sits
 * between whoever answers (the proxy, a plugin, a local reply) and the
 * engine's writer, only on routes whose middleware hook those phases.
 *
 * @module
 */
import type { ResponseWriter } from "../core/body.ts";
import type { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import type { BodyFilter, PhaseHooks, ResponseHead } from "../core/middleware.ts";

/** Runs response hooks on the head and body filters on each chunk, then writes to `inner`. */
export class PhasedWriter implements ResponseWriter {
  private filters: BodyFilter[] | null = null;

  constructor(
    private readonly inner: ResponseWriter,
    private readonly ctx: RequestContext,
    private readonly hooks: PhaseHooks,
  ) {}

  get headSent(): boolean {
    return this.inner.headSent;
  }

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    const head: ResponseHead = { status, headers, bodyLength };
    const { response, responseBody } = this.hooks;
    if (response !== null) { for (let i = 0; i < response.length; i++) response[i](this.ctx, head); }
    if (responseBody !== null) {
      for (let i = 0; i < responseBody.length; i++) {
        const f = responseBody[i](this.ctx, head);
        if (f !== null) (this.filters ??= []).push(f);
      }
    }
    this.inner.writeHead(
      head.status,
      head.headers,
      head.bodyLength,
      head.status === status ? reason : undefined,
    );
  }

  async write(chunk: Uint8Array): Promise<void> {
    const fs = this.filters;
    if (fs === null) return this.inner.write(chunk);
    let c = chunk;
    for (let i = 0; i < fs.length && c.length > 0; i++) c = await fs[i].push(c);
    if (c.length > 0) await this.inner.write(c);
  }

  async end(trailers?: HeaderList | null): Promise<void> {
    const fs = this.filters;
    if (fs !== null) {
      // Each filter's tail goes through the filters after it.
      for (let i = 0; i < fs.length; i++) {
        let c = await fs[i].flush();
        for (let j = i + 1; j < fs.length && c.length > 0; j++) c = await fs[j].push(c);
        if (c.length > 0) await this.inner.write(c);
      }
    }
    return this.inner.end(trailers);
  }

  abort(): void {
    const fs = this.filters;
    if (fs !== null) { for (let i = 0; i < fs.length; i++) fs[i].abort?.(); }
    this.inner.abort();
  }
}
