/**
 * The `gateway_api:` block: the Kubernetes Gateway API as a source of
 * listeners, routes and upstreams (src/k8s/), from a directory of manifests
 * or from the API server, merged into the rest of the config file.
 *
 * ```yaml
 * gateway_api:
 *   manifests: ./gateway            # a directory of YAML manifests, watched; or
 *   # kubernetes: {}                # in-cluster: the service account's token and CA
 *   controller_name: loom.dev/gateway-controller
 *   gateway_class: loom
 * ```
 *
 * @module
 */
import { opt, t, type Type } from "./dsl.ts";
import { type MiddlewareEntry, middlewareEntry } from "./middleware/mod.ts";

/** Where the service account's files are in a pod. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The API server source (`gateway_api.kubernetes`). */
export interface KubernetesSourceConfig {
  /** API server URL; default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`. */
  server?: string;
  /** Bearer token file (re-read every minute: projected tokens rotate). */
  token_file: string;
  /** CA bundle of the API server; absent or missing file: the system roots. */
  ca_file: string;
  /** Watch this namespace only (namespaced kinds); every namespace when absent. */
  namespace?: string;
  /** The Lease that elects the one replica writing status. */
  lease: { name: string; namespace?: string; duration: number };
  /** This replica's identity in the Lease; default `$POD_NAME`, else the host name and a random suffix. */
  identity?: string;
  /** How long start-up waits for the first list of every kind (ms). */
  initial_sync_timeout: number;
}

/** `gateway_api:`, normalised. */
export interface GatewayApiConfig {
  /** Absolute directory of manifests (exactly one of `manifests` and `kubernetes`). */
  manifests?: string;
  kubernetes?: KubernetesSourceConfig;
  /** GatewayClasses whose `spec.controllerName` is this are Loom's. */
  controller_name: string;
  /** Only the GatewayClass of this name (else every class with `controller_name`). */
  gateway_class?: string;
  /** Interface the generated listeners bind ("" = all). */
  listen_host: string;
  /** Gateway listener port → the port Loom binds (e.g. 80 → 8080 for a non-root pod). */
  port_map: Record<string, number>;
  /** Middleware lists that ExtensionRef filters of kind `Middleware` name. */
  middleware: Record<string, MiddlewareEntry[]>;
}

const notEmpty = (s: string) => s === "" ? "must not be empty" : undefined;

/** The schema of `gateway_api:`. */
export const gatewayApiType: Type = t.object({
  manifests: opt(
    t.string({ file: true, check: notEmpty }),
    undefined,
    "Directory of Gateway API manifests (multi-document YAML, *.yaml / *.yml / *.json, recursive), " +
      "watched and reloaded like this file.",
  ),
  kubernetes: opt(
    t.object({
      server: opt(
        t.string({ pattern: "^https?://", patternMessage: 'expected a URL like "https://10.0.0.1:443"' }),
        undefined,
        "API server URL (default: from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT).",
      ),
      token_file: opt(t.string({ file: true }), `${SERVICE_ACCOUNT_DIR}/token`, "Bearer token file."),
      ca_file: opt(t.string({ file: true }), `${SERVICE_ACCOUNT_DIR}/ca.crt`, "API server CA bundle."),
      namespace: opt(t.string({ check: notEmpty }), undefined, "Watch only this namespace."),
      lease: opt(
        t.object({
          name: opt(t.string({ check: notEmpty }), "loom-gateway-status", "Lease name."),
          namespace: opt(
            t.string({ check: notEmpty }),
            undefined,
            "Lease namespace (default: $POD_NAMESPACE, else the service account's namespace).",
          ),
          duration: opt(t.duration(), "15s", "Lease duration; the holder renews it every third of it."),
        }),
        {},
        "Leader election: one replica writes status, every replica serves.",
      ),
      identity: opt(t.string({ check: notEmpty }), undefined, "This replica's Lease identity."),
      initial_sync_timeout: opt(t.duration(), "30s", "Longest start-up wait for the first lists."),
    }),
    undefined,
    "Read the Gateway API from the Kubernetes API server (list + watch) and write status back.",
  ),
  controller_name: opt(
    t.string({ pattern: "^[a-z0-9.-]+/[A-Za-z0-9/._~%!$&'()*+,;=:@-]+$" }),
    "loom.dev/gateway-controller",
    "GatewayClasses with this spec.controllerName are Loom's.",
  ),
  gateway_class: opt(t.string({ check: notEmpty }), undefined, "Only this GatewayClass (by name)."),
  listen_host: opt(t.string(), "", 'Interface of the listeners made from Gateways ("" = all).'),
  port_map: opt(
    t.map(t.int({ min: 1, max: 65535 }), {
      keys: t.string({ pattern: "^[0-9]{1,5}$", patternMessage: "expected a port number" }),
    }),
    {},
    "Gateway listener port → the port Loom binds, e.g. {80: 8080}.",
  ),
  middleware: opt(
    t.map(t.list(middlewareEntry)),
    {},
    "Named middleware lists, for ExtensionRef filters {group: loom.dev, kind: Middleware, name}.",
  ),
}, {
  description: "Kubernetes Gateway API as a config source: listeners, routes and upstreams from Gateways, " +
    "HTTPRoutes and GRPCRoutes (exactly one of manifests and kubernetes).",
  minFields: 1,
});
