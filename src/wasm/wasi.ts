/**
 * The WASI preview1 shim plugins built with WASI toolchains import (Go,
 * Rust wasm32-wasi, C++ with wasi-libc): stdout/stderr go to Loom's log
 * (collected per callback: one entry per callback and stream, so a Go
 * panic's message and traceback are one entry), clocks, randomness and
 * `poll_oneoff` (clock subscriptions fire at once: a callback never sleeps)
 * work, the plugin's read-only directories (`files:`) are preopened
 * (wasi_files.ts), and everything else (environment, arguments) is absent.
 * `proc_exit` ends the VM, never the process.
 *
 * @module
 */
import { Errno } from "./abi.ts";
import { ProcExit } from "./errors.ts";
import type { GuestMemory } from "./memory.ts";
import type { HostFunctions } from "./host/mod.ts";
import type { Sandbox } from "./preopens.ts";
import { wasiFileFunctions } from "./wasi_files.ts";
import { logger } from "../observability/logger.ts";

/** Most text kept of one callback's output per stream (the rest is cut). */
const MAX_OUTPUT = 8192;

/**
 * What a VM's plugin wrote to stdout (fd 1) and stderr (fd 2) during the
 * current callback: logged as one entry per stream when the callback ends,
 * or carried by the failure when the callback ends the VM (a panic).
 */
export class PluginOutput {
  private out = "";
  private err = "";
  /** The plugin the pending text is logged under. */
  private plugin = "";

  /**
   * `currentPlugin` names the plugin host calls act for at the moment (the
   * VM's `host`): in a VM shared by plugins (vm_group.ts), the one whose
   * context the running callback is on.
   */
  constructor(private readonly currentPlugin: () => string) {}

  /** Adds text the plugin wrote to `fd` (1 or 2) in the current callback. */
  write(fd: number, text: string): void {
    // Under the plugin writing it, as proxy_log does; text pending for another one is logged as its own first.
    const plugin = this.currentPlugin();
    if (plugin !== this.plugin) {
      this.flush();
      this.plugin = plugin;
    }
    if (fd === 1) {
      if (this.out.length < MAX_OUTPUT) this.out += text.slice(0, MAX_OUTPUT - this.out.length);
    } else if (this.err.length < MAX_OUTPUT) this.err += text.slice(0, MAX_OUTPUT - this.err.length);
  }

  /** Logs what the callback wrote (stdout at info, stderr at warn) and clears it. */
  flush(): void {
    if (this.out === "" && this.err === "") return;
    const out = trimEnd(this.out), err = trimEnd(this.err);
    this.out = this.err = "";
    if (out !== "") logger.info("plugin: " + out, { plugin: this.plugin });
    if (err !== "") logger.warn("plugin: " + err, { plugin: this.plugin });
  }

  /** What the callback wrote, stderr first, unlogged (the VM failed: its failure carries it); "" when nothing. */
  take(): string {
    const text = [trimEnd(this.err), trimEnd(this.out)].filter((t) => t !== "").join("\n");
    this.out = this.err = "";
    return text;
  }
}

function trimEnd(s: string): string {
  return s.replace(/\s+$/, "");
}

/** Sizes of poll_oneoff's records (wasi_snapshot_preview1: subscription 48 bytes, event 32). */
const SUBSCRIPTION = 48;
const EVENT = 32;
const EVENT_CLOCK = 0, EVENT_FD_READ = 1;

/**
 * The WASI functions of one VM (`wasi_snapshot_preview1` and `wasi_unstable`),
 * by name; `sandbox` holds the plugin's read-only directories (null: none).
 */
