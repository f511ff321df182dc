/**
 * Cross-field checks the per-field schema cannot express: references between
 * routes, upstreams and plugins, uniqueness, port clashes and path captures.
 * Runs on the (possibly partial) normalised value, so it reads defensively.
 */

import { parsePattern } from "../router/pattern.ts";
import type { ConfigError } from "./types.ts";
import { type Position, UNKNOWN_POSITION } from "./position.ts";
import { type RateLimitOptions, rateLimitProblems } from "./middleware/rate_limit.ts";

type Obj = Record<string, unknown>;

const list = (v: unknown): Obj[] =>
  Array.isArray(v) ? v.filter((x): x is Obj => typeof x === "object" && x !== null) : [];
const str = (v: unknown): string | undefined => typeof v === "string" ? v : undefined;

/**
 * Names a route path captures, as the router parses it: `:id`, `{id}`,
 * `{rest...}`, and "*" for an unnamed trailing catch-all (used as `{*}`).
 * Throws the router's own error for a pattern it would reject.
 */
export function pathCaptures(path: string): Set<string> {
  const parsed = parsePattern(path);
  const names = new Set<string>(parsed.paramNames);
  if (parsed.catchAll !== null) names.add(parsed.catchAll);
  return names;
}

/** `{param}` names used by a rewrite or redirect template. */
export function templateParams(template: string): string[] {
  return [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1].replace(/\.\.\.$/, ""));
}

const WILDCARD_HOSTS = new Set(["", "0.0.0.0", "::"]);

