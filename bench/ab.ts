/**
 * A/B of the in-process cost per proxied request (bench/inproc.ts) between a
 * git revision and the working tree, in one run: alternating A B A B on the
 * same machine, medians and the ratio. The revision is checked out into a
 * temporary worktree (removed at the end).
 *
 *   deno run -A bench/ab.ts <rev> [rounds=5] [requests=200000]
 */
const rev = Deno.args[0];
if (rev === undefined) {
  console.error("usage: deno run -A bench/ab.ts <rev> [rounds] [requests]");
  Deno.exit(2);
}
const rounds = Number(Deno.args[1] ?? 5);
const requests = String(Deno.args[2] ?? 200_000);
const root = new URL("..", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "loom-ab-" });

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

async function cpuPerRequest(cwd: string): Promise<number> {
  const out = await run(Deno.execPath(), ["run", "-A", "--unstable-net", "bench/inproc.ts", requests], cwd);
  const m = /([\d.]+) µs CPU/.exec(out);
  if (m === null) throw new Error("unexpected output: " + out);
  return Number(m[1]);
}

await run("git", ["worktree", "add", "--detach", dir, rev], root);
try {
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < rounds; i++) {
    a.push(await cpuPerRequest(dir));
    b.push(await cpuPerRequest(root));
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const ma = median(a), mb = median(b);
  console.log(`A ${rev}: ${ma.toFixed(2)} µs CPU/request (rounds ${a.map((x) => x.toFixed(2)).join(" ")})`);
  console.log(
    `B working tree: ${mb.toFixed(2)} µs CPU/request (rounds ${b.map((x) => x.toFixed(2)).join(" ")})`,
  );
  console.log(`B/A = ${(mb / ma).toFixed(3)}`);
} finally {
  await run("git", ["worktree", "remove", "--force", dir], root).catch(() => {});
}
