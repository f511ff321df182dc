/**
 * Pure helpers of the benchmark harness (bench/run.ts): parsing of wrk's
 * output, of /proc files and of the shell's `times`, plus statistics and
 * formatting. Nothing here touches the system, so bench/wrk_parse_test.ts can
 * test it on recorded samples without wrk installed.
 */

/** Marker of the JSON line printed by the wrk Lua `done()` script (see WRK_LUA). */
export const WRK_JSON_MARKER = "BENCH_JSON ";

/**
 * wrk script that prints exact totals and percentiles as one JSON line.
 * Only `done()` is defined, so wrk keeps its static-request fast path
 * (defining `request` or `response` would cost wrk CPU on the load core).
 */
export const WRK_LUA = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "${WRK_JSON_MARKER}{\\"requests\\":%.0f,\\"duration_us\\":%.0f,\\"bytes\\":%.0f," ..
    "\\"connect\\":%.0f,\\"read\\":%.0f,\\"write\\":%.0f,\\"status\\":%.0f,\\"timeout\\":%.0f," ..
    "\\"p50_us\\":%.1f,\\"p90_us\\":%.1f,\\"p99_us\\":%.1f,\\"max_us\\":%.1f,\\"mean_us\\":%.2f}\\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

/** Errors as wrk counts them. `status` is wrk's "Non-2xx or 3xx responses" (status >= 400). */
export interface WrkErrors {
  connect: number;
  read: number;
  write: number;
  timeout: number;
  status: number;
}

/** One wrk run. Latencies are in microseconds; NaN when wrk did not report them. */
export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  errors: WrkErrors;
  /** Sum of all error kinds (socket errors + bad statuses). */
  totalErrors: number;
  /** Where the numbers came from: the Lua JSON line (exact) or the text report. */
  source: "lua" | "text";
}

const UNIT_US: Record<string, number> = { us: 1, "µs": 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** Parses a wrk duration such as "512.34us", "2.48ms", "8.00s" or "1.20m" into microseconds. */
export function parseWrkDuration(s: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)(us|µs|ms|s|m|h)\s*$/.exec(s);
  if (!m) throw new Error(`not a wrk duration: ${JSON.stringify(s)}`);
  return Number(m[1]) * UNIT_US[m[2]];
}

/** Parses a wrk count such as "25184", "25.18k" or "1.02M". */
export function parseWrkCount(s: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)([kMG]?)\s*$/.exec(s);
  if (!m) throw new Error(`not a wrk count: ${JSON.stringify(s)}`);
  const mult = m[2] === "k" ? 1e3 : m[2] === "M" ? 1e6 : m[2] === "G" ? 1e9 : 1;
  return Number(m[1]) * mult;
}

function sumErrors(e: WrkErrors): number {
  return e.connect + e.read + e.write + e.timeout + e.status;
}

/**
 * Parses the stdout of `wrk --latency [-s script]`. The JSON line of WRK_LUA
 * wins when present (exact counts and percentiles); otherwise the human
 * report is parsed ("N requests in Ds", "Latency Distribution", "Socket
 * errors", "Non-2xx or 3xx responses"). Throws if neither is found.
 */
