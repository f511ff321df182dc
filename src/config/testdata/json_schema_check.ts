/**
 * A deliberately small JSON-Schema checker (type, enum, required, properties,
 * additionalProperties, items, anyOf, pattern, bounds), enough to test that the
 * generated schema agrees with the validator on fixtures.
 */

type Schema = Record<string, unknown>;

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Returns "path: problem" strings; empty when `value` conforms. */
export function checkJsonSchema(schema: Schema, value: unknown, path = "$"): string[] {
  const problems: string[] = [];
  if (schema.type !== undefined) {
    const types = ([] as string[]).concat(schema.type as string | string[]);
    const actual = typeOf(value);
    if (!types.some((t) => t === actual || (t === "number" && actual === "integer"))) {
      return [`${path}: expected ${types.join("|")}, got ${actual}`];
    }
  }
  if (schema.enum && !(schema.enum as unknown[]).includes(value)) problems.push(`${path}: not in enum`);
  if (
    typeof value === "string" && typeof schema.pattern === "string" &&
    !new RegExp(schema.pattern, "u").test(value)
  ) {
    problems.push(`${path}: does not match ${schema.pattern}`);
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) problems.push(`${path}: below minimum`);
    if (typeof schema.maximum === "number" && value > schema.maximum) problems.push(`${path}: above maximum`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) {
      problems.push(`${path}: too few items`);
    }
    if (schema.items) {
      value.forEach((v, i) => problems.push(...checkJsonSchema(schema.items as Schema, v, `${path}[${i}]`)));
    }
  }
  if (typeOf(value) === "object") {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) {
      if (!(key in obj)) problems.push(`${path}: missing ${key}`);
    }
    const count = Object.keys(obj).length;
    if (typeof schema.minProperties === "number" && count < schema.minProperties) {
      problems.push(`${path}: too few keys`);
    }
    if (typeof schema.maxProperties === "number" && count > schema.maxProperties) {
      problems.push(`${path}: too many keys`);
    }
    for (const [key, v] of Object.entries(obj)) {
      if (props[key]) problems.push(...checkJsonSchema(props[key], v, `${path}.${key}`));
      else if (schema.additionalProperties === false) problems.push(`${path}: unknown key ${key}`);
      else if (typeof schema.additionalProperties === "object") {
        problems.push(...checkJsonSchema(schema.additionalProperties as Schema, v, `${path}.${key}`));
      }
    }
  }
  if (schema.anyOf) {
    const branches = (schema.anyOf as Schema[]).map((s) => checkJsonSchema(s, value, path));
    if (!branches.some((b) => b.length === 0)) {
      problems.push(`${path}: matches no alternative (${branches.flat().join("; ")})`);
    }
  }
  return problems;
}
