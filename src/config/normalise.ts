/**
 * The schema-driven walker: checks a YAML node tree against a {@link Type},
 * collects every error (with YAML path and position), fills in defaults and
 * produces the normalised plain-data value.
 */

import { isAbsolute, resolve } from "node:path";
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, type Node } from "yaml";
import type { EnumValue, ObjectType, Type } from "./dsl.ts";
import type { ConfigError } from "./types.ts";
import { parseDuration } from "./duration.ts";
import { parseSize } from "./size.ts";
import { joinIndex, joinKey } from "./path.ts";
import type { Locate, Position } from "./position.ts";
import { suggest } from "./suggest.ts";

/** What a walk produced. `value` is partial when there are errors. */
export interface NormaliseResult {
  value: unknown;
  errors: ConfigError[];
  /** Position of every visited YAML path, for cross-field checks done later. */
  positions: Map<string, Position>;
  /** Where each mapping key was written (the value's position is in `positions`). */
  keyPositions: Map<string, Position>;
}

/** Marks a value that failed validation; parents drop it. */
const INVALID = Symbol("invalid");

/**
 * Walks `root` against `type`; nodes in `skip` are invalid but already reported. With `baseDir`, relative
 * values of file-path strings (`file` in the schema) become absolute against it.
 */
export function normalise(
  type: Type,
  root: Node | null,
  doc: Document,
  locate: Locate,
  skip: ReadonlySet<Node> = new Set(),
  baseDir?: string,
): NormaliseResult {
  const w = new Walker(doc, locate, skip, baseDir);
  const value = w.walk(type, root, "", locate(root, { line: 1, column: 1 }));
  return {
    value: value === INVALID ? undefined : value,
    errors: w.errors,
    positions: w.positions,
    keyPositions: w.keyPositions,
  };
}

