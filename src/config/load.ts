/** Entry points: load a config file, or parse config text, into a {@link LoadResult}. */

import { dirname, resolve } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import type { ConfigError, LoadResult } from "./types.ts";
import type { EnvLookup } from "./env.ts";
import { validateDocument, type ValidateResult } from "./validate.ts";

/**
 * Parses and validates config `text`. Pure apart from reading `Deno.env` when no
 * `env` is given (only the variables the config references are read).
 * `file` names the source; it is returned as `source` on success. With `baseDir`
 * (the config file's directory), relative file paths in the config (plugins,
 * certificates, key and CA files, users and key files, the access log) are made
 * absolute against it; without, they stay as written (relative to the working
 * directory).
 */
export function parseConfig(
  text: string,
  file: string,
  env?: Record<string, string | undefined>,
  baseDir?: string,
): LoadResult {
  const lookup: EnvLookup = env ? (name) => env[name] : (name) => Deno.env.get(name);
  const lineCounter = new LineCounter();
  // uniqueKeys (the default) makes duplicate keys syntax errors rather than silent overrides.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  return loadResultOf(validateDocument(doc, lineCounter, lookup, baseDir), file);
}

/** A validation's outcome as a {@link LoadResult} of `file`. */
export function loadResultOf(r: ValidateResult, file: string): LoadResult {
  return r.config
    ? {
      ok: true,
      config: r.config,
      source: file,
      warnings: r.warnings,
      runErrors: r.runErrors,
      envPaths: r.envPaths,
      resources: r.resources,
    }
    : { ok: false, errors: r.errors };
}

/**
 * Reads and validates the config file at `path`; an unreadable file is a single error at line 0.
 * Relative file paths in it resolve against the file's directory, whatever the working directory.
 */
export async function loadConfig(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    return {
      ok: false,
      errors: [{ path: "", line: 0, column: 0, message: `cannot read config: ${(e as Error).message}` }],
    };
  }
  return parseConfig(text, path, undefined, dirname(resolve(path)));
}

/** One line per error: `config/loom.yaml:12:5: routes[2].upstream: upstream "billing" is not defined`. */
export function formatErrors(errors: readonly ConfigError[], file: string): string {
  return errors.map((e) => {
    const where = e.line > 0 ? `${file}:${e.line}:${e.column}` : file;
    return e.path ? `${where}: ${e.path}: ${e.message}` : `${where}: ${e.message}`;
  }).join("\n");
}

/** One line per warning: `config/loom.yaml:30:1: warning: cors: CORS is not implemented yet; ...`. */
export function formatWarnings(warnings: readonly ConfigError[], file: string): string {
  return formatErrors(
    warnings.map((w) => ({
      ...w,
      message: "warning: " + (w.path ? w.path + ": " : "") + w.message,
      path: "",
    })),
    file,
  );
}
