/**
 * bench/floor_proxy.ts on raw sockets through FFI instead of Deno.TcpConn:
 * the same request and response handling (a request is one read, the
 * response's end is found from its Content-Length, `Connection: close` ends
 * the client connection), keep-alive on both sides, one upstream connection
 * per client connection, but the sockets are libc's (socket, accept4 with
 * SOCK_NONBLOCK, connect, recv, send, close) and readiness comes from one
 * epoll instance. It shows what a request costs when the runtime's ops and
 * promises are not between JavaScript and the kernel (issue 16 item 2).
 * bench/ab_wrk.ts runs it as variant `ffi-floor` (or `ffi-floor:<mode>`).
 *
 *   deno run --allow-ffi bench/ffi_floor_proxy.ts <port> <upstream port> [mode]
 *
 * How JavaScript waits for readiness (`mode`):
 * - `hybrid`: epoll_wait with timeout 0 as a synchronous FFI call
 *   while it returns events; when it returns none, one `nonblocking` epoll_wait
 *   (Deno runs it on a thread of its blocking pool and resolves a promise), so
 *   Deno's own event loop keeps running while the proxy is idle.
 * - `async`: always the `nonblocking` epoll_wait (one promise per batch).
 * - `wait` (default): a synchronous epoll_wait that may sleep in the kernel for up to
 *   1 ms; when that timed out (idle), one `nonblocking` epoll_wait. Under load
 *   no thread hands anything over; Deno's event loop (timers, its own sockets)
 *   is held up for at most 1 ms at a time.
 * - `block`: a synchronous epoll_wait that sleeps in the kernel, as nginx
 *   does. It stops Deno's event loop (no timers, no other I/O) for as long as
 *   it waits, so a gateway could not do this; it is here as the ceiling.
 *
 * Linux only (epoll, accept4; the epoll_event layout is x86_64's or aarch64's).
 */

import {
  AF_INET,
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EPOLL_CTL_ADD,
  EPOLLET,
  EPOLLIN,
  EPOLLOUT,
  EV_DATA,
  EV_SIZE,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  openLibc,
  SO_REUSEADDR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddr,
  SOL_SOCKET,
  TCP_NODELAY,
  unavailableReason,
} from "../src/net/ffi/libc.ts";
import { asksClose, responseLength } from "./floor_http.ts";

/**
 * Sockets are registered once, edge-triggered for both directions (as tokio
 * does): no epoll_ctl per request, and epoll_wait does not poll every socket
 * it reported last time again (level-triggered costs a tcp_poll per event).
 */
const SOCKET_EVENTS = EPOLLIN | EPOLLOUT | EPOLLET;

const libc = openLibc();
if (libc === null) throw new Error(unavailableReason());
const { sys, errno } = libc;

const [port, upstreamPort] = Deno.args.map(Number);
const mode = Deno.args[2] ?? "wait";
if (!["hybrid", "async", "wait", "block"].includes(mode)) {
  throw new Error(`mode ${mode}: hybrid, async, wait or block`);
}
/** `wait` mode's longest synchronous sleep in epoll_wait, ms. */
const WAIT_MS = 1;

const one = new Int32Array([1]);
const onePtr = Deno.UnsafePointer.of(one);

function check(r: number, what: string): number {
  if (r < 0) throw new Error(`${what}: errno ${errno()}`);
  return r;
}

const MAX_EVENTS = 256;
const events = new Uint8Array(EV_SIZE * MAX_EVENTS), eventsView = new DataView(events.buffer);
const eventsPtr = Deno.UnsafePointer.of(events);
const ctlEvent = new Uint8Array(EV_SIZE), ctlView = new DataView(ctlEvent.buffer);
const ctlPtr = Deno.UnsafePointer.of(ctlEvent);
const ep = check(sys.epoll_create1(SOCK_CLOEXEC), "epoll_create1");

function ctl(op: number, fd: number, mask: number): void {
  ctlView.setUint32(0, mask, true);
  ctlView.setInt32(EV_DATA, fd, true);
  check(sys.epoll_ctl(ep, op, fd, ctlPtr), "epoll_ctl");
}

const REQ_SIZE = 16 * 1024, RES_SIZE = 64 * 1024;
const REQ_SIZE_N = BigInt(REQ_SIZE), RES_SIZE_N = BigInt(RES_SIZE);

/** One client connection and its upstream connection. */
class Pair {
  readonly req = new Uint8Array(REQ_SIZE);
  readonly reqPtr = Deno.UnsafePointer.of(this.req)!;
  readonly res = new Uint8Array(RES_SIZE);
  readonly resPtr = Deno.UnsafePointer.of(this.res)!;
  up = -1;
  reqLen = 0;
  got = 0;
  need = -1;
  /** Bytes of `pending` (req or res) not yet sent, and to which fd. */
  outFd = -1;
  outBuf: Uint8Array | null = null;
  outOff = 0;
  outEnd = 0;
  closeAfter = false;
  constructor(readonly client: number) {}
}

/** Pairs by fd (client and upstream fds alike); fds are small integers. */
const byFd: (Pair | undefined)[] = [];

function closePair(p: Pair): void {
  byFd[p.client] = undefined;
  sys.close(p.client); // close removes the fd from the epoll set
  if (p.up >= 0) {
    byFd[p.up] = undefined;
    sys.close(p.up);
  }
}

const upstreamAddr = sockaddr("127.0.0.1", upstreamPort);
const upstreamAddrPtr = Deno.UnsafePointer.of(upstreamAddr);

