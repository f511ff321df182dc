/**
 * Runs a route's plugin chain around one request, driving the Proxy-Wasm
 * stream lifecycle as the reference host does:
 *
 *   on_context_create → on_request_headers → on_request_body* → on_request_trailers
 *   → (upstream) → on_response_headers → on_response_body* → on_done → on_log → on_delete
 *
 * A non-zero action pauses the request until the plugin resumes it
 * (continue_stream, typically from on_http_call_response); a local response
 * ends the stream. Bodies are only buffered for plugins whose phase asks for
 * them (`on_request_body`, `on_response_body`); response-side plugins see the
 * response through a ResponseWriter wrapper that holds the head back until
 * they are done with it.
 *
 * @module
 */
import type { RequestContext } from "../core/context.ts";
import { type BodyReader, bytesBody, type ResponseWriter } from "../core/body.ts";
import { HeaderList } from "../core/headers.ts";
import { respond, respondError } from "../core/respond.ts";
import { BufferType, MapType } from "./abi.ts";
import type { Plugin, PluginChain } from "./plugin.ts";
import { StaleVM } from "./errors.ts";
import { encodePairs, headerListView, type MapView } from "./header_maps.ts";
import type { Callback, LocalResponse, PluginVM, StreamHost } from "./vm.ts";

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** Largest body buffered for plugins (bytes). */
const MAX_BUFFERED_BODY = 16 * 1024 * 1024;

/** Why a request stops early. */
class Stop {
  constructor(readonly kind: "local" | "fail" | "reset" | "too_large") {}
}

function i64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(Math.trunc(n)), true);
  return b;
}

function pairsOf(h: HeaderList): Uint8Array {
  const out: [string, string][] = [];
  for (let i = 0; i < h.keys.length; i++) out.push([h.keys[i], h.values[i]]);
  // Envoy encodes map-valued properties in the pairs format.
  return encodePairs(out);
}

/** One plugin's stream context for one request. */
class Stream implements StreamHost {
  id: number;
  /** Only on_context_create ran: the guest holds nothing else of this stream (it may move VMs). */
  fresh = true;
  dead = false;
  paused: { resolve: () => void; reject: (e: Stop) => void } | null = null;
  local: LocalResponse | null = null;
  reset = false;
  failure: Error | null = null;
  resumedEarly = false;
  props: Map<string, Uint8Array> | null = null;
  /** Request body this plugin held back (StopIterationAndBuffer), not yet passed on. */
  reqBuf: Uint8Array = EMPTY;
  /** Response body this plugin held back (StopIterationAndBuffer), not yet passed on. */
  resBuf: Uint8Array = EMPTY;

  constructor(readonly run: ChainRun, readonly plugin: Plugin, public vm: PluginVM) {
    this.id = vm.newContextId();
    vm.streams.set(this.id, this);
  }

  /**
   * Timeslice: the VM failed in another request's callback while this fresh
   * stream waited for it. Moves to the plugin's next VM (as a request arriving
   * a moment later would have) and creates its context there; false when no
   * VM is available or that fails too.
   */
  async rebind(): Promise<boolean> {
    this.vm.streams.delete(this.id);
    const vm = await this.plugin.getVM();
    this.fresh = false;
    if (vm === null) return false;
    this.vm = vm;
    this.id = vm.newContextId();
    vm.streams.set(this.id, this);
    this.failure = null;
    try {
      await vm.call("proxy_on_context_create", this.id, this.id, vm.rootContextId);
      this.fresh = true;
    } catch (e) {
      if (e instanceof StaleVM) return this.rebind(); // that VM failed too before our turn
      this.failure = e instanceof Error ? e : new Error(String(e));
      return false;
    }
    return this.failure === null;
  }