/** Runs every cross-field check over the normalised config. */
export function checkSemantics(config: Obj, positions: Map<string, Position>): ConfigError[] {
  const errors: ConfigError[] = [];
  const at = (path: string, message: string, posPath = path) => {
    const pos = positions.get(posPath) ?? positions.get(path.replace(/(\.[^.[]+|\[[^\]]*\])$/, "")) ??
      UNKNOWN_POSITION;
    errors.push({ path, line: pos.line, column: pos.column, message });
  };
  const lineOf = (path: string) => positions.get(path)?.line ?? 0;

  const unique = (section: string, key: string, what: string) => {
    const first = new Map<string, number>();
    list(config[section]).forEach((item, i) => {
      const name = str(item[key]);
      if (name === undefined) return;
      const prev = first.get(name);
      if (prev === undefined) first.set(name, i);
      else {
        const prevPath = `${section}[${prev}].${key}`;
        at(
          `${section}[${i}].${key}`,
          `duplicate ${what} "${name}" (first defined at ${prevPath}, line ${lineOf(prevPath)})`,
        );
      }
    });
    return first;
  };
  const listenerNames = unique("listeners", "name", "listener name");
  const upstreams = unique("upstreams", "name", "upstream name");
  const plugins = unique("plugins", "name", "plugin name");
  // A plugin's files: one directory per path it sees (it could not tell two apart).
  list(config.plugins).forEach((plugin, i) => {
    const seen = new Map<string, number>();
    list(plugin.files).forEach((f, j) => {
      const as = str(f.as)?.replace(/(.)\/+$/, "$1");
      if (as === undefined) return;
      const prev = seen.get(as);
      if (prev === undefined) seen.set(as, j);
      else at(`plugins[${i}].files[${j}].as`, `"${as}" is already plugins[${i}].files[${prev}].as`);
    });
  });
  unique("routes", "id", "route id");

  list(config.routes).forEach((route, i) => {
    const p = `routes[${i}]`;
    const upstream = str(route.upstream);
    // Written-but-invalid values were already reported: test presence by position, not value.
    const written = (key: string) => route[key] !== undefined || positions.has(`${p}.${key}`);
    const actions = ROUTE_ACTIONS.filter(written);
    (Array.isArray(route.listeners) ? route.listeners as unknown[] : []).forEach((l, k) => {
      if (typeof l === "string" && !listenerNames.has(l)) {
        at(`${p}.listeners[${k}]`, `listener "${l}" is not defined${known(listenerNames)}`);
      }
    });
    if (actions.length === 0) {
      at(p, 'route needs "upstream", "backends", "redirect" or "direct_response"');
    } else if (actions.length > 1) {
      at(
        `${p}.${actions[1]}`,
        `route has both "${actions[0]}" and "${actions[1]}": it takes exactly one of ${
          ROUTE_ACTIONS.join(", ")
        }`,
      );
    }
    checkRouteActions(route, p, upstreams, positions, at);
    if (upstream !== undefined && !upstreams.has(upstream)) {
      at(`${p}.upstream`, `upstream "${upstream}" is not defined${known(upstreams)}`);
    }
    (Array.isArray(route.plugins) ? route.plugins : []).forEach((name, j) => {
      if (typeof name === "string" && !plugins.has(name)) {
        at(`${p}.plugins[${j}]`, `plugin "${name}" is not defined under top-level plugins${known(plugins)}`);
      }
    });
    const path = str(route.path);
    if (path === undefined) return;
    let captures: Set<string>;
    try {
      captures = pathCaptures(path);
    } catch (e) {
      at(`${p}.path`, (e as Error).message);
      return;
    }
    const templates: [string, string | undefined][] = [
      [`${p}.rewrite`, str(route.rewrite)],
      [`${p}.redirect`, str((route.redirect as Obj | undefined)?.url)],
      [`${p}.redirect`, str((route.redirect as Obj | undefined)?.path)],
    ];
    for (const [tp, template] of templates) {
      if (template === undefined) continue;
      for (const name of templateParams(template)) {
        if (!captures.has(name)) {
          const have = captures.size
            ? `captures only ${[...captures].map((c) => `{${c}}`).join(", ")}`
            : "captures nothing";
          const at2 = ["url", "path"].map((k) => `${tp}.${k}`).find((k) => positions.has(k)) ?? tp;
          at(tp, `uses {${name}} but path "${path}" ${have}`, at2);
        }
      }
    }
  });

  list(config.listeners).forEach((l, i) => {
    const protocol = str(l.protocol);
    if ((protocol === "https" || protocol === "grpcs" || protocol === "http3") && l.tls === undefined) {
      at(
        `listeners[${i}].tls`,
        `protocol "${protocol}" requires a tls block (cert_file, key_file)`,
        `listeners[${i}].protocol`,
      );
    }
    checkTcpListener(l, `listeners[${i}]`, protocol, upstreams, plugins, positions, at);
  });

  checkPorts(config, at);
  checkMiddleware(config, upstreams, positions, at);
  return errors;
}

/** A tcp listener's upstreams, SNI routes and network filters; the tcp-only keys elsewhere. */
function checkTcpListener(
  l: Obj,
  p: string,
  protocol: string | undefined,
  upstreams: Map<string, number>,
  plugins: Map<string, number>,
  positions: Map<string, Position>,
  at: (path: string, message: string, posPath?: string) => void,
): void {
  const written = (key: string) => l[key] !== undefined || positions.has(`${p}.${key}`);
  if (protocol !== "tcp") {
    for (const key of ["upstream", "sni_routes", "plugins"]) {
      if (written(key)) at(`${p}.${key}`, `"${key}" is for tcp listeners only (this one is ${protocol})`);
    }
    return;
  }
  if (written("tls")) {
    at(`${p}.tls`, "tcp listeners pass TLS through (routed by SNI with sni_routes): no tls block");
  }
  if (!written("upstream") && !written("sni_routes")) {
    at(p, 'a tcp listener needs "upstream", "sni_routes" or both', `${p}.protocol`);
  }
  const up = str(l.upstream);
  if (up !== undefined && !upstreams.has(up)) {
    at(`${p}.upstream`, `upstream "${up}" is not defined${known(upstreams)}`);
  }
  const seen = new Map<string, string>();
  list(l.sni_routes).forEach((r, k) => {
    const rp = `${p}.sni_routes[${k}]`;
    const ru = str(r.upstream);
    if (ru !== undefined && !upstreams.has(ru)) {
      at(`${rp}.upstream`, `upstream "${ru}" is not defined${known(upstreams)}`);
    }
    (Array.isArray(r.server_names) ? r.server_names as unknown[] : []).forEach((n, j) => {
      if (typeof n !== "string") return;
      const name = n.toLowerCase().replace(/\.$/, "");
      const prev = seen.get(name);
      if (prev !== undefined) at(`${rp}.server_names[${j}]`, `server name "${n}" is also in ${prev}`);
      else seen.set(name, `${rp}.server_names[${j}]`);
    });
  });
  (Array.isArray(l.plugins) ? l.plugins as unknown[] : []).forEach((name, j) => {
    if (typeof name === "string" && !plugins.has(name)) {
      at(`${p}.plugins[${j}]`, `plugin "${name}" is not defined under top-level plugins${known(plugins)}`);
    }
  });
}

