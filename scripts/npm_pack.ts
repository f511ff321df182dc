/**
 * `deno task pack:npm [--out dir]`: the npm package loom-gateway, Loom's downloadable artifact for any
 * machine with Node (dist/loom-gateway-<version>.tgz).
 *
 * The package is assembled in dist/npm/ from the template packaging/npm/ (bin/loom, a small Node script,
 * and the package README), the bundle (scripts/bundle.ts) under lib/, and a package.json written here
 * (version from src/version.ts; the npm package `deno` pinned to the Deno that built the bundle as its
 * dependency). `npm pack` then writes the tarball:
 *
 *   npm install -g ./dist/loom-gateway-<version>.tgz && loom run -c loom.yaml
 *
 * @module
 */
import { buildBundle } from "./bundle.ts";
import { copyInto, humanSize, ROOT, run, VERSION } from "./dist_common.ts";

/** The package's name on npm. */
export const PACKAGE = "loom-gateway";

/** package.json of the package. */
export function packageJson(): Record<string, unknown> {
  return {
    name: PACKAGE,
    version: VERSION,
    description: "Loom: an API gateway (reverse proxy, TLS, HTTP/2 and HTTP/3, gRPC, Proxy-Wasm) on Deno",
    license: "UNLICENSED",
    bin: { loom: "bin/loom" },
    files: ["bin/", "lib/", "README.md"],
    dependencies: { deno: Deno.version.deno },
    engines: { node: ">=18" },
    os: ["linux", "darwin", "win32"],
    cpu: ["x64", "arm64"],
    keywords: ["api-gateway", "reverse-proxy", "proxy-wasm", "deno"],
  };
}

/** Assembles the package in `dir`/npm and packs it into `dir`; returns the tarball's path. */
export async function packNpm(
  dir = ROOT + "dist",
): Promise<{ tarball: string; size: number; files: number }> {
  const pkg = `${dir}/npm`;
  try {
    Deno.removeSync(pkg, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await buildBundle(`${pkg}/lib`);
  copyInto(pkg, ["packaging/npm/bin/loom", "packaging/npm/README.md"]);
  // copyInto keeps repository paths: lift packaging/npm/* to the package root.
  Deno.renameSync(`${pkg}/packaging/npm/bin`, `${pkg}/bin`);
  Deno.renameSync(`${pkg}/packaging/npm/README.md`, `${pkg}/README.md`);
  Deno.removeSync(`${pkg}/packaging`, { recursive: true });
  Deno.chmodSync(`${pkg}/bin/loom`, 0o755);
  Deno.writeTextFileSync(`${pkg}/package.json`, JSON.stringify(packageJson(), null, 2) + "\n");
  const out = await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: pkg });
  const [info] = JSON.parse(out) as { filename: string; size: number; entryCount: number }[];
  const tarball = `${dir}/${info.filename}`;
  return { tarball, size: Deno.statSync(tarball).size, files: info.entryCount };
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--out");
  const r = await packNpm(i >= 0 ? Deno.args[i + 1] : undefined);
  console.log(`npm: ${r.tarball} (${humanSize(r.size)}, ${r.files} files)`);
  console.log(`install: npm install -g ${r.tarball} && loom version`);
}