  map(type: number): MapView | null {
    return this.run.map(type);
  }
  buffer(type: number): Uint8Array | null {
    // Body buffers are exactly this plugin's window (data it held back plus the new chunk).
    if (type === BufferType.HTTP_REQUEST_BODY) return this.run.reqBody;
    if (type === BufferType.HTTP_RESPONSE_BODY) return this.run.resBody;
    return null;
  }
  setBuffer(type: number, data: Uint8Array): boolean {
    const r = this.run;
    if (type === BufferType.HTTP_REQUEST_BODY && r.reqBody !== null) {
      r.reqBody = data;
      return true;
    }
    if (type === BufferType.HTTP_RESPONSE_BODY && r.resBody !== null) {
      r.resBody = data;
      return true;
    }
    return false;
  }
  property(path: string[]): Uint8Array | null | undefined {
    const key = path.join(".");
    const custom = this.props?.get(key);
    if (custom !== undefined) return custom;
    return this.run.property(key);
  }
  setProperty(path: string, value: Uint8Array): void {
    (this.props ??= new Map()).set(path, value);
  }
  localResponse(r: LocalResponse): void {
    this.local = r;
    this.paused?.reject(new Stop("local"));
  }
  resume(_type: number): void {
    const p = this.paused;
    this.paused = null;
    // Resumed inside the very callback that is about to return Pause: do not wait then.
    if (p === null) this.resumedEarly = true;
    else p.resolve();
  }
  close(_type: number): void {
    this.reset = true;
    this.paused?.reject(new Stop("reset"));
  }
  vmFailed(e: Error): void {
    this.failure = e;
    this.paused?.reject(new Stop("fail"));
  }
}

/** One request through a chain. */
class ChainRun {
  streams: Stream[] = [];
  /** The client's response writer, before response-side plugins wrap it. */
  readonly clientRes: ResponseWriter;
  reqBody: Uint8Array | null = null;
  resBody: Uint8Array | null = null;
  target: string;
  resStatus = 0;
  resHeaders: HeaderList | null = null;
  resTrailers: HeaderList | null = null;
  private reqView: MapView | null = null;
  private resView: MapView | null = null;

  constructor(readonly ctx: RequestContext, readonly chain: PluginChain, readonly pauseTimeout: number) {
    this.target = ctx.target;
    this.clientRes = ctx.res;
  }

