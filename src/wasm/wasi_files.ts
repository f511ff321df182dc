/**
 * WASI file calls over a plugin's read-only directories (preopens.ts):
 * each configured directory is a preopened descriptor (3, 4, ... in `files`
 * order), so wasi-libc's `open`/`fopen`, Rust's `std::fs` and Go's `os`
 * find them by path. Files open for reading only (any write right, create,
 * truncate or append flag is EROFS) and are read whole at open (at most
 * MAX_FILE): reads, seeks and closes then touch no file system and leave
 * nothing open when a VM is dropped. Paths that leave a directory (`..`, a
 * symlink pointing out, an absolute path) are ENOTCAPABLE.
 *
 * @module
 */
import { Errno } from "./abi.ts";
import type { GuestMemory } from "./memory.ts";
import { type Preopen, type Refusal, Sandbox } from "./preopens.ts";
import type { HostFunctions } from "./host/mod.ts";

const E = Errno;
const enc = new TextEncoder();

/** Most descriptors one VM may hold open (each holds a whole file). */
const MAX_OPEN = 64;
/** The first descriptor after stdin, stdout and stderr. */
const FIRST_FD = 3;

/** WASI filetypes. */
const FT = { UNKNOWN: 0, DIRECTORY: 3, REGULAR: 4, SYMLINK: 7 } as const;
/** oflags that create or change files. */
const O_CREAT = 1, O_DIRECTORY = 2, O_EXCL = 4, O_TRUNC = 8;
/**
 * fd_write: every toolchain (wasi-libc, Rust std, Go) leaves it out of a
 * read-only open's rights and asks for it on a write or read-write one, while
 * a read-only open still asks for the path_* rights it would hand on.
 */
const FD_WRITE = 1n << 6n;
/** Rights that change files (fd_datasync, fd_write, fd_allocate, path_create_*, set_size/times, ...). */
const WRITE_RIGHTS = (1n << 0n) | FD_WRITE | (1n << 8n) | (1n << 9n) | (1n << 10n) | (1n << 19n) |
  (1n << 20n) | (1n << 22n) | (1n << 23n) | (1n << 24n) | (1n << 25n) | (1n << 26n);
/** fdflags that write: append, dsync, sync (rsync and nonblock are harmless). */
const WRITE_FDFLAGS = 1 | 2 | 16;
/** Rights granted: every read-only right (read, seek, tell, readdir, stats, path_open, ...). */
const READ_RIGHTS = ~WRITE_RIGHTS & ((1n << 30n) - 1n);

type Dir = { kind: "dir"; root: Preopen; rel: string };
type File = { kind: "file"; data: Uint8Array; pos: number; info: Deno.FileInfo };
type Entry = Dir | File;

function errnoOf(r: Refusal): number {
  switch (r) {
    case "not_found":
      return E.NOENT;
    case "denied":
      return E.NOTCAPABLE;
    case "too_large":
      return E.FBIG;
    case "not_file":
      return E.ISDIR;
    default:
      return E.IO;
  }
}

function filetype(info: { isFile: boolean; isDirectory: boolean; isSymlink: boolean }): number {
  return info.isFile
    ? FT.REGULAR
    : info.isDirectory
    ? FT.DIRECTORY
    : info.isSymlink
    ? FT.SYMLINK
    : FT.UNKNOWN;
}

const ns = (d: Date | null) => BigInt(d?.getTime() ?? 0) * 1_000_000n;

/** Writes a WASI filestat (64 bytes) at `ptr`. */
function writeFilestat(mem: GuestMemory, ptr: number, info: Deno.FileInfo, size: number): void {
  const b = mem.read(ptr, 64);
  b.fill(0);
  const dv = new DataView(b.buffer, b.byteOffset, 64);
  dv.setBigUint64(0, BigInt(info.dev ?? 0), true);
  dv.setBigUint64(8, BigInt(info.ino ?? 0), true);
  dv.setUint8(16, filetype(info));
  dv.setBigUint64(24, BigInt(info.nlink ?? 1), true);
  dv.setBigUint64(32, BigInt(size), true);
  dv.setBigUint64(40, ns(info.atime), true);
  dv.setBigUint64(48, ns(info.mtime), true);
  dv.setBigUint64(56, ns(info.birthtime ?? info.mtime), true);
}

/** Sums and visits an iovec list: `each(ptr, len)` returns how many bytes it handled. */
function iovecs(mem: GuestMemory, iovs: number, n: number, each: (p: number, l: number) => number): number {
  const dv = mem.view();
  let total = 0;
  for (let i = 0; i < n >>> 0; i++) {
    const p = dv.getUint32((iovs >>> 0) + i * 8, true);
    const l = dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
    const done = each(p, l);
    total += done;
    if (done < l) break;
  }
  return total;
}

/**
 * The file calls of one VM over `sandbox`'s directories; `fdstat` answers
 * for descriptors 0-2 (wasi.ts) and is called for the others here.
 */
