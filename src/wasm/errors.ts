/**
 * The ways a plugin VM ends: each one poisons the VM (vm.ts `fail`), which
 * is then never called again and is recreated by its plugin.
 *
 * @module
 */

/** Thrown from `loom.check` when a callback ran past its deadline. */
export class PluginTimeout extends Error {
  constructor(ms: number) {
    super(`plugin callback exceeded its ${ms} ms timeout`);
  }
}

/**
 * Timeslice mode: the call never ran, because the VM failed (in another
 * callback) before this call's turn came. A stream that has no state in the
 * guest yet may move to a fresh VM.
 */
export class StaleVM extends Error {
  constructor(readonly failure: Error) {
    super(failure.message);
  }
}

/** Thrown by WASI `proc_exit`: ends the VM, never the process. */
export class ProcExit extends Error {
  constructor(readonly code: number) {
    super(`plugin called proc_exit(${code})`);
  }
}
