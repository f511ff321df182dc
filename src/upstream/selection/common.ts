/**
 * Helpers shared by the balancers.
 *
 * @module
 */

import type { Endpoint } from "../endpoint.ts";

/**
 * The answer when every endpoint but `exclude` is unavailable: retrying the same
 * endpoint beats a 503, provided it is available and belongs to this list.
 */
export function lastResort(endpoints: readonly Endpoint[], exclude: Endpoint | undefined): Endpoint | null {
  return exclude !== undefined && exclude.available && endpoints.includes(exclude) ? exclude : null;
}
