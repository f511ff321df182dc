/**
 * `${VAR}` / `${VAR:-default}` substitution in string scalars.
 *
 * It runs on the parsed document, never on the raw text, so a variable's value
 * cannot inject YAML structure. `$${` writes a literal `${`.
 */

import { isAlias, isMap, isPair, isScalar, isSeq, type Node, Scalar } from "yaml";
import type { ConfigError } from "./types.ts";
import { joinIndex, joinKey } from "./path.ts";
import type { Locate } from "./position.ts";

/** Looks up an environment variable; undefined when unset. */
export type EnvLookup = (name: string) => string | undefined;

/** Result of expanding one string. */
export type ExpandResult = { ok: true; value: string } | { ok: false; error: string };

const REF = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Request variables of header templates (`${client_ip}`, `${header.x-user}`,
 * `${jwt.sub}`): not environment variables, so substitution leaves them for
 * the middleware that fills them in per request.
 */
export const REQUEST_VARIABLE =
  /^(client_ip|route_id|request_id|upstream|method|path|host|scheme|(header|jwt|query)\.[A-Za-z0-9_.-]+)$/;

/**
 * Expands references in `text`. `${VAR:-default}` uses the default when VAR is
 * unset or empty (shell semantics); an unset `${VAR}` without default is an error.
 */
export function expandEnv(text: string, lookup: EnvLookup): ExpandResult {
  const problems: string[] = [];
  const value = text.replace(REF, (match, body: string | undefined) => {
    if (match === "$${") return "${";
    if (body === undefined) {
      problems.push(`unterminated "\${" (write "$\${" for a literal "\${")`);
      return match;
    }
    if (REQUEST_VARIABLE.test(body)) return match;
    const sep = body.indexOf(":-");
    const name = sep < 0 ? body : body.slice(0, sep);
    if (!NAME.test(name)) {
      problems.push(`invalid variable reference "${match}" (expected \${NAME} or \${NAME:-default})`);
      return match;
    }
    const v = lookup(name);
    if (sep >= 0) return v === undefined || v === "" ? body.slice(sep + 2) : v;
    if (v === undefined) {
      problems.push(`environment variable ${name} is not set (use \${${name}:-default} for a fallback)`);
      return match;
    }
    return v;
  });
  return problems.length ? { ok: false, error: problems.join("; ") } : { ok: true, value };
}

/**
 * Re-types a substituted *plain* scalar the way YAML's core schema would have typed
 * the text, so `port: ${PORT}` yields a number. Only scalars, never structure.
 */
export function resolvePlainScalar(text: string): string | number | boolean | null {
  if (/^[-+]?[0-9]+$/.test(text)) return Number(text);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  if (/^(null|Null|NULL|~)$/.test(text)) return null;
  return text;
}

/** Errors found, and the nodes they concern (so validation does not report them twice). */
export interface SubstituteResult {
  errors: ConfigError[];
  failed: Set<Node>;
}

/** Substitutes in place in every string scalar value (keys are left alone). */
export function substituteEnv(root: Node | null, lookup: EnvLookup, locate: Locate): SubstituteResult {
  const errors: ConfigError[] = [];
  const failed = new Set<Node>();
  const visit = (node: unknown, path: string): void => {
    if (isAlias(node)) return; // the anchored node is visited where it is defined
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : "?";
        visit(pair.value, joinKey(path, key));
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, joinIndex(path, i)));
    } else if (isScalar(node) && typeof node.value === "string" && node.value.includes("${")) {
      const r = expandEnv(node.value, lookup);
      if (!r.ok) {
        errors.push({ path, ...locate(node), message: r.error });
        failed.add(node);
        return;
      }
      node.value = node.type === Scalar.PLAIN ? resolvePlainScalar(r.value) : r.value;
    }
  };
  visit(root, "");
  return { errors, failed };
}
