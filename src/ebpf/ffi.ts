/**
 * The FFI shim: Debian's libbpf (`libbpf.so.1`, package libbpf1) and the few libc calls Loom needs
 * on sockets it holds (find a connection's file descriptor, read TCP_INFO, set SO_RCVLOWAT), through
 * `Deno.dlopen`. libbpf parses the ELF objects, creates the maps, loads and attaches the programs:
 * Loom has no ELF loader of its own. Opened once per isolate, on first use (a worker isolate opens
 * its own handle; file descriptors are process-wide, so any isolate may use any map's fd).
 *
 * Calls that fail return a negative errno (libbpf 1.x) or -1 with errno set (libc); {@linkcode errno}
 * and {@linkcode errnoName} turn them into the names the kernel documents.
 *
 * @module
 */

const LIBBPF = {
  libbpf_major_version: { parameters: [], result: "u32" },
  libbpf_minor_version: { parameters: [], result: "u32" },
  libbpf_set_print: { parameters: ["pointer"], result: "pointer" },
  libbpf_get_error: { parameters: ["pointer"], result: "i64" },
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__attach_cgroup: { parameters: ["pointer", "i32"], result: "pointer" },
  bpf_link__fd: { parameters: ["pointer"], result: "i32" },
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  bpf_link_create: { parameters: ["i32", "i32", "u32", "pointer"], result: "i32" },
  bpf_prog_attach: { parameters: ["i32", "i32", "u32", "u32"], result: "i32" },
  bpf_prog_detach2: { parameters: ["i32", "i32", "u32"], result: "i32" },
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const LIBC = {
  __errno_location: { parameters: [], result: "pointer" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // Variadic in C; with one pointer argument the fixed-argument call is the same on x86-64 and arm64.
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libbpf's symbols. */
export type Libbpf = Deno.DynamicLibrary<typeof LIBBPF>["symbols"];
/** libc's symbols. */
export type Libc = Deno.DynamicLibrary<typeof LIBC>["symbols"];

let bpf: Libbpf | null = null;
let libc: Libc | null = null;
let loadError: string | null = null;

/** The libbpf file Loom opens (Debian/Ubuntu: package libbpf1). */
export const LIBBPF_SONAME = "libbpf.so.1";

/**
 * Opens libbpf (and libc) once per isolate; null with {@linkcode libbpfError} set when it cannot be
 * loaded (not installed, no FFI permission, not Linux). libbpf's own messages are switched off:
 * failures come back as error codes, and a verifier log through the open options.
 */
export function libbpf(): Libbpf | null {
  if (bpf !== null || loadError !== null) return bpf;
  try {
    const lib = Deno.dlopen(LIBBPF_SONAME, LIBBPF).symbols;
    libc = Deno.dlopen("libc.so.6", LIBC).symbols;
    lib.libbpf_set_print(null);
    bpf = lib;
  } catch (e) {
    loadError = e instanceof Error ? e.message : String(e);
  }
  return bpf;
}

/** Why libbpf could not be opened (null when it was, or was not tried). */
export function libbpfError(): string | null {
  return loadError;
}

/** libbpf's version ("1.1"), or null without it. */
export function libbpfVersion(): string | null {
  const b = libbpf();
  return b === null ? null : `${b.libbpf_major_version()}.${b.libbpf_minor_version()}`;
}

/** libc (opened with libbpf); throws when libbpf could not be opened. */
export function c(): Libc {
  if (libbpf() === null || libc === null) throw new Error(`${LIBBPF_SONAME} not loaded: ${loadError}`);
  return libc;
}

/** The calling thread's errno (read right after the failed libc call). */
export function errno(): number {
  const p = c().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  38: "ENOSYS",
  88: "ENOTSOCK",
  92: "ENOPROTOOPT",
  95: "EOPNOTSUPP",
  107: "ENOTCONN",
  524: "ENOTSUPP",
};

/** "EPERM (1)" for an errno (positive or negative). */
export function errnoName(code: number): string {
  const n = Math.abs(code);
  return `${ERRNO_NAMES[n] ?? "errno"} (${n})`;
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}
