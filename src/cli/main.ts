/**
 * The `loom` command line:
 *
 *   loom run      -c config.yaml [--log-level debug|info|warn|error]
 *   loom validate -c config.yaml
 *   loom version
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage.
 */
import { fileURLToPath } from "node:url";
import { formatErrors, formatWarnings } from "../config/mod.ts";
import { logger, type LogLevel, setLogLevel } from "../observability/logger.ts";
import { ConfigInvalidError, Supervisor } from "../runtime/supervisor.ts";
import { loadWholeConfig } from "../runtime/config_load.ts";
import { GatewayApiSource } from "../k8s/source.ts";
import { VERSION } from "../version.ts";
import { shippedFile, versionReport } from "../build.ts";

const USAGE = `loom ${VERSION}: an API gateway

Usage:
  loom run [-c config.yaml] [--log-level debug|info|warn|error]   serve the config
  loom validate [-c config.yaml]                                   check a config, print every error
  loom version                                                     print the version and build

Default config: config/loom.yaml, or else the default config shipped with Loom.
Relative paths in a config (plugins, certificates, key files) are relative to the config file.`;

const LEVELS = new Set(["debug", "info", "warn", "error"]);

/** Parsed command-line flags. */
export interface CliArgs {
  command: string;
  /** The config file; "" when not given (see {@linkcode defaultConfigPath}). */
  config: string;
  logLevel: LogLevel;
}

/**
 * The config when no `-c` is given: config/loom.yaml in the working directory (a checkout), else the
 * default config shipped with Loom (beside the bundle, or embedded in a compiled binary).
 */
export function defaultConfigPath(): string {
  const local = "config/loom.yaml";
  try {
    Deno.statSync(local);
    return local;
  } catch {
    const shipped = shippedFile(local);
    return shipped.protocol === "file:" ? fileURLToPath(shipped) : local;
  }
}

/** Parses argv; returns an error message on bad usage. */
export function parseArgs(argv: string[]): CliArgs | string {
  const out: CliArgs = { command: argv[0] ?? "", config: "", logLevel: "info" };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "-c":
      case "--config":
      case "-config": {
        const v = value();
        if (!v) return `${flag} needs a file path`;
        out.config = v;
        break;
      }
      case "--log-level":
      case "-log-level": {
        const v = value();
        if (!v || !LEVELS.has(v)) return `--log-level must be one of debug, info, warn, error`;
        out.logLevel = v as LogLevel;
        break;
      }
      default:
        return `unknown argument "${a}"`;
    }
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === "string") {
    console.error(`loom: ${args}\n\n${USAGE}`);
    return 2;
  }
  if (args.config === "" && (args.command === "run" || args.command === "validate")) {
    args.config = defaultConfigPath();
  }
  switch (args.command) {
    case "version":
    case "--version":
      console.log(versionReport(VERSION));
      return 0;
    case "validate": {
      // Everything `run` checks: the files the config names are read and checked too.
      // The Gateway API's parts too (the manifests, or the API server read without taking the Lease).
      const gatewayApi = new GatewayApiSource(() => {}, true);
      const res = (await loadWholeConfig(args.config, gatewayApi).finally(() => gatewayApi.close())).result;
      if (!res.ok) {
        console.error(formatErrors(res.errors, args.config));
        console.error(`${args.config}: ${res.errors.length} error(s)`);
        return 2;
      }
      if (res.warnings.length > 0) console.error(formatWarnings(res.warnings, args.config));
      console.log(`${args.config}: configuration is valid`);
      return 0;
    }
    case "run": {
      setLogLevel(args.logLevel);
      try {
        await Supervisor.start({ configPath: args.config, logLevel: args.logLevel, signals: true });
      } catch (e) {
        if (e instanceof ConfigInvalidError) {
          console.error(e.message);
          console.error("loom: refusing to start with an invalid configuration");
          return 2;
        }
        logger.error("loom failed to start", { error: String(e) });
        return 1;
      }
      return -1; // keep running
    }
    case "":
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return argv.length === 0 ? 2 : 0;
    default:
      console.error(`loom: unknown command "${args.command}"\n\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  if (code >= 0) Deno.exit(code);
}
