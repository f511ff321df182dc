/** Options of the `body_limit` middleware (src/middleware/body_limit/). */
import { type Field, opt, req, t } from "../dsl.ts";

/** `body_limit: {max}`. */
export const bodyLimitOptions: Field = opt(
  t.object({
    max: req(
      t.size(),
      'Largest request body accepted ("1MB"; 1024-based units); bigger ones get 413, streamed ones as soon as they pass it.',
    ),
  }),
  undefined,
  "Refuses request bodies over a size (413), by Content-Length or while they stream.",
);

/** The normalised options. */
export interface BodyLimitOptions {
  /** Bytes. */
  max: number;
}
