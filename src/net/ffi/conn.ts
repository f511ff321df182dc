/**
 * A plaintext TCP listener and connection on libc sockets through FFI, with
 * the surface of `Deno.Listener` / `Deno.Conn` that Loom's HTTP/1.1 engine
 * uses (accept; read into the caller's buffer, write, close, closeWrite,
 * setNoDelay, the addresses). An opt-in prototype (issue 16 item 2: see
 * bench/README.md, "An FFI socket path"): the listener takes it with
 * `LOOM_HTTP1_IO=ffi`.
 *
 * Why: each Deno socket op is an async op with its promise and a trip
 * through Deno's event loop; here a read or write is one synchronous FFI call
 * (about 0.2 µs beyond the system call) when the socket is ready, and
 * readiness for all sockets comes from one epoll instance (poller.ts). A
 * call that completes at once returns an already-settled promise.
 *
 * Readiness is tracked as tokio does: a socket is tried while it may be
 * ready; EAGAIN (or a short read, which means the receive queue was emptied)
 * clears the flag and the next call waits for the poller's edge.
 *
 * Not supported: TLS, `readable`/`writable` streams, Unix sockets.
 *
 * @module
 */
import {
  EAGAIN,
  EINTR,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  IPPROTO_TCP,
  type Libc,
  MSG_NOSIGNAL,
  netAddr,
  SHUT_WR,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddr,
  SOL_SOCKET,
  sysError,
  TCP_NODELAY,
} from "./libc.ts";
import { type Poller, poller, pollerUnavailable, type PollTarget } from "./poller.ts";

/** setsockopt values (their pointers are taken per call: UnsafePointer.of needs the FFI permission, and this module loads without it). */
const ONE = new Int32Array([1]), ZERO = new Int32Array([0]);
/** Result of a try that would block. */
const AGAIN = -2;

function closedError(): Error {
  return new Deno.errors.BadResource("connection closed");
}

/**
 * One direction of a socket: whether it may be ready, and the call waiting
 * for it. `attempt` does the system call: a count, AGAIN, or it throws.
 */
class Side<T> {
  may = true;
  private buf: Uint8Array | null = null;
  private resolve: ((v: T) => void) | null = null;
  private reject: ((e: Error) => void) | null = null;

  constructor(
    private readonly attempt: (buf: Uint8Array) => number,
    private readonly result: (n: number) => T,
  ) {}

