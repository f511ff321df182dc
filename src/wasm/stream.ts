/**
 * One plugin's stream context for one request: the StreamHost its VM's host
 * functions act on (maps, body windows and properties come from the
 * request's ChainRun), the request's pause/resume state for that plugin,
 * and {@link Stop}, why a request ends early.
 *
 * @module
 */
import { BufferType } from "./abi.ts";
import type { ChainRun } from "./chain.ts";
import { StaleVM } from "./errors.ts";
import type { MapView } from "./header_maps.ts";
import type { Plugin } from "./plugin.ts";
import type { LocalResponse, PluginVM, StreamHost } from "./vm.ts";

const EMPTY = new Uint8Array(0);

/** Why a request stops early. */
export class Stop {
  constructor(readonly kind: "local" | "fail" | "reset" | "too_large") {}
}

/** The body buffer types: request or response body (an index into ChainRun.bodies). */
function isBody(type: number): type is 0 | 1 {
  return type === BufferType.HTTP_REQUEST_BODY || type === BufferType.HTTP_RESPONSE_BODY;
}

/** One plugin's stream context for one request. */
export class Stream implements StreamHost {
  id: number;
  /** Only on_context_create ran: the guest holds nothing else of this stream (it may move VMs). */
  fresh = true;
  dead = false;
  paused: { resolve: () => void; reject: (e: Stop) => void } | null = null;
  local: LocalResponse | null = null;
  reset = false;
  failure: Error | null = null;
  resumedEarly = false;
  props: Map<string, Uint8Array> | null = null;
  /** Body held back (StopIterationAndBuffer), not yet passed on: request, response (by BufferType). */
  held: [Uint8Array, Uint8Array] = [EMPTY, EMPTY];

  constructor(readonly run: ChainRun, readonly plugin: Plugin, public vm: PluginVM) {
    this.id = vm.newContextId();
    vm.streams.set(this.id, this);
  }

  /**
   * Timeslice: the VM failed in another request's callback while this fresh
   * stream waited for it. Moves to the plugin's next VM (as a request arriving
   * a moment later would have) and creates its context there; false when no
   * VM is available or that fails too.
   */
  async rebind(): Promise<boolean> {
    this.vm.streams.delete(this.id);
    const vm = await this.plugin.getVM();
    this.fresh = false;
    if (vm === null) return false;
    this.vm = vm;
    this.id = vm.newContextId();
    vm.streams.set(this.id, this);
    this.failure = null;
    try {
      await vm.call("proxy_on_context_create", this.id, this.id, vm.rootFor(this.plugin));
      this.fresh = true;
    } catch (e) {
      if (e instanceof StaleVM) return this.rebind(); // that VM failed too before our turn
      this.failure = e instanceof Error ? e : new Error(String(e));
      return false;
    }
    return this.failure === null;
  }

  map(type: number): MapView | null {
    return this.run.map(type);
  }
  buffer(type: number): Uint8Array | null {
    // Body buffers are exactly this plugin's window (data it held back plus the new chunk).
    return isBody(type) ? this.run.bodies[type] : null;
  }
  setBuffer(type: number, data: Uint8Array): boolean {
    const bodies = this.run.bodies;
    if (!isBody(type) || bodies[type] === null) return false;
    bodies[type] = data;
    return true;
  }
  property(path: string[]): Uint8Array | null | undefined {
    const key = path.join(".");
    const custom = this.props?.get(key);
    if (custom !== undefined) return custom;
    return this.run.property(key);
  }
  setProperty(path: string, value: Uint8Array): void {
    (this.props ??= new Map()).set(path, value);
  }
  localResponse(r: LocalResponse): void {
    this.local = r;
    this.paused?.reject(new Stop("local"));
  }
  clearRouteCache(): void {
    this.run.routeCleared = true;
  }
  resume(_type: number): void {
    const p = this.paused;
    this.paused = null;
    // Resumed inside the very callback that is about to return Pause: do not wait then.
    if (p === null) this.resumedEarly = true;
    else p.resolve();
  }
  close(_type: number): void {
    this.reset = true;
    this.paused?.reject(new Stop("reset"));
  }
  /** Its VM failed (plugin.ts tells every stream of a failed VM). */
  vmFailed(e: Error): void {
    this.failure = e;
    this.paused?.reject(new Stop("fail"));
  }
}
