/**
 * gRPC calls and streams started by plugins (`proxy_grpc_call`,
 * `proxy_grpc_stream`, `proxy_grpc_send`, `proxy_grpc_cancel`,
 * `proxy_grpc_close`), over Loom's own HTTP/2 client to a configured
 * upstream, with events delivered to the VM's root context as Envoy does:
 *
 * - a call that succeeds gets `proxy_on_grpc_receive` with its one message;
 *   one that fails gets `proxy_on_grpc_close` with the status (message via
 *   `proxy_get_status`);
 * - a stream gets `proxy_on_grpc_receive_initial_metadata`, one
 *   `proxy_on_grpc_receive` per message, then
 *   `proxy_on_grpc_receive_trailing_metadata` and `proxy_on_grpc_close`;
 * - a cancelled call or stream gets no further callback; `close` half-closes
 *   a stream (its answers still arrive) and cancels a call.
 *
 * Tokens are odd for calls and even for streams (Envoy's convention, which
 * the Rust SDK relies on to tell them apart).
 *
 * @module
 */
import { field, fieldPairs } from "../http2/fields.ts";
import { concat } from "../net/bytes.ts";
import { ErrorCode } from "../http2/frame.ts";
import type { H2Stream } from "../http2/connection.ts";
import { h2PoolFor } from "../upstream/h2_pool.ts";
import { GrpcStatus as Code, grpcStatusForHttp } from "../core/grpc_reply.ts";
import { grpcFrame } from "../grpc/frame.ts";
import { formatGrpcTimeout } from "../grpc/timeout.ts";
import type { Endpoint } from "../upstream/endpoint.ts";
import type { ConnectionPool } from "../upstream/pool.ts";
import { Status } from "./abi.ts";
import type { CalloutData, GrpcHost, PluginVM } from "./vm.ts";

/** What a gRPC callout needs of an upstream: an endpoint and its connection pool. */
export interface GrpcUpstream {
  select(input: { header(name: string): string | undefined; clientIp: string }): Endpoint | null;
  pool(ep: Endpoint): ConnectionPool;
}

/** Largest message accepted from the upstream (gRPC's usual default is 4 MiB). */
const MAX_MESSAGE = 16 << 20;
/** Connect timeout when the call has none. */
const CONNECT_MS = 5000;
const NO_PAIRS: [string, string][] = [];
const EMPTY = new Uint8Array(0);

/** Request fields a plugin may not set in initial metadata (the host owns them). */
const RESERVED = new Set(["content-type", "te", "grpc-timeout", "connection", "transfer-encoding", "host"]);

interface Callout {
  readonly token: number;
  readonly vm: PluginVM;
  /** The root context its events go to: the caller's (a VM shared by plugins has one per plugin). */
  readonly root: number;
  readonly call: boolean;
  /** Null until the HTTP/2 stream is open. */
  h2: H2Stream | null;
  /** Messages sent before the stream opened, and whether the last ended it. */
  queued: Uint8Array[];
  localClosed: boolean;
  /** Writes in order (flow control makes each one a promise). */
  writing: Promise<void>;
  timer: ReturnType<typeof setTimeout> | undefined;
  done: boolean;
}

/** The gRPC callouts of one plugin manager (one isolate). */
export class GrpcCallouts implements GrpcHost {
  private nextCall = 1;
  private nextStream = 2;
  private live = new Map<number, Callout>();

  constructor(private upstreams: () => ReadonlyMap<string, GrpcUpstream>) {}

  call(
    vm: PluginVM,
    upstream: Uint8Array,
    service: string,
    method: string,
    metadata: [string, string][],
    message: Uint8Array,
    timeoutMs: number,
  ): { token: number } | number {
    const up = this.resolve(upstream);
    if (up === null) return Status.BAD_ARGUMENT; // Envoy's answer for an unknown cluster
    const c = this.add(vm, true);
    c.queued.push(message);
    c.localClosed = true;
    if (timeoutMs > 0) {
      c.timer = setTimeout(() => this.fail(c, Code.DEADLINE_EXCEEDED, "gRPC call timed out"), timeoutMs);
    }
    void this.open(c, up, service, method, metadata, timeoutMs);
    return { token: c.token };
  }