export function wasiFileFunctions(mem: GuestMemory, sandbox: Sandbox | null): HostFunctions {
  const fds = new Map<number, Entry>();
  const preopens = sandbox?.preopens ?? [];
  preopens.forEach((root, i) => fds.set(FIRST_FD + i, { kind: "dir", root, rel: "" }));
  const dir = (fd: number) => {
    const e = fds.get(fd);
    return e?.kind === "dir" ? e : undefined;
  };
  const file = (fd: number) => {
    const e = fds.get(fd);
    return e?.kind === "file" ? e : undefined;
  };
  /** A path under directory descriptor `fd`, resolved in the sandbox. */
  const lookup = (
    fd: number,
    pp: number,
    pl: number,
  ): { errno: number } | { d: Dir; rel: string; path: string; info: Deno.FileInfo } => {
    const d = dir(fd);
    if (d === undefined) return { errno: fds.has(fd) ? E.NOTDIR : E.BADF };
    const path = mem.str(pp, pl);
    if (path.startsWith("/")) return { errno: E.NOTCAPABLE };
    const rel = d.rel === "" ? path : d.rel + "/" + path;
    const r = sandbox!.resolve(d.root, rel);
    if ("refused" in r) return { errno: errnoOf(r.refused) };
    return { d, rel, path: r.path, info: r.info };
  };
  const nextFd = () => {
    let fd = FIRST_FD + preopens.length;
    while (fds.has(fd)) fd++;
    return fd;
  };
  /** Descriptors of ours refuse writes; unknown ones are EBADF. */
  const readOnly = (fd: number) => fds.has(fd) ? E.ROFS : E.BADF;

  return {
    fd_prestat_get: (fd: number, ptr: number) => {
      const i = fd - FIRST_FD;
      if (i < 0 || i >= preopens.length) return E.BADF;
      const b = mem.read(ptr, 8);
      b.fill(0); // tag 0: a directory
      new DataView(b.buffer, b.byteOffset, 8).setUint32(4, enc.encode(preopens[i].guest).length, true);
      return E.SUCCESS;
    },
    fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
      const i = fd - FIRST_FD;
      if (i < 0 || i >= preopens.length) return E.BADF;
      const name = enc.encode(preopens[i].guest);
      if (len >>> 0 < name.length) return E.INVAL;
      mem.read(ptr, name.length).set(name);
      return E.SUCCESS;
    },
    path_open: ((
      fd: number,
      _dirflags: number,
      pp: number,
      pl: number,
      oflags: number,
      rightsBase: bigint,
      _rightsInheriting: bigint,
      fdflags: number,
      fdPtr: number,
    ) => {
      if ((oflags & (O_CREAT | O_EXCL | O_TRUNC)) !== 0 || (fdflags & WRITE_FDFLAGS) !== 0) {
        return dir(fd) !== undefined ? E.ROFS : E.BADF;
      }
      if ((BigInt.asUintN(64, rightsBase) & FD_WRITE) !== 0n) return dir(fd) !== undefined ? E.ROFS : E.BADF;
      const r = lookup(fd, pp, pl);
      if ("errno" in r) return r.errno;
      if (fds.size >= MAX_OPEN + preopens.length) return E.MFILE;
      let entry: Entry;
      if (r.info.isDirectory) entry = { kind: "dir", root: r.d.root, rel: r.rel };
      else if ((oflags & O_DIRECTORY) !== 0) return E.NOTDIR;
      else {
        const data = Sandbox.read(r.path, r.info);
        if (typeof data === "string") return errnoOf(data);
        entry = { kind: "file", data, pos: 0, info: r.info };
      }
      const n = nextFd();
      fds.set(n, entry);
      mem.setU32(fdPtr, n);
      return E.SUCCESS;
    }) as unknown as (...a: never[]) => number,
    fd_read: (fd: number, iovs: number, n: number, nread: number) => {
      const f = file(fd);
      if (f === undefined) return fds.has(fd) ? E.ISDIR : E.BADF;
      const total = iovecs(mem, iovs, n, (p, l) => {
        const chunk = f.data.subarray(f.pos, f.pos + l);
        mem.read(p, chunk.length).set(chunk);
        f.pos += chunk.length;
        return chunk.length;
      });
      mem.setU32(nread, total);
      return E.SUCCESS;
    },
    fd_pread: ((fd: number, iovs: number, n: number, offset: bigint, nread: number) => {
      const f = file(fd);
      if (f === undefined) return fds.has(fd) ? E.ISDIR : E.BADF;
      let pos = Number(BigInt.asUintN(64, offset));
      const total = iovecs(mem, iovs, n, (p, l) => {
        const chunk = f.data.subarray(Math.min(pos, f.data.length), pos + l);
        mem.read(p, chunk.length).set(chunk);
        pos += chunk.length;
        return chunk.length;
      });
      mem.setU32(nread, total);
      return E.SUCCESS;
    }) as unknown as (...a: never[]) => number,
    fd_seek: ((fd: number, offset: bigint, whence: number, newPtr: number) => {
      const f = file(fd);
      if (f === undefined) return fds.has(fd) ? E.ISDIR : E.BADF;
      const base = whence === 0 ? 0 : whence === 1 ? f.pos : whence === 2 ? f.data.length : -1;
      if (base < 0) return E.INVAL;
      const pos = base + Number(BigInt.asIntN(64, offset));
      if (pos < 0) return E.INVAL;
      f.pos = pos;
      mem.setU64(newPtr, BigInt(pos));
      return E.SUCCESS;
    }) as unknown as (...a: never[]) => number,
    fd_tell: (fd: number, ptr: number) => {
      const f = file(fd);
      if (f === undefined) return fds.has(fd) ? E.ISDIR : E.BADF;
      mem.setU64(ptr, BigInt(f.pos));
      return E.SUCCESS;
    },
    fd_close: (fd: number) => {
      // Standard streams and preopens stay (as wasmtime: closing a preopen would lose it for good).
      if (fd <= 2 || fd < FIRST_FD + preopens.length) return E.SUCCESS;
      return fds.delete(fd) ? E.SUCCESS : E.BADF;
    },
    fd_filestat_get: (fd: number, ptr: number) => {
      const e = fds.get(fd);
      if (e === undefined) return E.BADF;
      if (e.kind === "file") writeFilestat(mem, ptr, e.info, e.data.length);
      else {
        const r = sandbox!.resolve(e.root, e.rel);
        if ("refused" in r) return errnoOf(r.refused);
        writeFilestat(mem, ptr, r.info, r.info.size);
      }
      return E.SUCCESS;
    },
    path_filestat_get: (fd: number, _flags: number, pp: number, pl: number, ptr: number) => {
      const r = lookup(fd, pp, pl);
      if ("errno" in r) return r.errno;
      writeFilestat(mem, ptr, r.info, r.info.size);
      return E.SUCCESS;
    },
    fd_readdir: ((fd: number, buf: number, bufLen: number, cookie: bigint, usedPtr: number) => {
      const d = dir(fd);
      if (d === undefined) return fds.has(fd) ? E.NOTDIR : E.BADF;
      const r = sandbox!.resolve(d.root, d.rel);
      if ("refused" in r) return errnoOf(r.refused);
      let names: Deno.DirEntry[];
      try {
        // Sorted: a cookie (an index) means the same entry on the next call.
        names = [...Deno.readDirSync(r.path)].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      } catch {
        return E.IO;
      }
      bufLen >>>= 0;
      let used = 0;
      for (let i = Number(BigInt.asUintN(64, cookie)); i < names.length && used < bufLen; i++) {
        const name = enc.encode(names[i].name);
        const rec = new Uint8Array(24 + name.length);
        const dv = new DataView(rec.buffer);
        dv.setBigUint64(0, BigInt(i + 1), true);
        dv.setUint32(16, name.length, true);
        dv.setUint8(20, filetype(names[i]));
        rec.set(name, 24);
        // The last record may be cut: a full buffer tells the caller to ask again from its cookie.
        const part = rec.subarray(0, Math.min(rec.length, bufLen - used));
        mem.read(buf + used, part.length).set(part);
        used += part.length;
      }
      mem.setU32(usedPtr, used);
      return E.SUCCESS;
    }) as unknown as (...a: never[]) => number,
    /** Descriptor flags and rights (24 bytes): file type, then read-only rights. */
    fd_fdstat_get: (fd: number, ptr: number) => {
      const e = fds.get(fd);
      if (e === undefined) return E.BADF;
      const b = mem.read(ptr, 24);
      b.fill(0);
      const dv = new DataView(b.buffer, b.byteOffset, 24);
      dv.setUint8(0, e.kind === "dir" ? FT.DIRECTORY : FT.REGULAR);
      dv.setBigUint64(8, READ_RIGHTS, true);
      dv.setBigUint64(16, READ_RIGHTS, true);
      return E.SUCCESS;
    },
    // Go's os sets O_NONBLOCK on what it opens: flags change nothing on a whole-file read.
    fd_fdstat_set_flags: (fd: number) => fds.has(fd) ? E.SUCCESS : E.BADF,
    // Everything that would change a file or directory.
    fd_write: (fd: number) => readOnly(fd),
    fd_pwrite: (fd: number) => readOnly(fd),
    fd_allocate: (fd: number) => readOnly(fd),
    fd_filestat_set_size: (fd: number) => readOnly(fd),
    fd_filestat_set_times: (fd: number) => readOnly(fd),
    fd_datasync: (fd: number) => readOnly(fd),
    fd_sync: (fd: number) => readOnly(fd),
    path_create_directory: (fd: number) => readOnly(fd),
    path_remove_directory: (fd: number) => readOnly(fd),
    path_unlink_file: (fd: number) => readOnly(fd),
    path_rename: (fd: number) => readOnly(fd),
    path_link: (fd: number) => readOnly(fd),
    path_symlink: (_p: number, _l: number, fd: number) => readOnly(fd),
    path_filestat_set_times: (fd: number) => readOnly(fd),
  };
}
