/** Options of the `ip_filter` middleware (src/middleware/ip_filter/). */
import { type Field, opt, t } from "../dsl.ts";
import { cidrError } from "../../net/cidr.ts";

const cidr = t.string({ check: cidrError });

/** `ip_filter: {allow, deny}`: CIDR lists (IPv4 and IPv6); deny wins; a non-empty allow list admits only its ranges. */
export const ipFilterOptions: Field = opt(
  t.object({
    allow: opt(
      t.list(cidr),
      [],
      'Client ranges admitted ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"); empty: all.',
    ),
    deny: opt(t.list(cidr), [], "Client ranges refused (checked first)."),
    status: opt(t.enum([403, 404]), 403, "Answer for a refused client."),
  }),
  undefined,
  "Allow or deny clients by address (the client IP through trusted_proxies only).",
);
