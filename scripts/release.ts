/**
 * `deno task release [--out dir] [--targets linux-x86_64,linux-aarch64,...]`: every artifact of a release,
 * with checksums and the list of what is inside, in dist/release/ (replaced):
 *
 *   loom-<version>-bundle.tar.gz         the bundle (scripts/bundle.ts) in a loom-<version>/ folder
 *   loom-gateway-<version>.tgz           the npm package (scripts/npm_pack.ts)
 *   loom-<version>-<target>[.exe]        compiled binaries (scripts/compile.ts), for each target whose
 *                                        denort runtime deno compile can get; the others are skipped
 *                                        with the reason
 *   SHA256SUMS                           `sha256sum -c SHA256SUMS` checks them
 *   DEPENDENCIES.md, dependencies.json   the npm packages inside (Loom's imports and theirs, versions
 *                                        from deno.lock with their integrity, licenses from the npm
 *                                        metadata in Deno's cache) and the Deno runtime
 *
 * @module
 */
import { buildBundle } from "./bundle.ts";
import { compile, CompileError, TARGETS } from "./compile.ts";
import { packNpm } from "./npm_pack.ts";
import { capture, humanSize, onPath, ROOT, run, VERSION } from "./dist_common.ts";

/** One npm package shipped inside Loom. */
export interface Dependency {
  name: string;
  version: string;
  license: string;
  /** From deno.lock. */
  integrity?: string;
  repository?: string;
}

interface InfoJson {
  modules: { kind?: string; npmPackage?: string }[];
  npmPackages: Record<string, { name: string; version: string; dependencies: string[]; localPath?: string }>;
}

function repositoryOf(pkg: Record<string, unknown>): string | undefined {
  const r = pkg.repository;
  if (typeof r === "string") return r;
  if (r && typeof r === "object" && typeof (r as { url?: unknown }).url === "string") {
    return (r as { url: string }).url;
  }
  return undefined;
}

function licenseOf(pkg: Record<string, unknown>): string {
  const l = pkg.license ?? pkg.licenses;
  if (typeof l === "string") return l;
  if (Array.isArray(l)) return l.map((x) => typeof x === "string" ? x : x?.type).filter(Boolean).join(" OR ");
  if (l && typeof l === "object" && typeof (l as { type?: unknown }).type === "string") {
    return (l as { type: string }).type;
  }
  return "UNKNOWN";
}

/**
 * The npm packages the Loom program imports (`deno info` of src/cli/main.ts) and what they depend on,
 * with versions and integrity from deno.lock and licenses from each package.json in Deno's npm cache.
 */
export async function dependencies(): Promise<Dependency[]> {
  const info = JSON.parse(
    await run(Deno.execPath(), ["info", "--json", "src/cli/main.ts"], { cwd: ROOT }),
  ) as InfoJson;
  const lock = JSON.parse(Deno.readTextFileSync(ROOT + "deno.lock")) as {
    npm?: Record<string, { integrity?: string }>;
  };
  const seen = new Set<string>();
  const queue = info.modules.flatMap((m) => m.kind === "npm" && m.npmPackage ? [m.npmPackage] : []);
  while (queue.length > 0) {
    const id = queue.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    queue.push(...info.npmPackages[id]?.dependencies ?? []);
  }
  return [...seen].sort().map((id) => {
    const p = info.npmPackages[id];
    let pkg: Record<string, unknown> = {};
    try {
      pkg = JSON.parse(Deno.readTextFileSync(`${p.localPath}/package.json`));
    } catch { /* not in the cache: the license stays unknown */ }
    return {
      name: p.name,
      version: p.version,
      license: licenseOf(pkg),
      integrity: lock.npm?.[id]?.integrity,
      repository: repositoryOf(pkg),
    };
  });
}

/** The license of the npm package `deno` (the runtime the npm package and the bundle need), when installed. */
async function denoRuntimeLicense(): Promise<string> {
  const root = await capture("npm", ["root", "-g"]).catch(() => undefined);
  for (const dir of [root?.stdout.trim(), "/usr/lib/node_modules", "/usr/local/lib/node_modules"]) {
    try {
      return licenseOf(JSON.parse(Deno.readTextFileSync(`${dir}/deno/package.json`)));
    } catch { /* not there */ }
  }
  return "MIT (Deno's license; the npm package deno was not found to confirm it)";
}