/** Middleware options that depend on the rest of the config (an upstream's name) or on each other. */
function checkMiddleware(
  config: Obj,
  upstreams: Map<string, number>,
  positions: Map<string, Position>,
  at: (path: string, message: string) => void,
): void {
  const lists: [string, unknown][] = [["middleware", config.middleware]];
  list(config.routes).forEach((r, i) => {
    lists.push([`routes[${i}].middleware`, r.middleware]);
    list(r.backends).forEach((b, k) => lists.push([`routes[${i}].backends[${k}].middleware`, b.middleware]));
  });
  for (const [p, entries] of lists) {
    list(entries).forEach((e, j) => {
      const o = e.options as Obj | undefined;
      if (o === undefined || o === null) return;
      const path = `${p}[${j}].${str(e.name)}`;
      if (e.name === "forward_auth" || e.name === "mirror") {
        const up = str(o.upstream);
        if (up !== undefined && !upstreams.has(up)) {
          at(`${path}.upstream`, `upstream "${up}" is not defined${known(upstreams)}`);
        }
      } else if (e.name === "basic_auth") {
        const users = o.users as Obj | undefined;
        // A users_file written but invalid was already reported.
        const file = o.users_file !== undefined || positions.has(`${path}.users_file`);
        if (!file && (users === undefined || Object.keys(users).length === 0)) {
          at(path, "basic_auth needs users or users_file");
        }
      } else if (e.name === "rate_limit") {
        for (const [sub, message] of rateLimitProblems(o as unknown as RateLimitOptions)) {
          at(`${path}.${sub}`, message);
        }
      }
    });
  }
}

/** The fields of which a route takes exactly one: what it does with a request. */
const ROUTE_ACTIONS = ["upstream", "backends", "redirect", "direct_response"];