  map(type: number): MapView | null {
    const ctx = this.ctx;
    if (type === MapType.REQUEST_HEADERS) {
      return this.reqView ??= headerListView(ctx.headers, {
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
      });
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
    const ctx = this.ctx;
    switch (key) {
      case "request.path":
        return enc.encode(this.target);
      case "request.url_path":
        return enc.encode(ctx.path || this.target.split("?")[0]);
      case "request.host":
        return enc.encode(ctx.authority);
      case "request.scheme":
        return enc.encode(ctx.scheme);
      case "request.method":
        return enc.encode(ctx.method);
      case "request.headers":
        return pairsOf(ctx.headers);
      case "request.referer":
        return str(ctx.headers.get("referer"));
      case "request.useragent":
        return str(ctx.headers.get("user-agent"));
      case "request.id":
        return enc.encode(ctx.id);
      case "request.protocol":
        return enc.encode(ctx.protocol);
      case "request.query":
        return enc.encode(ctx.query);
      case "request.time":
        return i64((performance.timeOrigin + ctx.start) * 1e6);
      case "request.duration":
        return i64((performance.now() - ctx.start) * 1e6);
      case "request.size":
        return ctx.body.length >= 0 ? i64(ctx.body.length) : null;
      case "response.code":
        return this.resStatus > 0 ? i64(this.resStatus) : null;
      case "response.code_details":
        return this.resStatus > 0 ? enc.encode("via_upstream") : null;
      case "response.headers":
        return this.resHeaders !== null ? pairsOf(this.resHeaders) : null;
      case "response.size":
        return i64(ctx.bytesOut);
      case "source.address":
        return enc.encode(hostPort(ctx.clientIp, ctx.clientPort));
      case "source.port":
        return i64(ctx.clientPort);
      case "destination.address":
        // Envoy: the downstream connection's local address (the listener side), not the authority.
        return ctx.localAddr !== "" ? enc.encode(hostPort(ctx.localAddr, ctx.localPort)) : null;
      case "destination.port":
        return ctx.localPort > 0 ? i64(ctx.localPort) : null;
      case "connection.mtls":
        return new Uint8Array([ctx.clientCert !== null ? 1 : 0]);
      case "connection.requested_server_name":
        return ctx.scheme === "https" ? enc.encode(ctx.sni) : null;
      case "connection.subject_peer_certificate":
        // As Envoy: a string on TLS connections (empty without a client certificate), else not found.
        return ctx.scheme === "https" ? enc.encode(ctx.clientCert?.subject ?? "") : null;
      case "connection.uri_san_peer_certificate":
        return firstSan(ctx, "URI:");
      case "connection.dns_san_peer_certificate":
        return firstSan(ctx, "DNS:");
      case "upstream.address":
        return ctx.upstreamAddr !== "" ? enc.encode(ctx.upstreamAddr) : null;
      case "upstream.port": {
        const m = /:(\d+)$/.exec(ctx.upstreamAddr);
        return m ? i64(Number(m[1])) : null;
      }
      case "route_name":
      case "xds.route_name":
        return ctx.route !== null ? enc.encode(ctx.route.id) : null;
      case "cluster_name":
      case "xds.cluster_name": {
        const up = (ctx.route as { config?: { upstream?: string } } | null)?.config?.upstream;
        return up !== undefined ? enc.encode(up) : null;
      }
      default:
        return undefined;
    }
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
      s.plugin.observe(phase, (performance.now() - t0) / 1000);
      return this.callFailed(s, e, cb, phase, a, b);
    }
    if (typeof action !== "number") {
      return action.then((r) => {
        s.plugin.observe(phase, (performance.now() - t0) / 1000);
        s.fresh = false;
        return s.failure !== null ? this.failed(s) : r;
      }, (e) => {
        s.plugin.observe(phase, (performance.now() - t0) / 1000);
        return this.callFailed(s, e, cb, phase, a, b);
      });
    }
    s.plugin.observe(phase, (performance.now() - t0) / 1000);
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
      action = s.vm.call("loom:start", s.id, s.id, s.vm.rootContextId, a, b);
    } catch (e) {
      return this.startFailed(s, e, t0, a, b);
    }
    if (typeof action !== "number") {
      return action.then((r) => this.started(s, t0, r), (e) => this.startFailed(s, e, t0, a, b));
    }
    return this.started(s, t0, action);
  }

  private started(s: Stream, t0: number, r: number): number {
    s.plugin.observe("on_request_headers", (performance.now() - t0) / 1000);
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
    s.plugin.observe("on_request_headers", (performance.now() - t0) / 1000);
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

function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Envoy's `*_san_peer_certificate`: the first SAN of that kind; not found when there is none. */
function firstSan(ctx: RequestContext, prefix: string): Uint8Array | null {
  const san = ctx.clientCert?.sans.find((s) => s.startsWith(prefix));
  return san !== undefined ? enc.encode(san.slice(prefix.length)) : null;
}

function str(v: string | undefined): Uint8Array | null {
  return v === undefined ? null : enc.encode(v);
}

const notLogOnly = (p: Plugin) => !p.onlyLog;

/**
 * Runs `chain` around `proceed` (which forwards to the upstream with the
 * possibly rewritten target). Always finishes the response.
 */
export async function runPlugins(
  ctx: RequestContext,
  chain: PluginChain,
  pauseTimeout: number,
  target: string,
  proceed: (target: string) => Promise<void>,
): Promise<void> {
  const run = new ChainRun(ctx, chain, pauseTimeout);
  const originalTarget = ctx.target;
  const noBody = ctx.body.length === 0;
  try {
    const plugins = chain.plugins;
    for (let i = 0; i < plugins.length; i++) {
      const p = plugins[i];
      let vm = p.getVM();
      if (vm instanceof Promise) vm = await vm; // a new VM starting (timeslice)
      if (vm === null) {
        if (p.cfg.failure_policy === "fail_open") continue;
        throw new Stop("fail");
      }
      const s = new Stream(run, p, vm);
      // No other plugin runs between this one's on_context_create and on_request_headers
      // (the last one, after log-only or failed ones): both go in one timeslice call.
      if (
        i === plugins.length - 1 && vm.sliced && notLogOnly(p) && vm.hasBatch("loom:start") &&
        run.streams.every((o) => o.dead || !notLogOnly(o.plugin))
      ) {
        run.streams.push(s);
        let action = run.start(s, ctx.headers.size + 4, noBody ? 1 : 0);
        if (typeof action !== "number") action = await action;
        if (action !== -1) await run.afterAction(s, action);
        return await afterRequestHeaders(run, chain, noBody, originalTarget, target, proceed);
      }
      run.streams.push(s);
      try {
        const r = vm.call("proxy_on_context_create", s.id, s.id, vm.rootContextId);
        if (typeof r !== "number") await r;
      } catch (e) {
        if (e instanceof StaleVM && (await s.rebind())) continue;
        s.failure = s.failure ?? (e instanceof Error ? e : new Error(String(e)));
        s.dead = true;
        if (p.cfg.failure_policy !== "fail_open") throw new Stop("fail");
      }
    }
    await run.phase(
      "proxy_on_request_headers",
      "on_request_headers",
      notLogOnly,
      ctx.headers.size + 4,
      noBody ? 1 : 0,
    );
    await afterRequestHeaders(run, chain, noBody, originalTarget, target, proceed);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    await stopWith(run, e);
  } finally {
    const f = run.finish();
    if (f !== undefined) await f;
  }
}

/** The rest of a request once on_request_headers ran. */
async function afterRequestHeaders(
  run: ChainRun,
  chain: PluginChain,
  noBody: boolean,
  originalTarget: string,
  target: string,
  proceed: (target: string) => Promise<void>,
): Promise<void> {
  const ctx = run.ctx;
  if (chain.requestBody && !noBody) await startRequestBody(run);
  if (chain.responseSide && ctx.upgrade === undefined) ctx.res = new PluginResponseWriter(ctx.res, run);
  await proceed(run.target === originalTarget ? target : run.target);
}

async function stopWith(run: ChainRun, e: Stop): Promise<void> {
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

/** Where the proxy's writes go once a plugin ended a request mid-upload (the client already got its answer). */
const SINK: ResponseWriter = {
  headSent: true,
  writeHead: () => {},
  write: () => Promise.resolve(),
  end: () => Promise.resolve(),
  abort: () => {},
};

/**
 * Streams the request body through the on_request_body plugins as Envoy
 * does: each plugin is called per client chunk with its window (data it held
 * back plus the new chunk) and `end_of_stream`; Continue passes the window
 * (possibly rewritten) on to the next plugin and the upstream, Pause before
 * the end (StopIterationAndBuffer) keeps it and calls again with the
 * cumulative size, Pause at the end waits for the plugin to resume. Client
 * trailers go to `on_request_trailers` (body callbacks then never see
 * `end_of_stream`). Nothing is copied unless a plugin holds data back.
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
    while (!this.ended) {
      const chunk = await this.src.read();
      let out: Uint8Array;
      if (chunk !== null) this.lastChunk = chunk;
      if (chunk === null) {
        const t = this.src.trailers;
        out = await this.push(EMPTY, t === null || t.size === 0, t !== null && t.size > 0 ? t : null);
      } else {
        if (chunk.length === 0) continue;
        this.seen += chunk.length;
        // A known length tells the last chunk, as the downstream codec's end_stream does in Envoy.
        const len = this.src.length;
        out = await this.push(chunk, len >= 0 && this.seen >= len, null);
      }
      if (out.length > 0) return out;
    }
    // Ended by the length: let the reader see its end too.
    while ((await this.src.read()) !== null) { /* nothing past Content-Length */ }
    return null;
  }

  private async push(chunk: Uint8Array, eos: boolean, trailers: HeaderList | null): Promise<Uint8Array> {
    const run = this.run;
    let cur = chunk; // what flows on to the next plugin
    for (const s of this.streams) {
      const window = s.reqBuf.length === 0 ? cur : append(s.reqBuf, cur, this.src.length);
      s.reqBuf = EMPTY;
      if (s.dead) { // failed open earlier: what it held back goes on
        cur = window;
        continue;
      }
      // As Envoy's buffer limit: a plugin holding more than this gets the request a 413.
      if (window.length > MAX_BUFFERED_BODY) throw new Stop("too_large");
      run.reqBody = window;
      if (window.length > 0 || eos) {
        let action = run.invoke(s, "proxy_on_request_body", "on_request_body", window.length, eos ? 1 : 0);
        if (typeof action !== "number") action = await action;
        if (action === -1) {
          cur = window;
          continue;
        }
        if (s.local !== null) throw new Stop("local");
        if (s.reset) throw new Stop("reset");
        if (action !== 0) {
          if (!eos && trailers === null) {
            // StopIterationAndBuffer: hold the window (copied: the reader reuses chunk's memory).
            s.reqBuf = run.reqBody === chunk ? append(EMPTY, chunk, this.src.length) : run.reqBody!;
            cur = EMPTY;
            continue;
          }
          if (eos) await run.afterAction(s, action);
        }
      }
      if (trailers !== null) {
        let action = run.invoke(s, "proxy_on_request_trailers", "on_request_trailers", trailers.size, 0);
        if (typeof action !== "number") action = await action;
        if (action !== -1) await run.afterAction(s, action);
      }
      cur = run.reqBody!;
    }
    if (eos || trailers !== null) this.ended = true;
    return cur;
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
async function startRequestBody(run: ChainRun): Promise<void> {
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

/**
 * Holds the response head back until response-side plugins ran on it (they
 * may pause, edit headers or answer locally), then streams the body through
 * the on_response_body plugins chunk by chunk, as the reference host does:
 * each plugin is called with its window (data it held back plus the new
 * chunk) and `end_of_stream`; Continue passes the window (possibly rewritten)
 * on to the next plugin and the client, Pause before the end
 * (StopIterationAndBuffer) keeps it and calls again with the cumulative size,
 * Pause at the end waits for the plugin to resume. Upstream trailers go to
 * `on_response_trailers`. Nothing is buffered unless a plugin asks for it.
 */
class PluginResponseWriter implements ResponseWriter {
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
    const run = this.run;
    let cur = chunk; // what flows on to the next plugin
    try {
      for (const s of this.bodyStreams) {
        const window = s.resBuf.length === 0 ? cur : append(s.resBuf, cur, this.length);
        s.resBuf = EMPTY;
        if (s.dead) { // failed open earlier: what it held back goes on
          cur = window;
          continue;
        }
        if (window.length > MAX_BUFFERED_BODY) {
          throw new Error("response body too large for plugin buffering");
        }
        run.resBody = window;
        if (window.length > 0 || eos) {
          let action = run.invoke(
            s,
            "proxy_on_response_body",
            "on_response_body",
            window.length,
            eos ? 1 : 0,
          );
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
              s.resBuf = run.resBody === chunk ? chunk.slice() : run.resBody!;
              cur = EMPTY;
              continue;
            }
            if (eos) await run.afterAction(s, action);
          }
        }
        if (trailers !== null) {
          run.resTrailers = trailers;
          let action = run.invoke(
            s,
            "proxy_on_response_trailers",
            "on_response_trailers",
            trailers.size,
            0,
          );
          if (typeof action !== "number") action = await action;
          if (action !== -1) await run.afterAction(s, action);
        }
        cur = run.resBody!;
      }
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
