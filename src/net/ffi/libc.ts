/**
 * The libc calls behind the FFI socket transport (see poller.ts, conn.ts):
 * sockets, epoll and errno, opened once per isolate on first use.
 *
 * Linux only (epoll, accept4, SOCK_NONBLOCK; the constants are Linux's, the
 * same on x86_64 and aarch64). Needs the FFI permission (`--allow-ffi`; Deno
 * 2.9 needs no `--unstable-ffi`).
 *
 * @module
 */

/** Address and socket constants (Linux). */
export const AF_INET = 2, AF_INET6 = 10, SOCK_STREAM = 1;
/** socket(2)/accept4(2) flags. */
export const SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
/** setsockopt(2) levels and options. */
export const SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_REUSEPORT = 15, IPPROTO_TCP = 6, TCP_NODELAY = 1;
/** epoll_ctl(2) operations. */
export const EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2;
/** epoll event bits. */
export const EPOLLIN = 0x1,
  EPOLLOUT = 0x4,
  EPOLLERR = 0x8,
  EPOLLHUP = 0x10,
  EPOLLRDHUP = 0x2000,
  EPOLLET = 1 << 31;
/** send(2): no SIGPIPE on a closed peer (EPIPE instead). */
export const MSG_NOSIGNAL = 0x4000;
/** shutdown(2) how. */
export const SHUT_WR = 1;
/** errno values. */
export const EINTR = 4, EAGAIN = 11, EINPROGRESS = 115;

/**
 * struct epoll_event: packed (12 bytes) on x86_64, 16 bytes with the data
 * word 8-aligned elsewhere (aarch64).
 */
export const EV_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
/** Offset of epoll_event.data in an event. */
export const EV_DATA = Deno.build.arch === "x86_64" ? 4 : 8;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "pointer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "pointer", "pointer"], result: "i32" },
  connect: { parameters: ["i32", "pointer", "u32"], result: "i32" },
  // ssize_t results are read as i32 (the low half of the return register on
  // x86_64 and aarch64; lengths here are far below 2 GiB): an `isize` result
  // is a BigInt per call. Lengths are `usize` BigInts: a JavaScript number
  // there takes Deno's slow FFI call path (0.8 µs against 0.2 µs per recv).
  recv: { parameters: ["i32", "pointer", "usize", "i32"], result: "i32" },
  send: { parameters: ["i32", "pointer", "usize", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "pointer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "pointer", "i32", "i32"], result: "i32" },
  /** On a thread of Deno's blocking pool: the event loop runs meanwhile. */
  epoll_wait_async: {
    name: "epoll_wait",
    parameters: ["i32", "pointer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound libc calls and the calling thread's errno. */
export interface Libc {
  sys: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
  /** errno of the last failed synchronous call (the isolate's thread). */
  errno(): number;
}

let libc: Libc | null | undefined;
let why = "";

/** libc, opened on first use; null where it cannot be (see `unavailableReason`). */
export function openLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") {
    why = `the FFI socket transport needs Linux (this is ${Deno.build.os})`;
    return null;
  }
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      why = "the FFI socket transport needs the FFI permission (--allow-ffi)";
      return null;
    }
    const lib = Deno.dlopen("libc.so.6", SYMBOLS);
    const view = new Deno.UnsafePointerView(lib.symbols.__errno_location()!);
    libc = { sys: lib.symbols, errno: () => view.getInt32(0) };
  } catch (e) {
    why = `libc.so.6 could not be opened: ${(e as Error).message}`;
  }
  return libc;
}

/** Why openLibc returned null ("" when it did not). */
export function unavailableReason(): string {
  return why;
}

/** An Error for a failed call: `what: errno N`. */
export function sysError(what: string, errno: number): Error {
  if (errno === 32 || errno === 104) return new Deno.errors.ConnectionReset(`${what}: errno ${errno}`);
  if (errno === 98) return new Deno.errors.AddrInUse(`${what}: address in use`);
  return new Error(`${what}: errno ${errno}`);
}

/** struct sockaddr_in / sockaddr_in6 for `hostname` (an IPv4 or IPv6 literal) and `port`. */
export function sockaddr(hostname: string, port: number): Uint8Array {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(hostname);
  if (v4 !== null) {
    const a = new Uint8Array(16), v = new DataView(a.buffer);
    v.setUint16(0, AF_INET, true);
    v.setUint16(2, port, false);
    a.set(v4.slice(1).map(Number), 4);
    return a;
  }
  const a = new Uint8Array(28), v = new DataView(a.buffer);
  v.setUint16(0, AF_INET6, true);
  v.setUint16(2, port, false);
  a.set(ipv6Bytes(hostname), 8);
  return a;
}

function ipv6Bytes(s: string): Uint8Array {
  const host = s.startsWith("[") ? s.slice(1, -1) : s;
  const [l, r] = host.includes("::") ? host.split("::") : [host, null];
  const left = l ? l.split(":") : [], right = r ? r.split(":") : [];
  if (r === null && left.length !== 8) throw new TypeError(`not an IP address: ${s}`);
  const words = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    const n = parseInt(w, 16);
    if (!(n >= 0 && n <= 0xffff)) throw new TypeError(`not an IP address: ${s}`);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** A Deno.NetAddr from struct sockaddr bytes (IPv4 or IPv6). */
export function netAddr(a: Uint8Array): Deno.NetAddr {
  const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
  const port = v.getUint16(2, false);
  if (v.getUint16(0, true) === AF_INET) {
    return { transport: "tcp", hostname: `${a[4]}.${a[5]}.${a[6]}.${a[7]}`, port };
  }
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(v.getUint16(8 + 2 * i, false).toString(16));
  // Deno prints v4-mapped addresses (::ffff:a.b.c.d) the same way; keep it simple here.
  return { transport: "tcp", hostname: words.join(":").replace(/(^|:)0(:0)+(:|$)/, "::"), port };
}