  stream(
    vm: PluginVM,
    upstream: Uint8Array,
    service: string,
    method: string,
    metadata: [string, string][],
  ): { token: number } | number {
    const up = this.resolve(upstream);
    if (up === null) return Status.BAD_ARGUMENT;
    const c = this.add(vm, false);
    void this.open(c, up, service, method, metadata, 0);
    return { token: c.token };
  }

  send(vm: PluginVM, token: number, message: Uint8Array, endStream: boolean): number {
    if (token % 2 === 1) return Status.BAD_ARGUMENT; // a call, not a stream
    const c = this.live.get(token);
    if (c === undefined || c.vm !== vm || c.localClosed) return Status.NOT_FOUND;
    if (endStream) c.localClosed = true;
    if (c.h2 === null) c.queued.push(message);
    else this.write(c, message, endStream);
    return Status.OK;
  }

  cancel(vm: PluginVM, token: number): number {
    const c = this.live.get(token);
    if (c === undefined || c.vm !== vm) return Status.NOT_FOUND;
    this.end(c);
    c.h2?.reset(ErrorCode.CANCEL);
    return Status.OK;
  }

  close(vm: PluginVM, token: number): number {
    const c = this.live.get(token);
    if (c === undefined || c.vm !== vm) return Status.NOT_FOUND;
    if (c.call) return this.cancel(vm, token);
    // Half-close: the upstream may still answer.
    if (!c.localClosed) {
      c.localClosed = true;
      if (c.h2 !== null) this.write(c, null, true);
    }
    return Status.OK;
  }

  /** Drops every callout of a VM that failed or was deleted, or only those of its root context `root` (no callbacks). */
  dropVM(vm: PluginVM, root?: number): void {
    for (const c of [...this.live.values()]) {
      if (c.vm !== vm || (root !== undefined && c.root !== root)) continue;
      this.end(c);
      c.h2?.reset(ErrorCode.CANCEL);
    }
  }

  /** Callouts in flight (tests, admin). */
  get size(): number {
    return this.live.size;
  }

  /**
   * The upstream a plugin named: a configured upstream's name, or (as Envoy)
   * a serialized GrpcService whose envoy_grpc.cluster_name names one.
   */
  private resolve(raw: Uint8Array): GrpcUpstream | null {
    const ups = this.upstreams();
    const name = new TextDecoder().decode(raw);
    return ups.get(name) ?? ups.get(clusterNameOf(raw) ?? "\0") ?? null;
  }

  private add(vm: PluginVM, call: boolean): Callout {
    const token = call ? this.nextCall : this.nextStream;
    if (call) this.nextCall = this.nextCall >= 0x7ffffffd ? 1 : this.nextCall + 2;
    else this.nextStream = this.nextStream >= 0x7ffffffe ? 2 : this.nextStream + 2;
    const c: Callout = {
      token,
      vm,
      root: vm.rootOf(vm.effective),
      call,
      h2: null,
      queued: [],
      localClosed: false,
      writing: Promise.resolve(),
      timer: undefined,
      done: false,
    };
    this.live.set(token, c);
    return c;
  }

