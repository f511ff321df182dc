/**
 * Loading a config whole: the file validated (src/config) and every file it
 * names read and checked (src/config/resources.ts) with the checks of the
 * layers that use them: plugin modules compiled and checked (wasm/check.ts),
 * listener certificates parsed and matched to their keys as the listeners
 * do (listeners/tls.ts), upstream CA bundles and client pairs parsed, and
 * middleware files parsed by their middleware. `loom validate`, `loom run`
 * and every reload load through here, so a config that cannot be applied
 * whole is refused the same way by all three, with the YAML path and line of
 * what is wrong, before anything is swapped.
 *
 * @module
 */
import type { LoadResult } from "../config/types.ts";
import { loadConfig } from "../config/mod.ts";
import { checkResources, readResources, type ResourceChecks, resourceHash } from "../config/resources.ts";
import { readUsersFile } from "../config/middleware/basic_auth.ts";
import { checkPair, loadListenerTls, needsNodeTls, parseCaBundle } from "../listeners/tls.ts";
import type { GatewayApiSource } from "../k8s/source.ts";

/** A config load: the result, and the digest of the config and its files (null when the file did not validate). */
export interface WholeConfig {
  result: LoadResult;
  hash: string | null;
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

/**
 * Parsers of the files middleware options name, by middleware (each throws naming the file).
 * The checks below import what only some configs need (Wasm, HTTP/3, jose) when a config has it.
 */
const MIDDLEWARE_FILES: Record<string, (file: string) => Promise<unknown>> = {
  basic_auth: (f) => Promise.resolve(readUsersFile(f)),
  api_key: async (f) => (await import("../middleware/api_key/index.ts")).readKeyFile(f),
  jwt: async (f) => (await import("../middleware/jwt/keys.ts")).parseKeyFile(f),
};

const CHECKS: ResourceChecks = {
  plugin: async (r, files) => {
    const { checkPluginModule } = await import("../wasm/check.ts");
    await checkPluginModule(files.get(r.plugin.path)!, r.plugin.path, r.plugin.memory_limit);
  },
  listener_tls: async (r) => {
    // What the listener itself will load: HTTP/3 and fast-path https take one pair, the rest everything.
    if (r.listener.protocol === "http3") {
      const { QUIC_TLS, quicTls } = await import("../listeners/h3.ts");
      loadListenerTls(quicTls(r.listener), QUIC_TLS);
    } else {loadListenerTls(r.tls, {
        alpn: [],
        pairOnly: r.listener.protocol === "https" && !needsNodeTls(r.tls),
      });}
  },
  upstream_tls: (r, files) => {
    const { ca_file, cert_file, key_file } = r.tls;
    if (ca_file !== undefined) parseCaBundle(text(files.get(ca_file)), ca_file);
    if ((cert_file === undefined) !== (key_file === undefined)) {
      throw new Error("a client certificate needs both cert_file and key_file");
    }
    if (cert_file !== undefined) {
      checkPair(text(files.get(cert_file)), text(files.get(key_file!)), cert_file, key_file!);
    }
  },
  middleware_file: async (r) => {
    await MIDDLEWARE_FILES[r.middleware]?.(r.file);
  },
};

/**
 * Loads and validates the config at `path` (through `gatewayApi` when given: see src/k8s/source.ts),
 * then reads and checks every file it names; any problem makes the result `ok: false` with located errors.
 */
export async function loadWholeConfig(
  path: string,
  gatewayApi?: GatewayApiSource,
): Promise<WholeConfig> {
  // A file with a `gateway_api` block is loaded with the Gateway API's listeners, routes and upstreams.
  const result = await gatewayApi?.load(path) ?? await loadConfig(path);
  if (!result.ok) return { result, hash: null };
  const contents = await readResources(result.resources);
  const hash = resourceHash(result.config, contents);
  const errors = await checkResources(result.resources, contents, CHECKS);
  return { result: errors.length > 0 ? { ok: false, errors } : result, hash };
}
