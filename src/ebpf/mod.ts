/**
 * eBPF acceleration (`ebpf:` in the config): the supervisor's {@linkcode EbpfManager} owns
 * socket_redirect for the whole process; each gateway instance owns a {@linkcode TunnelSplicing}
 * (tunnels.ts) for the tunnels of its isolate. Off unless configured; when enabled without what it
 * needs, one warning names what is missing and Loom runs without it.
 *
 * Lifecycle: started after the listeners are bound (their ports go into the map), kept in step
 * with every reload; on shutdown or a reload that turns it off, every link is closed and the object
 * with it, at once: no socket is added any more. A socket already in the SOCKHASH keeps its redirect
 * until it closes, because the kernel holds the program through the socket (and the map through
 * the program): its entry is never deleted under it, which would drop the bytes the kernel already
 * moved to its receive queue and its reader has not read yet. When the last such socket closes
 * (Loom's own close on shutdown; their peers close on Loom's FIN), the program and map leave the
 * kernel. All attachments are bpf_links held by this process's file descriptors and nothing is
 * pinned, so the same holds after exit, SIGKILL included.
 *
 * @module
 */
import type { EbpfConfig } from "../config/types.ts";
import { logger } from "../observability/logger.ts";
import type { Counter, Gauge, Registry } from "../observability/metrics.ts";
import { checkSupport, type EbpfSupport } from "./support.ts";
import { type RedirectStats, type RedirectTargets, SocketRedirect } from "./redirect.ts";

export { TunnelSplicing } from "./tunnels.ts";
export type { RedirectTargets } from "./redirect.ts";

const log = logger.child({ component: "ebpf" });

/** Where older builds could have pinned objects; removed at start (this one pins nothing). */
export const STALE_PIN_DIR = "/sys/fs/bpf";

/** GET /ebpf. */
export interface EbpfStatus {
  enabled: boolean;
  /** Whether the kernel side runs now. */
  active: boolean;
  /** What is missing, when enabled but not available. */
  missing: string[];
  kernel: string;
  libbpf: string | null;
  socket_redirect: {
    configured: boolean;
    attached: boolean;
    cgroup: string | null;
    /** "process": Loom's outbound sockets known by its process id; "endpoint": by endpoint alone. */
    mode: string | null;
    mode_reason?: string;
    programs: { program: string; attach: string; target: string }[];
    listeners: number;
    upstream_endpoints: number;
    /** Sockets in the SOCKHASH now. */
    sockets: number;
    counters: RedirectStats;
  };
  splice_tunnels: { configured: boolean };
}

const ATTACH_NAMES: Record<number, string> = {
  3: "cgroup_sock_ops",
  5: "sk_skb_stream_verdict",
  7: "sk_msg_verdict",
  10: "cgroup_inet4_connect",
  11: "cgroup_inet6_connect",
};

const ZERO: RedirectStats = {
  sockets: 0,
  socket_errors: 0,
  msg_redirects: 0,
  msg_redirect_bytes: 0,
  msg_passed: 0,
};

/** Removes pinned objects an older Loom may have left under /sys/fs/bpf (names starting "loom"). */
export function removeStalePins(dir = STALE_PIN_DIR): string[] {
  const removed: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.name.startsWith("loom")) continue;
      try {
        Deno.removeSync(`${dir}/${e.name}`, { recursive: true });
        removed.push(`${dir}/${e.name}`);
      } catch { /* not ours to remove */ }
    }
  } catch { /* no bpffs mounted */ }
  return removed;
}

/** The process-wide side of eBPF: socket_redirect, its status and metrics. */
export class EbpfManager {
  private cfg: EbpfConfig | undefined;
  private redirect: SocketRedirect | null = null;
  private support: EbpfSupport | null = null;
  /** The last warning logged (the same one is not repeated by reloads). */
  private warned = "";
  private stalesChecked = false;
  /** Counter totals of redirects already closed (metrics stay monotonic across reloads). */
  private closedTotals: RedirectStats = { ...ZERO };
  private reported: RedirectStats = { ...ZERO };
  private readonly counters: Record<keyof RedirectStats, Counter> | null;
  private readonly attachedGauge: Gauge | null;

  constructor(registry: Registry | null) {
    if (registry === null) {
      this.counters = null;
      this.attachedGauge = null;
      return;
    }
    const attached = registry.gauge(
      "loom_ebpf_attached",
      "eBPF programs attached by this Loom (1 each), by program and attach type.",
      ["program", "attach"],
      { aggregate: "max", collect: () => this.attachedSeries() },
    );
    this.attachedGauge = attached;
    this.counters = {
      sockets: registry.counter(
        "loom_ebpf_redirect_sockets_total",
        "Sockets socket_redirect added to its SOCKHASH (both ends of each local hop).",
      ),
      socket_errors: registry.counter(
        "loom_ebpf_redirect_socket_errors_total",
        "Sockets socket_redirect could not add (map full, socket busy).",
      ),
      msg_redirects: registry.counter(
        "loom_ebpf_redirect_messages_total",
        "sendmsg calls moved straight to the peer socket's receive queue.",
      ),
      msg_redirect_bytes: registry.counter(
        "loom_ebpf_redirect_bytes_total",
        "Bytes moved straight to the peer socket's receive queue.",
      ),
      msg_passed: registry.counter(
        "loom_ebpf_redirect_passed_total",
        "sendmsg calls of a redirected socket left on the TCP path (peer not in the map).",
      ),
    };
  }

