/**
 * The Kubernetes objects Loom reads, as plain JSON (only the fields it uses
 * are typed; everything is optional because manifests and API answers may
 * lack anything). Gateway API `gateway.networking.k8s.io/v1` (ReferenceGrant
 * `v1beta1`), core `v1` Services, Secrets and Namespaces, `discovery.k8s.io/v1`
 * EndpointSlices.
 *
 * @module
 */

/** `metadata` of any object. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Free-form JSON of a resource (specs are read field by field, defensively). */
// deno-lint-ignore no-explicit-any
export type Json = any;

/** Any Kubernetes object. */
export interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: Json;
  status?: Json;
  /** Secrets. */
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  /** EndpointSlices. */
  addressType?: string;
  endpoints?: { addresses?: string[]; conditions?: { ready?: boolean | null } }[];
  ports?: { name?: string | null; port?: number; protocol?: string; appProtocol?: string }[];
}

/** A status condition (metav1.Condition). */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

/** The kinds Loom reads, by the name used throughout src/k8s. */
export type Kind =
  | "GatewayClass"
  | "Gateway"
  | "HTTPRoute"
  | "GRPCRoute"
  | "ReferenceGrant"
  | "Service"
  | "EndpointSlice"
  | "Secret"
  | "Namespace";

/** Every kind, in the order lists are fetched. */
export const KINDS: readonly Kind[] = [
  "GatewayClass",
  "Gateway",
  "HTTPRoute",
  "GRPCRoute",
  "ReferenceGrant",
  "Service",
  "EndpointSlice",
  "Secret",
  "Namespace",
];

/** The Gateway API group. */
export const GATEWAY_GROUP = "gateway.networking.k8s.io";

/** Where each kind lives on the API server. */
export const API_PATHS: Record<Kind, { prefix: string; plural: string; namespaced: boolean }> = {
  GatewayClass: { prefix: `/apis/${GATEWAY_GROUP}/v1`, plural: "gatewayclasses", namespaced: false },
  Gateway: { prefix: `/apis/${GATEWAY_GROUP}/v1`, plural: "gateways", namespaced: true },
  HTTPRoute: { prefix: `/apis/${GATEWAY_GROUP}/v1`, plural: "httproutes", namespaced: true },
  GRPCRoute: { prefix: `/apis/${GATEWAY_GROUP}/v1`, plural: "grpcroutes", namespaced: true },
  ReferenceGrant: { prefix: `/apis/${GATEWAY_GROUP}/v1beta1`, plural: "referencegrants", namespaced: true },
  Service: { prefix: "/api/v1", plural: "services", namespaced: true },
  EndpointSlice: { prefix: "/apis/discovery.k8s.io/v1", plural: "endpointslices", namespaced: true },
  Secret: { prefix: "/api/v1", plural: "secrets", namespaced: true },
  Namespace: { prefix: "/api/v1", plural: "namespaces", namespaced: false },
};

/** The objects of one source at one moment, by kind. */
export type ResourceSet = Record<Kind, K8sObject[]>;

/** An empty {@link ResourceSet}. */
export function emptyResources(): ResourceSet {
  return Object.fromEntries(KINDS.map((k) => [k, []])) as unknown as ResourceSet;
}

/** `namespace/name` (just `name` for cluster-scoped objects). */
export function keyOf(o: K8sObject): string {
  const ns = o.metadata?.namespace;
  return ns ? `${ns}/${o.metadata?.name ?? ""}` : o.metadata?.name ?? "";
}
