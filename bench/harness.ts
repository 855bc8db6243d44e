// The shared harness of `npm run bench`: start a server in its own process and find its URL, drive it with
// autocannon from this process, read a process's memory, and print the one table and the ratio line.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import autocannon from "autocannon";
import { millis, thousands } from "./support.ts";

export class BenchFailure extends Error {}

export interface Server {
  url: string;
  pid: number;
  child: ChildProcess;
  /** the inspector's WebSocket URL (BENCH_HEAP_PROFILE: bench/heap-sampling.ts), once the process printed it */
  inspector(): string | null;
  /** the last 32 kB of its output (stdout and stderr), for failure messages */
  tail(): string;
  stop(): Promise<void>;
}

/**
 * Start `node --import tsx <script>` with `env` and resolve once it has printed `"url":"http://…"` (the
 * service's "serving GraphQL" log line, or the floor's own line). Its stderr is kept for the failure message.
 */
export function startProcess(name: string, script: string, env: Record<string, string>, readyWithinMs = 60_000): Promise<Server> {
  // BENCH_CPU_PROFILE=<folder>: the service writes a V8 CPU profile there when it stops (see bench/profile.ts).
  const profile = process.env.BENCH_CPU_PROFILE && name === "service" ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`] : [];
  // BENCH_HEAP_PROFILE=<folder>: the bench samples the service's allocations through its inspector (loopback, a free port).
  const inspected = Boolean(process.env.BENCH_HEAP_PROFILE) && name === "service";
  if (inspected) profile.push("--inspect=127.0.0.1:0");
  // BENCH_SERVICE_FLAGS="<node options>": tried on the service after the start script's own (a V8 flag given
  // twice takes the later value), e.g. "--max-semi-space-size=32 --trace-gc-nvp"; BENCH_SERVICE_LOG=<file>
  // appends everything the service prints there (its log lines, a --trace-gc's).
  const trying = name === "service" ? (process.env.BENCH_SERVICE_FLAGS ?? "").split(/\s+/).filter(Boolean) : [];
  const logFile = name === "service" ? process.env.BENCH_SERVICE_LOG : undefined;
  const [command, args] = name === "service" ? startCommand(script, profile, trying) : [process.execPath, ["--import", "tsx", script]];
  const child = spawn(command, args, {
    env: { ...process.env, NODE_ENV: "production", HOST: "127.0.0.1", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let ready = false;
  let inspector: string | null = null;
  const keep = (chunk: Buffer) => {
    if (logFile) appendFileSync(logFile, chunk);
    output += chunk;
    if (inspected) inspector ??= /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1] ?? null;
    if (ready && output.length > 64_000) output = output.slice(-32_000);
  };
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  return new Promise<Server>((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new BenchFailure(`${name} did not start within ${readyWithinMs} ms:\n${output.slice(-2000)}`));
    }, readyWithinMs);
    child.stdout!.on("data", (chunk: Buffer) => {
      keep(chunk);
      const m = ready ? null : /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (m) {
        ready = true;
        clearTimeout(timer);
        resolve({ url: m[1], pid: child.pid!, child, stop, tail: () => output.slice(-32_000), inspector: () => inspector });
      }
    });
    child.stderr!.on("data", keep);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new BenchFailure(`${name} exited (${code ?? signal}):\n${output.slice(-2000)}`));
    });
  });
}

/**
 * The service as `npm start` runs it: package.json's `start` script through `sh -c`, as npm runs it (its
 * environment settings and node's options included); the script `exec`s node, so the pid is node's. `extra`
 * options (the CPU profile's) go to node first, `last` ones (BENCH_SERVICE_FLAGS) after the script's own.
 */
export function startCommand(script: string, extra: string[], last: string[] = []): [string, string[]] {
  const start = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: { start: string } }).scripts.start;
  if (!/\bexec node .*\sdist\/main\.js$/.test(start) || !start.endsWith(` ${script}`)) throw new BenchFailure(`package.json's start script does not exec node on ${script}: ${start}`);
  const quoted = (option: string) => `'${option.replaceAll("'", `'\\''`)}'`;
  const command = start.replace(/\bnode /, ["node", ...extra.map(quoted), ""].join(" "));
  return ["sh", ["-c", last.length ? `${command.slice(0, -script.length)}${last.map(quoted).join(" ")} ${script}` : command]];
}

/** Resident and peak resident memory of a process, in MB, from /proc (Linux). */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

export interface Load {
  /** responses per second over the run */
  rate: number;
  /** CPU time (user + system, all threads) of the loaded process per response, in µs, when its pid was given */
  cpuMicros?: number;
  /** the part of cpuMicros spent on the process's main thread (node's JavaScript thread; the others are V8's
   * helpers, mostly garbage collection: parallel scavenges, concurrent marking and sweeping, and libuv's) */
  mainThreadCpuMicros?: number;
  /** when the run started and ended on the monotonic clock V8's CPU profiles use, in µs (bench/profile.ts --window) */
  window: [number, number];
  responses: number;
  p50: number;
  p99: number;
  seconds: number;
}

export interface LoadOptions {
  url: string;
  token?: string;
  connections: number;
  /** seconds; ignored when `amount` is given */
  duration?: number;
  /** exactly this many requests */
  amount?: number;
  /** one fixed body… */
  body?: string;
  /** …or a sequence of requests per connection (setupRequest/onResponse may carry state in the context) */
  requests?: autocannon.Request[];
  /** the loaded server's process: its CPU time over the run is measured (Load.cpuMicros) */
  pid?: number;
  /** with `amount`: called as the last answer arrives (where the run's CPU times are read), e.g. to read another process's */
  atLastAnswer?: () => void;
}

/** Now on CLOCK_MONOTONIC in µs: the clock of V8's CPU profiles (their startTime and samples), on Linux. */
const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

/** Clock ticks per second of /proc's CPU times (USER_HZ). */
let ticksPerSecond: number | null = null;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces, in parentheses); throws if it ended. */
export function procStatFields(pid: number, thread?: number): string[] {
  const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/**
 * CPU time a process has used so far (user + system, every thread), in µs, from /proc (Linux; null elsewhere).
 * Per request, that is a figure a shared machine disturbs far less than throughput.
 */
export function cpuMicrosOf(pid: number, withEndedChildren = false, mainThreadOnly = false): number | null {
  try {
    ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    // utime and stime are the 12th and 13th fields after the command name, then cutime and cstime, the times
    // of the children it has waited for. A process's main thread is the task whose id is the pid.
    const fields = procStatFields(pid, mainThreadOnly ? pid : undefined);
    const children = withEndedChildren ? Number(fields[13]) + Number(fields[14]) : 0;
    return ((Number(fields[11]) + Number(fields[12]) + children) * 1e6) / ticksPerSecond;
  } catch {
    return null;
  }
}

/**
 * CPU time (as cpuMicrosOf) of `root` and every process whose parent it is: a PostgreSQL server's postmaster
 * and its backends and workers. Those that ended (an autovacuum worker, say) are in the root's children's times.
 */
export function treeCpuMicros(root: number): number | null {
  let total = cpuMicrosOf(root, true);
  if (total === null) return null;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(procStatFields(Number(entry))[1]) !== root) continue; // the parent's pid
      total += (cpuMicrosOf(Number(entry)) ?? 0);
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

/**
 * One autocannon run. Fails on any connection error, timeout or non-2xx answer: a figure measured over
 * failures would be meaningless. GraphQL errors are the caller's to check in onResponse.
 */
export async function load(o: LoadOptions): Promise<Load> {
  const cpuBefore = o.pid === undefined ? null : cpuMicrosOf(o.pid);
  const mainBefore = o.pid === undefined ? null : cpuMicrosOf(o.pid, false, true);
  const started = monotonicMicros();
  // autocannon ends a run of a fixed `amount` at its next 1 s sample tick, and its `duration` counts to that
  // tick: a 2,000-request run answered in 0.6 s would read as 1.0 s. Such a run is timed here, to its last answer.
  let lastAnswer = started;
  // The CPU times are read as the last answer arrives: autocannon itself stops up to a second later.
  let answered = 0;
  let atLast: { cpu: number | null; main: number | null; at: number } | null = null;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const run = autocannon(
      {
        url: o.url,
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
        connections: o.connections,
        pipelining: 1,
        timeout: 60,
        ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.duration ?? 10 }),
        ...(o.body !== undefined ? { body: o.body } : {}),
        ...(o.requests ? { requests: o.requests } : {}),
      },
      (error, r) => (error ? reject(error) : resolve(r)),
    );
    run.on("response", () => {
      lastAnswer = monotonicMicros();
      if (o.amount !== undefined && ++answered === o.amount) {
        atLast = { cpu: o.pid === undefined ? null : cpuMicrosOf(o.pid), main: o.pid === undefined ? null : cpuMicrosOf(o.pid, false, true), at: lastAnswer };
        o.atLastAnswer?.();
      }
    });
  });
  if (result.errors || result.timeouts || result.non2xx) {
    throw new BenchFailure(`autocannon against ${o.url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
  }
  const responses = result["2xx"];
  const last = atLast as { cpu: number | null; main: number | null; at: number } | null;
  const window: [number, number] = [started, last?.at ?? monotonicMicros()];
  const cpuAfter = last ? last.cpu : o.pid === undefined ? null : cpuMicrosOf(o.pid);
  const mainAfter = last ? last.main : o.pid === undefined ? null : cpuMicrosOf(o.pid, false, true);
  const cpuMicros = cpuBefore !== null && cpuAfter !== null && responses > 0 ? (cpuAfter - cpuBefore) / responses : undefined;
  const mainThreadCpuMicros = mainBefore !== null && mainAfter !== null && responses > 0 ? (mainAfter - mainBefore) / responses : undefined;
  const seconds = o.amount !== undefined ? (lastAnswer - started) / 1e6 : result.duration;
  return { rate: responses / seconds, responses, p50: result.latency.p50, p99: result.latency.p99, seconds, window, ...(cpuMicros !== undefined ? { cpuMicros } : {}), ...(mainThreadCpuMicros !== undefined ? { mainThreadCpuMicros } : {}) };
}

