/**
 * Proxy-Wasm network (L4) filters: one stream context per connection and
 * plugin of a `tcp` listener, driven as Envoy's wasm network filter in front
 * of its tcp_proxy:
 *
 *   on_context_create → on_new_connection → (upstream connected)
 *   → on_downstream_data* / on_upstream_data* → both close callbacks
 *   → on_done → on_log → on_delete
 *
 * Downstream data runs through the filters in order, upstream data in
 * reverse order (Envoy's read and write filters). A filter sees its window
 * (`DOWNSTREAM_DATA` / `UPSTREAM_DATA`): what it held back plus the new
 * bytes, and may rewrite it. Returning Pause holds the window in that filter
 * (later bytes are appended and it is called again) until it returns
 * Continue or calls `proxy_continue_stream` for that direction; held bytes
 * are capped per direction (the reader waits beyond {@link MAX_HELD}).
 * `proxy_close_stream` closes the whole connection for either stream type,
 * as Envoy does (it closes the downstream connection for UPSTREAM too, and
 * tcp_proxy then the upstream one). A filter that fails (trap,
 * timeout, no VM) closes the connection under `fail_closed`; under
 * `fail_open` it is skipped and bytes pass it unchanged.
 *
 * @module
 */
import { concat } from "../net/bytes.ts";
import { logger } from "../observability/logger.ts";
import { BufferType, StreamType } from "./abi.ts";
import type { Plugin, PluginManager } from "./plugin.ts";
import { addressProperty, type ConnectionAddresses } from "./properties.ts";
import type { Callback, LocalResponse, PluginVM, StreamHost } from "./vm.ts";

const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();
const log = logger.child({ component: "wasm" });

/** A direction: downstream (client → upstream) or upstream (upstream → client). */
export type Direction = 0 | 1;
/** Client → upstream. */
export const DOWNSTREAM: Direction = 0;
/** Upstream → client. */
export const UPSTREAM: Direction = 1;

/** Who closed a connection, as the close callbacks report it (Envoy's PeerType). */
export const PeerType = { UNKNOWN: 0, LOCAL: 1, REMOTE: 2 } as const;

/** Bytes the filters may hold back per direction before the reader of that side waits. */
export const MAX_HELD = 1024 * 1024;

/** What a session needs of its connection. */
export interface NetworkSink {
  /** Writes the filters' output: towards the upstream (DOWNSTREAM) or the client (UPSTREAM); eos = half-close. */
  write(dir: Direction, data: Uint8Array, eos: boolean): Promise<void>;
  /** A filter closed the connection (proxy_close_stream) or failed closed: `why` goes to the log. */
  close(why: string): void;
}

/** The connection as filters' properties see it. */
export interface NetworkConnectionInfo {
  readonly source: Deno.NetAddr;
  readonly destination: Deno.NetAddr;
  /** The ClientHello's server name (TLS passthrough), null when none was read. */
  readonly sni: string | null;
}

const DATA_CB: readonly Callback[] = ["proxy_on_downstream_data", "proxy_on_upstream_data"];
const PHASE = ["on_downstream_data", "on_upstream_data"];
const NETWORK_CBS: readonly Callback[] = [
  "proxy_on_new_connection",
  "proxy_on_downstream_data",
  "proxy_on_upstream_data",
];

/** Plugins already warned about: listed as a network filter, exporting none of the network callbacks. */
const warned = new WeakSet<Plugin>();

/**
 * Warns once per plugin that `listener` lists as a network filter but that
 * exports none of the network callbacks (a config mistake: an HTTP filter),
 * as soon as its module is compiled.
 */
export function checkNetworkFilters(
  manager: Pick<PluginManager, "get">,
  names: readonly string[],
  listener: string,
): void {
  for (const name of names) {
    const p = manager.get(name);
    if (p === undefined) continue;
    Promise.resolve(p.getVM()).then((vm) => {
      if (vm !== null) warnUnlessNetwork(p, vm, listener);
    }, () => {});
  }
}

function warnUnlessNetwork(p: Plugin, vm: PluginVM, listener: string): void {
  if (warned.has(p) || NETWORK_CBS.some((cb) => vm.has(cb))) return;
  warned.add(p);
  log.warn("plugin listed as a network filter exports no network callback; it sees no data", {
    plugin: p.pluginName,
    listener,
    expected: NETWORK_CBS.join(", "),
  });
}

