/**
 * The splice_tunnels switch of one gateway instance (isolate): a stable object the gateway hands
 * to tunnels (structurally the proxy's TunnelSplicer), behind which a {@linkcode Splicer} is started
 * when the config turns splicing on and retired when a reload turns it off (tunnels already spliced
 * keep it until they end; the object then leaves the kernel). The supervisor warns when eBPF is
 * unavailable; this side stays quiet then and splices nothing.
 *
 * @module
 */
import type { EbpfConfig } from "../config/types.ts";
import { logger } from "../observability/logger.ts";
import type { Counter, Registry } from "../observability/metrics.ts";
import { ipBytes } from "./keys.ts";
import { type SplicedPair, Splicer, type SplicerInfo } from "./splice.ts";
import { checkSupport } from "./support.ts";

const log = logger.child({ component: "ebpf" });

/** Splicing in one isolate (GET /ebpf merges the workers'). */
export interface SplicingInfo {
  configured: boolean;
  /** Why splicing is off although configured ("" when on or not configured). */
  unavailable: string;
  current: SplicerInfo | null;
  /** Splicers turned off by a reload whose tunnels are still open. */
  retiring: number;
  /** Tunnels handed to the kernel since start. */
  spliced: number;
  /** Tunnels left in user space since start, by reason. */
  skipped: Record<string, number>;
  /** Bytes the kernel moved for tunnels since start. */
  bytes: number;
}

function isLocal(hostname: string): boolean {
  const ip = ipBytes(hostname);
  if (ip === null) return false;
  const mapped = ip.subarray(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff;
  if (mapped) return ip[12] === 127;
  return ip.subarray(0, 15).every((b) => b === 0) && ip[15] === 1;
}

/** The splicer a gateway passes to tunnels. */
export class TunnelSplicing {
  private cfg: EbpfConfig | undefined;
  private current: Splicer | null = null;
  private retiring = new Set<Splicer>();
  private unavailable = "";
  private warned = "";
  /** Totals of splicers already closed. */
  private closed = { spliced: 0, bytes: 0, skipped: {} as Record<string, number> };
  private reported = { spliced: 0, bytes: 0, skipped: {} as Record<string, number> };
  private readonly metrics: { spliced: Counter; skipped: Counter; bytes: Counter } | null;

  constructor(registry: Registry | null) {
    this.metrics = registry === null ? null : {
      spliced: registry.counter(
        "loom_ebpf_spliced_tunnels_total",
        "Tunnels handed to the kernel (sk_skb splice).",
      ),
      skipped: registry.counter(
        "loom_ebpf_splice_skipped_total",
        "Tunnels left in user space although splicing is on, by reason.",
        ["reason"],
      ),
      bytes: registry.counter(
        "loom_ebpf_spliced_bytes_total",
        "Tunnel bytes the kernel moved without passing through Loom.",
      ),
    };
    registry?.gauge("loom_ebpf_spliced_tunnels_active", "Tunnels spliced in the kernel now.", [], {
      collect: () => this.current === null && this.retiring.size === 0 ? [] : [[{}, this.activePairs()]],
    });
  }

  private activePairs(): number {
    let n = this.current?.active ?? 0;
    for (const s of this.retiring) n += s.active;
    return n;
  }

  /** Applies the `ebpf` block (start, and each reload). */
  configure(cfg: EbpfConfig | undefined): void {
    this.cfg = cfg;
    const want = cfg?.enabled === true && cfg.splice_tunnels;
    if (!want) {
      this.unavailable = "";
      this.retire();
      return;
    }
    if (this.current !== null) return;
    const support = checkSupport(cfg!.cgroup);
    if (!support.ok) {
      this.unavailable = support.missing.join("; ");
      return;
    }
    try {
      this.current = Splicer.start();
      this.unavailable = "";
      log.debug("ebpf splice_tunnels ready");
    } catch (e) {
      this.unavailable = e instanceof Error ? e.message.split("\n")[0] : String(e);
      if (this.unavailable !== this.warned) {
        this.warned = this.unavailable;
        log.warn("ebpf splice_tunnels could not be loaded; tunnels stay in user space", {
          error: this.unavailable,
        });
      }
    }
  }

  private retire(): void {
    const s = this.current;
    if (s === null) return;
    this.current = null;
    this.retiring.add(s);
    s.onIdle = () => this.collect(s);
    s.stop();
    if (s.active === 0) this.collect(s);
  }

  private collect(s: Splicer): void {
    if (!this.retiring.delete(s)) return;
    const i = s.info();
    this.closed.spliced += i.spliced;
    this.closed.bytes += i.bytes;
    for (const [k, v] of Object.entries(i.skipped)) {
      this.closed.skipped[k] = (this.closed.skipped[k] ?? 0) + v;
    }
  }

  /**
   * The proxy's TunnelSplicer: hands a tunnel to the kernel, or null (user space). A tunnel whose
   * two hops are both local is left to socket_redirect when that is on (its sockets are in the
   * redirect map, whose sk_msg path would take their bytes past the splice program anyway).
   */
  splice(
    client: Deno.Conn,
    upstream: Deno.Conn,
    forward: (toClient: Uint8Array, toUpstream: Uint8Array) => Promise<void>,
  ): Promise<SplicedPair | null> {
    const s = this.current;
    if (s === null) return Promise.resolve(null);
    if (
      this.cfg?.socket_redirect && isLocal((client.remoteAddr as Deno.NetAddr).hostname) &&
      isLocal((upstream.remoteAddr as Deno.NetAddr).hostname)
    ) {
      s.skipped["socket_redirect"] = (s.skipped["socket_redirect"] ?? 0) + 1;
      return Promise.resolve(null);
    }
    return s.splice(client, upstream, forward);
  }

  info(): SplicingInfo {
    const cur = this.current?.info() ?? null;
    const t = this.totals();
    return {
      configured: this.cfg?.enabled === true && this.cfg.splice_tunnels,
      unavailable: this.unavailable,
      current: cur,
      retiring: this.retiring.size,
      spliced: t.spliced,
      skipped: t.skipped,
      bytes: t.bytes,
    };
  }

  private totals(): { spliced: number; bytes: number; skipped: Record<string, number> } {
    const out = {
      spliced: this.closed.spliced,
      bytes: this.closed.bytes,
      skipped: { ...this.closed.skipped },
    };
    for (const s of [this.current, ...this.retiring]) {
      if (s === null) continue;
      const i = s.info();
      out.spliced += i.spliced;
      out.bytes += i.bytes;
      for (const [k, v] of Object.entries(i.skipped)) out.skipped[k] = (out.skipped[k] ?? 0) + v;
    }
    return out;
  }

  /** Moves the counters to the current totals (call before a metrics snapshot). */
  refreshMetrics(): void {
    const m = this.metrics;
    if (m === null) return;
    const t = this.totals();
    // Series appear once something happened: with eBPF off, /metrics has none of them.
    if (t.spliced > this.reported.spliced) m.spliced.inc(t.spliced - this.reported.spliced);
    if (t.bytes > this.reported.bytes) m.bytes.inc(t.bytes - this.reported.bytes);
    for (const [k, v] of Object.entries(t.skipped)) {
      const before = this.reported.skipped[k] ?? 0;
      if (v > before) m.skipped.labels(k).inc(v - before);
    }
    this.reported = t;
  }

  /** Shutdown: tunnels are closed by then; whatever is left is closed now. */
  close(): void {
    this.current?.close();
    this.current = null;
    for (const s of this.retiring) s.close();
    this.retiring.clear();
  }
}