/** The parts of a route's redirect, backends, sticky and mirror that depend on each other or on upstreams. */
function checkRouteActions(
  route: Obj,
  p: string,
  upstreams: Map<string, number>,
  positions: Map<string, Position>,
  at: (path: string, message: string) => void,
): void {
  const has = (path: string, o: Obj | undefined, key: string) =>
    o?.[key] !== undefined || positions.has(`${path}.${key}`);
  const redirect = typeof route.redirect === "object" ? route.redirect as Obj : undefined;
  if (redirect !== undefined) {
    const rp = `${p}.redirect`;
    const parts = ["scheme", "hostname", "port", "path", "prefix_path"].filter((k) => has(rp, redirect, k));
    if (has(rp, redirect, "url") && parts.length > 0) {
      at(
        `${rp}.${parts[0]}`,
        `"url" is the whole target: it excludes ${parts.map((k) => `"${k}"`).join(", ")}`,
      );
    }
    if (has(rp, redirect, "path") && has(rp, redirect, "prefix_path")) {
      at(`${rp}.prefix_path`, '"path" and "prefix_path" exclude each other');
    }
    if (positions.has(`${rp}.code`) && positions.has(`${rp}.status`)) {
      at(`${rp}.status`, '"code" and "status" are the same field: write one');
    }
  }
  const names = new Map<string, number>();
  list(route.backends).forEach((b, k) => {
    const bp = `${p}.backends[${k}]`;
    const up = str(b.upstream);
    const kinds = ["upstream", "direct_response"].filter((key) => has(bp, b, key));
    if (kinds.length !== 1) {
      at(bp, 'a backend needs exactly one of "upstream" and "direct_response"');
    }
    if (up !== undefined && !upstreams.has(up)) {
      at(`${bp}.upstream`, `upstream "${up}" is not defined${known(upstreams)}`);
    }
    const name = str(b.name) ?? up ?? `backend${k}`;
    const prev = names.get(name);
    if (prev !== undefined) {
      at(
        has(bp, b, "name") ? `${bp}.name` : bp,
        `backend name "${name}" also names backends[${prev}]; give each a distinct "name" (the sticky cookie's value)`,
      );
    } else names.set(name, k);
  });
  const sticky = typeof route.sticky === "object" ? route.sticky as Obj : undefined;
  if (sticky !== undefined) {
    const sp = `${p}.sticky`;
    if (route.backends === undefined && !positions.has(`${p}.backends`)) {
      at(sp, 'sticky needs "backends" to choose from');
    }
    if (has(sp, sticky, "cookie") === has(sp, sticky, "header")) {
      at(sp, 'sticky needs exactly one of "cookie" and "header"');
    } else if (has(sp, sticky, "header") && has(sp, sticky, "ttl")) {
      at(`${sp}.ttl`, '"ttl" is the cookie\'s lifetime: it needs "cookie", not "header"');
    }
  }
  list(route.mirror).forEach((m, k) => {
    const up = str(m.upstream);
    if (up !== undefined && !upstreams.has(up)) {
      const mp = Array.isArray(route.mirror) && positions.has(`${p}.mirror[${k}]`)
        ? `${p}.mirror[${k}]`
        : `${p}.mirror`;
      at(`${mp}.upstream`, `upstream "${up}" is not defined${known(upstreams)}`);
    }
  });
}

function known(names: Map<string, number>): string {
  return names.size ? ` (defined: ${[...names.keys()].join(", ")})` : "";
}

/** Two sockets clash on the same port when hosts are equal or either is a wildcard. HTTP/3 is UDP. */
function checkPorts(config: Obj, at: (path: string, message: string) => void): void {
  const sockets: { path: string; transport: string; hostname: string; port: number; address: string }[] = [];
  const add = (path: string, v: unknown, transport: string) => {
    const o = v as Obj | undefined;
    if (typeof o?.port === "number" && typeof o.hostname === "string") {
      sockets.push({ path, transport, hostname: o.hostname, port: o.port, address: String(o.address) });
    }
  };
  list(config.listeners).forEach((l, i) => add(`listeners[${i}]`, l, l.protocol === "http3" ? "udp" : "tcp"));
  const admin = config.admin as Obj | undefined;
  if (admin?.enabled !== false) add("admin", admin, "tcp");
  add("demo.echo", (config.demo as Obj | undefined)?.echo, "tcp");
  sockets.forEach((s, i) => {
    const clash = sockets.slice(0, i).find((o) =>
      o.transport === s.transport && o.port === s.port &&
      (o.hostname === s.hostname || WILDCARD_HOSTS.has(o.hostname) || WILDCARD_HOSTS.has(s.hostname))
    );
    if (clash) {
      at(
        `${s.path}.address`,
        `"${s.address}" clashes with ${clash.path}.address "${clash.address}" (same port ${s.port})`,
      );
    }
  });
}
