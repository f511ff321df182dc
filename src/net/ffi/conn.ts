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

/** A connected non-blocking socket (accepted by FfiListener). */
export class FfiConn implements PollTarget {
  private mayRead = true;
  /**
   * The peer's FIN was reported (EPOLLRDHUP, never cleared, as in tokio): a
   * short read then does not mean the socket is drained, the end of stream
   * is still to be read, and no further edge would come for it.
   */
  private peerClosed = false;
  private mayWrite = true;
  private closed = false;
  private rBuf: Uint8Array | null = null;
  private rResolve: ((n: number | null) => void) | null = null;
  private rReject: ((e: Error) => void) | null = null;
  private wData: Uint8Array | null = null;
  private wResolve: ((n: number) => void) | null = null;
  private wReject: ((e: Error) => void) | null = null;
  private readonly libc: Libc;

  constructor(
    private readonly p: Poller,
    readonly fd: number,
    readonly remoteAddr: Deno.NetAddr,
    readonly localAddr: Deno.NetAddr,
  ) {
    this.libc = p.libc;
    p.add(fd, this);
  }

  /** recv into `buf`: bytes read, 0 for end of stream, AGAIN; throws on errors. */
  private tryRead(buf: Uint8Array): number {
    const { sys, errno } = this.libc;
    for (;;) {
      const n = sys.recv(this.fd, Deno.UnsafePointer.of(buf), BigInt(buf.length), 0);
      if (n >= 0) {
        // A short read emptied the queue: the next read waits for an edge (unless a FIN is pending).
        if (n < buf.length && n > 0 && !this.peerClosed) this.mayRead = false;
        return n;
      }
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) {
        this.mayRead = false;
        return AGAIN;
      }
      throw sysError("recv", e);
    }
  }

  /** Reads into `buf`; null at the end of the stream (as Deno.Conn.read). */
  read(buf: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(closedError());
    if (this.rBuf !== null) return Promise.reject(new Deno.errors.Busy("read already pending"));
    if (buf.length === 0) return Promise.resolve(0);
    if (this.mayRead) {
      try {
        const n = this.tryRead(buf);
        if (n !== AGAIN) return Promise.resolve(n === 0 ? null : n);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => {
      this.rBuf = buf;
      this.rResolve = resolve;
      this.rReject = reject;
    });
  }

  /** send of `data`: bytes taken, AGAIN; throws on errors. */
  private trySend(data: Uint8Array): number {
    const { sys, errno } = this.libc;
    for (;;) {
      const n = sys.send(this.fd, Deno.UnsafePointer.of(data), BigInt(data.length), MSG_NOSIGNAL);
      if (n >= 0) return n;
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) {
        this.mayWrite = false;
        return AGAIN;
      }
      throw sysError("send", e);
    }
  }

  /** Writes some of `data` (resolves with how much, as Deno.Conn.write). */
  write(data: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(closedError());
    if (this.wData !== null) return Promise.reject(new Deno.errors.Busy("write already pending"));
    if (data.length === 0) return Promise.resolve(0);
    if (this.mayWrite) {
      try {
        const n = this.trySend(data);
        if (n !== AGAIN) return Promise.resolve(n);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => {
      this.wData = data;
      this.wResolve = resolve;
      this.wReject = reject;
    });
  }

  /** The poller's edge: finishes a waiting read or write. */
  onReady(events: number): void {
    if (this.closed) return;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) this.peerClosed = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      this.mayRead = true;
      const buf = this.rBuf;
      if (buf !== null) {
        const resolve = this.rResolve!, reject = this.rReject!;
        try {
          const n = this.tryRead(buf);
          if (n !== AGAIN) {
            this.rBuf = this.rResolve = this.rReject = null;
            resolve(n === 0 ? null : n);
          }
        } catch (e) {
          this.rBuf = this.rResolve = this.rReject = null;
          reject(e as Error);
        }
      }
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
      this.mayWrite = true;
      const data = this.wData;
      if (data !== null) {
        const resolve = this.wResolve!, reject = this.wReject!;
        try {
          const n = this.trySend(data);
          if (n !== AGAIN) {
            this.wData = this.wResolve = this.wReject = null;
            resolve(n);
          }
        } catch (e) {
          this.wData = this.wResolve = this.wReject = null;
          reject(e as Error);
        }
      }
    }
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
    const rr = this.rReject, wr = this.wReject;
    this.rBuf = this.rResolve = this.rReject = null;
    this.wData = this.wResolve = this.wReject = null;
    rr?.(closedError());
    wr?.(closedError());
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
  ref(): void {}
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

  /** Binds and listens; throws where FFI sockets are unavailable (not Linux, no --allow-ffi). */
  static listen(o: FfiListenOptions): FfiListener {
    const p = poller();
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

  ref(): void {}
  unref(): void {}

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