export function parseWrkOutput(text: string): WrkResult {
  for (const line of text.split("\n")) {
    const i = line.indexOf(WRK_JSON_MARKER);
    if (i < 0) continue;
    const j = JSON.parse(line.slice(i + WRK_JSON_MARKER.length));
    const errors: WrkErrors = {
      connect: j.connect,
      read: j.read,
      write: j.write,
      timeout: j.timeout,
      status: j.status,
    };
    const durationS = j.duration_us / 1e6;
    return {
      requests: j.requests,
      durationS,
      rps: durationS > 0 ? j.requests / durationS : 0,
      p50Us: j.p50_us,
      p90Us: j.p90_us,
      p99Us: j.p99_us,
      errors,
      totalErrors: sumErrors(errors),
      source: "lua",
    };
  }

  const total = /(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)),/.exec(text);
  if (!total) throw new Error("wrk output has neither a BENCH_JSON line nor an 'N requests in' line");
  const requests = Number(total[1]);
  const durationS = parseWrkDuration(total[2]) / 1e6;
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([0-9.]+(?:us|ms|s|m|h))\\s*$`, "m").exec(text);
    return m ? parseWrkDuration(m[1]) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const errors: WrkErrors = {
    connect: sock ? Number(sock[1]) : 0,
    read: sock ? Number(sock[2]) : 0,
    write: sock ? Number(sock[3]) : 0,
    timeout: sock ? Number(sock[4]) : 0,
    status: bad ? Number(bad[1]) : 0,
  };
  const rpsLine = /^Requests\/sec:\s+([0-9.]+)/m.exec(text);
  return {
    requests,
    durationS,
    rps: rpsLine ? Number(rpsLine[1]) : (durationS > 0 ? requests / durationS : 0),
    p50Us: pct("50"),
    p90Us: pct("90"),
    p99Us: pct("99"),
    errors,
    totalErrors: sumErrors(errors),
    source: "text",
  };
}

/**
 * Parses the output of the POSIX shell builtin `times` (two lines: the
 * shell's own user/sys time, then its waited-for children's), e.g.
 * "0m0.001000s 0m0.002000s\n0m1.234000s 0m2.345000s". Returns the children's
 * CPU seconds, or null when absent. Other output may precede it.
 */
export function parseShellTimes(text: string): { userS: number; sysS: number } | null {
  const re = /^\s*(\d+)m([0-9.]+)s\s+(\d+)m([0-9.]+)s\s*$/;
  const lines = text.split("\n").filter((l) => re.test(l));
  if (lines.length < 2) return null;
  const m = re.exec(lines[lines.length - 1])!;
  return { userS: Number(m[1]) * 60 + Number(m[2]), sysS: Number(m[3]) * 60 + Number(m[4]) };
}

/** Fields of /proc/<pid>/stat that the harness uses; times are in clock ticks. */
export interface PidStat {
  pid: number;
  comm: string;
  ppid: number;
  utime: number;
  stime: number;
  /** Minor page faults (field 10): pages the kernel mapped in, each a trap into system time. */
  minflt: number;
}

/**
 * Parses /proc/<pid>/stat. The command name is in parentheses and may itself
 * contain spaces or parentheses, so fields are counted after the last ")".
 * utime and stime (fields 14 and 15) cover all threads of the process.
 */
export function parsePidStat(text: string): PidStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new Error("malformed /proc/<pid>/stat");
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    ppid: Number(rest[1]),
    minflt: Number(rest[7]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
  };
}

/** Aggregate CPU counters of /proc/stat, in clock ticks. */
export interface SystemCpu {
  /** user + nice + system + irq + softirq + steal (guest time is already in user). */
  busy: number;
  /** busy + idle + iowait. */
  total: number;
  /** Number of "cpuN" lines (online CPUs). */
  cpus: number;
}

/** Parses the "cpu " line (and counts the "cpuN" lines) of /proc/stat. */
export function parseProcStat(text: string): SystemCpu {
  let line = "";
  let cpus = 0;
  for (const l of text.split("\n")) {
    if (l.startsWith("cpu ")) line = l;
    else if (/^cpu\d+ /.test(l)) cpus++;
  }
  if (!line) throw new Error('/proc/stat has no "cpu " line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait, cpus: Math.max(cpus, 1) };
}

/** Busy cores between two /proc/stat samples (0..cpus). */
export function busyCores(a: SystemCpu, b: SystemCpu): number {
  const dt = b.total - a.total;
  return dt > 0 ? ((b.busy - a.busy) / dt) * b.cpus : 0;
}

/** VmRSS of /proc/<pid>/status in KiB (0 when absent, e.g. a zombie). */
export function parseVmRssKiB(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) : 0;
}

/** Median of the finite values; NaN for none. */
export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Latency in µs as "83 µs", "2.48 ms" or "1.20 s". */
export function formatLatency(us: number): string {
  if (!Number.isFinite(us)) return "—";
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1e3).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

/** Integer with thousands separators ("25,184"); "—" for NaN. */
export function formatInt(n: number): string {
  if (!Number.isFinite(n)) return "—";
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Fixed-point number; "—" for NaN. */
export function formatFixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "—";
}

/** A markdown table from a header row and data rows. */
export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