function connectUpstream(p: Pair): void {
  const fd = check(sys.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket");
  if (sys.connect(fd, upstreamAddrPtr, 16) < 0 && errno() !== EINPROGRESS) {
    const e = errno();
    sys.close(fd);
    throw new Error(`connect: errno ${e}`);
  }
  sys.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, onePtr, 4);
  p.up = fd;
  byFd[fd] = p;
  ctl(EPOLL_CTL_ADD, fd, SOCKET_EVENTS);
}

/**
 * Sends buf[off, end) to fd; what the socket does not take now waits for
 * EPOLLOUT (a connect still in progress, a full send buffer). True when all
 * of it went.
 */
function sendAll(
  p: Pair,
  fd: number,
  buf: Uint8Array,
  ptr: Deno.PointerValue,
  off: number,
  end: number,
): boolean {
  while (off < end) {
    const w = sys.send(
      fd,
      off === 0 ? ptr : Deno.UnsafePointer.offset(ptr!, off),
      BigInt(end - off),
      MSG_NOSIGNAL,
    );
    if (w < 0) {
      const e = errno();
      if (e === EINTR) continue;
      if (e !== EAGAIN && e !== 107 /* ENOTCONN: connect in progress */) throw new Error(`send: errno ${e}`);
      p.outFd = fd, p.outBuf = buf, p.outOff = off, p.outEnd = end;
      return false;
    }
    off += w;
  }
  return true;
}

function onWritable(p: Pair, fd: number): void {
  if (p.outFd !== fd || p.outBuf === null) return;
  const buf = p.outBuf;
  p.outFd = -1, p.outBuf = null;
  const ptr = buf === p.req ? p.reqPtr : p.resPtr;
  if (sendAll(p, fd, buf, ptr, p.outOff, p.outEnd) && buf === p.res) responseSent(p);
}

function responseSent(p: Pair): void {
  if (p.closeAfter) closePair(p); // the harness's start-up probe
}

function onClientReadable(p: Pair): void {
  const n = sys.recv(p.client, p.reqPtr, REQ_SIZE_N, 0);
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN || e === EINTR) return;
    return closePair(p);
  }
  if (n === 0) return closePair(p);
  if (p.up < 0) connectUpstream(p);
  p.reqLen = n, p.got = 0, p.need = -1;
  p.closeAfter = asksClose(p.req, n);
  sendAll(p, p.up, p.req, p.reqPtr, 0, n);
}

function onUpstreamReadable(p: Pair): void {
  // Edge-triggered: read until the response is whole or the socket is empty
  // (a short read means the receive queue was drained).
  for (;;) {
    const want = RES_SIZE - p.got;
    const m = sys.recv(
      p.up,
      p.got === 0 ? p.resPtr : Deno.UnsafePointer.offset(p.resPtr, p.got),
      p.got === 0 ? RES_SIZE_N : BigInt(want),
      0,
    );
    if (m < 0) {
      const e = errno();
      if (e === EAGAIN) return;
      if (e === EINTR) continue;
      throw new Error(`upstream recv: errno ${e}`);
    }
    if (m === 0) throw new Error("upstream closed");
    p.got += m;
    if (p.need === -1) p.need = responseLength(p.res, p.got);
    if (p.need !== -1 && p.got >= p.need) break;
    if (m < want) return;
  }
  const got = p.got;
  p.got = 0, p.need = -1;
  if (sendAll(p, p.client, p.res, p.resPtr, 0, got)) responseSent(p);
}

const lfd = check(sys.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket");
check(sys.setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, onePtr, 4), "setsockopt");
const listenAddr = sockaddr("127.0.0.1", port);
check(sys.bind(lfd, Deno.UnsafePointer.of(listenAddr), 16), `bind 127.0.0.1:${port}`);
check(sys.listen(lfd, 511), "listen");
ctl(EPOLL_CTL_ADD, lfd, EPOLLIN);

function onAccept(): void {
  for (;;) {
    const fd = sys.accept4(lfd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; // EAGAIN: all taken (or an aborted connection)
    sys.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, onePtr, 4);
    byFd[fd] = new Pair(fd);
    ctl(EPOLL_CTL_ADD, fd, SOCKET_EVENTS);
  }
}

function dispatch(n: number): void {
  for (let i = 0; i < n; i++) {
    const mask = eventsView.getUint32(i * EV_SIZE, true);
    const fd = eventsView.getInt32(i * EV_SIZE + EV_DATA, true);
    if (fd === lfd) {
      onAccept();
      continue;
    }
    const p = byFd[fd];
    if (p === undefined) continue; // closed by an earlier event of this batch
    try {
      if (mask & EPOLLOUT) onWritable(p, fd);
      if (byFd[fd] !== p || (mask & ~EPOLLOUT) === 0) continue;
      if (fd === p.client) onClientReadable(p);
      else onUpstreamReadable(p);
    } catch {
      if (byFd[p.client] === p) closePair(p);
    }
  }
}

async function loop(): Promise<void> {
  for (;;) {
    let n: number;
    if (mode === "block") n = sys.epoll_wait(ep, eventsPtr, MAX_EVENTS, -1);
    else if (mode === "async") n = await sys.epoll_wait_async(ep, eventsPtr, MAX_EVENTS, -1);
    else if (mode === "wait") {
      n = sys.epoll_wait(ep, eventsPtr, MAX_EVENTS, WAIT_MS);
      if (n === 0) n = await sys.epoll_wait_async(ep, eventsPtr, MAX_EVENTS, -1);
    } else {
      n = sys.epoll_wait(ep, eventsPtr, MAX_EVENTS, 0);
      if (n === 0) n = await sys.epoll_wait_async(ep, eventsPtr, MAX_EVENTS, -1);
    }
    if (n > 0) dispatch(n);
    // n < 0: EINTR (a signal); wait again
  }
}

await loop();
