/**
 * In-process measurement of the gateway's JavaScript cost per proxied request,
 * without the kernel: the HTTP/1.1 engine and the proxy run against in-memory
 * connections (client and upstream), so the figure is stable on a noisy
 * machine and shows what our own code costs on top of the syscalls.
 *
 *   deno run -A --unstable-net bench/inproc.ts [requests] [--access-log] [--floor]
 *
 * `--access-log`: the default JSON access log on, to a temporary file.
 * `--floor`: the floor proxy's loop on the same harness instead of Loom
 * (runInprocFloor): Loom's figure minus the floor's is Loom's own code.
 */
import { bareConfig, GET_REQUEST, runInproc, runInprocFloor } from "./inproc_harness.ts";

const args = Deno.args.filter((a) => !a.startsWith("--"));
const withLog = Deno.args.includes("--access-log");
const total = Number(args[0] ?? 200_000);
if (Deno.args.includes("--floor")) {
  const { cpu, wall, requests } = await runInprocFloor(GET_REQUEST, total);
  console.log(
    `in-process cost per request of the floor proxy: ${cpu.toFixed(2)} µs CPU (${
      wall.toFixed(2)
    } µs wall), ${requests} requests`,
  );
  Deno.exit(0);
}
const logDir = withLog ? Deno.makeTempDirSync({ prefix: "loom-inproc-" }) : "";
const { cpu, wall, requests } = await runInproc(
  bareConfig(withLog ? `${logDir}/access.log` : null),
  GET_REQUEST,
  total,
);
if (withLog) Deno.removeSync(logDir, { recursive: true });
console.log(
  `in-process cost per proxied request: ${cpu.toFixed(2)} µs CPU (${
    wall.toFixed(2)
  } µs wall), ${requests} requests`,
);
Deno.exit(0);
