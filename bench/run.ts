// `npm run bench`: the service and a bare graphql-yoga floor, each in its own process, loaded from this
// process with autocannon; one table (scenario, throughput, p50, p99, ratio to the floor) and a line of
// ratios; the books checked at the end. `--engine postgresql` runs the same on PostgreSQL + Redis.
//
//   npm run bench
//   npm run bench -- --engine postgresql
//   npm run bench -- --only ingest,push --events 120000    (about 1.1 million events stored: the RSS figure)
//
// Options (flag or environment variable; defaults keep a SQLite run near 3 minutes on 2 cores):
//   --engine sqlite|postgresql (ENGINE, sqlite)   --duration s per timed read run (10)   --connections (64)
//   --customers (1000)   --meters (10)   --events for batch ingest (60000)   --batch (1000)
//   --ingest-connections batch calls in flight, and PostgreSQL floor sessions (2)
//   --auth-customers (200)   --auth-credits per customer (25)   --auth-calls (10000)   --reserve-calls (8000)
//   --single-calls 1-event ingest calls (10000). Runs whose answers the books count send a fixed number of
//   requests (autocannon `amount`): a timed run would end with answered but unread requests. They are sized
//   to last a few seconds here, as the floors' timed runs do, so that start-up does not weigh on throughput or p99.
//   --subscriptions (1000)   --fan-out subscribed customers per ingest call in the push scenario (250)
//   --latency-samples (200)   --seed (42)
//   --only reads,authorize,reserve,ingest,calls,push (all; `ingest` is the batch ingest row with its two ABBA
//   rows, alerts and rated meters; `alerts` or `rated` alone runs that ABBA row alone)
//   DATABASE_URL / REDIS_URL: use these servers for --engine postgresql instead of starting throw-away ones
//   (PG_PORT 54337, PGDATA /tmp/pg-bench, REDIS_PORT 6397).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Context, Options } from "./context.ts";
import { BenchFailure, cpuLine, memoryOf, printTable, startProcess, type Row, type Server } from "./harness.ts";
import { batchIngest, batchIngestWithAlerts, type Interleaved } from "./ingest.ts";
import { ratedIngest } from "./rated.ts";
import { pushLatency } from "./push.ts";
import { authorize, customerMeterReads, customerStateReads, floors, reserveCommit, singleEventCalls } from "./scenarios.ts";
import { seed } from "./seed.ts";
import { decimalText, graphqlClient, intOption, option, pool, thousands, withTimeout } from "./support.ts";
import { Books } from "./workload.ts";

const GROUPS = ["reads", "authorize", "reserve", "ingest", "alerts", "rated", "calls", "push"];

/** The transport limits that would throttle one token's benchmark traffic, lifted for the service process. */
const LIFTED_LIMITS = {
  RATE_LIMIT_PER_SECOND: "1000000",
  RATE_LIMIT_BURST: "1000000",
  RATE_LIMIT_CONCURRENCY: "100000",
  RATE_LIMIT_QUEUE: "100000",
};

