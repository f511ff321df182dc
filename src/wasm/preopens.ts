/**
 * Read-only directories a plugin may read (`files:` of a plugin in the
 * config): the WASI preopened directories (wasi.ts) and the `read_file`
 * foreign function (host/foreign.ts) both resolve paths here, so one check
 * sandboxes both. A path is resolved against its directory, then every
 * symlink in it is resolved (realPath) and the result must still lie inside
 * the directory's own real path: `..` and symlinks cannot leave it.
 *
 * Reads are synchronous (the ABI's calls are), so a file is read whole and
 * at most {@link MAX_FILE} bytes: a read never holds the event loop long.
 *
 * @module
 */
import { isAbsolute, join, normalize, resolve, sep } from "node:path";
import type { PluginConfig } from "../config/types.ts";

/** Sandboxes by plugin config: built once per plugin definition, not per VM or call. */
const sandboxes = new WeakMap<object, Sandbox | null>();

/** The sandbox of a plugin config's `files` (null without any). */
export function sandboxOf(cfg: Pick<PluginConfig, "files"> | undefined): Sandbox | null {
  if (cfg === undefined) return null;
  let s = sandboxes.get(cfg);
  if (s === undefined) sandboxes.set(cfg, s = cfg.files?.length ? new Sandbox(cfg.files) : null);
  return s;
}

/** Largest file a plugin may read (bytes): reads are synchronous, so they stay short. */
export const MAX_FILE = 16 * 1024 * 1024;

/** One configured directory: the plugin sees `guest`, the host reads `host` (its real path). */
export interface Preopen {
  /** The path plugins use, absolute ("/data"). */
  readonly guest: string;
  /** The directory's real path on the host (symlinks resolved once, at load). */
  readonly host: string;
}

/** Why a path cannot be read. */
export type Refusal = "not_found" | "denied" | "not_file" | "too_large" | "io";

/** A resolved host path inside a preopen, or a refusal. */
export type Resolved = { path: string; info: Deno.FileInfo } | { refused: Refusal };

/** Whether `p` is `root` or below it (both absolute and normalized). */
function inside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** What a failed file system call means for the plugin. */
function refusalOf(e: unknown): Refusal {
  if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return "not_found";
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.FilesystemLoop) return "denied";
  return "io";
}

/** The read-only directories of one plugin, resolved once when the plugin is loaded. */
export class Sandbox {
  readonly preopens: readonly Preopen[];

  /** `dirs`: the config's `files` (`dir` absolute already, `as` the guest path). */
  constructor(dirs: readonly { dir: string; as: string }[]) {
    this.preopens = dirs.map((d) => {
      let host = resolve(d.dir);
      // The check compares real paths: the directory itself may be reached through a symlink.
      try {
        host = Deno.realPathSync(host);
      } catch { /* gone since the config was checked: every read is not_found */ }
      return { guest: normalize("/" + d.as).replace(/(.)\/$/, "$1"), host };
    });
  }

  /** The preopen a guest absolute path lies in (the longest match) and the rest of the path. */
  find(guestPath: string): { root: Preopen; rel: string } | null {
    const p = normalize("/" + guestPath);
    let best: Preopen | null = null;
    for (const o of this.preopens) {
      if (inside(p, o.guest) && (best === null || o.guest.length > best.guest.length)) best = o;
    }
    if (best === null) return null;
    return { root: best, rel: p.slice(best.guest.length).replace(/^\/+/, "") };
  }

  /**
   * `rel` (relative to `root`'s directory) as a host path that is inside it
   * once every symlink is resolved, with its metadata.
   */
  resolve(root: Preopen, rel: string): Resolved {
    if (isAbsolute(rel) || rel.includes("\0")) return { refused: "denied" };
    const joined = join(root.host, rel);
    if (!inside(joined, root.host)) return { refused: "denied" };
    let real: string;
    try {
      real = Deno.realPathSync(joined);
    } catch (e) {
      return { refused: refusalOf(e) };
    }
    if (!inside(real, root.host)) return { refused: "denied" };
    try {
      // The real path is read, not the joined one: a symlink is followed only after its check.
      return { path: real, info: Deno.statSync(real) };
    } catch (e) {
      return { refused: refusalOf(e) };
    }
  }

  /** A regular file's bytes (at most {@link MAX_FILE}); `info` from {@link resolve}. */
  static read(path: string, info: Deno.FileInfo): Uint8Array | Refusal {
    if (!info.isFile) return "not_file";
    if (info.size > MAX_FILE) return "too_large";
    try {
      const data = Deno.readFileSync(path);
      // Grown since the stat: still bounded.
      return data.length > MAX_FILE ? "too_large" : data;
    } catch (e) {
      return refusalOf(e);
    }
  }

  /** The file at guest absolute path `guestPath` (read_file), or why not. */
  readFile(guestPath: string): Uint8Array | Refusal {
    const at = this.find(guestPath);
    if (at === null) return "denied";
    const r = this.resolve(at.root, at.rel);
    return "refused" in r ? r.refused : Sandbox.read(r.path, r.info);
  }
}
