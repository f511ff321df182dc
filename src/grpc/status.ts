/**
 * The grpc-status a gRPC or gRPC-Web request ended with, as the client saw
 * it: recorded on its way out (whoever produced it) for the access log and
 * the metrics, which take it as a bounded label.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { HeaderList } from "../core/headers.ts";
import type { ResponseWriter } from "../core/body.ts";
import { trailerFrameStatus } from "./web.ts";

/** Key in `ctx.vars` of the grpc-status the client was sent (see watchGrpcStatus). */
export const GRPC_STATUS_VAR = "loom.grpc_status";

/**
 * The grpc-status a gRPC request ended with, as a bounded label: "0".."16",
 * "other" for a non-standard value, "none" when none reached the client (a
 * reset stream, a client that went away).
 */
export function grpcStatusLabel(ctx: RequestContext): string {
  const v = ctx.vars.get(GRPC_STATUS_VAR) as string | undefined;
  if (v === undefined) return "none";
  const n = Number(v);
  return v !== "" && Number.isInteger(n) && n >= 0 && n <= 16 ? String(n) : "other";
}

/**
 * Sees the grpc-status on its way to the client, whoever produced it: the
 * upstream (trailers, or the head of a trailers-only answer), the gateway
 * (respondGrpcError) or a plugin. gRPC-Web carries it in the last body
 * frame (base64 for -text), which h2_forward writes in one piece.
 */
class GrpcStatusWriter implements ResponseWriter {
  constructor(private inner: ResponseWriter, private ctx: RequestContext) {}

  get headSent(): boolean {
    return this.inner.headSent;
  }

  writeHead(status: number, headers: HeaderList, bodyLength: number, reason?: string): void {
    const s = headers.get("grpc-status");
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
    this.inner.writeHead(status, headers, bodyLength, reason);
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.ctx.grpc >= 2 && chunk.length < 16 * 1024) this.scanWeb(chunk);
    return this.inner.write(chunk);
  }

  end(trailers?: HeaderList | null): Promise<void> {
    const s = trailers?.get("grpc-status");
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
    return this.inner.end(trailers);
  }

  abort(): void {
    this.inner.abort();
  }

  private scanWeb(chunk: Uint8Array): void {
    let b = chunk;
    let s: string | undefined;
    if (this.ctx.grpc === 3) {
      // -text: the frame follows up to 2 bytes of the previous message in the same base64 run.
      const last = chunk[chunk.length - 1];
      if (last !== 61 /* = */ && chunk.length % 4 !== 0) return;
      try {
        b = Uint8Array.from(atob(String.fromCharCode(...chunk)), (c) => c.charCodeAt(0));
      } catch {
        return;
      }
      for (let o = 0; o < 3 && s === undefined; o++) s = trailerFrameStatus(b, o);
    } else s = trailerFrameStatus(b, 0);
    if (s !== undefined) this.ctx.vars.set(GRPC_STATUS_VAR, s);
  }
}

/** Wraps `ctx.res` of a gRPC / gRPC-Web request so the grpc-status sent is recorded (logs, metrics). */
export function watchGrpcStatus(ctx: RequestContext): void {
  ctx.res = new GrpcStatusWriter(ctx.res, ctx);
}
