/**
 * Helpers of the Gateway API tests: manifest builders (Gateway, HTTPRoute,
 * Service with an EndpointSlice on a loopback port, Secret), a manifests
 * directory, and a raw request with a Host of our choosing (fetch() always
 * sends the URL's host).
 */
import { field, rawRequest } from "./http1_util.ts";

export const NS = "gateway-conformance-infra";
export const GW_GROUP = "gateway.networking.k8s.io";

/** A manifest (plain JSON object). */
export type Manifest = Record<string, unknown>;

export function namespace(name: string, labels: Record<string, string> = {}): Manifest {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels } };
}

export function gatewayClass(name = "loom", controllerName = "loom.dev/gateway-controller"): Manifest {
  return {
    apiVersion: `${GW_GROUP}/v1`,
    kind: "GatewayClass",
    metadata: { name, generation: 1 },
    spec: { controllerName },
  };
}

export function gateway(name: string, listeners: Record<string, unknown>[], ns = NS, cls = "loom"): Manifest {
  return {
    apiVersion: `${GW_GROUP}/v1`,
    kind: "Gateway",
    metadata: { name, namespace: ns, generation: 1 },
    spec: { gatewayClassName: cls, listeners },
  };
}

/** A Service `name` on port 8080 whose EndpointSlice points at 127.0.0.1:`port`. */
export function service(name: string, port: number, ns = NS): Manifest[] {
  return [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: ns },
      spec: { ports: [{ name: "http", port: 8080, targetPort: port }] },
    },
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-abc`, namespace: ns, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      endpoints: [{ addresses: ["127.0.0.1"], conditions: { ready: true } }],
      ports: [{ name: "http", port, protocol: "TCP" }],
    },
  ];
}

export function httpRoute(
  name: string,
  spec: Record<string, unknown>,
  opts: { ns?: string; created?: string; gateway?: string; kind?: string } = {},
): Manifest {
  return {
    apiVersion: `${GW_GROUP}/v1`,
    kind: opts.kind ?? "HTTPRoute",
    metadata: {
      name,
      namespace: opts.ns ?? NS,
      generation: 1,
      ...(opts.created ? { creationTimestamp: opts.created } : {}),
    },
    spec: { parentRefs: [{ name: opts.gateway ?? "same-namespace", namespace: NS }], ...spec },
  };
}

/** A backendRef to Service `name` port 8080. */
export function ref(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, port: 8080, ...extra };
}

/** Writes manifests as a multi-document YAML file (JSON documents) in `dir`. */
export function writeManifests(dir: string, file: string, docs: Manifest[]): void {
  const tmp = `${dir}/.${file}.tmp`;
  Deno.writeTextFileSync(tmp, docs.map((d) => JSON.stringify(d, null, 1)).join("\n---\n") + "\n");
  Deno.renameSync(tmp, `${dir}/${file}`);
}

/** A response as the tests look at it. */
export interface Answer {
  status: number;
  header(name: string): string | undefined;
  body: string;
  /** The echo backend's JSON (tag = backend name), when it answered. */
  echo?: { tag: string; target: string; host: string; headers: Record<string, string>; method: string };
}

/** A request to 127.0.0.1:`port` with Host `host`. */
export async function send(
  port: number,
  host: string,
  target: string,
  opts: { method?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const r = await rawRequest(port, { target, host, method: opts.method, headers: opts.headers }, 5000, false);
  if (r.res === null) throw new Error(`no answer to ${host}${target}: ${r.text.slice(0, 200)}`);
  const m = r.res;
  const body = new TextDecoder().decode(m.body);
  let echo: Answer["echo"];
  if (m.status === 200 && body.startsWith("{")) {
    try {
      echo = JSON.parse(body);
    } catch { /* not an echo */ }
  }
  return { status: m.status, header: (n) => field(m, n), body, echo };
}
