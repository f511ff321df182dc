/**
 * Gateway API hostname rules: a route's hostnames intersected with a
 * listener's, wildcards included, and the hostname part of the precedence
 * ("the largest number of characters in a matching non-wildcard hostname,
 * then in a matching hostname").
 *
 * @module
 */

/** Whether `name` (lower-case, no wildcard) is under the wildcard `*.suffix` (one label or more). */
function under(name: string, wildcard: string): boolean {
  const suffix = wildcard.slice(1); // ".example.com"
  return name.length > suffix.length && name.endsWith(suffix);
}

/**
 * The hostname a route hostname and a listener hostname both accept, or null
 * when none. `listener` undefined accepts anything; both lower-case.
 */
export function intersectHostname(route: string, listener: string | undefined): string | null {
  if (listener === undefined || listener === route) return route;
  const rw = route.startsWith("*."), lw = listener.startsWith("*.");
  if (!rw && !lw) return null;
  if (!rw) return under(route, listener) ? route : null;
  if (!lw) return under(listener, route) ? listener : null;
  // Both wildcards: the longer one, when it is under the shorter.
  if (route.length > listener.length) return under(route.slice(2), listener) ? route : null;
  return under(listener.slice(2), route) ? listener : null;
}

/**
 * The hostnames a route serves on a listener: its own intersected with the
 * listener's (the listener's when the route has none). `[undefined]` means any
 * host; an empty list means the route does not attach to this listener.
 */
export function effectiveHostnames(
  routeHostnames: readonly string[],
  listener: string | undefined,
): (string | undefined)[] {
  const l = listener?.toLowerCase();
  if (routeHostnames.length === 0) return [l];
  const out = new Set<string>();
  for (const h of routeHostnames) {
    const i = intersectHostname(h.toLowerCase(), l);
    if (i !== null) out.add(i);
  }
  return [...out];
}

/** The hostname's weight in the precedence: exact names beat wildcards, longer beats shorter; none is 0. */
export function hostnameScore(host: string | undefined): number {
  if (host === undefined) return 0;
  return host.startsWith("*.") ? host.length : 300 + host.length;
}

/** RFC 1123 host name, optionally with a leading `*.` label. */
export function validHostname(h: string): boolean {
  const name = h.startsWith("*.") ? h.slice(2) : h;
  return /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(
    name,
  );
}
