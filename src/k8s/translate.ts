/**
 * Gateway API resources → the listeners, routes and upstreams of a Loom
 * config (in the YAML's shape, validated with the rest of the config file),
 * and the status Loom reports for them. Pure: the same resources always give
 * the same output; nothing here throws on a bad resource, it gets a condition.
 *
 * - GatewayClasses whose `controllerName` is Loom's (and, when set, the one
 *   named `gateway_class`) are Accepted; their Gateways are Loom's.
 * - Gateway listeners (HTTP, HTTPS with Terminate TLS from Secrets of type
 *   `kubernetes.io/tls`) become one Loom listener per port: `gw-<port>`,
 *   `http` (`h2c` once a GRPCRoute attaches), or `https` with every valid
 *   certificate of that port (chosen by SNI). Conflicts (two protocols on one
 *   port, one hostname twice) and bad references are listener conditions.
 * - Routes attach by parentRef (sectionName, port), allowedRoutes (namespaces
 *   Same / All / Selector, kinds) and hostname intersection; each attachment
 *   gives routes bound to its listener (`listeners`) and hostname (`host`),
 *   with the spec's precedence as `priority` (the hostname first, then the
 *   rule's path / method / header / query score from rules.ts).
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { effectiveHostnames, hostnameScore, validHostname } from "./hostnames.ts";
import { namespaceLabels, referenceGranted, type ResolvedService, selectorMatches } from "./refs.ts";
import { grpcRouteRules, httpRouteRules, type RuleContext, type RulesResult } from "./rules.ts";
import { condition, type StatusEntry } from "./status.ts";
import {
  type Condition,
  GATEWAY_GROUP,
  type Json,
  type K8sObject,
  keyOf,
  type Kind,
  type ResourceSet,
} from "./types.ts";

/** What the translation needs besides the resources. */
export interface TranslateOptions {
  controllerName: string;
  gatewayClass?: string;
  /** Interface the listeners bind ("" = all). */
  listenHost: string;
  /** Gateway port → bound port. */
  portMap: Record<string, number>;
  /** Directory the certificate files will be written to. */
  certDir: string;
  middlewareNames: ReadonlySet<string>;
  pluginNames: ReadonlySet<string>;
}

/** The translation: config parts, their files, and the status of every object of Loom's. */
export interface Translation {
  listeners: Record<string, unknown>[];
  routes: Record<string, unknown>[];
  /** `Kind/namespace/name` of the object each route comes from. */
  routeOwners: string[];
  upstreams: Record<string, unknown>[];
  /** File name (in `certDir`) → content. */
  files: Record<string, string>;
  statuses: StatusEntry[];
}

const byAge = (a: K8sObject, b: K8sObject) => {
  const ta = a.metadata?.creationTimestamp ?? "", tb = b.metadata?.creationTimestamp ?? "";
  return ta < tb ? -1 : ta > tb ? 1 : keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0;
};

const ROUTE_KINDS = ["HTTPRoute", "GRPCRoute"];

/** `v` when it is a list of objects-or-values, else nothing (a malformed field is ignored, never thrown on). */
const listOf = (v: unknown): Json[] => Array.isArray(v) ? v.filter((x) => x !== null && x !== undefined) : [];

/** One Gateway listener and what became of it. */
interface ListenerState {
  gw: K8sObject;
  name: string;
  port: number;
  protocol: string;
  hostname?: string;
  /** Served (a Loom listener carries it). */
  ok: boolean;
  conditions: Condition[];
  kinds: string[];
  attached: number;
  loomName: string;
  allowed: Json;
}

/** One Loom listener (a port). */
interface PortState {
  protocol: "HTTP" | "HTTPS";
  certs: { crt: string; key: string }[];
  grpc: boolean;
  hosts: Set<string>;
}

