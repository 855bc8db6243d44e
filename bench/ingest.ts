// Batch ingestion in `npm run bench`: `events` events in calls of `batch` over `customers` customers × 3
// meters, `ingestConnections` calls in flight (autocannon), then the raw-driver floor writing the same rows;
// then the same again with a balance alert rule on every customer's usage balances (batchIngestWithAlerts).
import { writeFileSync } from "node:fs";
import pg from "pg";
import type { Context } from "./context.ts";
import { BenchFailure, inTurn, load, treeCpuMicros, type Load } from "./harness.ts";
import { allocationWindow } from "./heap-sampling.ts";
import { graphqlClient } from "./support.ts";
import { postgresFloor, postmasterPid, sqliteFloor, type FloorResult, type FloorRows } from "./floor-raw.ts";
import { orderedId } from "../src/domain/ids.ts";
import { eventInput, generateEvents, UNIT_SCALE, USAGE_METERS, type BenchEvent } from "./workload.ts";

const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { ... on IngestSummary { inserted duplicates } ... on Error { code message } } }`;

export interface IngestResult {
  load: Load;
  eventsPerSecond: number;
  /** CPU time per event of the service's process, µs */
  serviceCpuPerEvent: number | null;
  /** the part of serviceCpuPerEvent on the service's main thread (the rest: V8's helper threads, mostly GC) */
  serviceMainThreadCpuPerEvent: number | null;
  /** PostgreSQL: CPU time per event of the database server's processes, µs, while the service ingested and while each floor did */
  databaseCpuPerEvent: { service: number; floor: number; upserts: number } | null;
  /** the same rows as the service's by the raw driver: events, balance rows, ledger entries (FloorRows "ledger") */
  floor: FloorResult & { eventsPerSecond: number };
  /** the events and each balance's change as an upsert into a three-column table, no ledger (FloorRows "upserts") */
  upsertsFloor: FloorResult & { eventsPerSecond: number };
}

/**
 * `events` sent to the service in calls of `batch`, `ingestConnections` in flight; acknowledged events go into
 * the books. With `warmUp`, they are the warm-up customers' (`warm0`…), whose balances the books never read.
 */
export async function ingestCalls(ctx: Context, events: BenchEvent[], warmUp = false, atLastAnswer?: () => void): Promise<Load> {
  const o = ctx.options;
  const batches: { body: string; events: BenchEvent[] }[] = [];
  for (let i = 0; i < events.length; i += o.batch) {
    const slice = events.slice(i, i + o.batch);
    batches.push({ body: JSON.stringify({ query: INGEST, variables: { events: slice.map((e) => eventInput(e, warmUp ? "warm" : "c")) } }), events: slice });
  }
  let failure: string | null = null;
  const result = await load({
    url: ctx.service.url,
    pid: ctx.service.pid,
    token: ctx.token,
    // autocannon refuses more connections than requests (a warm-up of 2,000 events is two calls)
    connections: Math.min(o.ingestConnections, batches.length),
    amount: batches.length,
    atLastAnswer,
    requests: [
      inTurn(
        batches,
        (b) => b.body,
        (b, text) => {
          const r = (JSON.parse(text) as { data?: { ingestEvents?: { inserted?: number; duplicates?: number } } }).data?.ingestEvents;
          if (r?.inserted !== b.events.length || r.duplicates !== 0) failure ??= text.slice(0, 300);
          else if (!warmUp) for (const e of b.events) ctx.books.add(e);
        },
      ),
    ],
  });
  if (failure) throw new BenchFailure(`batch ingest: ${failure}`);
  return result;
}

/** `afterCalls` runs once the service has answered every call, before the floor (e.g. to read its memory). */
/** Whether every customer has a balance row on each usage meter (the ingest row or `warmUsageRows` made them). */
let usageRowsMade = false;

/**
 * One event per customer on each usage meter, unless the ingest row ran: an ABBA row run alone (`--only alerts`
 * or `--only rated`) then finds every balance row of its plain runs there, as it does after the ingest row.
 */
export async function warmUsageRows(ctx: Context): Promise<void> {
  if (usageRowsMade) return;
  const at = "2025-01-01T00:00:00.000Z";
  const warm: BenchEvent[] = [];
  for (let c = 0; c < ctx.options.customers; c++) {
    warm.push({ name: "api.request", customer: c, externalId: `uw${c}r`, timestamp: at, metadata: {}, meter: "requests", micro: UNIT_SCALE });
    warm.push({ name: "llm.completion", customer: c, externalId: `uw${c}t`, timestamp: at, metadata: { tokens: 1 }, meter: "tokens", micro: UNIT_SCALE });
    warm.push({ name: "storage.sample", customer: c, externalId: `uw${c}s`, timestamp: at, metadata: { gb: 1 }, meter: "storage", micro: UNIT_SCALE });
  }
  await ingestCalls(ctx, warm);
  usageRowsMade = true;
}

/** Calls of the warm-up (WARM_UP_CALLS × batch events over the warm-up customers), for the service and the floor alike. */
const WARM_UP_CALLS = 10;
/** Runs of the same-rows floor, whose median is the ingest row's floor. */
const FLOOR_RUNS = 3;

export async function batchIngest(ctx: Context, afterCalls: () => void = () => {}): Promise<IngestResult> {
  usageRowsMade = true;
  const o = ctx.options;
  const events = generateEvents(o.events, o.customers, o.seed, "e");
  // A warm-up first, as the read scenarios' (the code compiled, the statements planned, the pools open), on the
  // warm-up customers: the measured calls still create every balance row of theirs, as the floor's do. The
  // floor gets the same warm-up, into its own tables.
  const warm = { events: generateEvents(WARM_UP_CALLS * o.batch, ctx.seeded.warmCustomerIds.length, o.seed + 1, "iw"), customerIds: ctx.seeded.warmCustomerIds };
  await ingestCalls(ctx, warm.events, true);
  // PostgreSQL on this machine: its processes' CPU time per event, the service's ingest against the floor's,
  // each from right before its timed writes to its last answer (or COMMIT).
  const postmaster = o.engine === "postgresql" ? await postmasterPid(ctx.databaseUrl) : null;
  const databaseCpu = () => (postmaster === null ? null : treeCpuMicros(postmaster));
  const statements = o.engine === "postgresql" && process.env.BENCH_PG_STATEMENTS ? await statementsWindow(ctx.databaseUrl, process.env.BENCH_PG_STATEMENTS) : null;
  const allocations = await allocationWindow(ctx.service, "ingest");
  if (o.engine === "postgresql") await checkpoint(ctx.databaseUrl);
  const dbBefore = databaseCpu();
  let dbAfter: number | null = null;
  const result = await ingestCalls(ctx, events, false, () => (dbAfter = databaseCpu()));
  await statements?.write();
  if (allocations) ctx.log(`allocations during the ingest row sampled to ${await allocations.stop(o.events)} (npx tsx bench/profile.ts <file>)`);
  ctx.log(`ingest: ${o.events} events in ${result.seconds.toFixed(1)} s (${Math.round(o.events / result.seconds)} events/s); raw-driver floor next`);
  afterCalls();
  // The floor's own tables, in the service's organization: on PostgreSQL its balance rows' copy keeps the
  // service table's foreign keys (to the organization, the customer and the meter), as the service's rows do.
  const { customerIds, meterIds } = ctx.seeded;
  const organizationId = o.engine === "postgresql" ? await organizationOf(ctx.databaseUrl, customerIds[0]) : orderedId();
  const perEvent = (a: number | null, b: number | null) => (a === null || b === null ? null : (b - a) / o.events);
  const runFloor = async (rows: FloorRows) => {
    const floor =
      o.engine === "postgresql"
        ? await postgresFloor(ctx.databaseUrl, o.ingestConnections, organizationId, events, warm, o.batch, customerIds, meterIds, rows, databaseCpu)
        : await sqliteFloor(ctx.databaseUrl.replace(/^file:/, ""), ctx.tempDir, organizationId, events, warm, o.batch, customerIds, meterIds, rows);
    if (floor.events !== o.events) throw new BenchFailure(`raw floor (${rows}) stored ${floor.events} of ${o.events} events`);
    return { ...floor, eventsPerSecond: o.events / (floor.ms / 1000), databaseCpuPerEvent: perEvent(floor.measuredAtStart ?? null, floor.measured ?? null) };
  };
  const upserts = await runFloor("upserts");
  // The floor the ratio is taken to: the median of FLOOR_RUNS runs, each on fresh tables (one run of about a
  // second varied by ±7 % over 18 runs: alone, it moved the ratio more than the targets' margins).
  const floors: Awaited<ReturnType<typeof runFloor>>[] = [];
  for (let i = 0; i < FLOOR_RUNS; i++) floors.push(await runFloor("ledger"));
  const floor = [...floors].sort((a, b) => a.ms - b.ms)[Math.floor(FLOOR_RUNS / 2)];
  ctx.log(`same-rows floor: ${floors.map((f) => Math.round(f.eventsPerSecond)).join(", ")} events/s in its ${FLOOR_RUNS} runs (the median is the floor)`);
  const service = perEvent(dbBefore, dbAfter);
  return {
    load: result,
    eventsPerSecond: o.events / result.seconds,
    serviceCpuPerEvent: result.cpuMicros === undefined ? null : (result.cpuMicros * result.responses) / o.events,
    serviceMainThreadCpuPerEvent: result.mainThreadCpuMicros === undefined ? null : (result.mainThreadCpuMicros * result.responses) / o.events,
    databaseCpuPerEvent:
      service === null || floor.databaseCpuPerEvent === null || upserts.databaseCpuPerEvent === null ? null : { service, floor: floor.databaseCpuPerEvent, upserts: upserts.databaseCpuPerEvent },
    floor,
    upsertsFloor: upserts,
  };
}

/**
 * Ingest with every customer's three usage balances following a balance alert rule (the organization's
 * default on each usage meter, low below 1,000,000 units, which every customer without a rule of its own
 * follows), against ingest without rules measured in the same stretch of the run. The usage balances are
 * below zero, so each balance's first event here crosses into DEPLETED (low and depleted in the outbox, the
 * level stored) and every later one reads its stored level: both costs are in the figure.
 *
 * Each run stores more events than the last, and a larger table ingests more slowly, so the two are measured
 * in the order plain, rules, rules, plain (ABBA, `events` events each, other ids and seeds: runs as long as the ingest row's, since a few seconds of
 * one run can fall in a slow stretch of a shared machine): a steady drift
 * then weighs on both alike and cancels out of the ratio.
 */
export async function batchIngestWithAlerts(ctx: Context): Promise<Interleaved> {
  const o = ctx.options;
  const gql = graphqlClient(ctx.service.url, ctx.token);
  /** Set (or, with null, remove) the default rule on every usage meter. */
  const setRules = async (lowBalanceUnits: string | null) => {
    for (const m of USAGE_METERS) {
      const { setBalanceAlert } = await gql.request<{ setBalanceAlert: { __typename: string } }>(
        `mutation($input: SetBalanceAlertInput!) { setBalanceAlert(input: $input) { __typename ... on Error { message } } }`,
        { input: { meterId: ctx.seeded.meterIds[m], lowBalanceUnits } },
      );
      if (setBalanceAlert.__typename !== "SetBalanceAlertPayload") throw new BenchFailure(`setBalanceAlert ${m}: ${JSON.stringify(setBalanceAlert)}`);
    }
  };
  const run = (n: number, prefix: string) => () => ingestCalls(ctx, generateEvents(o.events, o.customers, o.seed + 10 + n, prefix));
  await warmUsageRows(ctx);
  const a = await interleaved(o.events, {
    plain: [run(1, "p1"), run(4, "p2")],
    other: [run(2, "a1"), run(3, "a2")],
    before: () => setRules("1000000"),
    after: () => setRules(null), // the last plain run and the scenarios after this one measure ingest without rules
  });
  ctx.log(`ingest with alert rules: ${Math.round(a.eventsPerSecond)} events/s; without, in the same stretch: ${Math.round(a.plainEventsPerSecond)} events/s (runs: ${a.each.map(Math.round).join(", ")})${cpuNote(a)}`);
  return a;
}

/** Two runs of a variant of ingest between two plain runs (ABBA), and what each side stored per second. */
export interface Interleaved {
  /** the variant's two runs as one */
  load: Load;
  eventsPerSecond: number;
  plainEventsPerSecond: number;
  /** events per second of each run, in the order they ran (plain, other, other, plain) */
  each: number[];
  /** each run's window on the CPU profiles' clock (Load.window), in the same order */
  windows: [number, number][];
  /** CPU time the service spent per event on each side (µs; every thread, from /proc), when it could be read */
  cpuPerEvent?: { other: number; plain: number };
}

/**
 * The runs `plain[0]`, `other[0]`, `other[1]`, `plain[1]`, each storing `events` events; `before` runs
 * just before the first of `other`, `after` just after the last (also if it failed).
 */
export async function interleaved(
  events: number,
  runs: { plain: [() => Promise<Load>, () => Promise<Load>]; other: [() => Promise<Load>, () => Promise<Load>]; before?: () => Promise<void>; after?: () => Promise<void> },
): Promise<Interleaved> {
  const plain1 = await runs.plain[0]();
  await runs.before?.();
  let other: Load[];
  try {
    other = [await runs.other[0](), await runs.other[1]()];
  } finally {
    await runs.after?.();
  }
  const plain2 = await runs.plain[1]();
  const seconds = (loads: Load[]) => loads.reduce((sum, l) => sum + l.seconds, 0);
  const eventsPerSecond = (2 * events) / seconds(other);
  const plainEventsPerSecond = (2 * events) / seconds([plain1, plain2]);
  const [a, b] = other;
  const each = [plain1, a, b, plain2].map((l) => events / l.seconds);
  // cpuMicros is per answered call; over a run, times its answers, that is the run's CPU time.
  const cpu = (loads: Load[]) => (loads.every((l) => l.cpuMicros !== undefined) ? loads.reduce((sum, l) => sum + l.cpuMicros! * l.responses, 0) / (2 * events) : undefined);
  const cpuOther = cpu(other);
  const cpuPlain = cpu([plain1, plain2]);
  return {
    ...(cpuOther !== undefined && cpuPlain !== undefined ? { cpuPerEvent: { other: cpuOther, plain: cpuPlain } } : {}), load: { ...a, rate: eventsPerSecond, responses: a.responses + b.responses, p50: Math.max(a.p50, b.p50), p99: Math.max(a.p99, b.p99), seconds: seconds(other) }, eventsPerSecond, plainEventsPerSecond, each, windows: [plain1, a, b, plain2].map((l) => l.window) };
}

/** "; CPU per event: 31 µs with, 29 µs without" for the log line of an interleaved row, when measured. */
export function cpuNote(r: Interleaved, other = "with", plain = "without"): string {
  return r.cpuPerEvent ? `; CPU per event: ${r.cpuPerEvent.other.toFixed(1)} µs ${other}, ${r.cpuPerEvent.plain.toFixed(1)} µs ${plain}` : "";
}

/**
 * PostgreSQL: a checkpoint right before a timed window, so that none falls inside it by chance (the service's
 * row and each floor alike). Needs a superuser or pg_checkpoint; without one the window runs as it comes.
 */
export async function checkpoint(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("CHECKPOINT");
  } catch {
    // not allowed to: measured without
  } finally {
    await client.end();
  }
}

/** The service's organization (the API does not show its id): that of one of its customers. */
async function organizationOf(databaseUrl: string, customerId: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ organizationId: string }>(`SELECT "organizationId" FROM "Customer" WHERE "id" = $1`, [customerId]);
    if (!rows[0]) throw new BenchFailure(`the seeded customer ${customerId} is not in the database`);
    return rows[0].organizationId;
  } finally {
    await client.end();
  }
}

/**
 * BENCH_PG_STATEMENTS=<file> (PostgreSQL): pg_stat_statements is reset right before the ingest row's calls, and
 * its 25 costliest statements over them (calls, execution and planning ms, rows, the text's start) are written to
 * the file as tab-separated lines right after. The server must load the module (`shared_preload_libraries =
 * pg_stat_statements`); the extension is created in the bench's database if missing.
 */
export async function statementsWindow(databaseUrl: string, file: string): Promise<{ write(): Promise<void> }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    await client.query("SELECT pg_stat_statements_reset()");
  } catch (err) {
    await client.end();
    throw new BenchFailure(`BENCH_PG_STATEMENTS: pg_stat_statements is not available (${(err as Error).message}); start PostgreSQL with shared_preload_libraries=pg_stat_statements`);
  }
  return {
    async write() {
      try {
        const { rows } = await client.query<{ calls: string; exec: string; plan: string; rows: string; query: string }>(
          `SELECT calls, round(total_exec_time::numeric, 1) AS exec, round(total_plan_time::numeric, 1) AS plan, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query
             FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25`,
        );
        const lines = ["calls\texec_ms\tplan_ms\trows\tstatement", ...rows.map((r) => [r.calls, r.exec, r.plan, r.rows, r.query].join("\t"))];
        writeFileSync(file, `${lines.join("\n")}\n`);
      } finally {
        await client.end();
      }
    },
  };
}
