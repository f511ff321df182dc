/**
 * How long plugin callbacks may run, and time slicing (isolation
 * `timeslice`) through JSPI (JavaScript Promise Integration).
 *
 * Every instrumented loop (binary.ts) calls `loom.check` when its fuel runs
 * out; {@link CallClock} answers: throw (the callback ran past its timeout),
 * fresh fuel, or 0 = yield. In timeslice mode the guest then calls
 * `loom.yield`, a JSPI `Suspending` import: the callback is suspended for a
 * timer tick so other requests are served meanwhile, and resumes after.
 *
 * A fresh `WebAssembly.promising` call costs a new JSPI stack, so a
 * {@link Timeslicer} enters JSPI once per VM, into the module's generated
 * serving loop (`loom:serve`, binary.ts), which parks in `loom.next` until
 * the host hands it the next job (an entry point index; its arguments are
 * read back with `loom.arg`, its result reported with `loom.result`). A
 * module without one gets a `promising` wrapper per callback. Calls into one
 * VM are serialized: guest state (an SDK's dispatcher, the effective context)
 * is mid-call while a callback is suspended.
 *
 * @module
 */
import { DEFAULT_FUEL_CHUNK } from "./binary.ts";
import { PluginTimeout, StaleVM } from "./errors.ts";
import type { CalloutData } from "./vm.ts";

/** Running time after which a timeslice callback gives the event loop back (ms). */
export const SLICE_MS = 2;
/** A suspended callback's wall time is bounded too: this many times its timeout. */
const WALL_FACTOR = 10;

/** JSPI (JavaScript Promise Integration), not yet in Deno's lib types. */
const JSPI = WebAssembly as unknown as {
  Suspending: new (f: () => Promise<unknown>) => WebAssembly.ImportValue;
  promising(f: unknown): (...a: number[]) => Promise<number>;
};

type AsyncFn = (...a: number[]) => Promise<number>;

/**
 * How a timeslice callback is entered: by index through the serving loop
 * (`loom:serve`, binary.ts), or (a module without one) through its own
 * `promising` wrapper, a fresh JSPI stack per call.
 */
export type Entry = { job: number; fn: null } | { job: -1; fn: AsyncFn };

/** The entry of a guest export: serving-loop job `job` when the module has one, else its own JSPI stack. */
export function entryOf(job: number | undefined, f: unknown): Entry {
  return job !== undefined ? { job, fn: null } : { job: -1, fn: JSPI.promising(f) };
}

/** The serving loop's jobs by entry point name (`loom:<callback>`, batches): their index in export order. */
export function servingJobs(module: WebAssembly.Module, exports: WebAssembly.Exports): Map<string, number> {
  const jobs = new Map<string, number>();
  if (typeof exports["loom:serve"] !== "function") return jobs;
  for (const e of WebAssembly.Module.exports(module)) {
    if (e.kind === "function" && e.name.startsWith("loom:") && e.name !== "loom:serve") {
      jobs.set(e.name, jobs.size);
    }
  }
  return jobs;
}

/**
 * The running callback's time budget, in both modes: the deadline that ends
 * a runaway callback and, for a sliced one, when it yields. Only running time
 * counts against a sliced callback's timeout (its wall time is bounded by
 * WALL_FACTOR), so it never times out because other callbacks were slow.
 */
export class CallClock {
  /** Guest calls on the JS stack (host functions calling back in count too); only depth 1 may yield. */
  depth = 0;
  /** When the outermost plain call must end. */
  private deadline = 0;
  /** Inside an outermost JSPI call (check may ask it to yield). */
  private slicing = false;
  /** Running time of the current sliced callback before its current slice (ms). */
  private spent = 0;
  private sliceStart = 0;
  private wallDeadline = 0;

  /** A VM shared by plugins: the budget of the callback about to start (its plugin's timeout); null = `timeout`. */
  budget: (() => number) | null = null;

  constructor(private timeout: number) {}