function decode(secret: K8sObject, key: string): string | undefined {
  const s = secret.stringData?.[key];
  if (typeof s === "string") return s;
  const d = secret.data?.[key];
  if (typeof d !== "string") return undefined;
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(d.replace(/\s+/g, "")), (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

/** Whether `crt` and `key` are a PEM certificate and its private key. */
function checkPair(crt: string, key: string): string | undefined {
  try {
    const cert = new X509Certificate(crt);
    if (!cert.checkPrivateKey(createPrivateKey(key))) return "the key is not the certificate's";
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 24);
}

/** Translates `res` (see the module doc). */
export async function translate(res: ResourceSet, opts: TranslateOptions): Promise<Translation> {
  const statuses: StatusEntry[] = [];
  const out: Translation = { listeners: [], routes: [], routeOwners: [], upstreams: [], files: {}, statuses };

  // GatewayClasses.
  const classes = res.GatewayClass.filter((c) =>
    c.spec?.controllerName === opts.controllerName &&
    (opts.gatewayClass === undefined || c.metadata?.name === opts.gatewayClass)
  );
  for (const c of classes) {
    statuses.push({
      kind: "GatewayClass",
      name: c.metadata!.name!,
      status: {
        conditions: [condition("Accepted", true, "Accepted", "Handled by Loom", c.metadata?.generation)],
      },
    });
  }
  const classNames = new Set(classes.map((c) => c.metadata!.name!));
  const gateways = res.Gateway.filter((g) => classNames.has(g.spec?.gatewayClassName)).sort(byAge);

  // Listeners.
  const ports = new Map<number, PortState>();
  const listeners = new Map<K8sObject, ListenerState[]>();
  for (const gw of gateways) {
    const gen = gw.metadata?.generation;
    const gwNs = gw.metadata?.namespace ?? "default";
    const states: ListenerState[] = [];
    for (const l of listOf(gw.spec?.listeners)) {
      const protocol = String(l.protocol ?? "");
      const port = Number(l.port);
      const hostname: string | undefined = typeof l.hostname === "string"
        ? l.hostname.toLowerCase()
        : undefined;
      const st: ListenerState = {
        gw,
        name: String(l.name ?? ""),
        port,
        protocol,
        hostname,
        ok: true,
        conditions: [],
        kinds: [],
        attached: 0,
        loomName: `gw-${port}`,
        allowed: l.allowedRoutes,
      };
      states.push(st);
      let accepted: [boolean, string, string] = [true, "Accepted", "Listener accepted"];
      let resolved: [boolean, string, string] = [true, "ResolvedRefs", "References resolved"];
      let conflicted: [boolean, string, string] = [false, "NoConflicts", "No conflicts"];
      // Route kinds.
      const wanted: { group?: string; kind: string }[] = Array.isArray(l.allowedRoutes?.kinds)
        ? l.allowedRoutes.kinds
        : ROUTE_KINDS.map((kind) => ({ group: GATEWAY_GROUP, kind }));
      st.kinds = wanted.filter((k) =>
        (k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP && ROUTE_KINDS.includes(k.kind)
      )
        .map((k) => k.kind);
      if (st.kinds.length < wanted.length) {
        resolved = [false, "InvalidRouteKinds", "Only HTTPRoute and GRPCRoute are supported"];
      }
      const certs: { crt: string; key: string }[] = [];
      if (protocol !== "HTTP" && protocol !== "HTTPS") {
        accepted = [
          false,
          "UnsupportedProtocol",
          `Protocol "${protocol}" is not supported (HTTP, HTTPS are)`,
        ];
      } else if (!Number.isInteger(port) || port < 1 || port > 65535) {
        accepted = [false, "UnsupportedValue", `Port ${l.port} is not valid`];
      } else if (hostname !== undefined && !validHostname(hostname)) {
        accepted = [false, "UnsupportedValue", `Hostname "${hostname}" is not valid`];
      } else if (protocol === "HTTPS") {
        if ((l.tls?.mode ?? "Terminate") !== "Terminate") {
          accepted = [false, "UnsupportedValue", "Only TLS mode Terminate is supported"];
        }
        for (const ref of listOf(l.tls?.certificateRefs)) {
          const ns = ref.namespace ?? gwNs;
          const name = String(ref.name ?? "");
          const fail = (reason: string, message: string) => resolved = [false, reason, message];
          if ((ref.group ?? "") !== "" || (ref.kind ?? "Secret") !== "Secret") {
            fail("InvalidCertificateRef", `certificateRef ${ref.kind} is not a Secret`);
            continue;
          }
          if (
            !referenceGranted(res, { group: GATEWAY_GROUP, kind: "Gateway", namespace: gwNs }, {
              group: "",
              kind: "Secret",
              namespace: ns,
              name,
            })
          ) {
            fail("RefNotPermitted", `Secret ${ns}/${name} is not permitted by Json ReferenceGrant`);
            continue;
          }
          const secret = res.Secret.find((s) => s.metadata?.namespace === ns && s.metadata?.name === name);
          const crt = secret && decode(secret, "tls.crt"), key = secret && decode(secret, "tls.key");
          if (secret === undefined) fail("InvalidCertificateRef", `Secret ${ns}/${name} not found`);
          else if (secret.type !== "kubernetes.io/tls" || crt === undefined || key === undefined) {
            fail("InvalidCertificateRef", `Secret ${ns}/${name} is not a kubernetes.io/tls Secret`);
          } else {
            const bad = checkPair(crt, key);
            if (bad !== undefined) fail("InvalidCertificateRef", `Secret ${ns}/${name}: ${bad}`);
            else certs.push({ crt, key });
          }
        }
        if (certs.length === 0 && resolved[0]) {
          resolved = [false, "InvalidCertificateRef", "An HTTPS listener needs a certificateRef"];
        }
      }
      if (accepted[0]) {
        const p = ports.get(port);
        const hostKey = hostname ?? "";
        if (p !== undefined && p.protocol !== protocol) {
          conflicted = [true, "ProtocolConflict", `Port ${port} already serves ${p.protocol}`];
        } else if (p !== undefined && p.hosts.has(hostKey)) {
          conflicted = [true, "HostnameConflict", `Another listener on port ${port} has this hostname`];
        }
      }
      st.ok = accepted[0] && !conflicted[0] && (protocol !== "HTTPS" || certs.length > 0);
      if (st.ok) {
        const p = ports.get(port) ??
          { protocol: protocol as "HTTP" | "HTTPS", certs: [], grpc: false, hosts: new Set<string>() };
        ports.set(port, p);
        p.hosts.add(hostname ?? "");
        p.certs.push(...certs);
      }
      st.conditions = [
        condition("Accepted", ...accepted, gen),
        condition("ResolvedRefs", ...resolved, gen),
        condition("Conflicted", ...conflicted, gen),
        condition(
          "Programmed",
          st.ok,
          st.ok ? "Programmed" : "Invalid",
          st.ok ? "Served" : "Not served",
          gen,
        ),
      ];
    }
    listeners.set(gw, states);
  }

  // Upstreams: one per Service port (and retry policy).
  const upstreams = new Map<string, Record<string, unknown>>();
  const ctx: RuleContext = {
    res,
    middlewareNames: opts.middlewareNames,
    pluginNames: opts.pluginNames,
    upstream: (s: ResolvedService, retry) => {
      const name = retry === undefined ? `k8s/${s.key}` : `k8s/${s.key}/retry-${JSON.stringify(retry)}`;
      if (!upstreams.has(name)) {
        const u: Record<string, unknown> = { name, endpoints: s.endpoints };
        if (s.protocol !== undefined) u.protocol = s.protocol;
        if (retry !== undefined) u.retry = retry;
        upstreams.set(name, u);
      }
      return name;
    },
  };

  // Routes.
  interface Generated {
    route: Record<string, unknown>;
    owner: string;
    priority: number;
    order: number;
  }
  const generated: Generated[] = [];
  const routes = [
    ...res.HTTPRoute.map((r) => ["HTTPRoute", r] as const),
    ...res.GRPCRoute.map((r) => ["GRPCRoute", r] as const),
  ].sort((a, b) => byAge(a[1], b[1]));
  let routeIndex = 0;
  for (const [kind, route] of routes) {
    routeIndex++;
    const ns = route.metadata?.namespace ?? "default";
    const gen = route.metadata?.generation;
    const parents: { parentRef: unknown; controllerName: string; conditions: Condition[] }[] = [];
    const bindings = new Map<string, { loomName: string; host?: string; port: number }>();
    const attachedTo: ListenerState[] = [];
    const hostnames: string[] = listOf(route.spec?.hostnames).filter((x) => typeof x === "string");
    let rules: RulesResult;
    try {
      rules = kind === "HTTPRoute" ? httpRouteRules(route, ctx) : grpcRouteRules(route, ctx);
    } catch (e) {
      // A malformed spec (a list that is not one, a wrong type): the route is not accepted.
      rules = { templates: [], refProblems: [], invalid: `malformed spec: ${(e as Error).message}` };
    }
    for (const ref of listOf(route.spec?.parentRefs)) {
      if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? "Gateway") !== "Gateway") continue;
      const gwNs = ref.namespace ?? ns;
      const gw = gateways.find((g) => g.metadata?.namespace === gwNs && g.metadata?.name === ref.name);
      if (gw === undefined) continue; // not Loom's Gateway: another controller reports
      let accepted: [boolean, string, string];
      const ls = (listeners.get(gw) ?? []).filter((l) =>
        (ref.sectionName === undefined || l.name === ref.sectionName) &&
        (ref.port === undefined || l.port === ref.port)
      );
      const allowed = ls.filter((l) => {
        if (!l.kinds.includes(kind)) return false;
        const from = l.allowed?.namespaces?.from ?? "Same";
        if (from === "All") return true;
        if (from === "Same") return ns === gwNs;
        if (from === "Selector") {
          return selectorMatches(l.allowed.namespaces.selector, namespaceLabels(res, ns));
        }
        return false;
      });
      const hosted = allowed.map((l) => [l, effectiveHostnames(hostnames, l.hostname)] as const)
        .filter(([, hs]) => hs.length > 0);
      if (ls.length === 0) accepted = [false, "NoMatchingParent", "No listener matches the parentRef"];
      else if (allowed.length === 0) {
        accepted = [false, "NotAllowedByListeners", "No listener allows this route"];
      } else if (hosted.length === 0) {
        accepted = [false, "NoMatchingListenerHostname", "No hostname intersects a listener's"];
      } else if (rules.invalid !== undefined) accepted = [false, "UnsupportedValue", rules.invalid];
      else {
        accepted = [true, "Accepted", "Route accepted"];
        for (const [l, hs] of hosted) {
          if (!attachedTo.includes(l)) {
            attachedTo.push(l);
            l.attached++;
          }
          if (!l.ok) continue;
          if (kind === "GRPCRoute") ports.get(l.port)!.grpc = true;
          for (const h of hs) {
            bindings.set(`${l.loomName}|${h ?? ""}|${l.port}`, {
              loomName: l.loomName,
              host: h,
              port: l.port,
            });
          }
        }
      }
      const p = rules.refProblems[0];
      parents.push({
        parentRef: ref,
        controllerName: opts.controllerName,
        conditions: [
          condition("Accepted", ...accepted, gen),
          p === undefined
            ? condition("ResolvedRefs", true, "ResolvedRefs", "References resolved", gen)
            : condition("ResolvedRefs", false, p.reason, p.message, gen),
        ],
      });
    }
    if (parents.length === 0) continue; // not attached to Json Gateway of Loom's
    statuses.push({ kind: kind as Kind, namespace: ns, name: route.metadata!.name!, status: { parents } });
    const owner = `${kind}/${ns}/${route.metadata!.name}`;
    let b = 0;
    for (const binding of bindings.values()) {
      for (const t of rules.templates) {
        const r: Record<string, unknown> = {
          id: `${kind.toLowerCase()}/${ns}/${route.metadata!.name}/${t.key}/${b}`,
          ...t.route,
          listeners: [binding.loomName],
        };
        if (binding.host !== undefined) r.host = binding.host;
        if (t.needsPort && r.redirect !== undefined) {
          r.redirect = { ...r.redirect as object, port: binding.port };
        }
        const priority = hostnameScore(binding.host) * 2 ** 27 + t.score;
        generated.push({ route: r, owner, priority, order: routeIndex });
      }
      b++;
    }
  }
  generated.sort((x, y) => y.priority - x.priority || x.order - y.order);
  for (const g of generated) {
    out.routes.push({ ...g.route, priority: g.priority });
    out.routeOwners.push(g.owner);
  }
  out.upstreams = [...upstreams.values()];

  // Loom listeners, one per port.
  const host = opts.listenHost.includes(":") ? `[${opts.listenHost}]` : opts.listenHost;
  for (const [port, p] of [...ports].sort((a, b) => a[0] - b[0])) {
    const bound = opts.portMap[String(port)] ?? port;
    const l: Record<string, unknown> = { name: `gw-${port}`, address: `${host}:${bound}` };
    if (p.protocol === "HTTP") l.protocol = p.grpc ? "h2c" : "http";
    else {
      l.protocol = "https";
      const files = [];
      for (const c of p.certs) {
        const id = await sha256Hex(c.crt + c.key);
        out.files[`${id}.crt`] = c.crt;
        out.files[`${id}.key`] = c.key;
        files.push({ cert_file: `${opts.certDir}/${id}.crt`, key_file: `${opts.certDir}/${id}.key` });
      }
      const tls: Record<string, unknown> = { ...files[0] };
      if (files.length > 1) tls.certificates = files.slice(1);
      if (p.grpc) tls.alpn = ["h2", "http/1.1"];
      l.tls = tls;
    }
    out.listeners.push(l);
  }

  // Gateway status.
  for (const gw of gateways) {
    const gen = gw.metadata?.generation;
    const states = listeners.get(gw) ?? [];
    const served = states.some((l) => l.ok);
    const allValid = states.every((l) => l.ok);
    statuses.push({
      kind: "Gateway",
      namespace: gw.metadata?.namespace,
      name: gw.metadata!.name!,
      status: {
        conditions: [
          condition(
            "Accepted",
            served || states.length === 0,
            allValid ? "Accepted" : served ? "ListenersNotValid" : "ListenersNotValid",
            allValid ? "Gateway accepted" : "Some listeners are not valid",
            gen,
          ),
          condition(
            "Programmed",
            served,
            served ? "Programmed" : "Invalid",
            served ? "Served by Loom" : "No listener served",
            gen,
          ),
        ],
        listeners: states.map((l) => ({
          name: l.name,
          supportedKinds: l.kinds.map((kind) => ({ group: GATEWAY_GROUP, kind })),
          attachedRoutes: l.attached,
          conditions: l.conditions,
        })),
      },
    });
  }
  return out;
}

/** Marks the routes of `owners` not accepted (their generated routes did not validate). */
export function rejectOwners(t: Translation, owners: ReadonlyMap<string, string>): void {
  for (const s of t.statuses) {
    if (s.kind !== "HTTPRoute" && s.kind !== "GRPCRoute") continue;
    const why = owners.get(`${s.kind}/${s.namespace}/${s.name}`);
    if (why === undefined) continue;
    for (const p of s.status.parents as { conditions: Condition[] }[]) {
      const a = p.conditions.find((c) => c.type === "Accepted")!;
      Object.assign(a, { status: "False", reason: "UnsupportedValue", message: why });
    }
  }
}
