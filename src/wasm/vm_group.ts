/**
 * VMs shared by plugins, as in Envoy (proxy-wasm-cpp-host: one VM per
 * worker for each vm key = vm_id, vm_config and code; a root context per
 * plugin in it).
 *
 * A {@link VmGroup} owns one plugin VM per isolate (worker) and the plugins
 * (members) that run in it. Plugins with the same non-empty `vm_id`, module
 * content, `vm_config`, `memory_limit` and `isolation` are one group; every
 * other plugin is a group of its own. The module's start code runs once per
 * VM; each member gets its own root context in it (ids unique in the VM):
 * `proxy_on_context_create(root, 0)`, `proxy_on_vm_start(root)` (per root
 * context, as proxy-wasm-cpp-host's ContextBase::onStart) and
 * `proxy_on_configure(root)` with its own configuration, under its own
 * `start_timeout`. In a shared VM a member whose root context is refused
 * is retried on its own (backoff) while the VM serves the others; a
 * plugin's own VM whose root context is refused did not start (a fresh VM
 * is tried next).
 *
 * A VM that traps, times out or exits is lost to every member: their
 * streams fail, and the next use creates one new VM for all of them (each
 * root context created and configured again). VM starts are capped per
 * group (crash loop) and retried in the background with backoff.
 *
 * @module
 */
import { logger } from "../observability/logger.ts";
import type { AbiVersion } from "./abi.ts";
import { StaleVM } from "./errors.ts";
import { PluginVM, type VmHost } from "./vm.ts";

const log = logger.child({ component: "wasm" });

/** Background retries of a start that failed: the first after this long, doubling up to the cap (ms). */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** Crash-loop cap: at most this many VM starts per group and isolate per window. */
const VM_RESTARTS_PER_WINDOW = 10;
const VM_RESTART_WINDOW_MS = 1000;
/** The same VM failure within this time is counted, not logged again (ms). */
const FAILURE_LOG_REPEAT_MS = 60_000;

/** What a group needs of a plugin (plugin.ts). */
export interface GroupMember extends VmHost {
  /** Running time its root context's start-up may take (ms). */
  readonly startTimeout: number;
  /** The VM holding its started root context; set by the group, null while it has none. */
  vm: PluginVM | null;
  readonly retired: boolean;
  recordError(msg: string): void;
  /** Its VM was lost (failed, or replaced by a new start): its ticks stop. */
  lostVM(): void;
}

/**
 * The sharing key of a plugin: null (a VM of its own) for an empty vm_id,
 * else vm_id, module content, memory limit, isolation and vm_config.
 */
export function groupKey(
  vmId: string,
  moduleHash: string,
  memoryLimit: number,
  isolation: string,
  vmConfig: Uint8Array,
): string | null {
  if (vmId === "") return null;
  return [vmId, moduleHash, memoryLimit, isolation, new TextDecoder().decode(vmConfig)].join("\0");
}

/**
 * When a failed start may be tried again: not before `at`, and in the
 * background after 1 s, doubling to 60 s, with or without requests.
 */
class Backoff {
  /** No start before this time (performance.now()). */
  at = 0;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly retry: () => void) {}

  ready(now: number): boolean {
    return now >= this.at;
  }

  /** A start begun at `now` failed. */
  failed(now: number): void {
    this.at = now + RETRY_FIRST_MS;
    this.failures++;
    this.schedule(Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (this.failures - 1)));
  }

  succeeded(): void {
    this.failures = 0;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (performance.now() < this.at) return this.schedule(this.at - performance.now());
      this.retry();
    }, Math.max(0, ms));
    // A plugin retrying must not keep a draining process alive.
    Deno.unrefTimer(this.timer as unknown as number);
  }
}

/** One VM per isolate and the plugins running in it (see the module doc). */
export class VmGroup {
  /** Plugins running in this group's VM, in configuration order (the first owns rootContextId). */
  readonly members = new Set<GroupMember>();
  /** The running VM (the module's start code done, at least one root context started). */
  vm: PluginVM | null = null;
  /** VMs created so far in this isolate (1 + recreations). */
  vms = 0;
  private starting: Promise<void> | null = null;
  private readonly backoff = new Backoff(() => {
    if (this.members.size === 0 || this.starting !== null || (this.vm !== null && this.vm.failed === null)) {
      return;
    }
    void this.start();
  });
  /** Start times of the most recent VMs (crash-loop cap). */
  private starts: number[] = [];
  private capLogged = false;
  /** Members whose root context is being started in the running VM. */
  private readonly joining = new Map<GroupMember, Promise<PluginVM | null>>();
  /** Members whose root context failed to start while the VM runs: their own retries. */
  private readonly retries = new Map<GroupMember, Backoff>();
  /** The last failure logged and how often it repeated since (a crash loop logs its panic once). */
  private lastLogged = { msg: "", at: -Infinity, repeated: 0 };

