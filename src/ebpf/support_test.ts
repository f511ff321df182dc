import assert from "node:assert/strict";
import { cgroup2Mounts, effectiveCaps, hasPrivileges, kernelVersion } from "./support.ts";

Deno.test("ebpf support: kernel versions", () => {
  assert.deepEqual(kernelVersion("6.18.44-fc-v1300"), [6, 18]);
  assert.deepEqual(kernelVersion("5.4.0-150-generic"), [5, 4]);
  assert.equal(kernelVersion("unknown"), null);
});

Deno.test("ebpf support: privileges are CAP_BPF (or CAP_SYS_ADMIN) with CAP_NET_ADMIN", () => {
  const caps = (...bits: number[]) => bits.reduce((a, b) => a | (1n << BigInt(b)), 0n);
  assert.equal(effectiveCaps("Name:\tdeno\nCapEff:\t000001ffffffffff\n"), 0x1ffffffffffn);
  assert.equal(effectiveCaps("Name:\tdeno\n"), null);
  assert.ok(hasPrivileges(0x1ffffffffffn)); // root
  assert.ok(hasPrivileges(caps(39, 12))); // CAP_BPF + CAP_NET_ADMIN
  assert.ok(hasPrivileges(caps(21, 12))); // CAP_SYS_ADMIN + CAP_NET_ADMIN (before CAP_BPF, 5.8)
  assert.ok(!hasPrivileges(caps(39))); // no CAP_NET_ADMIN
  assert.ok(!hasPrivileges(caps(12))); // no CAP_BPF
  assert.ok(!hasPrivileges(0n)); // an ordinary user
});

Deno.test("ebpf support: cgroup v2 mount points", () => {
  const mounts = [
    "tmpfs /sys/fs/cgroup tmpfs rw 0 0",
    "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0",
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
  ].join("\n");
  assert.deepEqual(cgroup2Mounts(mounts), ["/sys/fs/cgroup/unified"]);
  assert.deepEqual(cgroup2Mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"), ["/sys/fs/cgroup"]);
  assert.deepEqual(cgroup2Mounts("proc /proc proc rw 0 0\n"), []);
});
