/** Options of the `fault` middleware (src/middleware/fault/). */
import { type Field, opt, req, t } from "../dsl.ts";

const percent = (what: string) =>
  opt(t.number({ min: 0, max: 100 }), 100, `Share of requests ${what}, 0 to 100.`);

/** `fault: {delay, abort, headers}`: Envoy's fault filter. */
export const faultOptions: Field = opt(
  t.object({
    delay: opt(
      t.object({
        percent: percent("delayed"),
        duration: req(t.duration(), 'How long a delayed request waits before going on ("500ms").'),
      }),
      undefined,
      "Delay requests before they go on (first; a delayed request may then be aborted too).",
    ),
    abort: opt(
      t.object({
        percent: percent("aborted"),
        status: req(
          t.int({ min: 400, max: 599 }),
          "Status of the answer (gRPC clients get its gRPC status).",
        ),
      }),
      undefined,
      "Answer requests with an error instead of forwarding them (counted as fault/abort rejections).",
    ),
    headers: opt(
      t.bool(),
      false,
      "Let requests choose their fault (tests): x-loom-fault-delay-request (ms), x-loom-fault-abort-request " +
        "(status), and x-loom-fault-{delay,abort}-request-percentage (at most the configured percent); a " +
        "header needs its block (delay or abort) configured.",
    ),
  }, { minFields: 1 }),
  undefined,
  "Fault injection for resilience tests: delay and/or abort a share of requests.",
);

/** The normalised options. */
export interface FaultOptions {
  /** `duration` in milliseconds. */
  delay?: { percent: number; duration: number };
  abort?: { percent: number; status: number };
  headers: boolean;
}
