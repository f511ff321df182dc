/** Options of the `mirror` middleware (src/middleware/mirror/) and of a route's `mirror:` field. */
import { type Field, opt, req, t, type Type } from "../dsl.ts";

/** One mirror: where copies go and how many. */
export const mirrorType: Type = t.object({
  upstream: req(t.string(), "The configured upstream that gets the copies (its answers are discarded)."),
  percent: opt(
    t.number({ min: 0, max: 100 }),
    100,
    "Share of requests mirrored, 0 to 100 (fractions allowed: 0.5 = one in 200).",
  ),
  max_in_flight: opt(
    t.int({ min: 1 }),
    16,
    "Mirrored requests unanswered at once (per worker); beyond it a request is not mirrored (counted).",
  ),
  max_body: opt(
    t.size(),
    "64KB",
    "Largest request body copied to the mirror: a longer declared body is not mirrored, a streamed one " +
      "that grows past it aborts its mirror; never more than this is held per mirror.",
  ),
  timeout: opt(t.duration(), "10s", "Longest a mirrored request may take (it holds an in-flight slot)."),
}, { description: "Shadow traffic: copies of requests sent to another upstream, answers discarded." });

/** `mirror: {...}` in a middleware list. */
export const mirrorOptions: Field = opt(
  mirrorType,
  undefined,
  "Sends a copy of each (sampled) request to another upstream and discards its answer (shadow traffic).",
);

/** The normalised options. */
export interface MirrorOptions {
  upstream: string;
  /** 0 to 100. */
  percent: number;
  max_in_flight: number;
  /** Bytes. */
  max_body: number;
  /** Milliseconds. */
  timeout: number;
}