/** One plugin's stream context on one connection. */
class NetStream implements StreamHost {
  readonly id: number;
  readonly kind = "network";
  dead = false;
  failure: Error | null = null;
  /** Per direction: bytes held back by a Pause, whether the end of stream came with them. */
  held: [Uint8Array, Uint8Array] = [EMPTY, EMPTY];
  heldEos: [boolean, boolean] = [false, false];
  paused: [boolean, boolean] = [false, false];
  /** continue_stream came while a callback of that direction ran (its Pause is then ignored). */
  resumedEarly: [boolean, boolean] = [false, false];
  /** continue_stream came while paused: the held bytes go on before the next ones. */
  resumeWanted: [boolean, boolean] = [false, false];
  /** The window of the callback running now, per direction. */
  window: [Uint8Array | null, Uint8Array | null] = [null, null];
  running: Direction | -1 = -1;
  props: Map<string, Uint8Array> | null = null;

  constructor(readonly session: NetworkSession, readonly plugin: Plugin, readonly vm: PluginVM) {
    this.id = vm.newContextId();
    vm.streams.set(this.id, this);
  }

  map(): null {
    return null;
  }
  /** The window of the running data callback; outside one, what a Pause holds (a tick may edit it). */
  buffer(type: number): Uint8Array | null {
    const dir = dataDirection(type);
    if (dir === -1) return null;
    return this.window[dir] ?? (this.paused[dir] ? this.held[dir] : null);
  }
  setBuffer(type: number, data: Uint8Array): boolean {
    const dir = dataDirection(type);
    if (dir === -1) return false;
    if (this.window[dir] !== null) this.window[dir] = data;
    else if (this.paused[dir]) this.held[dir] = data;
    else return false;
    return true;
  }
  property(path: string[]): Uint8Array | null | undefined {
    const key = path.join(".");
    return this.props?.get(key) ?? this.session.property(key);
  }
  setProperty(path: string, value: Uint8Array): void {
    (this.props ??= new Map()).set(path, value);
  }
  localResponse(_r: LocalResponse): void {
    // No HTTP response on a byte stream: Envoy ignores it too.
  }
  clearRouteCache(): void {}
  resume(type: number): void {
    this.session.resume(this, directionOf(type));
  }
  close(type: number): void {
    this.session.closeBy(this, directionOf(type));
  }
  /** Its VM failed (plugin.ts tells every stream of a failed VM). */
  vmFailed(e: Error): void {
    this.failure ??= e;
    this.session.failed(this);
  }
}

/** The direction of buffer type DOWNSTREAM_DATA or UPSTREAM_DATA; -1 for the others. */
function dataDirection(type: number): Direction | -1 {
  return type === BufferType.DOWNSTREAM_DATA ? DOWNSTREAM : type === BufferType.UPSTREAM_DATA ? UPSTREAM : -1;
}

/** Stream types of continue/close_stream: DOWNSTREAM and UPSTREAM (HTTP request/response taken alike). */
function directionOf(type: number): Direction {
  return type === StreamType.UPSTREAM || type === StreamType.HTTP_RESPONSE ? UPSTREAM : DOWNSTREAM;
}

/** The network filters of one connection. */
export class NetworkSession implements ConnectionAddresses {
  readonly streams: NetStream[] = [];
  /** Upstream order: the filters in reverse. */
  private reversed: NetStream[] = [];
  closed = false;
  /** The endpoint once connected ("host:port"), for `upstream.address`. */
  upstreamAddress = "";
  private queues: [Promise<void>, Promise<void>] = [Promise.resolve(), Promise.resolve()];
  /** Waiters for a resume or the close: on_new_connection's Pause, readers over MAX_HELD. */
  private waiters: (() => void)[] = [];
  private newPending = false;
  private finished = false;

  private constructor(readonly conn: NetworkConnectionInfo, readonly sink: NetworkSink) {}

  /**
   * Creates the filters' contexts on a new connection and runs
   * on_new_connection (waiting while a filter paused it). Null when there
   * are no filters; check `closed` after it: a filter may have closed the
   * connection.
   */
  static async start(
    manager: Pick<PluginManager, "get">,
    names: readonly string[],
    conn: NetworkConnectionInfo,
    sink: NetworkSink,
    listener = "",
  ): Promise<NetworkSession | null> {
    if (names.length === 0) return null;
    const session = new NetworkSession(conn, sink);
    for (const name of names) {
      const p = manager.get(name);
      if (p === undefined) continue; // checked by config validation: a reload race at most
      let vm = p.getVM();
      if (vm instanceof Promise) vm = await vm;
      if (session.closed) return session;
      if (vm === null) {
        if (p.cfg.failure_policy === "fail_open") continue;
        session.close(`plugin ${p.pluginName} has no VM`);
        return session;
      }
      warnUnlessNetwork(p, vm, listener);
      const s = new NetStream(session, p, vm);
      session.streams.push(s);
      session.reversed.unshift(s);
      if ((await session.call(s, "proxy_on_context_create", "on_context_create", vm.rootFor(p), 0)) < 0) {
        if (session.closed) return session;
      }
    }
    for (const s of session.streams) {
      if (s.dead || !s.vm.has("proxy_on_new_connection")) continue;
      const r = await session.callData(s, DOWNSTREAM, "proxy_on_new_connection", "on_new_connection", 0, 0);
      if (session.closed) return session;
      if (r > 0) {
        // Paused: the upstream is not connected until the filter continues (Envoy's StopIteration).
        session.newPending = true;
        while (session.newPending && !session.closed) await new Promise<void>((w) => session.waiters.push(w));
      }
    }
    return session;
  }

