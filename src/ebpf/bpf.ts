/**
 * BPF objects, programs, maps and attachments over libbpf (ffi.ts). An object is opened from memory
 * (the bytes embedded in objects.ts), loaded (maps created, programs verified), and closed whole;
 * attachments are bpf_links where the kernel has them, so they belong to this process's file
 * descriptors and go with it, even on SIGKILL. Nothing is pinned.
 *
 * @module
 */
import { c, cstr, errno, errnoName, type Libbpf, libbpf } from "./ffi.ts";

/** Attach types of linux/bpf.h that Loom uses. */
export const AttachType = {
  CGROUP_SOCK_OPS: 3,
  SK_SKB_STREAM_VERDICT: 5,
  SK_MSG_VERDICT: 7,
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
} as const;

/** A libbpf or kernel failure: the operation, the errno, and the verifier's log when it has one. */
export class BpfError extends Error {
  constructor(readonly op: string, readonly code: number, readonly log = "") {
    super(`${op}: ${errnoName(code)}${log ? "\n" + log.trimEnd() : ""}`);
  }
}

function lib(): Libbpf {
  const b = libbpf();
  if (b === null) throw new Error("libbpf is not loaded");
  return b;
}

/** Size of struct bpf_object_open_opts in libbpf 1.1 (`sz` is checked against the caller's). */
const OPEN_OPTS_SIZE = 80;
const LOG_SIZE = 256 * 1024;

/** A map of a loaded object: lookups and updates by raw key and value bytes. */
export class BpfMap {
  constructor(readonly name: string, readonly fd: number) {}

  /** 0, or a negative errno (e.g. -EEXIST with flags BPF_NOEXIST). */
  update(key: Uint8Array, value: Uint8Array, flags = 0n): number {
    return lib().bpf_map_update_elem(this.fd, key, value, flags);
  }

  /** Fills `value`; false when the key is not there. */
  lookup(key: Uint8Array, value: Uint8Array): boolean {
    return lib().bpf_map_lookup_elem(this.fd, key, value) === 0;
  }

  /** False when the key was not there. */
  delete(key: Uint8Array): boolean {
    return lib().bpf_map_delete_elem(this.fd, key) === 0;
  }

  /** How many keys the map holds, counting at most `max` (walks the keys). */
  count(keySize: number, max = 1 << 20): number {
    const b = lib();
    let prev: Uint8Array | null = null;
    let n = 0;
    for (; n < max; n++) {
      const next = new Uint8Array(keySize);
      // A null previous key asks for the first one.
      const rc = prev === null
        ? b.bpf_map_get_next_key(this.fd, null as unknown as Uint8Array, next)
        : b.bpf_map_get_next_key(this.fd, prev, next);
      if (rc !== 0) break;
      prev = next;
    }
    return n;
  }
}

/** A loaded program. */
export interface BpfProgram {
  readonly name: string;
  readonly fd: number;
  readonly ptr: Deno.PointerObject;
}

/** One attachment; `close` detaches it (idempotent). */
export interface BpfAttachment {
  /** "link": a bpf_link owned by this process; "prog_attach": attached to a map (goes with the map). */
  readonly kind: "link" | "prog_attach";
  readonly program: string;
  /** What it is attached to: a cgroup path or a map name. */
  readonly target: string;
  readonly attachType: number;
  close(): void;
}

/** An opened (and then loaded) BPF object. */
export class BpfObject {
  private closed = false;
  private loaded = false;

  private constructor(
    readonly name: string,
    private readonly ptr: Deno.PointerObject,
    /** Buffers libbpf points into (the ELF bytes and the verifier log) live as long as the object. */
    private readonly keep: { elf: Uint8Array; log: Uint8Array; opts: Uint8Array; name: Uint8Array },
  ) {}