/** SHA-256 of a file, hex. */
async function sha256(file: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(file));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** `tar -czf out -C dir name`, reproducible where GNU tar is (sorted, fixed owner and time). */
async function tarGz(out: string, dir: string, name: string): Promise<void> {
  const gnu = ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0"];
  const r = await capture("tar", [...gnu, "-czf", out, "-C", dir, name], { env: { GZIP: "-n" } });
  if (r.code !== 0) await run("tar", ["-czf", out, "-C", dir, name]);
}

/** Builds every artifact into `out`; returns the artifact names and what was skipped. */
export async function release(
  out = ROOT + "dist/release",
  targets: string[] = Object.keys(TARGETS),
  log: (line: string) => void = console.log,
): Promise<{ artifacts: string[]; skipped: string[] }> {
  try {
    Deno.removeSync(out, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  Deno.mkdirSync(out, { recursive: true });
  const work = Deno.makeTempDirSync({ prefix: "loom-release-" });
  const artifacts: string[] = [];
  const skipped: string[] = [];
  try {
    const folder = `loom-${VERSION}`;
    const bundle = await buildBundle(`${work}/${folder}`);
    const tar = `loom-${VERSION}-bundle.tar.gz`;
    await tarGz(`${out}/${tar}`, work, folder);
    artifacts.push(tar);
    log(`release: ${tar} (commit ${bundle.commit})`);

    if (onPath("npm")) {
      const npm = await packNpm(`${work}/npm`);
      const npmName = npm.tarball.slice(npm.tarball.lastIndexOf("/") + 1);
      Deno.copyFileSync(npm.tarball, `${out}/${npmName}`);
      artifacts.push(npmName);
      log(`release: ${npmName}`);
    } else {
      skipped.push(`loom-gateway-${VERSION}.tgz: no npm to pack it`);
      log(`release: skipped loom-gateway-${VERSION}.tgz: no npm (apt-get install npm)`);
    }

    for (const [i, target] of targets.entries()) {
      const exe = target.startsWith("windows") ? ".exe" : "";
      const name = `loom-${VERSION}-${target}${exe}`;
      try {
        // Type-checked once, by the first compile.
        const r = await compile({ target, output: `${out}/${name}`, check: i === 0 });
        artifacts.push(name);
        log(`release: ${name}: ${r.verified}`);
      } catch (e) {
        if (!(e instanceof CompileError)) throw e;
        skipped.push(`${name}: ${e.reason.split("\n")[0]}`);
        log(`release: skipped ${name}: ${e.reason.split("\n")[0]}\n  (${e.fix})`);
      }
    }

    const deps = await dependencies();
    const deno = { name: "deno", version: Deno.version.deno, license: await denoRuntimeLicense() };
    Deno.writeTextFileSync(
      `${out}/dependencies.json`,
      JSON.stringify({ loom: VERSION, commit: bundle.commit, runtime: deno, npm: deps }, null, 2) + "\n",
    );
    Deno.writeTextFileSync(
      `${out}/DEPENDENCIES.md`,
      [
        `# Loom ${VERSION} (${bundle.commit}): what is inside`,
        "",
        "npm packages inlined in the bundle (and so in the npm package and the binaries):",
        "",
        "| package | version | license | source |",
        "| ------- | ------- | ------- | ------ |",
        ...deps.map((d) => `| ${d.name} | ${d.version} | ${d.license} | ${d.repository ?? ""} |`),
        "",
        `Runtime: Deno ${deno.version} (${deno.license}): the npm package \`deno\` is a dependency of ` +
        "loom-gateway; compiled binaries embed its denort.",
        "",
      ].join("\n"),
    );
    artifacts.push("DEPENDENCIES.md", "dependencies.json");

    const sums = [];
    for (const a of artifacts) sums.push(`${await sha256(`${out}/${a}`)}  ${a}`);
    Deno.writeTextFileSync(`${out}/SHA256SUMS`, sums.join("\n") + "\n");
    return { artifacts, skipped };
  } finally {
    Deno.removeSync(work, { recursive: true });
  }
}

if (import.meta.main) {
  const at = (flag: string) => {
    const i = Deno.args.indexOf(flag);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  const out = at("--out") ?? ROOT + "dist/release";
  const r = await release(out, at("--targets")?.split(",") ?? Object.keys(TARGETS));
  for (const a of r.artifacts) {
    console.log(`${humanSize(Deno.statSync(`${out}/${a}`).size).padStart(9)}  ${out}/${a}`);
  }
  console.log(
    `release: ${r.artifacts.length} files, SHA256SUMS written; skipped: ${r.skipped.length}`,
  );
}
