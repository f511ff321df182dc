/**
 * The file descriptor behind a Deno.Conn, and the socket calls splicing makes on it. Deno does not
 * expose descriptors (`rid` is not one), so the connection is found by its addresses: every
 * descriptor of /proc/self/fd is asked for its local and peer address (getsockname and getpeername,
 * two cheap system calls each), and the one whose four-tuple matches is it. A four-tuple names one
 * TCP connection per network namespace; the socket's cookie (SO_COOKIE) then names that socket
 * for good, so a descriptor closed and reused meanwhile is noticed.
 *
 * @module
 */
import { c, errno } from "./ffi.ts";
import { type HostPort, ipBytes } from "./keys.ts";

/** Constants of the Linux UAPI (x86-64 and arm64 alike). */
const K = {
  SOL_SOCKET: 1,
  SO_RCVLOWAT: 18,
  SO_COOKIE: 57,
  IPPROTO_TCP: 6,
  TCP_INFO: 11,
  SIOCOUTQ: 0x5411,
  MSG_DONTWAIT: 0x40,
  EAGAIN: 11,
  /** sizeof(struct tcp_info) in Linux 6.1 UAPI, and offsetof(tcpi_bytes_acked). */
  TCP_INFO_SIZE: 232,
  BYTES_ACKED: 120,
  TCP_ESTABLISHED: 1,
  TCP_CLOSE_WAIT: 8,
} as const;

/** 16 address bytes (IPv4 mapped) and port from a struct sockaddr_in / sockaddr_in6. */
function parseSockaddr(b: Uint8Array, len: number): { ip: Uint8Array; port: number } | null {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const family = v.getUint16(0, true);
  const port = v.getUint16(2, false);
  if (family === 2 && len >= 8) {
    const ip = new Uint8Array(16);
    ip[10] = 0xff;
    ip[11] = 0xff;
    ip.set(b.subarray(4, 8), 12);
    return { ip, port };
  }
  if (family === 10 && len >= 24) return { ip: b.slice(8, 24), port };
  return null;
}

function sameAddr(a: { ip: Uint8Array; port: number } | null, ip: Uint8Array, port: number): boolean {
  return a !== null && a.port === port && a.ip.every((x, i) => x === ip[i]);
}

/** The local or peer address of `fd`; null when it is not a connected IP socket. */
function sockAddr(fd: number, peer: boolean): { ip: Uint8Array; port: number } | null {
  const buf = new Uint8Array(128);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, buf.length, true);
  const rc = peer ? c().getpeername(fd, buf, len) : c().getsockname(fd, buf, len);
  if (rc !== 0) return null;
  return parseSockaddr(buf, new DataView(len.buffer).getUint32(0, true));
}

/**
 * The descriptor of this process's TCP socket with these ends (as Deno's conn.localAddr and
 * conn.remoteAddr give them), or -1.
 */
export function findSocketFd(local: HostPort, remote: HostPort): number {
  const lip = ipBytes(local.hostname);
  const rip = ipBytes(remote.hostname);
  if (lip === null || rip === null) return -1;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(e.name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    if (!sameAddr(sockAddr(fd, false), lip, local.port)) continue;
    if (sameAddr(sockAddr(fd, true), rip, remote.port)) return fd;
  }
  return -1;
}

/** The socket's cookie (unique for the kernel's uptime), or 0n when `fd` is no socket. */
export function socketCookie(fd: number): bigint {
  const v = new Uint8Array(8);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 8, true);
  if (c().getsockopt(fd, K.SOL_SOCKET, K.SO_COOKIE, v, len) !== 0) return 0n;
  return new DataView(v.buffer).getBigUint64(0, true);
}

/**
 * Every byte ever queued for sending on a TCP socket, up to a constant: the bytes acknowledged
 * (TCP_INFO) plus those still queued (SIOCOUTQ). Read in that order, an ACK arriving between the
 * two calls can only make the sum smaller than the truth, never larger. null on error, and when
 * the socket can no longer send (neither established nor half-closed by its peer).
 */
export function bytesQueued(fd: number): bigint | null {
  const info = new Uint8Array(K.TCP_INFO_SIZE);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, K.TCP_INFO_SIZE, true);
  if (c().getsockopt(fd, K.IPPROTO_TCP, K.TCP_INFO, info, len) !== 0) return null;
  if (new DataView(len.buffer).getUint32(0, true) < K.BYTES_ACKED + 8) return null;
  const state = info[0];
  if (state !== K.TCP_ESTABLISHED && state !== K.TCP_CLOSE_WAIT) return null;
  const acked = new DataView(info.buffer).getBigUint64(K.BYTES_ACKED, true);
  const outq = new Uint8Array(4);
  if (c().ioctl(fd, BigInt(K.SIOCOUTQ), outq) !== 0) return null;
  return acked + BigInt(new DataView(outq.buffer).getInt32(0, true));
}

/**
 * Reads what the socket's receive queue holds without waiting (MSG_DONTWAIT): the bytes, an empty
 * array when nothing is there, or null at end of stream or on error.
 */
export function recvNow(fd: number, max = 256 * 1024): Uint8Array | null {
  const buf = new Uint8Array(max);
  const n = Number(c().recv(fd, buf, BigInt(max), K.MSG_DONTWAIT));
  if (n > 0) return buf.subarray(0, n);
  if (n === 0) return null;
  return errno() === K.EAGAIN ? new Uint8Array(0) : null;
}

/**
 * Sets SO_RCVLOWAT to 1, which makes TCP call the socket's data-ready callback when bytes are
 * queued: after a socket joins a sockmap, that hands what arrived just before to its program.
 */
export function kickDataReady(fd: number): boolean {
  const one = new Uint8Array(4);
  new DataView(one.buffer).setInt32(0, 1, true);
  return c().setsockopt(fd, K.SOL_SOCKET, K.SO_RCVLOWAT, one, 4) === 0;
}