  /** Opens an object from its ELF bytes (no file); throws BpfError. */
  static open(elf: Uint8Array, name: string): BpfObject {
    const b = lib();
    const log = new Uint8Array(LOG_SIZE);
    const nameBuf = cstr(name);
    const opts = new Uint8Array(OPEN_OPTS_SIZE);
    const v = new DataView(opts.buffer);
    v.setBigUint64(0, BigInt(OPEN_OPTS_SIZE), true);
    v.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(nameBuf))), true);
    v.setBigUint64(56, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(log))), true);
    v.setBigUint64(64, BigInt(LOG_SIZE), true);
    v.setUint32(72, 0, true); // a log only when something fails
    const copy = elf.slice();
    const ptr = b.bpf_object__open_mem(copy, BigInt(copy.length), opts);
    if (ptr === null) throw new BpfError(`open ${name}`, Number(b.libbpf_get_error(null)) || -errno());
    return new BpfObject(name, ptr, { elf: copy, log, opts, name: nameBuf });
  }

  /** Creates the maps and loads the programs; throws BpfError with the verifier log. */
  load(): void {
    const rc = lib().bpf_object__load(this.ptr);
    if (rc !== 0) {
      const end = this.keep.log.indexOf(0);
      const text = new TextDecoder().decode(this.keep.log.subarray(0, end < 0 ? undefined : end));
      // The end of the log says why; the whole of it can be megabytes.
      const tail = text.length > 4000 ? "…" + text.slice(-4000) : text;
      throw new BpfError(`load ${this.name}`, rc, tail);
    }
    this.loaded = true;
  }

  program(name: string): BpfProgram {
    const b = lib();
    const ptr = b.bpf_object__find_program_by_name(this.ptr, cstr(name));
    if (ptr === null) throw new BpfError(`${this.name}: program ${name}`, -2);
    const fd = this.loaded ? b.bpf_program__fd(ptr) : -1;
    return { name, fd, ptr };
  }

  map(name: string): BpfMap {
    const b = lib();
    const ptr = b.bpf_object__find_map_by_name(this.ptr, cstr(name));
    if (ptr === null) throw new BpfError(`${this.name}: map ${name}`, -2);
    return new BpfMap(name, b.bpf_map__fd(ptr));
  }

  /** Closes the object: its programs and maps go once nothing else holds them. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    lib().bpf_object__close(this.ptr);
  }
}

/**
 * Attaches a sock_ops or cgroup/connect program to the cgroup v2 directory `path` through a bpf_link
 * (libbpf's bpf_program__attach_cgroup): the link lives as long as this process holds it.
 */
export function attachCgroup(prog: BpfProgram, path: string, attachType: number): BpfAttachment {
  const b = lib();
  const O_RDONLY_DIRECTORY = 0o200000; // O_DIRECTORY; O_RDONLY is 0
  const fd = c().open(cstr(path), O_RDONLY_DIRECTORY);
  if (fd < 0) throw new BpfError(`open cgroup ${path}`, errno());
  try {
    const link = b.bpf_program__attach_cgroup(prog.ptr, fd);
    if (link === null) throw new BpfError(`attach ${prog.name} to ${path}`, Number(b.libbpf_get_error(null)));
    return attachment("link", prog, path, attachType, () => b.bpf_link__destroy(link));
  } finally {
    c().close(fd);
  }
}

/**
 * Attaches an sk_msg or sk_skb program to a SOCKMAP/SOCKHASH: as a bpf_link where the kernel has
 * sockmap links (6.10 and later), else with BPF_PROG_ATTACH, which ties the program to the map
 * (released with the map when its last file descriptor closes, also on SIGKILL).
 */
export function attachToMap(prog: BpfProgram, map: BpfMap, attachType: number): BpfAttachment {
  const b = lib();
  const linkFd = b.bpf_link_create(prog.fd, map.fd, attachType, null);
  if (linkFd >= 0) return attachment("link", prog, map.name, attachType, () => c().close(linkFd));
  const rc = b.bpf_prog_attach(prog.fd, map.fd, attachType, 0);
  if (rc !== 0) throw new BpfError(`attach ${prog.name} to map ${map.name}`, rc);
  return attachment(
    "prog_attach",
    prog,
    map.name,
    attachType,
    () => b.bpf_prog_detach2(prog.fd, map.fd, attachType),
  );
}

function attachment(
  kind: BpfAttachment["kind"],
  prog: BpfProgram,
  target: string,
  attachType: number,
  detach: () => unknown,
): BpfAttachment {
  let attached = true;
  return {
    kind,
    program: prog.name,
    target,
    attachType,
    close() {
      if (attached) detach();
      attached = false;
    },
  };
}