  private async open(
    c: Callout,
    up: GrpcUpstream,
    service: string,
    method: string,
    metadata: [string, string][],
    timeoutMs: number,
  ): Promise<void> {
    const ep = up.select({ header: () => undefined, clientIp: "" });
    if (ep === null) return this.fail(c, Code.UNAVAILABLE, "no healthy upstream endpoint");
    const pool = up.pool(ep);
    let stream: H2Stream;
    let release = () => {};
    try {
      const lease = await h2PoolFor(pool).acquire(
        timeoutMs > 0 ? Math.min(timeoutMs, CONNECT_MS) : CONNECT_MS,
      );
      release = lease.done;
      if (c.done) return release();
      const fields = [
        ":method",
        "POST",
        ":scheme",
        pool.tls !== null ? "https" : "http",
        ":authority",
        `${pool.hostname}:${pool.port}`,
        ":path",
        `/${service}/${method}`,
        "content-type",
        "application/grpc",
        "te",
        "trailers",
      ];
      if (timeoutMs > 0) fields.push("grpc-timeout", formatGrpcTimeout(timeoutMs));
      for (const [k, v] of metadata) {
        const name = k.toLowerCase();
        if (name.charCodeAt(0) === 58 || RESERVED.has(name)) continue;
        fields.push(name, v);
      }
      stream = lease.conn.request(fields, false);
    } catch (e) {
      release();
      return this.fail(c, Code.UNAVAILABLE, `gRPC upstream unreachable: ${(e as Error).message}`);
    }
    c.h2 = stream;
    stream.done.then(release);
    if (c.done) return stream.reset(ErrorCode.CANCEL);
    const queued = c.queued;
    c.queued = [];
    for (let i = 0; i < queued.length; i++) {
      this.write(c, queued[i], c.localClosed && i === queued.length - 1);
    }
    if (queued.length === 0 && c.localClosed) this.write(c, null, true);
    await this.receive(c, stream);
  }

  /** Sends one message (or only the end of the stream when `msg` is null), in order. */
  private write(c: Callout, msg: Uint8Array | null, end: boolean): void {
    const s = c.h2!;
    c.writing = c.writing.then(async () => {
      if (msg !== null) await s.write(grpcFrame(msg));
      if (end) await s.end();
    }).catch(() => {/* the read side reports the failure */});
  }

  private async receive(c: Callout, s: H2Stream): Promise<void> {
    let head: string[];
    try {
      head = await s.response;
    } catch (e) {
      return this.fail(c, Code.UNAVAILABLE, `gRPC upstream reset the call: ${(e as Error).message}`);
    }
    if (c.done) return;
    const status = field(head, ":status");
    if (status !== "200") {
      s.reset(ErrorCode.CANCEL);
      return this.fail(c, grpcStatusForHttp(Number(status)), `gRPC upstream answered HTTP ${status}`);
    }
    if (s.headersEnded) return this.finish(c, head, null); // trailers-only
    if (!c.call) {
      this.emit(c, "proxy_on_grpc_receive_initial_metadata", { headers: fieldPairs(head) }, head.length / 2);
    }
    // Messages may span DATA frames, and one frame may hold several.
    let buf: Uint8Array = EMPTY;
    let answer: Uint8Array | null = null;
    try {
      for (let d = await s.read(); d !== null; d = await s.read()) {
        if (c.done) return;
        buf = buf.length === 0 ? d : concat([buf, d]);
        while (buf.length >= 5) {
          const len = new DataView(buf.buffer, buf.byteOffset, 5).getUint32(1);
          if (len > MAX_MESSAGE) {
            s.reset(ErrorCode.CANCEL);
            return this.fail(c, Code.RESOURCE_EXHAUSTED, `gRPC message of ${len} bytes is too large`);
          }
          if ((buf[0] & 1) !== 0) {
            s.reset(ErrorCode.CANCEL);
            return this.fail(c, Code.INTERNAL, "compressed gRPC message (no grpc-encoding was offered)");
          }
          if (buf.length < 5 + len) break;
          const msg = buf.slice(5, 5 + len);
          buf = buf.subarray(5 + len);
          if (c.call) answer ??= msg;
          else this.emit(c, "proxy_on_grpc_receive", { body: msg }, msg.length);
          if (c.done) return;
        }
      }
    } catch (e) {
      return this.fail(c, Code.UNAVAILABLE, `gRPC stream broken: ${(e as Error).message}`);
    }
    if (c.done) return;
    this.finish(c, s.trailers ?? [], answer);
  }

