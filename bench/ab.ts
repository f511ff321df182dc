/**
 * A/B of the in-process cost per proxied request (bench/inproc.ts) between a
 * git revision and the working tree, in one run: alternating A B A B on the
 * same machine, medians and the ratio. The revision is checked out into a
 * temporary worktree (removed at the end); both sides run the working tree's
 * bench/inproc.ts and harness, so only src/ differs.
 *
 *   deno run -A bench/ab.ts <rev> [rounds=5] [requests=200000] [--access-log]
 *
 * `--access-log` is passed to bench/inproc.ts (the JSON access log on, to a file). Both sides run with
 * the V8 flags Loom is started with (deno.json's start task), pinned to CPU 1 when `taskset` is there.
 * The verdict is the median of the per-round ratios B/A: a round's A and B run back to back, so drift of
 * the machine's load between rounds cancels out of each ratio.
 */
import { median } from "./parse.ts";
import { startTaskV8Flags, which } from "./run.ts";

const flags = Deno.args.filter((a) => a.startsWith("--"));
const positional = Deno.args.filter((a) => !a.startsWith("--"));
const rev = positional[0];
if (rev === undefined) {
  console.error("usage: deno run -A bench/ab.ts <rev> [rounds] [requests]");
  Deno.exit(2);
}
const rounds = Number(positional[1] ?? 5);
const requests = String(positional[2] ?? 200_000);
const root = new URL("..", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "loom-ab-" });

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

const taskset = navigator.hardwareConcurrency >= 2 ? which("taskset") : null;

async function cpuPerRequest(cwd: string): Promise<number> {
  const out = await run(taskset ?? Deno.execPath(), [
    ...(taskset === null ? [] : ["-c", "1", Deno.execPath()]),
    "run",
    "-A",
    "--unstable-net",
    ...startTaskV8Flags(), // as Loom is run (the young generation's size)
    "bench/inproc.ts",
    requests,
    ...flags,
  ], cwd);
  const m = /([\d.]+) µs CPU/.exec(out);
  if (m === null) throw new Error("unexpected output: " + out);
  return Number(m[1]);
}

await run("git", ["worktree", "add", "--detach", dir, rev], root);
// Both sides measured by the working tree's harness: the A/B is of src/ alone.
for (const f of ["bench/inproc.ts", "bench/inproc_harness.ts"]) {
  await Deno.copyFile(`${root}${f}`, `${dir}/${f}`);
}
try {
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(await cpuPerRequest(dir));
    b.push(await cpuPerRequest(root));
  }
  const ma = median(a), mb = median(b);
  const ratios = b.map((x, i) => x / a[i]);
  console.log(`A ${rev}: ${ma.toFixed(2)} µs CPU/request (rounds ${a.map((x) => x.toFixed(2)).join(" ")})`);
  console.log(
    `B working tree: ${mb.toFixed(2)} µs CPU/request (rounds ${b.map((x) => x.toFixed(2)).join(" ")})`,
  );
  console.log(`B/A per round: ${ratios.map((r) => r.toFixed(3)).join(" ")}`);
  console.log(
    `B/A = ${median(ratios).toFixed(3)} (median of the per-round ratios; ${
      ratios.filter((r) => r < 1).length
    } of ${rounds} rounds below 1)`,
  );
} finally {
  await run("git", ["worktree", "remove", "--force", dir], root).catch(() => {});
}
