/**
 * socket_redirect (bpf/redirect.bpf.c): sock_ops on a cgroup v2 adds the sockets of local hops to
 * Loom's listeners and from Loom to its upstreams to a SOCKHASH, and sk_msg moves each sendmsg to
 * the peer's receive queue. This module loads the object, attaches it, keeps its maps in step with
 * the listeners and upstream endpoints Loom has, reads the counters, and detaches it.
 *
 * The full object tells Loom's own outbound connections apart with cgroup/connect4/6 programs
 * that compare the connecting process with Loom's (bpf_get_ns_current_pid_tgid, callable there
 * from Linux 6.10). Where that does not load, the compat object is used: an outbound local
 * connection to an upstream endpoint's port counts as Loom's whoever made it; GET /ebpf says which.
 *
 * @module
 */
import {
  attachCgroup,
  attachToMap,
  AttachType,
  type BpfAttachment,
  BpfError,
  type BpfMap,
  BpfObject,
} from "./bpf.ts";
import { c } from "./ffi.ts";
import { addrKey, ipBytes, SOCK_KEY_SIZE } from "./keys.ts";
import { objectBytes } from "./objects.ts";

/** Indices of loom_stats in redirect.bpf.c. */
const STATS = ["sockets", "socket_errors", "msg_redirects", "msg_redirect_bytes", "msg_passed"] as const;

/** The counters of the redirect programs (since they were loaded). */
export type RedirectStats = Record<(typeof STATS)[number], number>;

/** What sockets the programs add: the bound listeners and the upstream endpoints (host may be a name). */
export interface RedirectTargets {
  listeners: readonly { hostname: string; port: number }[];
  upstreams: readonly { host: string; port: number }[];
}

/** How outbound connections are recognised as Loom's. */
export type RedirectMode = "process" | "endpoint";

const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;

/** This process's network namespace cookie (Linux 5.14+), or 0n when the kernel cannot tell. */
function netnsCookie(): bigint {
  const fd = c().socket(2, /* AF_INET */ 2, /* SOCK_DGRAM */ 0);
  if (fd < 0) return 0n;
  try {
    const v = new Uint8Array(8);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, 8, true);
    if (c().getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, v, len) !== 0) return 0n;
    return new DataView(v.buffer).getBigUint64(0, true);
  } finally {
    c().close(fd);
  }
}

/** This host's addresses other than loopback (which the programs know already). */
function localAddresses(): Uint8Array[] {
  const out: Uint8Array[] = [];
  try {
    for (const i of Deno.networkInterfaces()) {
      const ip = ipBytes(i.address);
      if (ip !== null) out.push(ip);
    }
  } catch { /* no --allow-sys: loopback only */ }
  return out;
}

/** A loaded and attached socket_redirect. */
export class SocketRedirect {
  private readonly maps: Record<
    "config" | "listeners" | "upstreams" | "localIps" | "stats" | "socks",
    BpfMap
  >;
  private listenerKeys = new Map<string, Uint8Array>();
  private upstreamKeys = new Map<string, Uint8Array>();
  private closed = false;

  private constructor(
    private readonly obj: BpfObject,
    readonly mode: RedirectMode,
    /** Why the process mode did not load (compat), or "". */
    readonly modeReason: string,
    readonly cgroup: string,
    readonly attachments: BpfAttachment[],
  ) {
    this.maps = {
      config: obj.map("loom_config"),
      listeners: obj.map("loom_listeners"),
      upstreams: obj.map("loom_upstreams"),
      localIps: obj.map("loom_local_ips"),
      stats: obj.map("loom_stats"),
      socks: obj.map("loom_socks"),
    };
  }