  /**
   * Bytes from the client (DOWNSTREAM) or the upstream (UPSTREAM), in order;
   * eos = that side half-closed. `bytes` may be a view of the caller's read
   * buffer, reused once the promise resolves: they are copied only if a
   * filter holds them (a Pause) rather than once per read.
   */
  data(dir: Direction, bytes: Uint8Array, eos: boolean): Promise<void> {
    return this.enqueue(dir, () => this.process(dir, 0, bytes, eos, bytes.buffer));
  }

  /** Bytes held back by the filters in direction `dir`. */
  held(dir: Direction): number {
    let n = 0;
    for (const s of this.streams) n += s.held[dir].length;
    return n;
  }

  /** Resolves at the next resume or at the close (a reader waits here while too much is held). */
  progress(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((w) => this.waiters.push(w));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private enqueue(dir: Direction, op: () => Promise<void>): Promise<void> {
    const next = this.queues[dir].then(op);
    this.queues[dir] = next.catch(() => {});
    return next;
  }

  /**
   * Runs `bytes` through the filters of `dir` from position `from`, then to
   * the sink. Views of `borrowed` (the reader's buffer) are copied before a
   * filter holds them.
   */
  private async process(
    dir: Direction,
    from: number,
    bytes: Uint8Array,
    eos: boolean,
    borrowed: ArrayBufferLike | null = null,
  ): Promise<void> {
    const order = dir === DOWNSTREAM ? this.streams : this.reversed;
    const cb = DATA_CB[dir];
    for (let k = from; k < order.length; k++) {
      if (this.closed) return;
      const s = order[k];
      if ((s.held[dir].length > 0 || s.heldEos[dir]) && (s.dead || s.resumeWanted[dir])) {
        // Continued (or failed open) while these bytes waited in the queue: what it held goes on first.
        const [held, heldEos] = this.takeHeld(s, dir);
        await this.process(dir, k + 1, held, heldEos);
        if (this.closed) return;
      }
      if (s.dead || !s.vm.has(cb)) continue;
      if (bytes.length === 0 && !eos && s.held[dir].length === 0) return;
      const window = s.held[dir].length === 0 ? bytes : concat([s.held[dir], bytes]);
      s.held[dir] = EMPTY;
      s.paused[dir] = false;
      s.window[dir] = window;
      const r = await this.callData(s, dir, cb, PHASE[dir], window.length, eos ? 1 : 0);
      const out = s.window[dir] ?? window;
      s.window[dir] = null;
      if (this.closed) return;
      if (r === -1) {
        bytes = window; // failed open: the bytes pass as they came
        continue;
      }
      if (r > 0) {
        s.held[dir] = out.buffer === borrowed ? out.slice() : out;
        s.heldEos[dir] = eos;
        s.paused[dir] = true;
        return;
      }
      bytes = out;
    }
    if (this.closed || (bytes.length === 0 && !eos)) return;
    await this.sink.write(dir, bytes, eos);
  }

  private takeHeld(s: NetStream, dir: Direction): [Uint8Array, boolean] {
    const out: [Uint8Array, boolean] = [s.held[dir], s.heldEos[dir]];
    s.held[dir] = EMPTY;
    s.heldEos[dir] = false;
    s.paused[dir] = false;
    s.resumeWanted[dir] = false;
    return out;
  }

  /** proxy_continue_stream from `s` for direction `dir`. */
  resume(s: NetStream, dir: Direction): void {
    if (this.closed) return;
    if (dir === DOWNSTREAM && this.newPending) {
      this.newPending = false;
      this.wake();
      return;
    }
    if (s.running === dir) {
      s.resumedEarly[dir] = true;
      return;
    }
    if (!s.paused[dir] || s.resumeWanted[dir]) return;
    this.passHeld(s, dir);
  }

  /** What `s` holds in `dir` goes on to the next filters, behind the bytes already queued. */
  private passHeld(s: NetStream, dir: Direction): void {
    s.resumeWanted[dir] = true;
    const order = dir === DOWNSTREAM ? this.streams : this.reversed;
    void this.enqueue(dir, async () => {
      if (!s.resumeWanted[dir]) return; // a data op passed it on already
      const [held, eos] = this.takeHeld(s, dir);
      this.wake();
      await this.process(dir, order.indexOf(s) + 1, held, eos);
    }).catch(() => {});
  }

  /** proxy_close_stream from `s`: the connection ends, both sides, whichever `dir` (Envoy's closeStream too). */
  closeBy(s: NetStream, dir: Direction): void {
    this.close(`plugin ${s.plugin.pluginName} closed the ${dir === DOWNSTREAM ? "downstream" : "upstream"}`);
  }

  /** `s` failed (trap, timeout, a failed VM): skipped under fail_open, else the connection closes. */
  failed(s: NetStream): void {
    if (s.dead) return;
    s.dead = true;
    if (s.plugin.cfg.failure_policy !== "fail_open") {
      this.close(`plugin ${s.plugin.pluginName} failed: ${s.failure?.message ?? "unknown error"}`);
      return;
    }
    // fail_open: what it held goes on unchanged, in order.
    for (const d of [DOWNSTREAM, UPSTREAM] as const) {
      if ((s.held[d].length > 0 || s.heldEos[d]) && s.running !== d) this.passHeld(s, d);
    }
  }

  /** Ends the session; the sink closes the connection. */
  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    this.sink.close(why);
  }

