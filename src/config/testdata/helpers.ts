/** Shared helpers for the config tests. */

import assert from "node:assert/strict";
import { parseConfig } from "../load.ts";
import type { ConfigError, LoomConfig } from "../types.ts";

/** Parses YAML lines (joined with "\n", so line N is lines[N-1]) and returns the errors. */
export function errorsOf(lines: string[], env: Record<string, string> = {}): ConfigError[] {
  const r = parseConfig(lines.join("\n"), "test.yaml", env);
  assert.ok(!r.ok, "expected the config to be invalid");
  return r.errors;
}

/** Parses YAML lines that must be valid and returns the config. */
export function configOf(lines: string[], env: Record<string, string> = {}): LoomConfig {
  const r = parseConfig(lines.join("\n"), "test.yaml", env);
  assert.ok(r.ok, `unexpected errors: ${JSON.stringify(!r.ok && r.errors, null, 1)}`);
  return r.config;
}

/** Asserts one error with this path and line, whose message matches. */
export function assertError(errors: ConfigError[], path: string, line: number, message: RegExp): void {
  const found = errors.filter((e) => e.path === path && e.line === line);
  assert.ok(
    found.some((e) => message.test(e.message)),
    `no error at ${path}:${line} matching ${message}; got:\n${
      errors.map((e) => `${e.path}:${e.line} ${e.message}`).join("\n")
    }`,
  );
}

/** A minimal valid listeners block (lines 1-4). */
export const LISTENER = ["listeners:", "  - name: http", '    address: ":8080"', "    protocol: http"];
