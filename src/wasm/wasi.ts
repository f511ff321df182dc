/**
 * The WASI preview1 shim plugins built with WASI toolchains import (Go,
 * Rust wasm32-wasi, C++ with wasi-libc): stdout/stderr go to Loom's log,
 * clocks and randomness work, and everything else (files, environment,
 * arguments) is absent. `proc_exit` ends the VM, never the process.
 *
 * @module
 */
import { Errno } from "./abi.ts";
import { ProcExit } from "./errors.ts";
import type { GuestMemory } from "./memory.ts";
import type { HostFunctions } from "./host/mod.ts";
import { logger } from "../observability/logger.ts";

/** The WASI functions of one VM (`wasi_snapshot_preview1` and `wasi_unstable`), by name. */
export function wasiFunctions(mem: GuestMemory, pluginName: string): HostFunctions {
  const E = Errno;
  return {
    fd_write: (fd: number, iovs: number, n: number, nwritten: number) => {
      if (fd !== 1 && fd !== 2) return E.BADF;
      const dv = mem.view();
      let text = "";
      let total = 0;
      for (let i = 0; i < n; i++) {
        const p = dv.getUint32((iovs >>> 0) + i * 8, true);
        const l = dv.getUint32((iovs >>> 0) + i * 8 + 4, true);
        text += mem.str(p, l);
        total += l;
      }
      const line = text.replace(/\n$/, "");
      if (line !== "") {
        logger[fd === 2 ? "warn" : "info"]("plugin: " + line, { plugin: pluginName });
      }
      mem.setU32(nwritten, total);
      return E.SUCCESS;
    },
    fd_read: () => E.BADF,
    fd_close: () => E.SUCCESS,
    fd_seek: () => E.BADF,
    fd_fdstat_get: (fd: number, ptr: number) => {
      if (fd > 2) return E.BADF;
      const m = mem.u8();
      m.fill(0, ptr >>> 0, (ptr >>> 0) + 24);
      m[ptr >>> 0] = 2; // character device
      return E.SUCCESS;
    },
    // EBADF (not ENOSYS) tells wasi-libc there are no preopened directories.
    fd_prestat_get: () => E.BADF,
    fd_prestat_dir_name: () => E.BADF,
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