/**
 * An autocannon request that sends `items` in turn, round robin over all connections, and hands each answer
 * back with the item its request carried and the connection's context (for a follow-up request).
 */
export function inTurn<T>(items: T[], bodyOf: (item: T) => string, onAnswer: (item: T, text: string, context: Record<string, unknown>) => void): autocannon.Request {
  let next = 0;
  return {
    setupRequest: (req, context: object) => {
      const item = items[next++ % items.length];
      (context as Record<string, unknown>).item = item;
      return { ...req, body: bodyOf(item) };
    },
    onResponse: (_status, text, context: object) => onAnswer((context as { item: T }).item, text, context as Record<string, unknown>),
  };
}

/** A row of the table: a measure, the floor it is compared with, and the ratio's name for the last line. */
export interface Row {
  scenario: string;
  /** e.g. "req/s", "events/s" */
  unit: string;
  rate?: number;
  p50?: number;
  p99?: number;
  /** the floor's row label and figures; ratio = rate / floor.rate */
  floor?: { name: string; rate?: number; p99?: number; cpuMicros?: number };
  /** CPU time of the loaded process per request, µs (Load.cpuMicros) */
  cpuMicros?: number;
  /** the measured run on the CPU profiles' clock (Load.window), and its answers */
  window?: [number, number];
  responses?: number;
  /** short name of the ratio in the last line; omitted: not on the ratio line */
  ratioName?: string;
  note?: string;
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));
const padStart = (s: string, n: number) => (s.length >= n ? s : " ".repeat(n - s.length) + s);