  /**
   * A callback on a data path: the window is the filter's, `running` marks
   * it for continue_stream. -1 = failed open.
   */
  private async callData(
    s: NetStream,
    dir: Direction,
    cb: Callback,
    phase: string,
    a: number,
    b: number,
  ): Promise<number> {
    s.running = dir;
    s.resumedEarly[dir] = false;
    try {
      const r = await this.call(s, cb, phase, a, b);
      return r > 0 && s.resumedEarly[dir] ? 0 : r;
    } finally {
      s.running = -1;
      s.resumedEarly[dir] = false;
    }
  }

  /** One callback on `s`; -1 when it failed (the stream is dead; under fail_closed the session closed). */
  private async call(s: NetStream, cb: Callback, phase: string, a: number, b: number): Promise<number> {
    const t0 = performance.now();
    try {
      let r = s.vm.call(cb, s.id, s.id, a, b);
      if (typeof r !== "number") r = await r;
      s.plugin.observe(phase, (performance.now() - t0) / 1000);
      if (s.failure !== null) throw s.failure;
      return r;
    } catch (e) {
      s.plugin.observe(phase, (performance.now() - t0) / 1000);
      s.failure ??= e instanceof Error ? e : new Error(String(e));
      this.failed(s);
      return -1;
    }
  }

  /**
   * The connection is gone: the close callbacks (the upstream's only once it
   * was connected: when the connect failed, Envoy's filter hears of no
   * upstream either, only of the downstream's local close), then on_done,
   * on_log and on_delete. Runs once.
   */
  async finish(downstreamPeer: number, upstreamPeer: number | null): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.closed = true;
    this.wake();
    for (const s of this.streams) {
      const vm = s.vm;
      if (!s.dead && vm.failed === null) {
        await this.quiet(s, "proxy_on_downstream_connection_close", downstreamPeer);
        if (upstreamPeer !== null) await this.quiet(s, "proxy_on_upstream_connection_close", upstreamPeer);
        await this.quiet(s, "proxy_on_done");
        await this.quiet(s, "proxy_on_log");
        await this.quiet(s, "proxy_on_delete");
      }
      vm.streams.delete(s.id);
    }
  }

  /** A teardown callback: a failure is recorded on the plugin, nothing else happens. */
  private async quiet(s: NetStream, cb: Callback, a = 0): Promise<void> {
    if (s.vm.failed !== null) return;
    try {
      const r = s.vm.call(cb, s.id, s.id, a);
      if (typeof r !== "number") await r;
    } catch { /* recorded by the plugin */ }
  }

  /** Connection properties in Envoy's names and encodings. */
  property(key: string): Uint8Array | null | undefined {
    if (key === "connection.requested_server_name") return enc.encode(this.conn.sni ?? "");
    return addressProperty(key, this);
  }

  // ConnectionAddresses, for addressProperty.
  get clientIp(): string {
    return this.conn.source.hostname;
  }
  get clientPort(): number {
    return this.conn.source.port;
  }
  get localAddr(): string {
    return this.conn.destination.hostname;
  }
  get localPort(): number {
    return this.conn.destination.port;
  }
  get upstreamAddr(): string {
    return this.upstreamAddress;
  }
}
