/** Turning YAML node offsets into 1-based line/column positions. */

import type { LineCounter, Node } from "yaml";

/** A 1-based source position; line 0 means unknown. */
export interface Position {
  line: number;
  column: number;
}

/** Position used when nothing better is known. */
export const UNKNOWN_POSITION: Position = { line: 0, column: 0 };

/** Maps nodes to positions; nodes without a range (e.g. defaults) get `fallback`. */
export type Locate = (node: Node | null | undefined, fallback?: Position) => Position;

/** Builds a {@link Locate} for a document parsed with `lineCounter`. */
export function locator(lineCounter: LineCounter): Locate {
  return (node, fallback = UNKNOWN_POSITION) => {
    const offset = node?.range?.[0];
    if (offset === undefined) return fallback;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
}