  /** Done at once when the socket takes it (a settled promise), else when the poller says it may be. */
  start(buf: Uint8Array): Promise<T> {
    if (this.buf !== null) return Promise.reject(new Deno.errors.Busy("operation already pending"));
    if (this.may) {
      try {
        const n = this.attempt(buf);
        if (n !== AGAIN) return Promise.resolve(this.result(n));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => {
      this.buf = buf;
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** The poller's edge for this direction: the waiting call tries again. */
  ready(): void {
    this.may = true;
    const buf = this.buf;
    if (buf === null) return;
    const resolve = this.resolve!, reject = this.reject!;
    try {
      const n = this.attempt(buf);
      if (n === AGAIN) return;
      this.clear();
      resolve(this.result(n));
    } catch (e) {
      this.clear();
      reject(e as Error);
    }
  }

  /** Fails the waiting call (the socket was closed). */
  fail(e: Error): void {
    const reject = this.reject;
    this.clear();
    reject?.(e);
  }

  private clear(): void {
    this.buf = null;
    this.resolve = this.reject = null;
  }
}

/** A connected non-blocking socket (accepted by FfiListener). */
export class FfiConn implements PollTarget {
  /**
   * The peer's FIN was reported (EPOLLRDHUP, never cleared, as in tokio): a
   * short read then does not mean the socket is drained, the end of stream
   * is still to be read, and no further edge would come for it.
   */
  private peerClosed = false;
  private closed = false;
  private readonly libc: Libc;
  private readonly r: Side<number | null> = new Side(
    (b) => this.transfer(this.r, false, b),
    (n) => n === 0 ? null : n,
  );
  private readonly w: Side<number> = new Side((d) => this.transfer(this.w, true, d), (n) => n);

  constructor(
    private readonly p: Poller,
    readonly fd: number,
    readonly remoteAddr: Deno.NetAddr,
    readonly localAddr: Deno.NetAddr,
  ) {
    this.libc = p.libc;
    p.add(fd, this);
  }

  /**
   * recv into `buf` (`send` false) or send of it: the count (0 from recv: the
   * end of the stream), or AGAIN and that side waits for an edge; throws on
   * errors.
   */
  private transfer(side: { may: boolean }, send: boolean, buf: Uint8Array): number {
    const { sys, errno } = this.libc;
    for (;;) {
      const p = Deno.UnsafePointer.of(buf), len = BigInt(buf.length);
      const n = send ? sys.send(this.fd, p, len, MSG_NOSIGNAL) : sys.recv(this.fd, p, len, 0);
      if (n >= 0) {
        // A short read emptied the queue: the next read waits for an edge (unless a FIN is pending).
        if (!send && n < buf.length && n > 0 && !this.peerClosed) side.may = false;
        return n;
      }
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) {
        side.may = false;
        return AGAIN;
      }
      throw sysError(send ? "send" : "recv", e);
    }
  }

  /** Reads into `buf`; null at the end of the stream (as Deno.Conn.read). */
  read(buf: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(closedError());
    return buf.length === 0 ? Promise.resolve(0) : this.r.start(buf);
  }

  /** Writes some of `data` (resolves with how much, as Deno.Conn.write). */
  write(data: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(closedError());
    return data.length === 0 ? Promise.resolve(0) : this.w.start(data);
  }

  /** The poller's edge: a waiting read or write tries again. */
  onReady(events: number): void {
    if (this.closed) return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.peerClosed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.r.ready();
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) this.w.ready();
  }

  /** Half-closes: no more writes (the peer reads the end of the stream). */
  closeWrite(): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    if (this.libc.sys.shutdown(this.fd, SHUT_WR) < 0) {
      return Promise.reject(sysError("shutdown", this.libc.errno()));
    }
    return Promise.resolve();
  }

  /** Closes; a pending read or write fails with BadResource (as Deno's). */
  close(): void {
    if (this.closed) throw closedError();
    this.closed = true;
    this.p.remove(this.fd);
    this.libc.sys.close(this.fd);
    this.r.fail(closedError());
    this.w.fail(closedError());
  }

  /** TCP_NODELAY on or off. */
  setNoDelay(noDelay = true): void {
    if (!this.closed) {
      this.libc.sys.setsockopt(
        this.fd,
        IPPROTO_TCP,
        TCP_NODELAY,
        Deno.UnsafePointer.of(noDelay ? ONE : ZERO),
        4,
      );
    }
  }

  /** Not used by Loom on plaintext listeners; present for the Deno.Conn shape. */
  setKeepAlive(): void {}
  /** A no-op: what keeps the process alive is the poller's pending wait, not a socket. */
  ref(): void {}
  /** A no-op (see ref). */
  unref(): void {}
}

/** Options of FfiListener.listen. */
export interface FfiListenOptions {
  hostname: string;
  port: number;
  /** SO_REUSEPORT (workers share the port). */
  reusePort?: boolean;
  backlog?: number;
}

/** A listening socket; accept() resolves with FfiConns. */
export class FfiListener implements PollTarget, AsyncIterable<FfiConn> {
  private mayAccept = true;
  private closed = false;
  private waiting: { resolve: (c: FfiConn) => void; reject: (e: Error) => void } | null = null;
  private readonly peer = new Uint8Array(28);
  private readonly peerPtr = Deno.UnsafePointer.of(this.peer);
  private readonly peerLen = new Uint32Array(1);
  private readonly peerLenPtr = Deno.UnsafePointer.of(this.peerLen);

  private constructor(private readonly p: Poller, readonly fd: number, readonly addr: Deno.NetAddr) {
    p.add(fd, this);
  }

