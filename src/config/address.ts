/**
 * Parsing of "host:port" strings for listeners (host optional) and upstream
 * endpoints (host required). IPv6 hosts must be bracketed, as in Go's net package.
 */

/** A parsed address; `hostname` is unbracketed ("::1"), "" for all interfaces. */
export interface HostPort {
  hostname: string;
  port: number;
}

/** Result of parsing an address. */
export type AddressResult = { ok: true; value: HostPort } | { ok: false; error: string };

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/;

/** Loose JSON-Schema pattern for addresses; {@link parseAddress} does the exact checks. */
export const LISTEN_ADDRESS_PATTERN = "^(\\[[0-9A-Fa-f:.%A-Za-z_-]+\\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$";
/** Loose JSON-Schema pattern for endpoints (host required). */
export const ENDPOINT_PATTERN = "^(\\[[0-9A-Fa-f:.%A-Za-z_-]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$";

/**
 * Parses "[host]:port". With `requireHost` false (listeners) an empty host means
 * all interfaces; port 0 is refused because a gateway needs a known port.
 */
export function parseAddress(input: string, requireHost: boolean): AddressResult {
  const example = requireHost ? `"host:port" like "api.internal:8080"` : `"[host]:port" like ":8080"`;
  if (input.includes("://")) return { ok: false, error: `"${input}" has a scheme; expected ${example}` };
  const colon = input.lastIndexOf(":");
  if (colon < 0) return { ok: false, error: `"${input}" has no port; expected ${example}` };
  let host = input.slice(0, colon);
  const portText = input.slice(colon + 1);
  if (host.startsWith("[")) {
    if (!host.endsWith("]") || !IPV6.test(host.slice(1, -1))) {
      return { ok: false, error: `"${input}" has a malformed [IPv6] host; expected e.g. "[::1]:8080"` };
    }
    host = host.slice(1, -1);
  } else if (host.includes(":")) {
    return { ok: false, error: `"${input}": IPv6 hosts must be bracketed, e.g. "[::1]:8080"` };
  } else if (host !== "" && !HOSTNAME.test(host)) {
    return { ok: false, error: `"${input}" has an invalid host "${host}"; expected ${example}` };
  }
  if (requireHost && host === "") return { ok: false, error: `"${input}" has no host; expected ${example}` };
  if (!/^[0-9]{1,5}$/.test(portText)) {
    return { ok: false, error: `"${input}" has an invalid port "${portText}"; expected ${example}` };
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, error: `port ${port} in "${input}" is not in 1-65535` };
  return { ok: true, value: { hostname: host, port } };
}
