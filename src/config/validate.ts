/**
 * Validation of a parsed YAML document: syntax errors, env substitution, the
 * schema walk and the cross-field checks, collecting every error at once.
 */

import type { Document, LineCounter, Node } from "yaml";
import type { ConfigError, LoomConfig } from "./types.ts";
import { type EnvLookup, substituteEnv } from "./env.ts";
import { envReferencePaths } from "./env_paths.ts";
import { adminExposure } from "./admin_exposure.ts";
import { normalise } from "./normalise.ts";
import { locator, type Position } from "./position.ts";
import { loomSchema } from "./schema.ts";
import { checkSemantics } from "./semantic.ts";
import { collectResources, type Resource } from "./resources.ts";

/** Outcome of {@link validateDocument}: a config only when there are no errors. */
export type ValidateResult = {
  config: LoomConfig;
  errors: [];
  warnings: ConfigError[];
  /** Problems that stop `loom run` (not validation): also in `warnings`. */
  runErrors: ConfigError[];
  /** YAML paths of values with a `${VAR}` reference (see {@link envReferencePaths}). */
  envPaths: string[];
  /** The files the config names, with their positions (checked before the config is applied). */
  resources: Resource[];
} | {
  config?: undefined;
  errors: ConfigError[];
};

/**
 * Blocks of the Loom format that are validated but do nothing yet: each gets a
 * warning naming its key and line, so nothing is silently ignored. An entry
 * leaves this list when its feature lands.
 */
const UNIMPLEMENTED: Record<string, string> = {
  "upstreams[].service_discovery": "service discovery is not implemented yet; this block is ignored",
};

function unimplementedWarnings(
  value: Record<string, unknown>,
  positions: Map<string, Position>,
): ConfigError[] {
  const out: ConfigError[] = [];
  const warn = (path: string, message: string) => {
    const p = positions.get(path);
    out.push({ path, line: p?.line ?? 0, column: p?.column ?? 0, message });
  };
  for (const [key, message] of Object.entries(UNIMPLEMENTED)) {
    if (key === "upstreams[].service_discovery") {
      const ups = (value.upstreams ?? []) as { service_discovery?: unknown }[];
      ups.forEach((u, i) => {
        if (u.service_discovery !== undefined) warn(`upstreams[${i}].service_discovery`, message);
      });
    } else if (value[key] !== undefined) warn(key, message);
  }
  return out;
}

/** Strips yaml's " at line N, column M:" suffix and code excerpt: we report the position ourselves. */
function syntaxMessage(message: string): string {
  return message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
}

/**
 * Validates and normalises `doc` (parsed with `lineCounter`). Syntax errors stop
 * here, since the tree after them is unreliable and would produce noise. Relative
 * file paths become absolute against `baseDir` when given (see `normalise`).
 */
export function validateDocument(
  doc: Document,
  lineCounter: LineCounter,
  env: EnvLookup,
  baseDir?: string,
): ValidateResult {
  if (doc.errors.length) {
    return {
      errors: doc.errors.map((e) => ({
        path: "",
        line: e.linePos?.[0].line ?? 0,
        column: e.linePos?.[0].col ?? 0,
        message: `YAML syntax error: ${syntaxMessage(e.message)}`,
      })),
    };
  }
  const locate = locator(lineCounter);
  const root = doc.contents as Node | null;
  if (root === null || (root as { value?: unknown }).value === null) {
    return {
      errors: [{
        path: "",
        line: 1,
        column: 1,
        message: 'the config is empty; at least "listeners" is required',
      }],
    };
  }
  const envPaths = envReferencePaths(root, doc);
  const { errors, failed } = substituteEnv(root, env, locate);
  const result = normalise(loomSchema, root, doc, locate, failed, baseDir);
  errors.push(...result.errors);
  const value = (result.value ?? {}) as Record<string, unknown>;
  if (Array.isArray(value.routes)) {
    value.routes = value.routes.map((r, order) => ({ ...r, order }));
  }
  errors.push(...checkSemantics(value, result.positions));
  if (errors.length) {
    // Report in source order; stable sort keeps same-line errors in discovery order.
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    return { errors };
  }
  const exposure = adminExposure(value, result.positions);
  const config = value as unknown as LoomConfig;
  return {
    config,
    errors: [],
    warnings: [...unimplementedWarnings(value, result.keyPositions), ...exposure ? [exposure.problem] : []],
    runErrors: exposure?.refuse ? [exposure.problem] : [],
    envPaths,
    resources: collectResources(config, result.positions),
  };
}
