/**
 * One request through a route's plugin chain (ChainRun): its streams, the
 * header maps and body windows plugins see, and the driver that calls a
 * callback on every stream in chain order, fails open or closed per plugin,
 * waits while a plugin paused the request, and tears the streams down
 * (on_done, on_log, on_delete).
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import type { ResponseWriter } from "../core/body.ts";
import { HeaderList } from "../core/headers.ts";
import { respond, respondError } from "../core/respond.ts";
import { MapType } from "./abi.ts";
import { StaleVM } from "./errors.ts";
import { headerListView, type MapView } from "./header_maps.ts";
import type { Plugin, PluginChain } from "./plugin.ts";
import { requestProperty, type RunState } from "./properties.ts";
import { Stop, type Stream } from "./stream.ts";
import type { Callback, LocalResponse } from "./vm.ts";

/** One request through a chain. */
export class ChainRun implements RunState {
  streams: Stream[] = [];
  /** The client's response writer, before response-side plugins wrap it. */
  readonly clientRes: ResponseWriter;
  /** The window the current body callback sees, request and response (by BufferType); null outside one. */
  readonly bodies: [Uint8Array | null, Uint8Array | null] = [null, null];
  /** The request target, as plugins rewrote it (`:path`). */
  target: string;
  /** Plugins changed request headers or :path before the upstream (or called proxy_clear_route_cache). */
  routeCleared = false;
  resStatus = 0;
  resHeaders: HeaderList | null = null;
  resTrailers: HeaderList | null = null;
  private reqView: MapView | null = null;
  private resView: MapView | null = null;

  constructor(readonly ctx: RequestContext, readonly chain: PluginChain, readonly pauseTimeout: number) {
    this.target = ctx.target;
    this.clientRes = ctx.res;
  }

  /** Header map `type` of this request, pseudo headers included; null when it has none (yet). */
  map(type: number): MapView | null {
    const ctx = this.ctx;
    if (type === MapType.REQUEST_HEADERS) {
      return this.reqView ??= this.clearsRoute(headerListView(ctx.headers, {
        get: (k) =>
          k === ":method"
            ? ctx.method
            : k === ":path"
            ? this.target
            : k === ":authority"
            ? ctx.authority
            : k === ":scheme"
            ? ctx.scheme
            : undefined,
        set: (k, v) => {
          if (k === ":path") this.target = v;
          else if (k === ":authority") ctx.authority = v;
          else if (k === ":method") ctx.method = v;
        },
        list: () => [[":authority", ctx.authority], [":path", this.target], [":method", ctx.method], [
          ":scheme",
          ctx.scheme,
        ]],
      }));
    }
    if (type === MapType.RESPONSE_HEADERS && this.resHeaders !== null) {
      return this.resView ??= headerListView(this.resHeaders, {
        get: (k) => k === ":status" ? String(this.resStatus) : undefined,
        set: (k, v) => {
          if (k === ":status" && /^\d{3}$/.test(v)) this.resStatus = Number(v);
        },
        list: () => [[":status", String(this.resStatus)]],
      });
    }
    if (type === MapType.REQUEST_TRAILERS) {
      const t = ctx.body.trailers;
      return t === null ? null : headerListView(t, NO_PSEUDO);
    }
    if (type === MapType.RESPONSE_TRAILERS && this.resTrailers !== null) {
      return headerListView(this.resTrailers, NO_PSEUDO);
    }
    return null;
  }

  property(key: string): Uint8Array | null | undefined {
    return requestProperty(this.ctx, this, key);
  }

  /** The request header map, whose edits clear the route (as Envoy's do): routing runs again. */
  private clearsRoute(v: MapView): MapView {
    const edit = <A extends unknown[]>(f: (...a: A) => void) => (...a: A) => {
      this.routeCleared = true;
      f(...a);
    };
    return {
      ...v,
      add: edit(v.add),
      replace: edit(v.replace),
      remove: edit(v.remove),
      setAll: edit(v.setAll),
    };
  }

