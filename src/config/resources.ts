/**
 * The files a config names: plugin modules, listener and upstream TLS
 * certificates, keys and CA bundles, and the files of middleware options
 * (basic_auth `users_file`, api_key `file`, jwt `keys[].file`).
 *
 * A config is applied whole or not at all, so these are checked before a
 * snapshot is built: {@link collectResources} lists them with the YAML path
 * and position of each (at validation), {@link readResources} reads every
 * file once, and {@link checkResources} reports unreadable files and runs
 * the checks the layers that use them provide ({@link ResourceChecks}: the
 * wasm module check, TLS parsing, the middleware file parsers), each failure
 * a {@link ConfigError} like any other. {@link resourceHash} digests the
 * config and the files, so a reload that would change nothing is known.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type {
  ConfigError,
  ListenerConfig,
  LoomConfig,
  MiddlewareEntry,
  PluginConfig,
  TlsConfig,
  UpstreamConfig,
  UpstreamTlsConfig,
} from "./types.ts";
import { type Position, UNKNOWN_POSITION } from "./position.ts";

/** A file named by a config value. */
export interface FileRef {
  /** YAML path of the value, e.g. `listeners[1].tls.cert_file`. */
  path: string;
  file: string;
  line: number;
  column: number;
}

interface ResourceBase {
  /** YAML path of the block the files belong to (errors not about one file are reported there). */
  path: string;
  line: number;
  column: number;
  files: FileRef[];
}

/** A Proxy-Wasm plugin's module (`plugins[i].path`). */
export interface PluginResource extends ResourceBase {
  kind: "plugin";
  plugin: PluginConfig;
}

/** A listener's `tls` block. */
export interface ListenerTlsResource extends ResourceBase {
  kind: "listener_tls";
  listener: ListenerConfig;
  tls: TlsConfig;
}

/** An upstream's `tls` block with at least one file. */
export interface UpstreamTlsResource extends ResourceBase {
  kind: "upstream_tls";
  upstream: UpstreamConfig;
  tls: UpstreamTlsConfig;
}

/** A file named by a middleware's options (`middleware` is the middleware's name). */
export interface MiddlewareFileResource extends ResourceBase {
  kind: "middleware_file";
  middleware: string;
  file: string;
}

/** Something a config needs beyond itself. */
export type Resource = PluginResource | ListenerTlsResource | UpstreamTlsResource | MiddlewareFileResource;

/**
 * Checks by resource kind, given by the layers that use the files. A check
 * throws (or rejects) with a message naming the bad file; it runs only when
 * every file of its resource could be read (`contents` holds them by name).
 */
export type ResourceChecks = {
  [K in Resource["kind"]]?: (
    r: Extract<Resource, { kind: K }>,
    contents: ReadonlyMap<string, Uint8Array>,
  ) => void | Promise<void>;
};

/** What reading a resource's file gave: its bytes, or why it could not be read. */
export type FileContents = ReadonlyMap<string, Uint8Array | Error>;

type Obj = Record<string, unknown>;

/** The resources of a validated config; `positions` are the walker's (YAML path → position). */
export function collectResources(config: LoomConfig, positions: ReadonlyMap<string, Position>): Resource[] {
  const at = (path: string) => positions.get(path) ?? UNKNOWN_POSITION;
  const ref = (path: string, file: string): FileRef => ({ path, file, ...at(path) });
  const base = (path: string, files: FileRef[]): ResourceBase => ({ path, ...at(path), files });
  const out: Resource[] = [];
  config.plugins.forEach((plugin, i) => {
    out.push({ kind: "plugin", plugin, ...base(`plugins[${i}]`, [ref(`plugins[${i}].path`, plugin.path)]) });
  });
  config.listeners.forEach((listener, i) => {
    const tls = listener.tls;
    if (tls === undefined) return;
    const p = `listeners[${i}].tls`;
    const files = [ref(`${p}.cert_file`, tls.cert_file), ref(`${p}.key_file`, tls.key_file)];
    (tls.certificates ?? []).forEach((c, j) => {
      files.push(ref(`${p}.certificates[${j}].cert_file`, c.cert_file));
      files.push(ref(`${p}.certificates[${j}].key_file`, c.key_file));
    });
    if (tls.client_ca_file !== undefined) files.push(ref(`${p}.client_ca_file`, tls.client_ca_file));
    out.push({ kind: "listener_tls", listener, tls, ...base(p, files) });
  });
  config.upstreams.forEach((upstream, i) => {
    const tls = upstream.tls;
    if (tls === undefined) return;
    const p = `upstreams[${i}].tls`;
    const files: FileRef[] = [];
    for (const k of ["ca_file", "cert_file", "key_file"] as const) {
      const f = tls[k];
      if (f !== undefined) files.push(ref(`${p}.${k}`, f));
    }
    if (files.length > 0) out.push({ kind: "upstream_tls", upstream, tls, ...base(p, files) });
  });
  const lists: [string, MiddlewareEntry[]][] = [["middleware", config.middleware]];
  config.routes.forEach((r, i) => lists.push([`routes[${i}].middleware`, r.middleware]));
  for (const [p, entries] of lists) {
    entries.forEach((e, j) => {
      for (const [path, file] of middlewareFiles(e, `${p}[${j}].${e.name}`)) {
        out.push({ kind: "middleware_file", middleware: e.name, file, ...base(path, [ref(path, file)]) });
      }
    });
  }
  return out;
}

