/**
 * Whether this process can use eBPF, and if not, what is missing: Linux 5.7 or later (bpf_link for
 * cgroups), the privileges (root, or CAP_BPF with CAP_NET_ADMIN), cgroup v2 at the configured
 * directory, and libbpf. Checked without side effects beyond reading /proc and opening libbpf.
 *
 * @module
 */
import { libbpf, LIBBPF_SONAME, libbpfError, libbpfVersion } from "./ffi.ts";

/** Oldest kernel with everything used: cgroup bpf_links came in 5.7. */
export const MIN_KERNEL: readonly [number, number] = [5, 7];

/** The outcome of {@linkcode checkSupport}. */
export interface EbpfSupport {
  /** Everything needed is there. */
  ok: boolean;
  /** One phrase per missing piece, e.g. "Linux 5.7 or later (this is 5.4.0)". */
  missing: string[];
  kernel: string;
  libbpf: string | null;
  /** The cgroup v2 directory programs attach to (the configured one, or the cgroup2 mount). */
  cgroup: string | null;
}

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

/** "6.18.44-fc" → [6, 18]; null if unreadable. */
export function kernelVersion(release: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m === null ? null : [Number(m[1]), Number(m[2])];
}

/** Effective capabilities from /proc/self/status ("CapEff:\t000001ffffffffff"); null if unreadable. */
export function effectiveCaps(status: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m === null ? null : BigInt("0x" + m[1]);
}

/** Mount points of cgroup v2 in /proc/self/mounts text. */
export function cgroup2Mounts(mounts: string): string[] {
  return mounts.split("\n").map((l) => l.split(" ")).filter((f) => f[2] === "cgroup2").map((f) =>
    f[1].replace(/\\040/g, " ")
  );
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

/** Whether the capability set holds what loading and attaching need (CAP_SYS_ADMIN stands for CAP_BPF before 5.8). */
export function hasPrivileges(caps: bigint): boolean {
  const has = (n: number) => (caps >> BigInt(n) & 1n) === 1n;
  return (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN);
}

/**
 * Checks everything eBPF needs; `cgroup` is the configured cgroup v2 directory (undefined: the
 * cgroup2 mount point, the root of the hierarchy).
 */
export function checkSupport(cgroup?: string): EbpfSupport {
  const missing: string[] = [];
  const kernel = Deno.build.os === "linux" ? Deno.osRelease() : Deno.build.os;
  if (Deno.build.os !== "linux") {
    return {
      ok: false,
      missing: ["Linux (this is " + Deno.build.os + ")"],
      kernel,
      libbpf: null,
      cgroup: null,
    };
  }
  const v = kernelVersion(kernel);
  if (v === null || v[0] < MIN_KERNEL[0] || (v[0] === MIN_KERNEL[0] && v[1] < MIN_KERNEL[1])) {
    missing.push(`Linux ${MIN_KERNEL.join(".")} or later (this is ${kernel})`);
  }
  const status = readText("/proc/self/status");
  const caps = status === null ? null : effectiveCaps(status);
  if (caps === null) missing.push("/proc/self/status (to check privileges; needs --allow-read)");
  else if (!hasPrivileges(caps)) {
    missing.push("privileges: root, or CAP_BPF with CAP_NET_ADMIN");
  }
  const mounts = cgroup2Mounts(readText("/proc/self/mounts") ?? "");
  let dir: string | null = null;
  if (mounts.length === 0) missing.push("cgroup v2 (no cgroup2 file system is mounted)");
  else {
    dir = cgroup ?? mounts[0];
    const under = mounts.some((m) => dir === m || dir!.startsWith(m.endsWith("/") ? m : m + "/"));
    let isDir = false;
    try {
      isDir = Deno.statSync(dir).isDirectory;
    } catch { /* missing */ }
    if (!under || !isDir) {
      missing.push(`cgroup v2 directory ${dir} (cgroup2 is mounted at ${mounts.join(", ")})`);
      dir = null;
    }
  }
  if (libbpf() === null) {
    missing.push(`libbpf (${LIBBPF_SONAME}; Debian: apt-get install libbpf1): ${libbpfError()}`);
  }
  return { ok: missing.length === 0, missing, kernel, libbpf: libbpfVersion(), cgroup: dir };
}