export function ratioOf(row: Row): { throughput?: number; p99?: number } {
  const f = row.floor;
  if (!f) return {};
  return {
    throughput: f.rate && row.rate !== undefined ? row.rate / f.rate : undefined,
    p99: f.p99 && row.p99 !== undefined ? row.p99 / f.p99 : undefined,
  };
}

/** One line: each row's CPU per request measured in its server's process, and its multiple of its floor's. */
export function cpuLine(rows: Row[]): string | null {
  const measured = rows.filter((r) => r.cpuMicros !== undefined);
  if (!measured.length) return null;
  const parts = measured.map((r) => {
    const times = r.floor?.cpuMicros ? ` (${(r.cpuMicros! / r.floor.cpuMicros).toFixed(1)}× its floor's)` : "";
    return `${r.scenario} ${r.cpuMicros!.toFixed(0)} µs${times}`;
  });
  return `CPU per request (server process, all threads): ${parts.join("; ")}`;
}

/** The table (scenario, throughput, p50, p99, ratio to the floor), then the line of ratios. */
export function printTable(rows: Row[], out: (line: string) => void = console.log): void {
  const header = ["scenario", "throughput", "p50 ms", "p99 ms", "ratio to floor (throughput; p99)", "floor"];
  const cells = rows.map((r) => {
    const x = ratioOf(r);
    const ratio = [x.throughput !== undefined ? `${x.throughput.toFixed(2)}×` : "", x.p99 !== undefined ? `p99 ${x.p99.toFixed(2)}×` : ""].filter(Boolean).join("; ");
    return [
      r.scenario,
      r.rate !== undefined ? `${thousands(r.rate)} ${r.unit}` : r.note ?? "",
      r.p50 !== undefined ? millis(r.p50) : "",
      r.p99 !== undefined ? millis(r.p99) : "",
      ratio,
      r.floor?.name ?? "",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((s, i) => (i >= 1 && i <= 3 ? padStart(s, widths[i]) : pad(s, widths[i]))).join("  ").trimEnd();
  out(line(header));
  out(widths.map((w) => "-".repeat(w)).join("  "));
  for (const c of cells) out(line(c));
  const ratios = rows
    .filter((r) => r.ratioName)
    .map((r) => {
      const x = ratioOf(r);
      return `${r.ratioName} ${x.throughput !== undefined ? `${x.throughput.toFixed(2)}×` : "n/a"}${x.p99 !== undefined ? ` (p99 ${x.p99.toFixed(2)}×)` : ""}`;
    });
  out(`ratios: ${ratios.join(", ")}`);
}