  /** Sets the time budget of the calls that follow (VM start-up has its own). */
  setTimeout(ms: number): void {
    this.timeout = ms;
  }

  /** A plain (synchronous) guest call begins; the outermost one sets the deadline. */
  enter(): void {
    if (this.depth === 0) {
      if (this.budget !== null) this.timeout = this.budget();
      this.deadline = performance.now() + this.timeout;
    }
    this.depth++;
  }

  /** A plain guest call returned or threw. */
  exit(): void {
    this.depth--;
  }

  /** An outermost sliced callback begins. */
  startSliced(): void {
    if (this.budget !== null) this.timeout = this.budget();
    const now = performance.now();
    this.spent = 0;
    this.sliceStart = now;
    this.wallDeadline = now + this.timeout * WALL_FACTOR;
    this.slicing = true;
    this.depth = 1;
  }

  /** The sliced callback ended. */
  endSliced(): void {
    this.slicing = false;
    this.depth = 0;
  }

  /**
   * `loom.check` (a bound field: the guest calls it directly): fresh fuel,
   * or 0 = yield now; throws {@link PluginTimeout} past the deadline.
   */
  readonly check = (): number => {
    const now = performance.now();
    if (this.slicing) {
      if (this.spent + now - this.sliceStart > this.timeout || now > this.wallDeadline) {
        throw new PluginTimeout(this.timeout);
      }
      // 0 = yield (outermost call only: suspending across JS frames is impossible).
      return this.depth === 1 && now - this.sliceStart >= SLICE_MS ? 0 : DEFAULT_FUEL_CHUNK;
    }
    if (now > this.deadline) throw new PluginTimeout(this.timeout);
    return DEFAULT_FUEL_CHUNK;
  };

  /** `loom.yield` in timeslice mode: suspends the callback for a timer tick; the pause does not count. */
  async yield(): Promise<void> {
    this.spent += performance.now() - this.sliceStart;
    // A timer (not a microtask or setImmediate) lets the event loop poll I/O.
    await new Promise((r) => setTimeout(r, 0));
    this.sliceStart = performance.now();
  }
}

/** What the time slicer needs of its VM. */
export interface SlicedVM {
  /** The VM's first failure; a failed VM is never entered again. */
  readonly failed: Error | null;
  fail(e: Error): void;
  /** The context host calls act on during the callback. */
  effective: number;
  /** What a callout callback reads during the callback. */
  callout: CalloutData | null;
  /** A callback ended: what it wrote to stdout/stderr is logged. */
  callbackEnded(): void;
}

/**
 * Runs a timeslice VM's callbacks one at a time through JSPI: the serving
 * loop (entered once) or per-call `promising` wrappers; callers that find
 * the VM busy queue for their turn.
 */