  /**
   * @param key the sharing key (groupKey), null for a plugin's own VM
   * @param dropCallouts cancels the callouts of a VM, or of one of its root contexts
   */
  constructor(
    readonly key: string | null,
    private readonly module: WebAssembly.Module,
    private readonly abi: AbiVersion,
    private readonly dropCallouts: (vm: PluginVM, root?: number) => void,
  ) {}

  /** Adds a plugin; a running VM gets its root context on its first use (vmFor). */
  add(m: GroupMember): void {
    this.members.add(m);
  }

  /** A plugin retired: future VMs have no root context for it. True when no member is left. */
  remove(m: GroupMember): boolean {
    this.members.delete(m);
    this.retries.get(m)?.stop();
    this.retries.delete(m);
    if (this.members.size === 0) this.backoff.stop();
    return this.members.size === 0;
  }

  /** Names of the members other than `m`, sorted (`GET /plugins` vm_shared_with). */
  sharedWith(m: GroupMember): string[] {
    return [...this.members].filter((o) => o !== m).map((o) => o.pluginName).sort();
  }

  /**
   * The VM with `m`'s root context started: at once when it runs, a Promise
   * (never rejected) while the VM or the root context starts, null when none
   * can start now (backoff, crash-loop cap).
   */
  vmFor(m: GroupMember): PluginVM | null | Promise<PluginVM | null> {
    const vm = this.vm;
    if (vm !== null && vm.failed === null) return m.vm === vm ? vm : this.join(m, vm);
    if (this.starting !== null) return this.starting.then(() => this.afterStart(m));
    const started = this.start();
    return started === null ? null : started.then(() => this.afterStart(m));
  }

  /** After a start: `m`'s VM, its root context added when it joined meanwhile; no second start. */
  private afterStart(m: GroupMember): PluginVM | null | Promise<PluginVM | null> {
    const vm = this.vm;
    if (vm === null || vm.failed !== null) return null;
    return m.vm === vm ? vm : this.join(m, vm);
  }

  /** Starts a new VM for every member, unless backoff or the crash-loop cap forbid it now. */
  private start(): Promise<void> | null {
    const now = performance.now();
    const first = this.members.values().next().value;
    if (first === undefined || !this.backoff.ready(now)) return null;
    // Crash-loop cap (spec "Plugin crashes"): a plugin that traps on every request
    // would otherwise cost a VM instantiation per request.
    while (this.starts.length > 0 && now - this.starts[0] >= VM_RESTART_WINDOW_MS) this.starts.shift();
    if (this.starts.length >= VM_RESTARTS_PER_WINDOW) {
      this.backoff.at = this.starts[0] + VM_RESTART_WINDOW_MS;
      if (!this.capLogged) {
        this.capLogged = true;
        log.warn("plugin VM re-creation rate capped; requests fail (or skip it) until the window passes", {
          plugin: first.pluginName,
          max_per_second: VM_RESTARTS_PER_WINDOW,
        });
      }
      return null;
    }
    this.capLogged = false;
    this.starts.push(now);
    this.vm = null;
    for (const m of this.members) {
      m.vm = null;
      m.lostVM();
    }
    let vm: PluginVM | undefined;
    try {
      vm = new PluginVM(this.module, this.abi, first);
      this.vms++;
      vm.onFail = (e) => this.vmFailed(vm!, e);
    } catch (e) {
      this.startFailed(vm, e, now);
      return null;
    }
    const starting = this.boot(vm, first, now);
    this.starting = starting;
    starting.then(() => this.starting = null);
    return starting;
  }

  /** A new VM's start-up: the module's start code, then every member's root context (sliced in timeslice mode). */
  private async boot(vm: PluginVM, first: GroupMember, now: number): Promise<void> {
    try {
      // Start-up is bounded by its own (larger) running time: a Go runtime's start on a busy machine.
      vm.setupBudget(vm.rootContextId, first.startTimeout);
      await vm.start();
      if (vm.failed !== null) throw vm.failed;
    } catch (e) {
      return this.startFailed(vm, e instanceof StaleVM ? vm.failed ?? e : e, now);
    }
    const started: GroupMember[] = [];
    for (const m of [...this.members]) {
      const root = m === first ? vm.rootContextId : vm.addRoot(m);
      try {
        await this.startRoot(vm, m, root);
        started.push(m);
      } catch (e) {
        // The VM itself failed (a trap): nothing runs in it.
        if (vm.failed !== null) return this.startFailed(vm, vm.failed, now);
        // A plugin's own VM: its start failed (a fresh VM next time). A shared VM keeps serving
        // the others (and plugins joining later) while this root context is retried alone.
        if (this.key === null) return this.startFailed(vm, e, now);
        vm.removeRoot(root);
        this.rootFailed(m, e, now);
      }
    }
    // The start code's budget, in case its first member retired meanwhile (its root context never started).
    vm.setupBudget(vm.rootContextId, null);
    this.vm = vm;
    this.backoff.succeeded();
    for (const m of started) {
      if (!this.members.has(m)) continue;
      m.vm = vm;
      this.retries.get(m)?.succeeded();
    }
  }