function readOptions(): Options {
  const engine = (option("ENGINE") ?? "sqlite").toLowerCase();
  if (engine !== "sqlite" && engine !== "postgresql") throw new BenchFailure(`--engine must be sqlite or postgresql, got ${engine}`);
  const only = option("ONLY");
  const groups = only ? new Set(only.split(",").map((s) => s.trim())) : null;
  for (const g of groups ?? []) if (!GROUPS.includes(g)) throw new BenchFailure(`--only takes ${GROUPS.join(",")}; got ${g}`);
  const customers = intOption("CUSTOMERS", 1000, 1, 1_000_000);
  return {
    engine,
    duration: intOption("DURATION", 10, 1, 3600),
    connections: intOption("CONNECTIONS", 64, 1, 10_000),
    customers,
    meters: intOption("METERS", 10, 5, 100),
    events: intOption("EVENTS", 60_000, 1, 100_000_000),
    batch: intOption("BATCH", 1000, 1, 10_000),
    ingestConnections: intOption("INGEST_CONNECTIONS", 2, 1, 256),
    authCustomers: intOption("AUTH_CUSTOMERS", Math.min(200, customers), 1, customers),
    authCredits: intOption("AUTH_CREDITS", 25, 1, 1_000_000),
    authCalls: intOption("AUTH_CALLS", 10_000, 1, 100_000_000),
    reserveCalls: intOption("RESERVE_CALLS", 8000, 2, 100_000_000),
    singleCalls: intOption("SINGLE_CALLS", 10_000, 1, 100_000_000),
    subscriptions: intOption("SUBSCRIPTIONS", Math.min(1000, customers), 1, customers),
    fanOut: intOption("FAN_OUT", 250, 1, 10_000),
    latencySamples: intOption("LATENCY_SAMPLES", 200, 1, 100_000),
    seed: intOption("SEED", 42, 0, 2 ** 32 - 1),
    only: groups,
  };
}

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const sh = (script: string, args: string[], env: Record<string, string>) =>
  execFileSync("bash", [path.resolve("scripts", script), ...args], { env: { ...process.env, ...env }, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();

async function main(): Promise<number> {
  const options = readOptions();
  const wants = (g: string) => !options.only || options.only.has(g);
  const tempDir = mkdtempSync(path.join(tmpdir(), "credits-bench-"));
  const cleanups: (() => unknown)[] = [() => rmSync(tempDir, { recursive: true, force: true })];
  let serviceTail: (() => string) | null = null;
  try {
    let databaseUrl = `file:${path.join(tempDir, "service.db")}`;
    let redisUrl: string | undefined;
    if (options.engine === "postgresql") {
      const pgEnv = { PGPORT: option("PG_PORT") ?? "54337", PGDATA: option("PGDATA") ?? "/tmp/pg-bench" };
      const redisEnv = { REDIS_PORT: option("REDIS_PORT") ?? "6397" };
      databaseUrl = option("DATABASE_URL") ?? "";
      if (!databaseUrl) {
        log(`starting PostgreSQL on port ${pgEnv.PGPORT} (${pgEnv.PGDATA})`);
        databaseUrl = sh("pg-start.sh", ["credits_bench"], pgEnv);
        cleanups.unshift(() => sh("pg-stop.sh", [], pgEnv));
      }
      redisUrl = option("REDIS_URL");
      if (!redisUrl) {
        log(`starting Redis on port ${redisEnv.REDIS_PORT}`);
        redisUrl = sh("redis-start.sh", [], redisEnv);
        cleanups.unshift(() => sh("redis-stop.sh", [], redisEnv));
      }
    }
    const token = `bench_${randomBytes(24).toString("hex")}`;
    const serviceEnv: Record<string, string> = { DATABASE_URL: databaseUrl, ADMIN_TOKEN: token, LOG_LEVEL: "info", ...LIFTED_LIMITS, ...(redisUrl ? { REDIS_URL: redisUrl } : {}) };
    console.log(
      `npm run bench: engine ${options.engine}${redisUrl ? " + Redis pub/sub" : ""}, NODE_ENV=production, ${options.connections} connections, ` +
        `${options.duration} s per timed run, ${options.customers} customers, ${options.meters} meters, seed ${options.seed}`,
    );
    console.log(`service started with these transport limits lifted: ${Object.entries(LIFTED_LIMITS).map(([k, v]) => `${k}=${v}`).join(" ")}`);

    log("starting the service and the bare-Yoga floor, each in its own process");
    const servers: Server[] = [];
    cleanups.unshift(() => Promise.all(servers.map((s) => s.stop())));
    const [service, floor] = await Promise.all([
      startProcess("service", "dist/main.js", serviceEnv).then((s) => (servers.push(s), s)),
      startProcess("bare-Yoga floor", "bench/floor-yoga.ts", {}).then((s) => (servers.push(s), s)),
    ]);
    serviceTail = service.tail;
    log(`seeding through GraphQL: ${options.meters} meters, ${options.customers} customers, grants`);
    const seeded = await seed(service.url, token, {
      customers: options.customers,
      meters: options.meters,
      authCustomers: options.authCustomers,
      authCredits: options.authCredits,
      holdCredits: 10_000_000,
    });
    const ctx: Context = { options, service, floor, token, seeded, books: new Books(), databaseUrl, tempDir, log };

    log("floors: bare-Yoga query and mutation");
    const floorLoad = await floors(ctx);
    const readFloor = { name: "bare-Yoga query", rate: floorLoad.read.rate, p99: floorLoad.read.p99, cpuMicros: floorLoad.read.cpuMicros };
    const mutationFloor = { name: "bare-Yoga mutation", rate: floorLoad.mutation.rate, p99: floorLoad.mutation.p99, cpuMicros: floorLoad.mutation.cpuMicros };
    const runWindows: ProfileWindow[] = [];
    const rows: Row[] = [
      { scenario: "floor: bare Yoga { hello }", unit: "req/s", ...floorLoad.read },
      { scenario: "floor: bare Yoga mutation { bump }", unit: "req/s", ...floorLoad.mutation },
    ];
    const notes: string[] = [];

    if (wants("reads")) {
      log("customerMeter reads");
      rows.push({ scenario: "customerMeter read", unit: "req/s", ...(await customerMeterReads(ctx)), floor: readFloor, ratioName: "customerMeter" });
      log(`customerState reads (${options.meters} meters)`);
      rows.push({ scenario: `customerState, ${options.meters} meters`, unit: "req/s", ...(await customerStateReads(ctx)), floor: readFloor, ratioName: "customerState" });
    }
    if (wants("authorize")) {
      log(`authorizeUsage(1): ${options.authCalls} calls over ${options.authCustomers} customers with ${options.authCredits} credits each`);
      const a = await authorize(ctx);
      rows.push({ scenario: `authorizeUsage(1), ${options.authCustomers} customers`, unit: "req/s", ...a, floor: mutationFloor, ratioName: "authorizeUsage" });
      notes.push(`authorizeUsage: ${thousands(a.allowed)} allowed (= the credits, exactly), ${thousands(a.refused)} refused INSUFFICIENT_CREDITS; every balance ≥ 0`);
    }
    if (wants("reserve")) {
      log("reserveUsage + commitReservation");
      const r = await reserveCommit(ctx);
      rows.push({ scenario: "reserve + commit (per request)", unit: "req/s", ...r, floor: mutationFloor, ratioName: "reserve+commit" });
      notes.push(`reserve + commit: ${thousands(r.commits)} pairs committed (${thousands(r.commits / r.seconds)} pairs/s); consumed units = commits on every balance`);
    }
    if (wants("ingest")) {
      log(`batch ingest: ${options.events} events in calls of ${options.batch}, ${options.ingestConnections} in flight`);
      const i = await batchIngest(ctx, () => {
        const m = memoryOf(service.pid);
        if (m) log(`service RSS right after the ingest calls: ${m.rssMb.toFixed(0)} MB (peak ${m.peakMb.toFixed(0)} MB)`);
      });
      const driver = options.engine === "postgresql" ? "pg" : "libsql";
      const rawFloor = { name: `raw ${driver}, same rows, ${options.batch}-row transactions`, rate: i.floor.eventsPerSecond };
      rows.push({
        scenario: `ingest, ${options.batch}-event calls, ${options.customers} customers × 3 meters`,
        unit: "events/s",
        rate: i.eventsPerSecond,
        p50: i.load.p50,
        p99: i.load.p99,
        floor: rawFloor,
        ratioName: "ingest/raw",
        window: i.load.window,
        responses: i.load.responses,
      });
      const perEvent = [
        i.serviceCpuPerEvent === null
          ? null
          : `service process ${i.serviceCpuPerEvent.toFixed(0)} µs` +
            (i.serviceMainThreadCpuPerEvent === null ? "" : ` (main thread ${i.serviceMainThreadCpuPerEvent.toFixed(0)}, other threads ${(i.serviceCpuPerEvent - i.serviceMainThreadCpuPerEvent).toFixed(0)}: V8's helpers, mostly garbage collection)`),
        i.databaseCpuPerEvent === null
          ? null
          : `PostgreSQL server ${i.databaseCpuPerEvent.service.toFixed(0)} µs (${i.databaseCpuPerEvent.floor.toFixed(0)} µs for the floor's same rows, ${i.databaseCpuPerEvent.upserts.toFixed(0)} µs for events and upserts without the ledger)`,
      ].filter(Boolean);
      if (perEvent.length) notes.push(`ingest: CPU per event: ${perEvent.join("; ")}`);
      rows.push({ scenario: "floor: same rows by the raw driver", unit: "events/s", rate: i.floor.eventsPerSecond });
      rows.push({
        scenario: "ingest, against events + upserts without ledger",
        unit: "events/s",
        rate: i.eventsPerSecond,
        floor: { name: `raw ${driver}, events and balance upserts only`, rate: i.upsertsFloor.eventsPerSecond },
        ratioName: "ingest/raw without ledger",
      });
      rows.push({ scenario: "floor: events + balance upserts, no ledger", unit: "events/s", rate: i.upsertsFloor.eventsPerSecond });
    }
    if (wants("ingest") || wants("alerts")) {
      log(`batch ingest with and without alert rules, interleaved: ${2 * Math.floor(options.events / 2)} events each`);
      const a = await batchIngestWithAlerts(ctx);
      rows.push({
        scenario: "ingest with alert rules on every customer",
        unit: "events/s",
        rate: a.eventsPerSecond,
        p50: a.load.p50,
        p99: a.load.p99,
        floor: { name: "ingest without rules, interleaved (ABBA)", rate: a.plainEventsPerSecond },
        ratioName: "alerts/ingest",
      });
      runWindows.push(...abbaWindows("ingest with alert rules", a, options.events));
      notes.push(`alerts: ingest with a rule on every customer's usage balances at ${(a.eventsPerSecond / a.plainEventsPerSecond).toFixed(2)}× ingest without rules measured around it (plain, rules, rules, plain; target ≥ 0.90×: alerts cost ≤ 10 %)`);
    }
    if (wants("ingest") || wants("rated")) {
      log(`batch ingest on rated meters of one credit system and on plain meters, interleaved: ${2 * Math.floor(options.events / 2)} events each`);
      const r = await ratedIngest(ctx);
      rows.push({
        scenario: "ingest, rated meters (credit system)",
        unit: "events/s",
        rate: r.eventsPerSecond,
        p50: r.load.p50,
        p99: r.load.p99,
        floor: { name: "plain ingest, interleaved (ABBA)", rate: r.plainEventsPerSecond },
        ratioName: "rated/plain ingest",
      });
      runWindows.push(...abbaWindows("ingest on rated meters", r, options.events));
      notes.push(`rated: ingest on two rated meters of one credit system (90 % of the events draw from the pool) at ${(r.eventsPerSecond / r.plainEventsPerSecond).toFixed(2)}× ingest on plain meters measured around it (plain, rated, rated, plain; target ≥ 0.90×)`);
    }
    if (wants("calls")) {
      log(`1-event ingest calls on ${options.connections} connections`);
      const c = await singleEventCalls(ctx);
      rows.push({ scenario: `1-event ingest calls, ${options.connections} connections`, unit: "req/s", ...c, floor: mutationFloor, ratioName: "1-event ingest" });
    }
    if (wants("push")) {
      log(`ingest → subscriber latency with ${options.subscriptions} subscriptions`);
      const p = await pushLatency(ctx);
      rows.push({
        scenario: `ingest request → subscriber, ${options.subscriptions} subscriptions`,
        unit: "",
        p50: p.requestToPush.p50,
        p99: p.requestToPush.p99,
        note: `n=${p.samples}`,
      });
      rows.push({ scenario: "ingest response → subscriber", unit: "", p50: p.responseToPush.p50, p99: p.responseToPush.p99, note: `n=${p.samples}` });
      notes.push(`fan-out: one call with an event for each of ${p.fanOut} of the ${options.subscriptions} subscribed customers → last subscriber's message in ${p.fanOutMs.toFixed(0)} ms`);
    }

    log("checking the books");
    await checkBooks(ctx);
    notes.push(`books: ${thousands(ctx.books.acknowledged)} acknowledged events; consumed units of all ${options.customers} × ${ctx.books.meters.length} balances (${ctx.books.meters.join(", ")}) equal them exactly`);
    const memory = memoryOf(service.pid);
    const floorMemory = memoryOf(floor.pid);
    rows.push({
      scenario: `service RSS at the end, ${thousands(ctx.books.acknowledged)} events`,
      unit: "",
      note: memory ? `${memory.rssMb.toFixed(0)} MB (peak ${memory.peakMb.toFixed(0)} MB)` : "n/a",
    });
    rows.push({ scenario: "bare-Yoga floor RSS at the end", unit: "", note: floorMemory ? `${floorMemory.rssMb.toFixed(0)} MB` : "n/a" });
    if (options.engine === "sqlite") {
      // The WAL file's size is the most it held at once: it starts over, but is not shrunk (src/db/libsql.ts).
      const file = path.join(tempDir, "service.db");
      const mb = (f: string) => (existsSync(f) ? `${(statSync(f).size / 1e6).toFixed(0)} MB` : "none");
      rows.push({ scenario: "service SQLite files at the end", unit: "", note: `database ${mb(file)}, WAL ${mb(`${file}-wal`)}` });
    }

    // The notes first: the contract's last line is the one with the ratios.
    const cpu = cpuLine(rows);
    if (cpu) notes.push(cpu);
    if (process.env.BENCH_CPU_PROFILE) writeProfileWindows(process.env.BENCH_CPU_PROFILE, rows, runWindows);
    console.log("");
    for (const n of notes) console.log(n);
    console.log("");
    printTable(rows);
    return 0;
  } catch (err) {
    if (serviceTail) console.error(`service output (last lines):\n${serviceTail().split("\n").slice(-30).join("\n")}`);
    console.error(`bench: FAILED: ${err instanceof BenchFailure ? err.message : err instanceof Error ? err.stack : String(err)}`);
    return 1;
  } finally {
    for (const c of cleanups) {
      try {
        await withTimeout(Promise.resolve().then(c), 30_000, "cleanup");
      } catch (err) {
        console.error(`bench: cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}

interface ProfileWindow {
  scenario: string;
  start: number;
  end: number;
  responses: number;
}

/** The four runs of an ABBA row as profile windows: "<name>, plain 1", "<name>, other 1", "… other 2", "… plain 2" (one ingest call each 1,000 events: `responses` counts events). */
function abbaWindows(name: string, r: Interleaved, events: number): ProfileWindow[] {
  const labels = ["plain 1", "other 1", "other 2", "plain 2"];
  return r.windows.map(([start, end], i) => ({ scenario: `${name}, ${labels[i]}`, start, end, responses: events }));
}

/**
 * BENCH_CPU_PROFILE: when each measured run of the service happened, on the profiles' clock, with its answers,
 * so that `bench/profile.ts --window <scenario>` summarizes that run alone (windows.json beside the profiles).
 */
function writeProfileWindows(folder: string, rows: Row[], runs: ProfileWindow[]): void {
  const windows = rows
    .filter((r) => r.window && r.responses && !r.scenario.startsWith("floor"))
    .map((r) => ({ scenario: r.scenario, start: r.window![0], end: r.window![1], responses: r.responses! }))
    .concat(runs);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, "windows.json"), `${JSON.stringify(windows, null, 1)}\n`);
}

/**
 * Every usage balance of every customer shows exactly the consumed units of the events the service
 * acknowledged; after the rated runs, so do the rated meters' balances and the pool's (the sum of the draws).
 */
async function checkBooks(ctx: Context): Promise<void> {
  const gql = graphqlClient(ctx.service.url, ctx.token);
  const { meterIds } = ctx.seeded;
  await pool(ctx.options.customers, 8, async (i) => {
    const data = await gql.request<{ customerMeters: { edges: { node: { meter: { id: string }; consumedUnits: string } }[] } }>(
      `query($c: String!) { customerMeters(externalCustomerId: $c, first: 50) { edges { node { meter { id } consumedUnits } } } }`,
      { c: `c${i}` },
    );
    const got = new Map(data.customerMeters.edges.map((e) => [e.node.meter.id, e.node.consumedUnits]));
    for (const m of ctx.books.meters) {
      const want = ctx.books.expected(i, m);
      const shown = got.get(meterIds[m]);
      if (want === 0n ? shown !== undefined && shown !== "0" : shown !== decimalText(want, 6)) {
        throw new BenchFailure(`books: c${i} ${m} shows consumed ${shown ?? "(no balance)"}, acknowledged events add up to ${decimalText(want, 6)}`);
      }
    }
  });
}

const code = await withTimeout(main(), 60 * 60_000, "npm run bench").catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
});
process.exit(code);