  /**
   * Calls `cb` on every live stream in chain order. Returns after every
   * plugin continued; throws Stop when the request must end here.
   */
  async phase(
    cb: Callback,
    phase: string,
    want: (p: Plugin) => boolean,
    a: number,
    b: number,
  ): Promise<void> {
    for (const s of this.streams) {
      if (s.dead || !want(s.plugin)) continue;
      let action = this.invoke(s, cb, phase, a, b);
      if (typeof action !== "number") action = await action;
      if (action === -1) continue; // failed open
      await this.afterAction(s, action);
    }
  }

  /**
   * One callback; -1 = the plugin failed and is skipped (fail_open). A
   * Promise in timeslice mode (inline callers test `typeof` to skip an await).
   */
  invoke(s: Stream, cb: Callback, phase: string, a: number, b: number): number | Promise<number> {
    s.resumedEarly = false;
    const t0 = performance.now();
    let action: number | Promise<number>;
    try {
      action = s.vm.call(cb, s.id, s.id, a, b);
    } catch (e) {
      this.observe(s, phase, t0, e);
      return this.callFailed(s, e, cb, phase, a, b);
    }
    if (typeof action !== "number") {
      return action.then((r) => {
        this.observe(s, phase, t0, null);
        s.fresh = false;
        return s.failure !== null ? this.failed(s) : r;
      }, (e) => {
        this.observe(s, phase, t0, e);
        return this.callFailed(s, e, cb, phase, a, b);
      });
    }
    this.observe(s, phase, t0, null);
    s.fresh = false;
    if (s.failure !== null) return this.failed(s);
    return action;
  }

  /**
   * Timeslice: on_context_create then on_request_headers in one JSPI call
   * (loom:start); the caller made sure no other plugin runs in between.
   * Returns as {@link invoke} does.
   */
  start(s: Stream, a: number, b: number): number | Promise<number> {
    s.resumedEarly = false;
    const t0 = performance.now();
    let action: number | Promise<number>;
    try {
      action = s.vm.call("loom:start", s.id, s.id, s.vm.rootFor(s.plugin), a, b);
    } catch (e) {
      return this.startFailed(s, e, t0, a, b);
    }
    if (typeof action !== "number") {
      return action.then((r) => this.started(s, t0, r), (e) => this.startFailed(s, e, t0, a, b));
    }
    return this.started(s, t0, action);
  }

  private started(s: Stream, t0: number, r: number): number {
    this.observe(s, "on_request_headers", t0, null);
    s.fresh = false;
    return s.failure !== null ? this.failed(s) : r;
  }

  private startFailed(s: Stream, e: unknown, t0: number, a: number, b: number): number | Promise<number> {
    if (e instanceof StaleVM) {
      // Nothing ran: create the context on another VM, then on_request_headers alone.
      return s.rebind().then((ok) => {
        if (ok) return this.invoke(s, "proxy_on_request_headers", "on_request_headers", a, b);
        s.failure ??= e;
        return this.failed(s);
      });
    }
    this.observe(s, "on_request_headers", t0, e);
    s.failure ??= e instanceof Error ? e : new Error(String(e));
    return this.failed(s);
  }

  private callFailed(
    s: Stream,
    e: unknown,
    cb: Callback,
    phase: string,
    a: number,
    b: number,
  ): number | Promise<number> {
    // Each retry follows another VM failure: bounded by the plugin's crash-loop cap (getVM null).
    if (e instanceof StaleVM && s.fresh) {
      return s.rebind().then((ok) =>
        ok ? this.invoke(s, cb, phase, a, b) : this.callFailed(s, e, cb, phase, a, b)
      );
    }
    s.failure ??= e instanceof Error ? e : new Error(String(e));
    return this.failed(s);
  }

  private failed(s: Stream): number {
    s.dead = true;
    if (s.plugin.cfg.failure_policy === "fail_open") return -1;
    throw new Stop("fail");
  }

  /** A callback's duration metric, and its span when the request is traced (`error`: it threw). */
  private observe(s: Stream, phase: string, t0: number, error: unknown): void {
    const end = performance.now();
    s.plugin.observe(phase, (end - t0) / 1000);
    const tr = this.ctx.trace;
    if (tr === null) return;
    const failure = error == null ? s.failure : error instanceof Error ? error : new Error(String(error));
    tr.pluginCallback(s.plugin.pluginName, phase, t0, end, failure);
  }

