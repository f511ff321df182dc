/**
 * Uniform handles on gateway instances, whether they run in this isolate or in
 * a worker isolate (messages). The supervisor and the admin API use these.
 */
import type { LoomConfig } from "../config/types.ts";
import type { MetricsSnapshot } from "../observability/metrics.ts";
import type { CounterSlotsSnapshot } from "../upstream/counters.ts";
import type { UpstreamInfo } from "../upstream/upstream.ts";
import type { PluginInfo } from "../wasm/mod.ts";
import type { RecentError } from "../observability/recent_errors.ts";
import type { SplicingInfo } from "../ebpf/tunnels.ts";
import { GatewayInstance, type InstanceOptions, type ReloadReport } from "./instance.ts";
import { workerUrl } from "../build.ts";
import { compiledByKey, type ModuleAnswer, type ModuleRequest } from "../wasm/compile.ts";

/** Control surface of one instance. */
export interface InstanceHandle {
  reload(config: LoomConfig, counters: CounterSlotsSnapshot): Promise<ReloadReport>;
  metrics(): Promise<MetricsSnapshot>;
  upstreams(): Promise<UpstreamInfo[]>;
  plugins(): Promise<PluginInfo[]>;
  /** This instance's eBPF tunnel splicing (GET /ebpf). */
  ebpf(): Promise<SplicingInfo>;
  /** The instance's last failed requests, newest first (the dashboard). */
  recentErrors(): Promise<RecentError[]>;
  /** Drops cached responses of this instance; `shared` stores (Redis) only when `shared`. */
  purgeCache(what: CachePurge, shared: boolean): Promise<number>;
  shutdown(drainMs: number): Promise<void>;
  addresses(): Record<string, Deno.NetAddr>;
}

/** What to purge from the caches: a key (and its variants) or a key prefix. */
export interface CachePurge {
  key?: string;
  prefix?: string;
}

/** An instance in this isolate. */
export class LocalHandle implements InstanceHandle {
  constructor(readonly instance: GatewayInstance) {}
  static async start(opts: InstanceOptions): Promise<LocalHandle> {
    return new LocalHandle(await GatewayInstance.start(opts));
  }
  reload(config: LoomConfig, counters: CounterSlotsSnapshot): Promise<ReloadReport> {
    return this.instance.reload(config, counters);
  }
  metrics(): Promise<MetricsSnapshot> {
    return Promise.resolve(this.instance.metricsSnapshot());
  }
  upstreams(): Promise<UpstreamInfo[]> {
    return Promise.resolve(this.instance.upstreams());
  }
  plugins(): Promise<PluginInfo[]> {
    return Promise.resolve(this.instance.plugins());
  }
  ebpf(): Promise<SplicingInfo> {
    return Promise.resolve(this.instance.ebpf());
  }
  recentErrors(): Promise<RecentError[]> {
    return Promise.resolve(this.instance.recentErrors());
  }
  purgeCache(what: CachePurge, shared: boolean): Promise<number> {
    return this.instance.purgeCache(what, shared);
  }
  shutdown(drainMs: number): Promise<void> {
    return this.instance.shutdown(drainMs);
  }
  addresses(): Record<string, Deno.NetAddr> {
    return this.instance.addresses();
  }
}

/** Messages to a worker. */
export type ToWorker =
  | { type: "start"; opts: InstanceOptions; logLevel: string; worker: number }
  | { type: "reload"; id: number; config: LoomConfig; counters: CounterSlotsSnapshot }
  | { type: "metrics"; id: number }
  | { type: "upstreams"; id: number }
  | { type: "plugins"; id: number }
  | { type: "ebpf"; id: number }
  | { type: "errors"; id: number }
  | { type: "purge"; id: number; what: CachePurge; shared: boolean }
  | { type: "shutdown"; id: number; drainMs: number }
  | ModuleAnswer;

/** Messages from a worker. */
export type FromWorker =
  | { type: "started"; addresses: Record<string, Deno.NetAddr> }
  | { type: "failed"; error: string }
  | { type: "reply"; id: number; data?: unknown; error?: string }
  | ModuleRequest;

/** An instance in a worker isolate. */
export class WorkerHandle implements InstanceHandle {
  private nextId = 1;
  private calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private addrs: Record<string, Deno.NetAddr> = {};

  private constructor(private worker: Worker) {
    worker.addEventListener("message", (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "module") {
        // A plugin module the config check compiled here: the worker gets it instead of compiling it.
        void compiledByKey(m.key).then((module) => worker.postMessage({ type: "module", id: m.id, module }));
        return;
      }
      if (m.type !== "reply") return;
      const call = this.calls.get(m.id);
      if (call === undefined) return;
      this.calls.delete(m.id);
      if (m.error !== undefined) call.reject(new Error(m.error));
      else call.resolve(m.data);
    });
  }

  /** Spawns a worker and starts an instance in it. */
  static start(opts: InstanceOptions, logLevel: string, index: number): Promise<WorkerHandle> {
    const worker = new Worker(workerUrl("gateway"), {
      type: "module",
      name: `loom-${index}`,
    });
    const h = new WorkerHandle(worker);
    return new Promise((resolve, reject) => {
      const onMessage = (e: MessageEvent<FromWorker>) => {
        if (e.data.type === "started") {
          worker.removeEventListener("message", onMessage);
          h.addrs = e.data.addresses;
          resolve(h);
        } else if (e.data.type === "failed") {
          worker.removeEventListener("message", onMessage);
          worker.terminate();
          reject(new Error(e.data.error));
        }
      };
      worker.addEventListener("message", onMessage);
      worker.addEventListener("error", (e) => {
        e.preventDefault();
        reject(new Error(`worker ${index} crashed: ${e.message}`));
      });
      worker.postMessage({ type: "start", opts, logLevel, worker: index } satisfies ToWorker);
    });
  }

  private call<T>(msg: ToWorker & { id: number }): Promise<T> {
    return new Promise((resolve, reject) => {
      this.calls.set(msg.id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage(msg);
    });
  }

  async reload(config: LoomConfig, counters: CounterSlotsSnapshot): Promise<ReloadReport> {
    const report = await this.call<ReloadReport>({ type: "reload", id: this.nextId++, config, counters });
    this.addrs = report.addresses;
    return report;
  }
  metrics(): Promise<MetricsSnapshot> {
    return this.call({ type: "metrics", id: this.nextId++ });
  }
  upstreams(): Promise<UpstreamInfo[]> {
    return this.call({ type: "upstreams", id: this.nextId++ });
  }
  plugins(): Promise<PluginInfo[]> {
    return this.call({ type: "plugins", id: this.nextId++ });
  }
  ebpf(): Promise<SplicingInfo> {
    return this.call({ type: "ebpf", id: this.nextId++ });
  }
  recentErrors(): Promise<RecentError[]> {
    return this.call({ type: "errors", id: this.nextId++ });
  }
  purgeCache(what: CachePurge, shared: boolean): Promise<number> {
    return this.call({ type: "purge", id: this.nextId++, what, shared });
  }
  async shutdown(drainMs: number): Promise<void> {
    try {
      await this.call({ type: "shutdown", id: this.nextId++, drainMs });
    } finally {
      this.worker.terminate();
    }
  }
  addresses(): Record<string, Deno.NetAddr> {
    return this.addrs;
  }
}