export class Timeslicer {
  /** Resumes the serving loop (parked in loom.next) with an entry index; null while it runs. */
  private wake: ((job: number) => void) | null = null;
  /** The job the serving loop runs: its arguments and its caller. */
  private args = [0, 0, 0, 0, 0];
  private jobResolve: ((r: number) => void) | null = null;
  private jobReject: ((e: Error) => void) | null = null;
  /** A sliced callback is running or suspended; callers queue in `waiters`. */
  private busy = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly vm: SlicedVM, private readonly clock: CallClock) {}

  /**
   * Enters the serving loop once: it runs until it parks in loom.next, and
   * ends only by a failure (trap, timeout, proc_exit) of the job it ran.
   */
  serve(f: unknown): void {
    JSPI.promising(f)().catch((err: unknown) => {
      this.wake = null;
      const vm = this.vm;
      vm.fail(err instanceof Error ? err : new Error(String(err)));
      const reject = this.jobReject;
      this.jobResolve = this.jobReject = null;
      // Its caller learns the failure; waiting callers find the VM failed (StaleVM).
      if (reject !== null) {
        this.leave();
        reject(vm.failed!);
      }
    });
  }

  /**
   * A sliced call with `effective` as the current context and `data`
   * readable by callout callbacks: now, or after the VM's current one.
   * Throws {@link StaleVM} (synchronously when the VM is free) once the VM failed.
   */
  enter(
    p: Entry,
    effective: number,
    data: CalloutData | null,
    a = 0,
    b = 0,
    c = 0,
    d = 0,
    e = 0,
  ): Promise<number> {
    if (this.busy) return this.turn().then(() => this.run(p, effective, data, a, b, c, d, e));
    this.busy = true;
    return this.run(p, effective, data, a, b, c, d, e);
  }

  /** Resolves when the VM's current call hands the VM over. */
  private turn(): Promise<void> {
    return new Promise<void>((r) => this.waiters.push(r));
  }

  /** One sliced (JSPI) callback; the caller owns the VM (`busy`). */
  private run(
    p: Entry,
    effective: number,
    data: CalloutData | null,
    a: number,
    b: number,
    c: number,
    d: number,
    e: number,
  ): Promise<number> {
    const vm = this.vm;
    if (vm.failed !== null) {
      this.release();
      throw new StaleVM(vm.failed);
    }
    const wake = this.wake;
    if (p.fn === null && wake === null) {
      // Cannot happen (the loop parks before any other JS runs); fail rather than hang.
      this.release();
      throw new Error("plugin VM serving loop is not waiting");
    }
    vm.effective = effective;
    vm.callout = data;
    this.clock.startSliced();
    if (p.fn === null) {
      const args = this.args;
      args[0] = a, args[1] = b, args[2] = c, args[3] = d, args[4] = e;
      this.wake = null;
      return new Promise<number>((resolve, reject) => {
        this.jobResolve = resolve;
        this.jobReject = reject;
        wake!(p.job);
      });
    }
    return this.settle(p.fn, a, b, c, d, e);
  }

  /** A callback entered through its own `promising` wrapper. */
  private async settle(fn: AsyncFn, a: number, b: number, c: number, d: number, e: number): Promise<number> {
    try {
      return (await fn(a, b, c, d, e)) | 0;
    } catch (err) {
      this.vm.fail(err instanceof Error ? err : new Error(String(err)));
      throw this.vm.failed;
    } finally {
      this.leave();
    }
  }

  /** Ends the current sliced call and hands the VM to the next waiting one. */
  private leave(): void {
    this.clock.endSliced();
    this.vm.callbackEnded();
    this.vm.effective = 0;
    this.vm.callout = null;
    this.release();
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.busy = false;
  }

  /** `loom.next`: the serving loop parks here until the host hands it a job. */
  next(): Promise<number> {
    return new Promise<number>((r) => this.wake = r);
  }

  /** `loom.arg`: argument `i` of the current job (bound, as `result`: the guest calls them directly). */
  readonly arg = (i: number): number => this.args[i];

  /** `loom.result`: the serving loop's job returned `r`. */
  readonly result = (r: number): void => {
    const resolve = this.jobResolve;
    if (resolve !== null) {
      // A serving-loop job: the VM is free once the loop parks again (before any other JS runs).
      this.jobResolve = this.jobReject = null;
      this.leave();
      resolve(r | 0);
    }
  };
}

/**
 * The `loom` import namespace binary.ts adds (check, yield, result, next,
 * arg); `slicer` null = inline mode, where nothing suspends.
 */
export function loomImports(
  clock: CallClock,
  slicer: Timeslicer | null,
): Record<string, WebAssembly.ImportValue> {
  if (slicer === null) {
    return {
      check: clock.check,
      result: () => {},
      next: () => {
        throw new Error("loom.next outside timeslice mode");
      },
      arg: () => 0,
      yield: () => {},
    };
  }
  return {
    check: clock.check,
    result: slicer.result,
    next: new JSPI.Suspending(() => slicer.next()),
    arg: slicer.arg,
    yield: new JSPI.Suspending(() => clock.yield()),
  };
}
