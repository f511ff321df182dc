/**
 * A body through the body plugins of one direction (request: on_request_body,
 * response: on_response_body), chunk by chunk, as Envoy does: each plugin is
 * called with its window (data it held back plus the new chunk) and
 * `end_of_stream`; Continue passes the window (possibly rewritten) on to the
 * next plugin, Pause before the end (StopIterationAndBuffer) keeps it and
 * calls again with the cumulative size, Pause at the end waits for the
 * plugin to resume. Trailers go to on_*_trailers (body callbacks then never
 * see `end_of_stream`). Nothing is copied unless a plugin holds data back.
 *
 * @module
 */
import type { HeaderList } from "../core/headers.ts";
import { BufferType } from "./abi.ts";
import type { ChainRun } from "./chain.ts";
import { Stop, type Stream } from "./stream.ts";
import type { Callback } from "./vm.ts";

const EMPTY = new Uint8Array(0);
/** Largest body buffered for plugins (bytes). */
const MAX_BUFFERED_BODY = 16 * 1024 * 1024;

/** What differs between the two directions a body flows in. */
export interface BodyDirection {
  /** Its buffer type: the index into ChainRun.bodies and Stream.held. */
  readonly type: typeof BufferType.HTTP_REQUEST_BODY | typeof BufferType.HTTP_RESPONSE_BODY;
  readonly body: Callback;
  readonly bodyPhase: string;
  readonly trailers: Callback;
  readonly trailersPhase: string;
  /** What is thrown when a plugin holds more than MAX_BUFFERED_BODY. */
  tooLarge(): Stop | Error;
}

/** The request body (RequestBodyPump). */
export const REQUEST_BODY: BodyDirection = {
  type: BufferType.HTTP_REQUEST_BODY,
  body: "proxy_on_request_body",
  bodyPhase: "on_request_body",
  trailers: "proxy_on_request_trailers",
  trailersPhase: "on_request_trailers",
  // As Envoy's buffer limit: a plugin holding more than this gets the request a 413.
  tooLarge: () => new Stop("too_large"),
};

/** The response body (PluginResponseWriter): too large fails the response, whose head may be out. */
export const RESPONSE_BODY: BodyDirection = {
  type: BufferType.HTTP_RESPONSE_BODY,
  body: "proxy_on_response_body",
  bodyPhase: "on_response_body",
  trailers: "proxy_on_response_trailers",
  trailersPhase: "on_response_trailers",
  tooLarge: () => new Error("response body too large for plugin buffering"),
};

/**
 * Runs one chunk through `streams` (the live body plugins, in chain order)
 * and returns what they let through. `eos`: the chunk ends the body;
 * `trailers` non-null: the body ended with trailers (each plugin gets
 * on_*_trailers, then releases what it held back). `total` is the body's
 * length when known, else -1. Throws Stop when the request must end here.
 */
export async function passChunk(
  run: ChainRun,
  streams: readonly Stream[],
  dir: BodyDirection,
  chunk: Uint8Array,
  eos: boolean,
  trailers: HeaderList | null,
  total: number,
): Promise<Uint8Array> {
  const t = dir.type;
  const bodies = run.bodies;
  let cur = chunk; // what flows on to the next plugin
  for (const s of streams) {
    const window = s.held[t].length === 0 ? cur : append(s.held[t], cur, total);
    s.held[t] = EMPTY;
    if (s.dead) { // failed open earlier: what it held back goes on
      cur = window;
      continue;
    }
    if (window.length > MAX_BUFFERED_BODY) throw dir.tooLarge();
    bodies[t] = window;
    if (window.length > 0 || eos) {
      let action = run.invoke(s, dir.body, dir.bodyPhase, window.length, eos ? 1 : 0);
      if (typeof action !== "number") action = await action;
      if (action === -1) {
        cur = window;
        continue;
      }
      if (s.local !== null) throw new Stop("local");
      if (s.reset) throw new Stop("reset");
      if (action !== 0) {
        if (!eos && trailers === null) {
          // StopIterationAndBuffer: hold the window (copied: the caller reuses chunk's memory).
          s.held[t] = bodies[t] === chunk ? append(EMPTY, chunk, total) : bodies[t]!;
          cur = EMPTY;
          continue;
        }
        if (eos) await run.afterAction(s, action);
      }
    }
    if (trailers !== null) {
      // Request trailers are the body reader's (ChainRun.map); response ones arrive only here.
      if (t === BufferType.HTTP_RESPONSE_BODY) run.resTrailers = trailers;
      let action = run.invoke(s, dir.trailers, dir.trailersPhase, trailers.size, 0);
      if (typeof action !== "number") action = await action;
      if (action !== -1) await run.afterAction(s, action);
    }
    cur = bodies[t]!;
  }
  return cur;
}

/**
 * `a` followed by `b` (a copy: `b` may be a reader's reused buffer), growing
 * `a`'s buffer in place when `a` is a prefix view of it: a plugin buffering a
 * body chunk by chunk costs linear, not quadratic, copying. `total` (the
 * body's length when known, else -1) sizes the first buffer so a body of
 * known length is allocated once.
 */
function append(a: Uint8Array, b: Uint8Array, total: number): Uint8Array {
  const need = a.length + b.length;
  if (a.length > 0 && a.byteOffset === 0 && a.buffer.byteLength >= need) {
    const out = new Uint8Array(a.buffer as ArrayBuffer, 0, need);
    out.set(b, a.length);
    return out;
  }
  const cap = Math.max(need, a.length * 2, Math.min(total, MAX_BUFFERED_BODY + 1));
  const out = new Uint8Array(cap).subarray(0, need);
  if (a.length > 0) out.set(a);
  out.set(b, a.length);
  return out;
}
