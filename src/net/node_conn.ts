/**
 * A node socket (`node:net` / `node:tls`) seen as the minimal `Deno.Conn`
 * surface Loom's engines use: `read` into a caller's buffer, `write` that
 * resolves once the bytes are handed over, `close`, and the peer address.
 *
 * Why: `node:tls` is the only TLS in Deno with an SNI callback, client
 * certificate requests and upstream verification against another name, but
 * Loom's HTTP/1.1 and HTTP/2 engines are written against Deno's conn shape.
 */
import type { Socket } from "node:net";

/** A node socket as a Deno-style conn (read/write/close/remoteAddr). */
export class NodeSocketConn {
  private queue: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private waiting: (() => void) | null = null;
  readonly remoteAddr: Deno.NetAddr;
  readonly localAddr: Deno.NetAddr;

  constructor(readonly socket: Socket) {
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    this.localAddr = { transport: "tcp", hostname: socket.localAddress ?? "", port: socket.localPort ?? 0 };
    socket.on("data", (d: Uint8Array) => {
      this.queue.push(d);
      // Backpressure: stop reading from the socket while unread data piles up.
      if (this.queue.length > 8) socket.pause();
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", (e: Error) => {
      this.error = e;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.queue.length === 0) {
      if (this.error !== null) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((r) => this.waiting = r);
    }
    const head = this.queue[0];
    const n = Math.min(head.length, buf.length);
    buf.set(head.subarray(0, n));
    if (n === head.length) this.queue.shift();
    else this.queue[0] = head.subarray(n);
    if (this.queue.length <= 2 && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.error !== null) return Promise.reject(this.error);
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("connection closed"));
    // The caller reuses its buffer after the promise: node keeps a reference, so copy.
    const copy = data.slice();
    return new Promise((resolve, reject) => {
      this.socket.write(copy, (e) => e ? reject(e) : resolve(copy.length));
    });
  }

  close(): void {
    this.socket.destroy();
    this.ended = true;
    this.wake();
  }

  closeWrite(): Promise<void> {
    this.socket.end();
    return Promise.resolve();
  }

  setNoDelay(on = true): void {
    this.socket.setNoDelay(on);
  }

  setKeepAlive(): void {}
  ref(): void {}
  unref(): void {}
}

/**
 * A conn whose first reads return bytes already taken from it (a sniffed
 * HTTP/2 preface that turned out to be HTTP/1.1, or the reverse).
 */
export class PrefixedConn {
  constructor(private inner: Deno.Conn, private prefix: Uint8Array) {}

  get remoteAddr(): Deno.Addr {
    return this.inner.remoteAddr;
  }

  get localAddr(): Deno.Addr {
    return this.inner.localAddr;
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (this.prefix.length === 0) return this.inner.read(buf);
    const n = Math.min(buf.length, this.prefix.length);
    buf.set(this.prefix.subarray(0, n));
    this.prefix = this.prefix.subarray(n);
    return Promise.resolve(n);
  }

  write(data: Uint8Array): Promise<number> {
    return this.inner.write(data);
  }

  close(): void {
    this.inner.close();
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  setNoDelay(on = true): void {
    (this.inner as Deno.TcpConn).setNoDelay?.(on);
  }
}