export function wasiFunctions(
  mem: GuestMemory,
  output: PluginOutput,
  sandbox: Sandbox | null = null,
): HostFunctions {
  const E = Errno;
  const files = wasiFileFunctions(mem, sandbox);
  return {
    ...files,
    fd_write: (fd: number, iovs: number, n: number, nwritten: number) => {
      if (fd !== 1 && fd !== 2) return files.fd_write(fd as never);
      const dv = mem.view();
      let total = 0;
      for (let i = 0; i < n; i++) {
        const p = dv.getUint32((iovs >>> 0) + i * 8, true);
        const l = dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
        output.write(fd, mem.str(p, l));
        total += l;
      }
      mem.setU32(nwritten, total);
      return E.SUCCESS;
    },
    // Go's runtime sets flags on its standard streams.
    fd_fdstat_set_flags: (fd: number) => fd <= 2 ? E.SUCCESS : files.fd_fdstat_set_flags(fd as never),
    // Clock subscriptions fire at once (Go's usleep, Rust's thread::sleep): a callback never sleeps,
    // and stdout/stderr are always writable; reading (stdin) gets EBADF.
    poll_oneoff: (inPtr: number, outPtr: number, n: number, neventsPtr: number) => {
      n >>>= 0;
      if (n === 0) return E.INVAL;
      const subs = mem.read(inPtr, n * SUBSCRIPTION);
      const sv = new DataView(subs.buffer, subs.byteOffset, subs.length);
      const events = mem.read(outPtr, n * EVENT);
      events.fill(0);
      const ev = new DataView(events.buffer, events.byteOffset, events.length);
      for (let i = 0; i < n; i++) {
        const s = i * SUBSCRIPTION, o = i * EVENT;
        const tag = sv.getUint8(s + 8);
        ev.setBigUint64(o, sv.getBigUint64(s, true), true); // userdata
        ev.setUint8(o + 10, tag);
        if (tag === EVENT_CLOCK) continue;
        const fd = sv.getUint32(s + 16, true);
        const ok = tag !== EVENT_FD_READ && (fd === 1 || fd === 2);
        ev.setUint16(o + 8, ok ? E.SUCCESS : E.BADF, true);
      }
      mem.setU32(neventsPtr, n);
      return E.SUCCESS;
    },
    fd_fdstat_get: (fd: number, ptr: number) => {
      if (fd > 2) return files.fd_fdstat_get(fd as never, ptr as never);
      const m = mem.u8();
      m.fill(0, ptr >>> 0, (ptr >>> 0) + 24);
      m[ptr >>> 0] = 2; // character device
      return E.SUCCESS;
    },
    // The standard streams are character devices (filestat: 64 bytes, the type at 16).
    fd_filestat_get: (fd: number, ptr: number) => {
      if (fd > 2) return files.fd_filestat_get(fd as never, ptr as never);
      mem.read(ptr, 64).fill(0)[16] = 2;
      return E.SUCCESS;
    },
    // i64 parameters arrive as BigInt.
    clock_time_get: ((id: number, _precision: bigint, ptr: number) => {
      const ns = id === 0
        ? BigInt(Date.now()) * 1_000_000n
        : BigInt(Math.round(performance.now() * 1_000_000));
      mem.setU64(ptr, ns);
      return E.SUCCESS;
    }) as unknown as (...a: never[]) => number,
    clock_res_get: (_id: number, ptr: number) => {
      mem.setU64(ptr, 1000n);
      return E.SUCCESS;
    },
    random_get: (ptr: number, len: number) => {
      const view = mem.read(ptr, len);
      for (let o = 0; o < view.length; o += 65536) crypto.getRandomValues(view.subarray(o, o + 65536));
      return E.SUCCESS;
    },
    environ_sizes_get: (countPtr: number, sizePtr: number) => {
      mem.setU32(countPtr, 0);
      mem.setU32(sizePtr, 0);
      return E.SUCCESS;
    },
    environ_get: () => E.SUCCESS,
    args_sizes_get: (countPtr: number, sizePtr: number) => {
      mem.setU32(countPtr, 0);
      mem.setU32(sizePtr, 0);
      return E.SUCCESS;
    },
    args_get: () => E.SUCCESS,
    sched_yield: () => E.SUCCESS,
    proc_exit: (code: number) => {
      throw new ProcExit(code);
    },
  };
}