/** A short English description of a type, for "expected ..." messages. */
export function describeType(type: Type): string {
  switch (type.kind) {
    case "string":
      return "a string";
    case "int":
      return "an integer";
    case "number":
      return "a number";
    case "bool":
      return "true or false";
    case "duration":
      return 'a duration like "30s"';
    case "size":
      return 'a size like "16MB"';
    case "enum":
      return `one of ${type.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "list":
      return "a list";
    case "map":
    case "object":
      return "a mapping";
    case "oneOf":
      return type.variants.map(describeType).join(" or ");
    case "any":
      return "any value";
  }
}

function describeValue(node: Node | null): string {
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "an empty value";
    if (typeof v === "string") return `"${v}"`;
    return String(v);
  }
  return "nothing";
}

/** Whether a node has the shape a oneOf variant expects (see OneOfType). */
function shapeFits(type: Type, node: Node | null): boolean {
  const v = isScalar(node) ? node.value : undefined;
  switch (type.kind) {
    case "object":
    case "map":
      return isMap(node);
    case "list":
      return isSeq(node);
    case "string":
      return typeof v === "string" || (!!type.coerce && (typeof v === "number" || typeof v === "boolean"));
    case "int":
    case "number":
      return typeof v === "number";
    case "bool":
      return typeof v === "boolean";
    case "duration":
    case "size":
      return typeof v === "string" || typeof v === "number";
    case "enum":
      return type.values.some((e) => typeof e === typeof v);
    case "oneOf":
      return type.variants.some((x) => shapeFits(x, node));
    case "any":
      return true;
  }
}

class Walker {
  errors: ConfigError[] = [];
  positions = new Map<string, Position>();
  keyPositions = new Map<string, Position>();
  /** Nodes on the current path: guards against recursive aliases. */
  #active = new Set<Node>();

  constructor(
    private doc: Document,
    private locate: Locate,
    private skip: ReadonlySet<Node>,
    private baseDir?: string,
  ) {}

  #fail(path: string, pos: Position, message: string): typeof INVALID {
    this.errors.push({ path, line: pos.line, column: pos.column, message });
    return INVALID;
  }

  walk(type: Type, raw: Node | null, path: string, fallback: Position): unknown {
    let node = raw;
    const pos = this.locate(node, fallback);
    this.positions.set(path, pos);
    if (isAlias(node)) {
      node = node.resolve(this.doc) ?? null;
      if (node && this.#active.has(node)) return this.#fail(path, pos, "recursive alias");
    }
    if (node && this.skip.has(node)) return INVALID;
    if (node) this.#active.add(node);
    const before = this.errors.length;
    try {
      const value = this.#walkNode(type, node, path, pos);
      if (value === INVALID || this.errors.length > before || !type.normalize) return value;
      return (type.normalize as (v: unknown) => unknown)(value);
    } finally {
      if (node) this.#active.delete(node);
    }
  }

  #walkNode(type: Type, node: Node | null, path: string, pos: Position): unknown {
    const scalar = isScalar(node) ? node.value : undefined;
    const expected = () =>
      this.#fail(path, pos, `expected ${describeType(type)}, got ${describeValue(node)}`);
    switch (type.kind) {
      case "string": {
        let s: string;
        if (typeof scalar === "string") s = scalar;
        else if (type.coerce && (typeof scalar === "number" || typeof scalar === "boolean")) {
          // Keep the text as written ("1.0", not "1"), like Go's yaml into a string field.
          s = isScalar(node) && typeof node.source === "string" ? node.source : String(scalar);
        } else return expected();
        if (type.file && this.baseDir !== undefined && s !== "" && !isAbsolute(s)) {
          if (type.file === true || !type.file.keep.includes(s)) s = resolve(this.baseDir, s);
        }
        // `check` first: it gives the precise message; `pattern` is its looser JSON-Schema shadow.
        const problem = type.check?.(s);
        if (problem) return this.#fail(path, pos, problem);
        if (type.pattern && !new RegExp(type.pattern, "u").test(s)) {
          return this.#fail(path, pos, type.patternMessage ?? `"${s}" does not match ${type.pattern}`);
        }
        return s;
      }
      case "int":
      case "number": {
        if (typeof scalar !== "number" || (type.kind === "int" && !Number.isInteger(scalar))) {
          return expected();
        }
        if (type.min !== undefined && scalar < type.min) {
          return this.#fail(path, pos, `must be at least ${type.min}, got ${scalar}`);
        }
        if (type.max !== undefined && scalar > type.max) {
          return this.#fail(path, pos, `must be at most ${type.max}, got ${scalar}`);
        }
        return scalar;
      }
      case "bool":
        return typeof scalar === "boolean" ? scalar : expected();
      case "duration": {
        if (typeof scalar !== "string" && typeof scalar !== "number") return expected();
        const r = parseDuration(scalar);
        return r.ok ? r.ms : this.#fail(path, pos, r.error);
      }
      case "size": {
        if (typeof scalar !== "string" && typeof scalar !== "number") return expected();
        const r = parseSize(scalar);
        return r.ok ? r.bytes : this.#fail(path, pos, r.error);
      }
      case "enum": {
        if (type.values.includes(scalar as EnumValue)) return scalar;
        const got = describeValue(node);
        return this.#fail(
          path,
          pos,
          `invalid value ${got}; allowed: ${type.values.map((v) => String(v)).join(", ")}`,
        );
      }
      case "list": {
        if (!isSeq(node)) return expected();
        const out: unknown[] = [];
        node.items.forEach((item, i) => {
          const v = this.walk(type.items, item as Node | null, joinIndex(path, i), pos);
          if (v !== INVALID) out.push(v);
        });
        if (type.minItems !== undefined && node.items.length < type.minItems) {
          this.#fail(path, pos, `needs at least ${type.minItems} item${type.minItems === 1 ? "" : "s"}`);
        }
        return out;
      }
      case "map": {
        if (!isMap(node)) return expected();
        const out: Record<string, unknown> = {};
        for (const pair of node.items) {
          const key = this.#key(pair, path, pos);
          if (key === undefined) continue;
          if (type.keys !== undefined) {
            const problem = type.keys.check?.(key) ??
              (type.keys.pattern !== undefined && !new RegExp(type.keys.pattern, "u").test(key)
                ? type.keys.patternMessage ?? `"${key}" does not match ${type.keys.pattern}`
                : undefined);
            if (problem !== undefined) {
              this.#fail(joinKey(path, key), this.locate((pair as { key: Node }).key, pos), problem);
              continue;
            }
          }
          const v = this.walk(type.values, pair.value as Node | null, joinKey(path, key), pos);
          if (v !== INVALID) out[key] = v;
        }
        return out;
      }
      case "object":
        return isMap(node) ? this.#walkObject(type, node, path, pos) : expected();
      case "oneOf": {
        const variant = type.variants.find((v) => shapeFits(v, node));
        if (!variant) return expected();
        const before = this.errors.length;
        const v = this.#walkNode(variant, node, path, pos);
        if (v === INVALID || this.errors.length > before || !variant.normalize) return v;
        return (variant.normalize as (v: unknown) => unknown)(v);
      }
      case "any":
        return node ? node.toJS(this.doc) : null;
    }
  }

  #key(pair: unknown, path: string, pos: Position): string | undefined {
    if (!isPair(pair)) return undefined;
    const key = pair.key as Node | null;
    if (isScalar(key) && (typeof key.value === "string" || typeof key.value === "number")) {
      return String(key.value);
    }
    this.#fail(path, this.locate(key, pos), "mapping keys must be plain strings");
    return undefined;
  }

  #walkObject(type: ObjectType, node: Node, path: string, pos: Position): unknown {
    if (!isMap(node)) return INVALID;
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    for (const pair of node.items) {
      const key = this.#key(pair, path, pos);
      if (key === undefined) continue;
      const p = pair as { key: Node; value: Node | null };
      const childPath = joinKey(path, key);
      const keyPos = this.locate(p.key, pos);
      const field = Object.hasOwn(type.fields, key) ? type.fields[key] : undefined;
      if (!field) {
        const hint = suggest(key, Object.keys(type.fields));
        this.#fail(childPath, keyPos, `unknown key "${key}"${hint ? `; did you mean "${hint}"?` : ""}`);
        continue;
      }
      seen.add(key);
      this.keyPositions.set(childPath, keyPos);
      const v = this.walk(field.type, p.value, childPath, keyPos);
      if (v !== INVALID) out[key] = v;
    }
    for (const [name, field] of Object.entries(type.fields)) {
      if (seen.has(name)) continue;
      if (field.required) {
        this.#fail(joinKey(path, name), pos, `missing required key "${name}"`);
      } else if (field.default !== undefined) {
        // Defaults are written in YAML form and go through the same parsing as input.
        const v = this.walk(field.type, this.doc.createNode(field.default) as Node, joinKey(path, name), pos);
        if (v !== INVALID) out[name] = v;
      }
    }
    const count = seen.size;
    if (type.minFields !== undefined && count < type.minFields) {
      this.#fail(
        path,
        pos,
        `needs ${type.maxFields === type.minFields ? "exactly" : "at least"} ${type.minFields} of: ${
          Object.keys(type.fields).join(", ")
        }`,
      );
    } else if (type.maxFields !== undefined && count > type.maxFields) {
      this.#fail(
        path,
        pos,
        `allows ${type.maxFields === type.minFields ? "exactly" : "at most"} ${type.maxFields} of: ${
          Object.keys(type.fields).join(", ")
        }; got ${[...seen].join(", ")}`,
      );
    }
    return out;
  }
}
