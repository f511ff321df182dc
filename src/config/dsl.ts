/**
 * A small declarative schema language for Loom's config format. One description
 * drives both the validator/normaliser (`normalise.ts`) and the JSON Schema for
 * editors (`json_schema.ts`), so the two cannot drift apart.
 */

/** Scalar values an enum may list. */
export type EnumValue = string | number | boolean;

interface Common {
  /** Shown by editors (JSON Schema `description`). */
  description?: string;
  /**
   * Turns the validated value into its normalised shape. Called only when the
   * value and all its children validated. Not reflected in the JSON Schema.
   */
  normalize?: (value: never) => unknown;
}

/** A string; `coerce` also accepts numbers/booleans as their YAML text (`X-Version: 1`). */
export interface StringType extends Common {
  kind: "string";
  pattern?: string;
  /** Error message when `pattern` fails. */
  patternMessage?: string;
  /** Precise validation run before `pattern` (which then only feeds the JSON Schema); returns an error message. */
  check?: (value: string) => string | undefined;
  coerce?: boolean;
  /**
   * A file path: when the config is loaded from a file, a relative value is made absolute against that
   * file's directory before `check` runs (the values in `keep`, like "stdout", stay as written).
   */
  file?: boolean | { keep: readonly string[] };
}

/** An integer within optional bounds. */
export interface IntType extends Common {
  kind: "int";
  min?: number;
  max?: number;
}

/** Any number within optional bounds. */
export interface NumberType extends Common {
  kind: "number";
  min?: number;
  max?: number;
}

/** true/false. */
export interface BoolType extends Common {
  kind: "bool";
}

/** A Go-style duration, normalised to milliseconds. */
export interface DurationType extends Common {
  kind: "duration";
}

/** A size, normalised to bytes. */
export interface SizeType extends Common {
  kind: "size";
}

/** One of a fixed set of scalar values. */
export interface EnumType extends Common {
  kind: "enum";
  values: readonly EnumValue[];
}

/** A sequence of one item type. */
export interface ListType extends Common {
  kind: "list";
  items: Type;
  minItems?: number;
}

/** A mapping with free-form keys and one value type. */
export interface MapType extends Common {
  kind: "map";
  values: Type;
  /** Rules for the keys (pattern and check of a string type). */
  keys?: StringType;
}

/** A mapping with known fields; unknown keys are errors. */
export interface ObjectType extends Common {
  kind: "object";
  fields: Record<string, Field>;
  /** Bounds on how many fields are present (e.g. "exactly one of"). */
  minFields?: number;
  maxFields?: number;
}

/**
 * Alternatives, chosen by the YAML node's shape (mapping, sequence, or scalar
 * type), so errors come from the one variant the user evidently meant.
 */
export interface OneOfType extends Common {
  kind: "oneOf";
  variants: readonly Type[];
}

/** Anything (plugin config, service discovery): kept as plain data. */
export interface AnyType extends Common {
  kind: "any";
}

/** Any schema node. */
export type Type =
  | StringType
  | IntType
  | NumberType
  | BoolType
  | DurationType
  | SizeType
  | EnumType
  | ListType
  | MapType
  | ObjectType
  | OneOfType
  | AnyType;

/** A field of an object. `default` is written in YAML form ("30s", {}), and normalised like input. */
export interface Field {
  type: Type;
  required?: boolean;
  default?: unknown;
  description?: string;
}

type Opts<T> = Omit<T, "kind">;

/** Constructors that keep schema.ts terse. */
export const t = {
  string: (o: Opts<StringType> = {}): StringType => ({ kind: "string", ...o }),
  int: (o: Opts<IntType> = {}): IntType => ({ kind: "int", ...o }),
  number: (o: Opts<NumberType> = {}): NumberType => ({ kind: "number", ...o }),
  bool: (o: Opts<BoolType> = {}): BoolType => ({ kind: "bool", ...o }),
  duration: (o: Opts<DurationType> = {}): DurationType => ({ kind: "duration", ...o }),
  size: (o: Opts<SizeType> = {}): SizeType => ({ kind: "size", ...o }),
  enum: (values: readonly EnumValue[], o: Omit<Opts<EnumType>, "values"> = {}): EnumType => ({
    kind: "enum",
    values,
    ...o,
  }),
  list: (items: Type, o: Omit<Opts<ListType>, "items"> = {}): ListType => ({ kind: "list", items, ...o }),
  map: (values: Type, o: Omit<Opts<MapType>, "values"> = {}): MapType => ({ kind: "map", values, ...o }),
  object: (fields: Record<string, Field>, o: Omit<Opts<ObjectType>, "fields"> = {}): ObjectType => ({
    kind: "object",
    fields,
    ...o,
  }),
  oneOf: (variants: readonly Type[], o: Omit<Opts<OneOfType>, "variants"> = {}): OneOfType => ({
    kind: "oneOf",
    variants,
    ...o,
  }),
  any: (o: Opts<AnyType> = {}): AnyType => ({ kind: "any", ...o }),
};

/** Field helpers: `req(type, "help")`, `opt(type, default, "help")`. */
export function req(type: Type, description?: string): Field {
  return { type, required: true, description };
}

/** An optional field; `def` undefined means it stays absent when not written. */
export function opt(type: Type, def?: unknown, description?: string): Field {
  return { type, default: def, description };
}