  private attachedSeries(): Array<[Record<string, string>, number]> {
    const r = this.redirect;
    if (r === null) return [];
    return r.attachments.map((a) => [{ program: a.program, attach: ATTACH_NAMES[a.attachType] ?? "" }, 1]);
  }

  /**
   * Applies the `ebpf` block: starts, updates or retires socket_redirect. `targets` are the
   * listeners bound now and the configured upstream endpoints. Never throws: a failure is one
   * warning and Loom goes on without it.
   */
  apply(cfg: EbpfConfig | undefined, targets: RedirectTargets): void {
    this.cfg = cfg;
    const want = cfg?.enabled === true && cfg.socket_redirect;
    if (cfg?.enabled === true) {
      this.support = checkSupport(cfg.cgroup);
      if (!this.support.ok) {
        this.warnOnce(
          "ebpf is enabled but not available here; Loom runs without it",
          { missing: this.support.missing },
        );
        this.retire();
        return;
      }
      if (!this.stalesChecked) {
        this.stalesChecked = true;
        const removed = removeStalePins();
        if (removed.length > 0) log.info("removed stale pinned BPF objects", { paths: removed });
      }
    }
    if (!want) {
      this.retire();
      return;
    }
    const cgroup = this.support!.cgroup!;
    if (this.redirect !== null && this.redirect.cgroup !== cgroup) this.retire();
    if (this.redirect === null) {
      try {
        this.redirect = SocketRedirect.start(cgroup);
      } catch (e) {
        this.warnOnce("ebpf socket_redirect could not be loaded; Loom runs without it", {
          error: e instanceof Error ? e.message.split("\n").slice(0, 6).join(" | ") : String(e),
        });
        return;
      }
      this.warned = "";
      const r = this.redirect;
      log.info("ebpf socket_redirect attached", {
        cgroup,
        mode: r.mode,
        ...(r.modeReason ? { mode_reason: r.modeReason } : {}),
        programs: r.attachments.map((a) => `${a.program} (${a.kind})`),
      });
    }
    try {
      this.redirect.update(targets);
    } catch (e) {
      log.warn("ebpf socket_redirect: could not update its maps", { error: String(e) });
    }
  }

  private warnOnce(msg: string, fields: Record<string, unknown>): void {
    const key = msg + JSON.stringify(fields);
    if (key === this.warned) return;
    this.warned = key;
    log.warn(msg, fields);
  }

  /** Detaches and closes the current redirect (its sockets keep it until they close; see the module doc). */
  private retire(): void {
    const r = this.redirect;
    if (r === null) return;
    this.redirect = null;
    const s = r.stats();
    for (const k of Object.keys(ZERO) as (keyof RedirectStats)[]) this.closedTotals[k] += s[k];
    r.close();
    log.info("ebpf socket_redirect detached");
  }

  /** Current totals (closed redirects included). */
  totals(): RedirectStats {
    const out = { ...this.closedTotals };
    if (this.redirect !== null) {
      const s = this.redirect.stats();
      for (const k of Object.keys(out) as (keyof RedirectStats)[]) out[k] += s[k];
    }
    return out;
  }

  /** Moves the counters to the BPF totals (call before a metrics snapshot). */
  refreshMetrics(): void {
    if (this.counters === null) return;
    const t = this.totals();
    for (const k of Object.keys(t) as (keyof RedirectStats)[]) {
      // Series appear once something happened: with eBPF off, /metrics has none of them.
      if (t[k] > this.reported[k]) this.counters[k].inc(t[k] - this.reported[k]);
    }
    this.reported = t;
  }

  status(): EbpfStatus {
    const cfg = this.cfg;
    const r = this.redirect;
    const support = this.support ?? (cfg?.enabled ? checkSupport(cfg.cgroup) : null);
    return {
      enabled: cfg?.enabled === true,
      active: r !== null,
      missing: support?.missing ?? [],
      kernel: support?.kernel ?? Deno.osRelease(),
      libbpf: support?.libbpf ?? null,
      socket_redirect: {
        configured: cfg?.enabled === true && cfg.socket_redirect,
        attached: r !== null,
        cgroup: r?.cgroup ?? null,
        mode: r?.mode ?? null,
        ...(r?.modeReason ? { mode_reason: r.modeReason } : {}),
        programs: r?.attachments.map((a) => ({
          program: a.program,
          attach: `${ATTACH_NAMES[a.attachType] ?? a.attachType} (${a.kind})`,
          target: a.target,
        })) ?? [],
        listeners: r?.targets().listeners ?? 0,
        upstream_endpoints: r?.targets().upstreams ?? 0,
        sockets: r?.sockets() ?? 0,
        counters: this.totals(),
      },
      splice_tunnels: { configured: cfg?.enabled === true && cfg.splice_tunnels },
    };
  }

  /** Shutdown (after the instances drained): detaches and closes everything. */
  close(): void {
    this.retire();
  }
}
