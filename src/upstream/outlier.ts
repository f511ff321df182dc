/**
 * Passive health (outlier detection): an endpoint that fails
 * `consecutive_failures` times in a row (5xx answers, connect errors, resets,
 * timeouts) is ejected for `base_ejection_time × (number of ejections)`, capped
 * at `max_ejection_time`; the ejection count resets after the endpoint stayed
 * in for `max_ejection_time`. Never more than `max_ejection_percent` of an
 * upstream's endpoints are ejected at once (but one always may be).
 *
 * The state lives in the shared {@linkcode HealthCells}, so every worker sees
 * an ejection at once and failures seen by different workers add up. An
 * ejection ends lazily: the first pick that finds it over readmits the
 * endpoint (see `Endpoint.available`), so no timer is needed.
 *
 * @module
 */

import type { OutlierDetectionConfig } from "../config/types.ts";
import { FLAG_EJECTED } from "./counters.ts";
import type { Endpoint } from "./endpoint.ts";

/** Records a success: clears the failure streak (writes shared memory only when needed). */
export function outlierSuccess(ep: Endpoint, od: OutlierDetectionConfig, now: number): void {
  const c = ep.cells;
  const i = ep.cell;
  if (c.fails[i] !== 0) Atomics.store(c.fails, i, 0);
  if (c.ejections[i] !== 0 && now - c.until[i] > od.max_ejection_time) Atomics.store(c.ejections, i, 0);
}

/**
 * Records a failure; ejects the endpoint when its streak reaches the threshold
 * and the ejection budget of `group` allows.
 * @returns true when this call ejected the endpoint.
 */
export function outlierFailure(
  ep: Endpoint,
  od: OutlierDetectionConfig,
  group: readonly Endpoint[],
  now: number,
): boolean {
  const c = ep.cells;
  const i = ep.cell;
  const streak = Atomics.add(c.fails, i, 1) + 1;
  if (streak < od.consecutive_failures || (c.flags[i] & FLAG_EJECTED) !== 0) return false;
  let ejected = 0;
  for (const e of group) if (e !== ep && e.ejected) ejected++;
  if (ejected > 0 && (ejected + 1) * 100 > od.max_ejection_percent * group.length) return false;
  const k = Atomics.add(c.ejections, i, 1) + 1;
  // The deadline is written before the flag, so no isolate sees the flag with a stale deadline.
  c.until[i] = now + Math.min(od.max_ejection_time, od.base_ejection_time * k);
  const before = Atomics.or(c.flags, i, FLAG_EJECTED);
  Atomics.store(c.fails, i, 0);
  return (before & FLAG_EJECTED) === 0;
}