/** `[YAML path, file]` of each file a middleware entry's options name. */
function middlewareFiles(e: MiddlewareEntry, p: string): [string, string][] {
  const o = (e.options ?? {}) as Obj;
  const out: [string, string][] = [];
  if (e.name === "basic_auth" && typeof o.users_file === "string") {
    out.push([`${p}.users_file`, o.users_file]);
  }
  if (e.name === "api_key" && typeof o.file === "string") out.push([`${p}.file`, o.file]);
  if (e.name === "jwt" && Array.isArray(o.keys)) {
    (o.keys as Obj[]).forEach((k, i) => {
      if (typeof k?.file === "string") out.push([`${p}.keys[${i}].file`, k.file]);
    });
  }
  return out;
}

/** Reads every file the resources name, once each (concurrently). */
export async function readResources(resources: readonly Resource[]): Promise<FileContents> {
  const names = [...new Set(resources.flatMap((r) => r.files.map((f) => f.file)))];
  const read = await Promise.all(names.map((n) => Deno.readFile(n).catch((e: Error) => e)));
  return new Map(names.map((n, i) => [n, read[i]]));
}

/** Why a file could not be read, in a few words. */
function readProblem(e: Error): string {
  if (e instanceof Deno.errors.NotFound) return "file not found";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return e.message;
}

/**
 * Every problem of `resources`: each unreadable file (at its value's
 * position), then what the checks of `checks` throw for resources whose files
 * were all read (at the position of the file the message names first, else
 * the block's). Checks run concurrently; errors come in source order.
 */
export async function checkResources(
  resources: readonly Resource[],
  contents: FileContents,
  checks: ResourceChecks,
): Promise<ConfigError[]> {
  const errors: ConfigError[] = [];
  const located = (at: FileRef | ResourceBase, message: string): ConfigError => ({
    path: at.path,
    line: at.line,
    column: at.column,
    message,
  });
  const reported = new Set<string>();
  const runs: Promise<void>[] = [];
  for (const r of resources) {
    const bytes = new Map<string, Uint8Array>();
    for (const f of r.files) {
      const c = contents.get(f.file) ?? new Error("not read");
      if (c instanceof Uint8Array) bytes.set(f.file, c);
      else if (!reported.has(f.path)) {
        reported.add(f.path);
        errors.push(located(f, `cannot read ${f.file}: ${readProblem(c)}`));
      }
    }
    const check = checks[r.kind] as
      | ((r: Resource, c: ReadonlyMap<string, Uint8Array>) => unknown)
      | undefined;
    if (check === undefined || bytes.size < new Set(r.files.map((f) => f.file)).size) continue;
    runs.push((async () => {
      try {
        await check(r, bytes);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        errors.push(located(fileNamedFirst(r.files, message) ?? r, message));
      }
    })());
  }
  await Promise.all(runs);
  return errors.sort((a, b) => a.line - b.line || a.column - b.column);
}

/** The file `message` names first ("a.key is not the private key of a.pem" is about a.key). */
function fileNamedFirst(files: readonly FileRef[], message: string): FileRef | undefined {
  let best: FileRef | undefined;
  let at = Infinity;
  for (const f of files) {
    const i = message.indexOf(f.file);
    if (i !== -1 && i < at) [best, at] = [f, i];
  }
  return best;
}

/**
 * A digest of the normalised config and every file it names (a file that
 * cannot be read counts by its error): equal digests, equal configs in effect
 * (comments and layout of the YAML do not count).
 */
export function resourceHash(config: LoomConfig, contents: FileContents): string {
  const h = createHash("sha256").update(JSON.stringify(config));
  for (const [name, c] of [...contents].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    h.update(`\0${name}\0`);
    h.update(c instanceof Uint8Array ? c : `!${c.name}: ${c.message}`);
  }
  return h.digest("hex");
}
