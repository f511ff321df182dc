/**
 * Resolving references: namespace label selectors (allowedRoutes),
 * ReferenceGrants for cross-namespace references, and a Service backendRef
 * → its endpoints (EndpointSlice addresses and ports, else the Service's
 * clusterIP or externalName) → a Loom upstream.
 *
 * @module
 */
import { GATEWAY_GROUP, type Json, type K8sObject, type ResourceSet } from "./types.ts";

/** A label selector (matchLabels, matchExpressions). */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** Whether `labels` satisfy `sel`; an unknown operator matches nothing. */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (sel === undefined) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key]);
    const ok = e.operator === "In"
      ? inValues
      : e.operator === "NotIn"
      ? !inValues
      : e.operator === "Exists"
      ? has
      : e.operator === "DoesNotExist"
      ? !has
      : false;
    if (!ok) return false;
  }
  return true;
}

/** The labels of namespace `ns` (with the automatic `kubernetes.io/metadata.name`). */
export function namespaceLabels(res: ResourceSet, ns: string): Record<string, string> {
  const o = res.Namespace.find((n) => n.metadata?.name === ns);
  return { ...o?.metadata?.labels, "kubernetes.io/metadata.name": ns };
}

/** Whether a ReferenceGrant in `toNs` lets a `fromKind` of `fromNs` refer to `toKind` `toName`. */
export function referenceGranted(
  res: ResourceSet,
  from: { group: string; kind: string; namespace: string },
  to: { group: string; kind: string; namespace: string; name: string },
): boolean {
  if (from.namespace === to.namespace) return true;
  return res.ReferenceGrant.some((g) =>
    g.metadata?.namespace === to.namespace &&
    (g.spec?.from ?? []).some((f: { group?: string; kind?: string; namespace?: string }) =>
      (f.group ?? "") === from.group && f.kind === from.kind && f.namespace === from.namespace
    ) &&
    (g.spec?.to ?? []).some((t: { group?: string; kind?: string; name?: string }) =>
      (t.group ?? "") === to.group && t.kind === to.kind && (t.name === undefined || t.name === to.name)
    )
  );
}

/** A backendRef (HTTPRoute, GRPCRoute, RequestMirror). */
export interface BackendRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  port?: number;
  weight?: number;
  filters?: Json[];
}

/** Why a reference failed: a ResolvedRefs reason and a message. */
export interface RefProblem {
  reason: string;
  message: string;
}

/** A resolved Service port: its endpoints ("host:port") and upstream protocol. */
export interface ResolvedService {
  key: string;
  endpoints: string[];
  protocol?: "h2c";
}

const hostPort = (host: string, port: number) => host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;

/** A Service backendRef of a `routeKind` in `routeNs` → its endpoints, or why not. */
export function resolveServiceRef(
  res: ResourceSet,
  ref: BackendRef,
  routeKind: string,
  routeNs: string,
): ResolvedService | RefProblem {
  const group = ref.group ?? "";
  const kind = ref.kind ?? "Service";
  if (group !== "" || kind !== "Service") {
    return {
      reason: "InvalidKind",
      message: `backendRef kind "${group ? group + "/" : ""}${kind}" is not supported`,
    };
  }
  const name = ref.name ?? "";
  const ns = ref.namespace ?? routeNs;
  const to = { group: "", kind: "Service", namespace: ns, name };
  if (!referenceGranted(res, { group: GATEWAY_GROUP, kind: routeKind, namespace: routeNs }, to)) {
    return {
      reason: "RefNotPermitted",
      message: `backendRef to Service ${ns}/${name} is not permitted by Json ReferenceGrant`,
    };
  }
  const svc = res.Service.find((s) => s.metadata?.namespace === ns && s.metadata?.name === name);
  if (svc === undefined) return { reason: "BackendNotFound", message: `Service ${ns}/${name} not found` };
  if (ref.port === undefined) {
    return { reason: "BackendNotFound", message: `backendRef to Service ${ns}/${name} needs a port` };
  }
  const sp = (Array.isArray(svc.spec?.ports) ? svc.spec.ports : []).find((p: Json) => p.port === ref.port);
  if (sp === undefined) {
    return { reason: "BackendNotFound", message: `Service ${ns}/${name} has no port ${ref.port}` };
  }
  const protocol = sp.appProtocol === "kubernetes.io/h2c" ? "h2c" as const : undefined;
  try {
    return { key: `${ns}/${name}:${ref.port}`, endpoints: serviceEndpoints(res, svc, sp), protocol };
  } catch (e) {
    return {
      reason: "BackendNotFound",
      message: `Service ${ns}/${name}: malformed endpoints: ${(e as Error).message}`,
    };
  }
}

/** The ready endpoints of a Service port. */
function serviceEndpoints(
  res: ResourceSet,
  svc: K8sObject,
  sp: { name?: string; port: number; targetPort?: number | string },
): string[] {
  const ns = svc.metadata?.namespace;
  const name = svc.metadata?.name;
  if (svc.spec?.type === "ExternalName" && typeof svc.spec.externalName === "string") {
    return [hostPort(svc.spec.externalName, sp.port)];
  }
  const slices = res.EndpointSlice.filter((s) =>
    s.metadata?.namespace === ns && s.metadata?.labels?.["kubernetes.io/service-name"] === name
  );
  const out = new Set<string>();
  for (const s of slices) {
    for (const p of s.ports ?? []) {
      if ((p.name ?? "") !== (sp.name ?? "") || typeof p.port !== "number") continue;
      for (const e of s.endpoints ?? []) {
        if (e.conditions?.ready === false) continue;
        for (const a of e.addresses ?? []) out.add(hostPort(a, p.port));
      }
    }
  }
  if (slices.length === 0) {
    // No EndpointSlices (manifests without them): the Service's own virtual IP, as kube-proxy serves it.
    const ip = svc.spec?.clusterIP;
    if (typeof ip === "string" && ip !== "" && ip !== "None") out.add(hostPort(ip, sp.port));
  }
  return [...out].sort();
}