  /**
   * Binds and listens; throws where FFI sockets are unavailable (not Linux, no --allow-ffi).
   * @param p the poller (the isolate's by default; tests pass one of their own)
   */
  static listen(o: FfiListenOptions, p: Poller | null = poller()): FfiListener {
    if (p === null) throw new Error(pollerUnavailable());
    const { sys, errno } = p.libc;
    const sa = sockaddr(o.hostname, o.port);
    const fd = sys.socket(sa[0], SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw sysError("socket", errno());
    const fail = (what: string) => {
      const e = sysError(`${what} ${o.hostname}:${o.port}`, errno());
      sys.close(fd);
      return e;
    };
    if (sys.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, Deno.UnsafePointer.of(ONE), 4) < 0) {
      throw fail("setsockopt");
    }
    if (o.reusePort && sys.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, Deno.UnsafePointer.of(ONE), 4) < 0) {
      throw fail("setsockopt");
    }
    if (sys.bind(fd, Deno.UnsafePointer.of(sa), sa.length) < 0) throw fail("bind");
    if (sys.listen(fd, o.backlog ?? 511) < 0) throw fail("listen");
    return new FfiListener(p, fd, localAddr(p.libc, fd));
  }

  private tryAccept(): FfiConn | null {
    const { sys, errno } = this.p.libc;
    for (;;) {
      this.peerLen[0] = this.peer.length;
      const fd = sys.accept4(this.fd, this.peerPtr, this.peerLenPtr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        return new FfiConn(
          this.p,
          fd,
          netAddr(this.peer.subarray(0, this.peerLen[0])),
          localAddr(this.p.libc, fd),
        );
      }
      const e = errno();
      if (e === EAGAIN) {
        this.mayAccept = false;
        return null;
      }
      // EINTR, and a connection that was reset before it was taken (ECONNABORTED): try the next.
      if (e === EINTR || e === 103) continue;
      throw sysError("accept4", e);
    }
  }

  /** The next connection. */
  accept(): Promise<FfiConn> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    if (this.waiting !== null) return Promise.reject(new Deno.errors.Busy("accept already pending"));
    if (this.mayAccept) {
      try {
        const c = this.tryAccept();
        if (c !== null) return Promise.resolve(c);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => this.waiting = { resolve, reject });
  }

  /** The poller's edge: a waiting accept takes the connection. */
  onReady(events: number): void {
    if (this.closed || (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) === 0) return;
    this.mayAccept = true;
    const w = this.waiting;
    if (w === null) return;
    try {
      const c = this.tryAccept();
      if (c !== null) {
        this.waiting = null;
        w.resolve(c);
      }
    } catch (e) {
      this.waiting = null;
      w.reject(e as Error);
    }
  }

  /** Stops listening; a pending accept fails with BadResource. */
  close(): void {
    if (this.closed) throw new Deno.errors.BadResource("listener closed");
    this.closed = true;
    this.p.remove(this.fd);
    this.p.libc.sys.close(this.fd);
    const w = this.waiting;
    this.waiting = null;
    w?.reject(new Deno.errors.BadResource("listener closed"));
  }

  /** A no-op: what keeps the process alive is the poller's pending wait, not a socket. */
  ref(): void {}
  /** A no-op (see ref). */
  unref(): void {}

  /** Accepted connections until the listener is closed (as `for await (const c of Deno.listen(...))`). */
  async *[Symbol.asyncIterator](): AsyncGenerator<FfiConn> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource) return;
        throw e;
      }
    }
  }

  /** Closes the listener unless it is closed (`using`). */
  [Symbol.dispose](): void {
    if (!this.closed) this.close();
  }
}

function localAddr(libc: Libc, fd: number): Deno.NetAddr {
  const a = new Uint8Array(28), len = new Uint32Array([28]);
  if (libc.sys.getsockname(fd, Deno.UnsafePointer.of(a), Deno.UnsafePointer.of(len)) < 0) {
    return { transport: "tcp", hostname: "", port: 0 };
  }
  return netAddr(a.subarray(0, len[0]));
}
