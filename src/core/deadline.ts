/**
 * Coarse deadlines for many objects with one interval timer.
 *
 * Why: a setTimeout/clearTimeout pair per request (and per connection state
 * change) costs more than the rest of a small proxied request's bookkeeping.
 * Here arming a deadline is a field write plus a Set insert; one interval
 * sweeps expired entries. Resolution is SWEEP_MS, fine for timeouts of
 * hundreds of milliseconds and up.
 */

/** Something that can time out. */
export interface Expirable {
  /** Absolute time (Date.now() ms) after which `expire` runs; 0 = disarmed. */
  deadline: number;
  expire(): void;
}

const SWEEP_MS = 25;
const armed = new Set<Expirable>();
let timer: ReturnType<typeof setInterval> | undefined;

function sweep(): void {
  const now = Date.now();
  for (const e of armed) {
    if (e.deadline === 0) {
      armed.delete(e);
    } else if (e.deadline <= now) {
      armed.delete(e);
      e.deadline = 0;
      try {
        e.expire();
      } catch { /* an expiring object must not break the sweep */ }
    }
  }
  if (armed.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

function startSweeper(): void {
  const t = setInterval(sweep, SWEEP_MS);
  Deno.unrefTimer(t);
  timer = t;
}

/** Arms (or re-arms) `e` to expire `ms` from now. */
export function arm(e: Expirable, ms: number): void {
  e.deadline = Date.now() + ms;
  armed.add(e);
  if (timer === undefined) startSweeper();
}

/** Arms `e` for an absolute time. */
export function armAt(e: Expirable, at: number): void {
  e.deadline = at;
  armed.add(e);
  if (timer === undefined) startSweeper();
}

/** Disarms `e` (cheap: the sweep drops it lazily). */
export function disarm(e: Expirable): void {
  e.deadline = 0;
}