  /** The end of a call or stream: its trailers (or trailers-only headers) carry the status. */
  private finish(c: Callout, trailers: string[], answer: Uint8Array | null): void {
    const raw = field(trailers, "grpc-status");
    const code = raw === undefined || !/^\d+$/.test(raw) ? Code.UNKNOWN : Number(raw);
    const message = decodeGrpcMessage(field(trailers, "grpc-message") ?? "");
    if (c.call) {
      if (code === Code.OK && answer !== null) {
        this.end(c);
        deliver(c, "proxy_on_grpc_receive", { body: answer }, answer.length);
        return;
      }
      return this.fail(
        c,
        code === Code.OK ? Code.INTERNAL : code,
        code === Code.OK ? "no response message" : message,
      );
    }
    this.emit(
      c,
      "proxy_on_grpc_receive_trailing_metadata",
      { trailers: fieldPairs(trailers) },
      trailers.length / 2,
    );
    if (c.done) return;
    this.end(c);
    deliver(c, "proxy_on_grpc_close", { status: { code, message } }, code);
  }

  /** Ends the callout with `proxy_on_grpc_close(code)` (unless already ended). */
  private fail(c: Callout, code: number, message: string): void {
    if (c.done) return;
    this.end(c);
    c.h2?.reset(ErrorCode.CANCEL);
    deliver(c, "proxy_on_grpc_close", { status: { code, message } }, code);
  }

  /** An event of a callout still in flight; a failed VM drops the callout. */
  private emit(c: Callout, cb: Parameters<PluginVM["deliver"]>[0], data: Partial<CalloutData>, n: number) {
    if (!deliver(c, cb, data, n)) {
      this.end(c);
      c.h2?.reset(ErrorCode.CANCEL);
    }
  }

  private end(c: Callout): void {
    c.done = true;
    clearTimeout(c.timer);
    this.live.delete(c.token);
  }
}

function deliver(
  c: Callout,
  cb: Parameters<PluginVM["deliver"]>[0],
  data: Partial<CalloutData>,
  n: number,
): boolean {
  return c.vm.deliver(
    cb,
    {
      headers: data.headers ?? NO_PAIRS,
      body: data.body ?? EMPTY,
      trailers: data.trailers ?? NO_PAIRS,
      status: data.status,
    },
    c.token,
    n,
    0,
    0,
    c.root,
  );
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec). */
function decodeGrpcMessage(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/**
 * `envoy_grpc.cluster_name` of a serialized envoy.config.core.v3.GrpcService
 * (field 1, message; inside it field 1, string), or null when `b` is not one.
 */
export function clusterNameOf(b: Uint8Array): string | null {
  const inner = lengthDelimited(b, 1);
  if (inner === null) return null;
  const name = lengthDelimited(inner, 1);
  return name === null ? null : new TextDecoder().decode(name);
}

/** The first length-delimited field `num` of a protobuf message, or null (also when `b` is malformed). */
function lengthDelimited(b: Uint8Array, num: number): Uint8Array | null {
  let i = 0;
  const varint = (): number => {
    let v = 0, shift = 0;
    for (;;) {
      if (i >= b.length || shift > 28) return -1;
      const x = b[i++];
      v += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) return v;
      shift += 7;
    }
  };
  while (i < b.length) {
    const key = varint();
    if (key < 0) return null;
    const wire = key & 7, n = Math.floor(key / 8);
    if (wire === 2) {
      const len = varint();
      if (len < 0 || i + len > b.length) return null;
      if (n === num) return b.subarray(i, i + len);
      i += len;
    } else if (wire === 0) {
      if (varint() < 0) return null;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else return null;
  }
  return null;
}
