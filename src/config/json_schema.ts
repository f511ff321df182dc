/**
 * Derives a JSON Schema (draft-07, the dialect VS Code's YAML extension handles
 * best) from the DSL, so editors offer completion, help and checks.
 * Checks done in code (`check`, cross-references) have no JSON Schema form.
 */

import type { Field, Type } from "./dsl.ts";
import { DURATION_PATTERN } from "./duration.ts";
import { SIZE_PATTERN } from "./size.ts";

/** A JSON Schema object. */
export type JsonSchema = Record<string, unknown>;

/** Format help appended to descriptions, since editors show descriptions but not patterns. */
const HINTS: Partial<Record<Type["kind"], string>> = {
  duration: 'Duration: e.g. "30s", "1h30m", "1.5s", "100ms" (units ns, us, ms, s, m, h; bare 0 allowed).',
  size: 'Size: e.g. "64KB", "16MB", "1GB" (1024-based) or a number of bytes.',
};

/** Converts one DSL type (with an optional field-level description/default) to JSON Schema. */
export function toJsonSchema(type: Type, field?: Field): JsonSchema {
  const s = convert(type);
  const description = [field?.description ?? type.description, HINTS[type.kind]].filter(Boolean).join(" ");
  if (description) s.description = description;
  if (field?.default !== undefined) s.default = field.default;
  return s;
}

function convert(type: Type): JsonSchema {
  switch (type.kind) {
    case "string": {
      const s: JsonSchema = { type: type.coerce ? ["string", "number", "boolean"] : "string" };
      if (type.pattern) s.pattern = type.pattern;
      return s;
    }
    case "int":
    case "number": {
      const s: JsonSchema = { type: type.kind === "int" ? "integer" : "number" };
      if (type.min !== undefined) s.minimum = type.min;
      if (type.max !== undefined) s.maximum = type.max;
      return s;
    }
    case "bool":
      return { type: "boolean" };
    case "duration":
      return {
        anyOf: [
          { type: "string", pattern: DURATION_PATTERN },
          { type: "integer", enum: [0] },
        ],
      };
    case "size":
      return { anyOf: [{ type: "string", pattern: SIZE_PATTERN }, { type: "integer", minimum: 0 }] };
    case "enum":
      return { enum: [...type.values] };
    case "list": {
      const s: JsonSchema = { type: "array", items: toJsonSchema(type.items) };
      if (type.minItems !== undefined) s.minItems = type.minItems;
      return s;
    }
    case "map":
      return type.keys?.pattern !== undefined
        ? {
          type: "object",
          propertyNames: { pattern: type.keys.pattern },
          additionalProperties: toJsonSchema(type.values),
        }
        : { type: "object", additionalProperties: toJsonSchema(type.values) };
    case "object": {
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const [name, field] of Object.entries(type.fields)) {
        properties[name] = toJsonSchema(field.type, field);
        if (field.required) required.push(name);
      }
      const s: JsonSchema = { type: "object", properties, additionalProperties: false };
      if (required.length) s.required = required;
      if (type.minFields !== undefined) s.minProperties = type.minFields;
      if (type.maxFields !== undefined) s.maxProperties = type.maxFields;
      return s;
    }
    case "oneOf":
      // anyOf, not oneOf: variants are told apart by shape, and editors report anyOf more kindly.
      return { anyOf: type.variants.map((v) => toJsonSchema(v)) };
    case "any":
      return {};
  }
}

/** The complete schema document, as written to config/loom.schema.json. */
export function loomJsonSchema(root: Type): JsonSchema {
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "Loom configuration",
    ...toJsonSchema(root),
  };
}

/** Serialised schema text; the generator writes it and a test compares it. */
export function schemaText(root: Type): string {
  return JSON.stringify(loomJsonSchema(root), null, 2) + "\n";
}