  /**
   * Loads the object (the compat one when the full one is refused) and attaches it to the cgroup v2
   * directory `cgroup`. Throws BpfError; nothing stays attached on failure.
   */
  static start(cgroup: string): SocketRedirect {
    let obj: BpfObject;
    let mode: RedirectMode = "process";
    let reason = "";
    try {
      obj = loaded("redirect");
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
      reason = e.message.split("\n")[0] + lastLine(e.log);
      obj = loaded("redirect_compat");
      mode = "endpoint";
    }
    const attachments: BpfAttachment[] = [];
    try {
      const r = new SocketRedirect(obj, mode, reason, cgroup, attachments);
      r.writeConfig();
      for (const ip of localAddresses()) r.maps.localIps.update(ip, u32(1));
      // The map side first: a socket added by sock_ops gets the sk_msg program at once.
      attachments.push(
        attachToMap(obj.program("loom_skmsg"), obj.map("loom_socks"), AttachType.SK_MSG_VERDICT),
      );
      if (mode === "process") {
        attachments.push(attachCgroup(obj.program("loom_connect4"), cgroup, AttachType.CGROUP_INET4_CONNECT));
        attachments.push(attachCgroup(obj.program("loom_connect6"), cgroup, AttachType.CGROUP_INET6_CONNECT));
      }
      attachments.push(attachCgroup(obj.program("loom_sockops"), cgroup, AttachType.CGROUP_SOCK_OPS));
      return r;
    } catch (e) {
      for (const a of attachments.reverse()) a.close();
      obj.close();
      throw e;
    }
  }

  private writeConfig(): void {
    const cfg = new Uint8Array(32);
    const v = new DataView(cfg.buffer);
    const ns = Deno.statSync("/proc/self/ns/pid");
    v.setBigUint64(0, BigInt(ns.dev), true);
    v.setBigUint64(8, BigInt(ns.ino ?? 0), true);
    v.setBigUint64(16, netnsCookie(), true);
    v.setUint32(24, Deno.pid, true);
    const rc = this.maps.config.update(u32(0), cfg);
    if (rc !== 0) throw new BpfError("write loom_config", rc);
  }

  /** Makes the listener and upstream maps hold exactly `t` (at start and after each reload). */
  update(t: RedirectTargets): void {
    if (this.closed) return;
    const listeners = new Map<string, Uint8Array>();
    for (const l of t.listeners) {
      const k = addrKey(l.hostname, l.port);
      if (k !== null) listeners.set(hex(k), k);
    }
    const upstreams = new Map<string, Uint8Array>();
    for (const u of t.upstreams) {
      // A host name (localhost, a service name) matches any local address with that port.
      const k = addrKey(ipBytes(u.host) === null ? null : u.host, u.port);
      if (k !== null) upstreams.set(hex(k), k);
    }
    sync(this.maps.listeners, this.listenerKeys, listeners);
    sync(this.maps.upstreams, this.upstreamKeys, upstreams);
    this.listenerKeys = listeners;
    this.upstreamKeys = upstreams;
  }

  /** The counters, read from the loom_stats array map. */
  stats(): RedirectStats {
    return readStats(this.maps.stats, STATS) as RedirectStats;
  }

  /** Listener and upstream entries in the maps (GET /ebpf). */
  targets(): { listeners: number; upstreams: number } {
    return { listeners: this.listenerKeys.size, upstreams: this.upstreamKeys.size };
  }

  /** Sockets in the SOCKHASH now. */
  sockets(): number {
    return this.closed ? 0 : this.maps.socks.count(SOCK_KEY_SIZE);
  }

  /** Detaches everything and closes the object: the maps and programs leave the kernel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const a of [...this.attachments].reverse()) a.close();
    this.obj.close();
  }
}

/** Opens and loads an embedded object; the object is closed again if loading fails. */
export function loaded(name: string): BpfObject {
  const obj = BpfObject.open(objectBytes(name), `loom_${name}`);
  try {
    obj.load();
    return obj;
  } catch (e) {
    obj.close();
    throw e;
  }
}

function lastLine(log: string): string {
  const lines = log.trim().split("\n").filter((l) => l.trim() !== "");
  return lines.length === 0 ? "" : ` (${lines.slice(-2).join("; ")})`;
}

/** A little-endian u32 (array map keys, small values). */
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function sync(map: BpfMap, have: Map<string, Uint8Array>, want: Map<string, Uint8Array>): void {
  for (const [h, k] of have) if (!want.has(h)) map.delete(k);
  for (const [h, k] of want) {
    if (!have.has(h)) {
      const rc = map.update(k, u32(1));
      if (rc !== 0) throw new BpfError(`update ${map.name}`, rc);
    }
  }
}

/** Reads an array map of u64 counters into a record by `names` (index order). */
export function readStats(map: BpfMap, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  const v = new Uint8Array(8);
  const dv = new DataView(v.buffer);
  names.forEach((name, i) => {
    out[name] = map.lookup(u32(i), v) ? Number(dv.getBigUint64(0, true)) : 0;
  });
  return out;
}
