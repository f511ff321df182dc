/**
 * Status conditions: building them, carrying `lastTransitionTime` over from
 * what the object already has when nothing changed, and the status objects
 * Loom owns (GatewayClass and Gateway status whole; a route's `parents`
 * entries of Loom's controller, others' kept).
 *
 * @module
 */
import type { Condition, Json, K8sObject, Kind } from "./types.ts";

/** A condition of an object at `generation`. */
export function condition(
  type: string,
  ok: boolean,
  reason: string,
  message: string,
  generation: number | undefined,
): Condition {
  return { type, status: ok ? "True" : "False", reason, message, observedGeneration: generation ?? 0 };
}

/** The status Loom computed for one object (only the parts Loom owns). */
export interface StatusEntry {
  kind: Kind;
  namespace?: string;
  name: string;
  status: Json;
}

/** A route's status entry for one parentRef. */
export interface RouteParentStatus {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: Condition[];
}

/** `conditions` with the transition times of `old` kept where type and status did not change. */
export function withTransitionTimes(
  conditions: Condition[],
  old: Condition[] | undefined,
  now: string,
): Condition[] {
  return conditions.map((c) => {
    const prev = old?.find((o) => o.type === c.type);
    return {
      ...c,
      lastTransitionTime: prev?.status === c.status && prev.lastTransitionTime
        ? prev.lastTransitionTime
        : now,
    };
  });
}

/** Strips transition times (to compare statuses). */
function stripTimes(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripTimes);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).filter(([k]) => k !== "lastTransitionTime").map(([k, x]) => [k, stripTimes(x)]),
    );
  }
  return v;
}

/** Whether two statuses are the same but for transition times. */
export function sameStatus(a: unknown, b: unknown): boolean {
  return JSON.stringify(stripTimes(a)) === JSON.stringify(stripTimes(b));
}

/**
 * The full status to write for `entry` on the current object `current`: condition times carried
 * over; for routes, the parents of other controllers kept. Null when nothing would change.
 */
export function statusToWrite(
  entry: StatusEntry,
  current: K8sObject | undefined,
  controller: string,
  now: string,
): Json {
  const cur: Json = current?.status ?? {};
  let next: Json;
  if (entry.kind === "HTTPRoute" || entry.kind === "GRPCRoute") {
    const others = (cur.parents ?? []).filter((p: RouteParentStatus) => p.controllerName !== controller);
    const mine = (entry.status.parents as RouteParentStatus[]).map((p) => {
      const old = (cur.parents ?? []).find((o: RouteParentStatus) =>
        o.controllerName === controller && JSON.stringify(o.parentRef) === JSON.stringify(p.parentRef)
      );
      return { ...p, conditions: withTransitionTimes(p.conditions, old?.conditions, now) };
    });
    next = { ...cur, parents: [...others, ...mine] };
  } else {
    next = {
      ...cur,
      ...entry.status,
      conditions: withTransitionTimes(entry.status.conditions, cur.conditions, now),
    };
    if (entry.kind === "Gateway") {
      next.listeners = (entry.status.listeners ?? []).map((l: { name: string; conditions: Condition[] }) => {
        const old = (cur.listeners ?? []).find((o: { name: string }) => o.name === l.name);
        return { ...l, conditions: withTransitionTimes(l.conditions, old?.conditions, now) };
      });
    }
  }
  return sameStatus(next, cur) ? null : next;
}