  /** Acts on a callback's result: stops the request, or waits while the plugin paused it. */
  async afterAction(s: Stream, action: number): Promise<void> {
    if (s.local !== null) throw new Stop("local");
    if (s.reset) throw new Stop("reset");
    if (action === 0) return;
    if (s.resumedEarly) {
      s.resumedEarly = false;
      return;
    }
    // Paused: wait for continue_stream, a local response, close_stream, a VM failure
    // or the client leaving (then the request ends here and is never forwarded).
    const ctx = this.ctx;
    if (ctx.aborted) throw new Stop("reset");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const prevAbort = ctx.onAbort;
    try {
      await new Promise<void>((resolve, reject) => {
        s.paused = { resolve, reject };
        timer = setTimeout(() => reject(new Stop("fail")), this.pauseTimeout);
        ctx.onAbort = () => {
          s.paused?.reject(new Stop("reset"));
          prevAbort?.();
        };
      });
    } catch (e) {
      if (e instanceof Stop && e.kind === "fail" && s.failure === null) {
        s.failure = new Error("plugin paused the request and never resumed it");
      }
      if (e instanceof Stop && e.kind === "fail" && s.plugin.cfg.failure_policy === "fail_open") {
        s.dead = true;
        return;
      }
      throw e;
    } finally {
      clearTimeout(timer);
      s.paused = null;
      if (!ctx.aborted) ctx.onAbort = prevAbort;
    }
  }

  /** The local response of the stream that sent one, if any. */
  localResponse(): LocalResponse | null {
    for (const s of this.streams) if (s.local !== null) return s.local;
    return null;
  }

  /** on_done, on_log, on_delete for every stream; a Promise when a timeslice VM ran them. */
  finish(): void | Promise<void> {
    let wait: Promise<void>[] | null = null;
    for (const s of this.streams) {
      const vm = s.vm;
      if (vm.failed !== null) {
        vm.streams.delete(s.id);
        continue;
      }
      if (vm.sliced) {
        const w = finishSliced(s);
        if (w !== undefined) (wait ??= []).push(w);
      } else {
        try {
          vm.callPlain("proxy_on_done", s.id, s.id);
          vm.callPlain("proxy_on_log", s.id, s.id);
          vm.callPlain("proxy_on_delete", s.id, s.id);
        } catch { /* recorded on the plugin */ }
        vm.streams.delete(s.id);
      }
    }
    if (wait !== null) return Promise.all(wait).then(() => {});
  }
}

/** on_done, on_log, on_delete on a timeslice VM: one JSPI call (loom:finish) when the module has it. */
function finishSliced(s: Stream): void | Promise<void> {
  const vm = s.vm;
  if (!vm.hasBatch("loom:finish")) return finishEach(s);
  let r: number | Promise<number> = 0;
  try {
    r = vm.call("loom:finish", s.id, s.id);
  } catch { /* recorded on the plugin */ }
  if (r instanceof Promise) {
    const id = s.id;
    return r.then(() => void vm.streams.delete(id), () => void vm.streams.delete(id));
  }
  vm.streams.delete(s.id);
}

async function finishEach(s: Stream): Promise<void> {
  const vm = s.vm;
  try {
    await vm.call("proxy_on_done", s.id, s.id);
    await vm.call("proxy_on_log", s.id, s.id);
    await vm.call("proxy_on_delete", s.id, s.id);
  } catch { /* recorded on the plugin */ }
  vm.streams.delete(s.id);
}

const NO_PSEUDO = { get: () => undefined, set: () => {}, list: (): [string, string][] => [] };

/** Answers the client for a request a plugin ended (local response, reset, failure, body too large). */
export async function stopWith(run: ChainRun, e: Stop): Promise<void> {
  const ctx = run.ctx;
  if (e.kind === "local") {
    const l = run.localResponse()!;
    const h = new HeaderList();
    for (const [k, v] of l.headers) h.append(k, v);
    if (!h.has("content-type") && l.body.length > 0) h.append("content-type", "text/plain");
    if (ctx.res.headSent) ctx.res.abort();
    else await respond(ctx, l.status || 500, h, l.body);
  } else if (e.kind === "reset") {
    ctx.res.abort();
  } else if (e.kind === "too_large") {
    await respondError(ctx, 413, "request body too large for plugin buffering", [["connection", "close"]]);
  } else {
    await respondError(ctx, 500, "plugin failed");
  }
}
