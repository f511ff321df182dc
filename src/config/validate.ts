/**
 * Validation of a parsed YAML document: syntax errors, env substitution, the
 * schema walk and the cross-field checks, collecting every error at once.
 */

import type { Document, LineCounter, Node } from "yaml";
import type { ConfigError, LoomConfig } from "./types.ts";
import { type EnvLookup, substituteEnv } from "./env.ts";
import { normalise } from "./normalise.ts";
import { locator } from "./position.ts";
import { loomSchema } from "./schema.ts";
import { checkSemantics } from "./semantic.ts";

/** Outcome of {@link validateDocument}: a config only when there are no errors. */
export type ValidateResult = { config: LoomConfig; errors: [] } | {
  config?: undefined;
  errors: ConfigError[];
};

/** Strips yaml's " at line N, column M:" suffix and code excerpt: we report the position ourselves. */
function syntaxMessage(message: string): string {
  return message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
}

/**
 * Validates and normalises `doc` (parsed with `lineCounter`). Syntax errors stop
 * here, since the tree after them is unreliable and would produce noise.
 */
export function validateDocument(doc: Document, lineCounter: LineCounter, env: EnvLookup): ValidateResult {
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
  const { errors, failed } = substituteEnv(root, env, locate);
  const result = normalise(loomSchema, root, doc, locate, failed);
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
  return { config: value as unknown as LoomConfig, errors: [] };
}