  /** Creates and configures `m`'s root context `root` in `vm`; throws when it is refused or the VM fails. */
  private async startRoot(vm: PluginVM, m: GroupMember, root: number): Promise<void> {
    vm.setupBudget(root, m.startTimeout);
    try {
      await vm.call("proxy_on_context_create", root, root, 0);
      if (
        vm.has("proxy_on_vm_start") &&
        (await vm.call("proxy_on_vm_start", root, root, m.vmConfig.length)) === 0
      ) {
        throw new Error("proxy_on_vm_start returned false");
      }
      if (
        vm.has("proxy_on_configure") &&
        (await vm.call("proxy_on_configure", root, root, m.pluginConfig.length)) === 0
      ) {
        throw new Error("proxy_on_configure returned false (plugin rejected its configuration)");
      }
      if (vm.failed !== null) throw vm.failed;
    } catch (e) {
      throw e instanceof StaleVM ? vm.failed ?? e : e;
    } finally {
      vm.setupBudget(root, null);
    }
  }

  /** A root context for `m` in the running VM (a plugin added by a reload, or one retried). */
  private join(m: GroupMember, vm: PluginVM): PluginVM | null | Promise<PluginVM | null> {
    const pending = this.joining.get(m);
    if (pending !== undefined) return pending;
    const now = performance.now();
    if (m.retired || !this.members.has(m) || !(this.retries.get(m)?.ready(now) ?? true)) return null;
    const joined = (async () => {
      const root = vm.addRoot(m);
      try {
        await this.startRoot(vm, m, root);
      } catch (e) {
        // A VM failure is handled by vmFailed; a refused root context is retried alone.
        if (vm.failed === null) {
          vm.removeRoot(root);
          this.rootFailed(m, e, now);
        }
        return null;
      }
      if (!this.members.has(m)) return null;
      m.vm = vm;
      this.retries.get(m)?.succeeded();
      return vm;
    })();
    this.joining.set(m, joined);
    joined.then(() => this.joining.delete(m));
    return joined;
  }

  /** `m`'s root context was refused (on_vm_start or on_configure false) in a VM the others use. */
  private rootFailed(m: GroupMember, e: unknown, now: number): void {
    const msg = e instanceof Error ? e.message : String(e);
    m.recordError(msg);
    this.logFailure(m, "plugin root context failed to start", msg, "");
    let b = this.retries.get(m);
    if (b === undefined) {
      const retry = new Backoff(() => {
        if (this.members.has(m) && (m.vm === null || m.vm.failed !== null)) void this.vmFor(m);
      });
      this.retries.set(m, b = retry);
    }
    b.failed(now);
  }

  /** The VM could not start: it is dropped and retried in the background. */
  private startFailed(vm: PluginVM | undefined, e: unknown, now: number): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (vm !== undefined && vm.failed === null) vm.fail(new Error(msg));
    else if (vm === undefined) { for (const m of this.members) m.recordError(msg); }
    const first = this.members.values().next().value;
    if (first !== undefined) this.logFailure(first, "plugin VM failed to start", msg, vm?.failedOutput ?? "");
    this.backoff.failed(now);
  }

  /** The VM trapped, timed out or exited: every member loses it; the next use starts a new one. */
  private vmFailed(vm: PluginVM, e: Error): void {
    // The plugin whose callback failed it is charged; the others only lose the VM.
    const culprit = vm.hostOf(vm.effective) as GroupMember;
    culprit.recordError(e.message);
    this.logFailure(culprit, "plugin VM failed; it will be recreated", e.message, vm.failedOutput);
    if (this.vm === vm) this.vm = null;
    for (const m of this.members) this.lose(m, vm);
    this.dropCallouts(vm);
    // Its streams fail cleanly; streams of other VMs are untouched.
    for (const s of [...vm.streams.values()]) (s as { vmFailed?: (e: Error) => void }).vmFailed?.(e);
  }

  /** `m` no longer runs in `vm`. */
  private lose(m: GroupMember, vm: PluginVM): void {
    if (m.vm !== vm) return;
    m.vm = null;
    m.lostVM();
  }

  /**
   * Logs a VM failure with what the plugin wrote meanwhile (a panic's
   * message); the same failure again within a minute is only counted, and
   * the count goes with the next one logged.
   */
  private logFailure(m: GroupMember, what: string, msg: string, output: string): void {
    const key = msg + "\0" + output;
    const now = performance.now();
    const last = this.lastLogged;
    if (last.msg === key && now - last.at < FAILURE_LOG_REPEAT_MS) {
      last.repeated++;
      return;
    }
    const fields: Record<string, unknown> = { plugin: m.pluginName, error: msg };
    if (output !== "") fields.output = output;
    if (this.members.size > 1) fields.vm_shared_with = this.sharedWith(m);
    if (last.repeated > 0) fields.previous_repeated = last.repeated;
    log.error(what, fields);
    this.lastLogged = { msg: key, at: now, repeated: 0 };
  }
}
