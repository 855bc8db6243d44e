// Ingestion benchmark: how many usage events per second the service stores and counts through GraphQL over
// real HTTP, how long a balance change takes to reach a graphql-ws subscriber, and how that compares with
// storing the same event rows through the raw libsql client (no GraphQL, no balances).
//
//   npx tsx bench/ingest.ts                      (npm run bench:ingest)
//   EVENTS=5000 CUSTOMERS=100 npx tsx bench/ingest.ts
//   npx tsx bench/ingest.ts --events 50000 --batch 500 --concurrency 4
//
// Options (flag or environment variable): EVENTS (200000), CUSTOMERS (1000), BATCH (1000, at most 10000),
// CONCURRENCY (2 ingest requests in flight), LATENCY_SAMPLES (200), SEED (42), DATABASE_URL (default: a
// fresh SQLite file in a temp dir, deleted at the end; a postgresql:// URL is used as is and must point at an
// empty or migratable database), REDIS_URL (Redis pub/sub instead of in-process; phase B's subscriber then
// connects to a second node, so the push crosses nodes), CPU_PROFILE (a file to write a V8 CPU profile of
// phase A to; the bench process holds both the server and the client), GRANT_UNITS (0: no credits; more:
// every customer first gets a grant of that many units on each meter, so usage burns grants down).
//
// Phases, each timed on its own:
//   A  ingestEvents batches with CONCURRENCY requests in flight (request bodies are serialized beforehand)
//   B  push latency: one 1-event ingest at a time for customer c0, timed to the customerMeterUpdated message
//   C  baseline: the same Event rows into a separate SQLite file with @libsql/client, one transaction per batch
//      (SQLite), or into a copy of the Event table with node-postgres UNNEST inserts, one session per request
//      the service had in flight (PostgreSQL)
// Correctness is checked along the way (inserted counts, exact consumed units of every balance row, the last
// pushed balance against a query); any failure exits 1.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createClient as createLibsqlClient, type Client as LibsqlClient, type InValue } from "@libsql/client";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";
import WebSocket from "ws";
import { createPrisma, type Db } from "../src/db/client.ts";
import { migrateDeploy } from "../src/db/migrate.ts";
import { orderedId } from "../src/domain/ids.ts";
import { createOrganization } from "../src/domain/organizations.ts";
import { createLogger } from "../src/log.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp, type App } from "../src/server.ts";
import type { Limits } from "../src/limits.ts";

// The benchmarks measure throughput from one token: lift the per-client rate and concurrency limits.
const UNTHROTTLED: Partial<Limits> = { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000, concurrencyPerClient: 100_000, queuePerClient: 100_000 };
import {
  decimalText,
  graphqlClient,
  intOption,
  millis,
  option,
  percentile,
  pool,
  seconds,
  seededRandom,
  randomInt,
  sleep,
  startCpuProfile,
  thousands,
  withTimeout,
  type GraphQLResponse,
} from "./support.ts";

const OVERALL_TIMEOUT_MS = 15 * 60_000;
const MAX_BATCH = 10_000; // the service's limit per ingestEvents call
const BASELINE_ROWS_PER_STATEMENT = 400; // the service's own chunk size (src/db/sql.ts)

const config = readConfig();

function readConfig() {
  try {
    return {
      events: intOption("EVENTS", 200_000),
      customers: intOption("CUSTOMERS", 1000),
      batch: intOption("BATCH", 1000, 1, MAX_BATCH),
      concurrency: intOption("CONCURRENCY", 2, 1, 256),
      latencySamples: intOption("LATENCY_SAMPLES", 200, 1, 100_000),
      seed: intOption("SEED", 42, 0, 2 ** 32 - 1),
      databaseUrl: option("DATABASE_URL"),
      redisUrl: option("REDIS_URL"),
      cpuProfile: option("CPU_PROFILE"),
      grantUnits: intOption("GRANT_UNITS", 0, 0, 1_000_000_000),
    };
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  }
}

const UNIT_DECIMALS = 6;
const UNIT_SCALE = 10n ** BigInt(UNIT_DECIMALS);

// ---------------------------------------------------------------------------------------------------------
// Workload

type MeterKey = "requests" | "tokens" | "storage";
const METER_KEYS: MeterKey[] = ["requests", "tokens", "storage"];

const METERS: Record<MeterKey, { event: string; input: Record<string, unknown> }> = {
  requests: {
    event: "api.request",
    input: {
      name: "requests",
      filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "api.request" }] },
      aggregation: { func: "COUNT" },
    },
  },
  tokens: {
    event: "llm.completion",
    input: {
      name: "tokens",
      filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "llm.completion" }] },
      aggregation: { func: "SUM", property: "tokens" },
    },
  },
  storage: {
    event: "storage.sample",
    input: {
      name: "storage",
      filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "storage.sample" }] },
      aggregation: { func: "MAX", property: "gb" },
    },
  },
};

interface BenchEvent {
  name: string;
  customer: number;
  externalId: string;
  /** ISO-8601, in the past */
  timestamp: string;
  metadata: Record<string, string | number>;
  meter: MeterKey;
  /** What the event adds to its meter, in micro-units (COUNT: one unit; SUM/MAX: the value) */
  micro: bigint;
}

/** Deterministic events: same seed, same events. Timestamps are 100 ms apart from a fixed instant in the past. */
function generateEvents(count: number, customers: number, seed: number): BenchEvent[] {
  const random = seededRandom(seed);
  const start = Date.parse("2025-01-01T00:00:00.000Z");
  const routes = ["/v1/items", "/v1/orders", "/v1/search", "/v1/users"];
  const events: BenchEvent[] = Array.from({ length: count });
  for (let i = 0; i < count; i++) {
    const customer = randomInt(random, customers);
    const r = random();
    const timestamp = new Date(start + i * 100).toISOString();
    const externalId = `e${i}`;
    if (r < 0.6) {
      const route = routes[randomInt(random, routes.length)];
      events[i] = { name: "api.request", customer, externalId, timestamp, metadata: { route, status: 200 }, meter: "requests", micro: UNIT_SCALE };
    } else if (r < 0.9) {
      const tokens = 1 + randomInt(random, 2000);
      events[i] = { name: "llm.completion", customer, externalId, timestamp, metadata: { tokens, model: "m1" }, meter: "tokens", micro: BigInt(tokens) * UNIT_SCALE };
    } else {
      const cents = randomInt(random, 100_001); // 0.00 … 1000.00 GB
      // cents / 100 prints as at most 2 decimals, so the JSON number is exact as written; the expected value
      // is computed from the integer, never from the float.
      events[i] = { name: "storage.sample", customer, externalId, timestamp, metadata: { gb: cents / 100 }, meter: "storage", micro: BigInt(cents) * 10n ** 4n };
    }
  }
  return events;
}

interface Expected {
  consumed: bigint;
  /** batches that touched the row: the most balance updates (version) it can show; concurrent calls stored
   *  in one transaction update it once */
  versions: number;
  lastBatch: number;
}

/** Consumed micro-units each (customer, meter) row must show after phase A, and its highest possible version. */
function expectedBalances(events: BenchEvent[], batch: number): Map<string, Expected> {
  const out = new Map<string, Expected>();
  events.forEach((e, i) => {
    const k = `${e.customer}:${e.meter}`;
    let x = out.get(k);
    if (!x) out.set(k, (x = { consumed: 0n, versions: 0, lastBatch: -1 }));
    const b = Math.floor(i / batch);
    if (b !== x.lastBatch) {
      x.versions++;
      x.lastBatch = b;
    }
    if (e.meter === "storage") x.consumed = e.micro > x.consumed ? e.micro : x.consumed;
    else x.consumed += e.micro;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// GraphQL documents

const CREATE_CUSTOMER = `mutation($input: CreateCustomerInput!) {
  createCustomer(input: $input) { __typename ... on Customer { id externalId } ... on Error { code message field } }
}`;
const CREATE_METER = `mutation($input: CreateMeterInput!) {
  createMeter(input: $input) { __typename ... on Meter { id } ... on Error { code message field } }
}`;
const GRANT = `mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename ... on Error { code message field } } }`;
const INGEST = `mutation($events:[EventInput!]!){ ingestEvents(events:$events){ ... on IngestSummary { inserted duplicates } ... on Error { code message field } } }`;
const CUSTOMER_METER = `query($c: String!, $m: ID!) { customerMeter(externalCustomerId: $c, meterId: $m) { balance consumedUnits version } }`;
const CUSTOMER_METERS = `query($c: String!) { customerMeters(externalCustomerId: $c, first: 50) { edges { node { meter { id } balance consumedUnits creditedUnits version } } } }`;
const BALANCE_SUBSCRIPTION = `subscription { customerMeterUpdated(externalCustomerId: "c0") { balance consumedUnits version } }`;

type IngestResponse = GraphQLResponse<{ ingestEvents: { inserted?: number; duplicates?: number; code?: string; message?: string; field?: string } }>;
interface Balance {
  balance: string;
  consumedUnits: string;
  version: number;
}

class BenchFailure extends Error {}

function checkIngest(text: string, expected: number, what: string): void {
  let result: IngestResponse;
  try {
    result = JSON.parse(text) as IngestResponse;
  } catch {
    throw new BenchFailure(`${what}: response is not JSON: ${text.slice(0, 300)}`);
  }
  if (result.errors?.length) throw new BenchFailure(`${what}: GraphQL errors ${JSON.stringify(result.errors).slice(0, 1000)}`);
  const r = result.data?.ingestEvents;
  if (!r || r.inserted === undefined) throw new BenchFailure(`${what}: ${JSON.stringify(r ?? result).slice(0, 1000)}`);
  if (r.inserted !== expected || r.duplicates !== 0) {
    throw new BenchFailure(`${what}: expected ${expected} inserted and 0 duplicates, got ${r.inserted} inserted and ${r.duplicates} duplicates`);
  }
}

function eventInput(e: BenchEvent) {
  return { name: e.name, externalCustomerId: `c${e.customer}`, externalId: e.externalId, timestamp: e.timestamp, metadata: e.metadata };
}

// ---------------------------------------------------------------------------------------------------------
// Baseline: the same rows through the raw libsql client

// The Event table of prisma/sqlite/migrations (without foreign keys, indexes in two stages). Copied, not
// parsed from the migration: when the Event model changes, change this too or the ratio compares unlike tables.
const BASELINE_DDL = [
  `CREATE TABLE "Event" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "customerId" TEXT,
    "externalCustomerId" TEXT,
    "externalId" TEXT,
    "timestamp" DATETIME NOT NULL,
    "metadata" JSONB NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)`,
  `CREATE UNIQUE INDEX "Event_organizationId_externalId_key" ON "Event"("organizationId", "externalId")`,
];
/** The Event table's other indexes in the real schema, for the second baseline run. */
const SECONDARY_INDEXES = [
  `CREATE INDEX "Event_organizationId_customerId_timestamp_idx" ON "Event"("organizationId", "customerId", "timestamp")`,
  `CREATE INDEX "Event_organizationId_externalCustomerId_idx" ON "Event"("organizationId", "externalCustomerId")`,
  `CREATE INDEX "Event_organizationId_timestamp_idx" ON "Event"("organizationId", "timestamp")`,
];
const EVENT_COLUMNS = ["id", "organizationId", "name", "customerId", "externalCustomerId", "externalId", "timestamp", "metadata", "createdAt"];

/** How the service stores a DateTime on SQLite (src/db/sql.ts): ISO text with an explicit offset. */
const sqliteDate = (iso: string) => iso.replace("Z", "+00:00");

interface BaselineBatch {
  /** [sql, args without createdAt] per statement; createdAt (the batch's "now") is appended at insert time */
  statements: { sql: string; rows: InValue[][] }[];
  rows: number;
}

/** Statements and row values built before timing (ids included), so only storing is measured. */
function buildBaseline(events: BenchEvent[], batch: number, organizationId: string, customerIds: string[]): BaselineBatch[] {
  const head = `INSERT INTO "Event" (${EVENT_COLUMNS.map((c) => `"${c}"`).join(", ")}) VALUES `;
  const group = `(${EVENT_COLUMNS.map(() => "?").join(", ")})`;
  const sqlFor = new Map<number, string>();
  const statementFor = (n: number) => {
    let s = sqlFor.get(n);
    if (!s) sqlFor.set(n, (s = head + Array(n).fill(group).join(", ") + ` ON CONFLICT ("organizationId", "externalId") DO NOTHING`));
    return s;
  };
  const batches: BaselineBatch[] = [];
  for (let i = 0; i < events.length; i += batch) {
    const slice = events.slice(i, i + batch);
    const statements: BaselineBatch["statements"] = [];
    for (let j = 0; j < slice.length; j += BASELINE_ROWS_PER_STATEMENT) {
      const chunk = slice.slice(j, j + BASELINE_ROWS_PER_STATEMENT);
      statements.push({
        sql: statementFor(chunk.length),
        rows: chunk.map((e) => [
          orderedId(), // the service's own id scheme, so both sides pay the same primary-key cost
          organizationId,
          e.name,
          customerIds[e.customer],
          `c${e.customer}`,
          e.externalId,
          sqliteDate(e.timestamp),
          JSON.stringify(e.metadata),
        ]),
      });
    }
    batches.push({ statements, rows: slice.length });
  }
  return batches;
}

async function runBaseline(file: string, batches: BaselineBatch[], secondaryIndexes: boolean): Promise<{ ms: number; inserted: number }> {
  const client: LibsqlClient = createLibsqlClient({ url: `file:${file}` });
  try {
    await client.execute("PRAGMA journal_mode=WAL");
    for (const ddl of [...BASELINE_DDL, ...(secondaryIndexes ? SECONDARY_INDEXES : [])]) await client.execute(ddl);
    let inserted = 0;
    const t0 = performance.now();
    for (const b of batches) {
      const createdAt = sqliteDate(new Date().toISOString());
      const tx = await client.transaction("write");
      try {
        for (const s of b.statements) {
          const args: InValue[] = [];
          for (const row of s.rows) args.push(...row, createdAt);
          inserted += (await tx.execute({ sql: s.sql, args })).rowsAffected;
        }
        await tx.commit();
      } finally {
        tx.close();
      }
    }
    const ms = performance.now() - t0;
    return { ms, inserted };
  } finally {
    client.close();
  }
}

/**
 * PostgreSQL baseline: the same rows into a copy of the Event table (all its indexes, the service's own
 * database) with node-postgres directly: one transaction per batch, one UNNEST statement per batch (the
 * cheapest way to bind many rows), no GraphQL, no balances.
 */
async function runPgBaseline(databaseUrl: string, batches: BaselineBatch[], sessions: number): Promise<{ ms: number; inserted: number }> {
  const { default: pg } = await import("pg");
  const clients = await Promise.all(
    Array.from({ length: sessions }, async () => {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      return client;
    }),
  );
  const [first] = clients;
  try {
    await first.query(`DROP TABLE IF EXISTS "BaselineEvent"`);
    await first.query(`CREATE TABLE "BaselineEvent" (LIKE "Event" INCLUDING DEFAULTS INCLUDING INDEXES)`);
    const sql =
      `INSERT INTO "BaselineEvent" (${EVENT_COLUMNS.map((c) => `"${c}"`).join(", ")}) ` +
      `SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamp[], $8::jsonb[], $9::timestamp[]) ` +
      `ON CONFLICT ("organizationId", "externalId") DO NOTHING`;
    let inserted = 0;
    let next = 0;
    const t0 = performance.now();
    // As many sessions as the service had requests in flight, each taking the next batch.
    await Promise.all(
      clients.map(async (client) => {
        while (next < batches.length) {
          const rows = batches[next++].statements.flatMap((st) => st.rows);
          const createdAt = new Date();
          // the built rows hold every column but createdAt (the batch's "now"); timestamp is SQLite text there
          const columns = EVENT_COLUMNS.slice(0, -1).map((_, c) => rows.map((r) => (c === 6 ? new Date(String(r[c])) : r[c])));
          await client.query("BEGIN");
          const { rowCount } = await client.query(sql, [...columns, rows.map(() => createdAt)]);
          inserted += rowCount ?? 0; // added after the await: the sessions run interleaved
          await client.query("COMMIT");
        }
      }),
    );
    const ms = performance.now() - t0;
    await first.query(`DROP TABLE "BaselineEvent"`);
    return { ms, inserted };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Push-latency subscriber

function balanceSubscriber(client: WsClient) {
  const byVersion = new Map<number, Balance & { at: number }>();
  const waiters = new Map<number, (m: Balance & { at: number }) => void>();
  let last: (Balance & { at: number }) | null = null;
  let failure: Error | null = null;
  let anyWaiter: (() => void) | null = null;
  const fail = (err: Error) => {
    failure = err;
    anyWaiter?.();
    for (const w of waiters.values()) w(null as never);
  };
  const unsubscribe = client.subscribe<{ customerMeterUpdated: Balance }>(
    { query: BALANCE_SUBSCRIPTION },
    {
      next: (result) => {
        const at = performance.now();
        if (result.errors?.length || !result.data) return fail(new BenchFailure(`subscription error: ${JSON.stringify(result.errors ?? result)}`));
        const m = { ...result.data.customerMeterUpdated, at };
        last = m;
        anyWaiter?.();
        const w = waiters.get(m.version);
        if (w) {
          waiters.delete(m.version);
          w(m);
        } else byVersion.set(m.version, m);
      },
      error: (err) => fail(new BenchFailure(`subscription failed: ${err instanceof Error ? err.message : JSON.stringify(err)}`)),
      complete: () => fail(new BenchFailure("subscription completed unexpectedly")),
    },
  );
  return {
    get last() {
      return last;
    },
    /** Resolves when any message arrived (true) or after `ms` (false). */
    any(ms: number): Promise<boolean> {
      if (last || failure) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          anyWaiter = null;
          resolve(false);
        }, ms);
        anyWaiter = () => {
          clearTimeout(timer);
          anyWaiter = null;
          resolve(true);
        };
      });
    },
    /** The message that carries `version` (older ones are dropped), or a failure after `ms`. */
    async version(version: number, ms: number): Promise<Balance & { at: number }> {
      for (const v of byVersion.keys()) if (v < version) byVersion.delete(v);
      const ready = byVersion.get(version);
      if (ready) {
        byVersion.delete(version);
        return ready;
      }
      if (failure) throw failure;
      const m = await withTimeout(
        new Promise<Balance & { at: number }>((resolve) => waiters.set(version, resolve)),
        ms,
        `subscription message with version ${version}`,
      ).finally(() => waiters.delete(version));
      if (failure) throw failure;
      return m;
    },
    get failure() {
      return failure;
    },
    close: unsubscribe,
  };
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const tempDir = mkdtempSync(path.join(tmpdir(), "credits-bench-"));
  const databaseUrl = config.databaseUrl ?? `file:${path.join(tempDir, "service.db")}`;
  const engine = /^postgres(ql)?:\/\//.test(databaseUrl) ? "PostgreSQL" : "SQLite";
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => rmSync(tempDir, { recursive: true, force: true })];
  const hardStop = setTimeout(() => {
    console.error(`bench: aborted after ${OVERALL_TIMEOUT_MS / 60_000} minutes`);
    rmSync(tempDir, { recursive: true, force: true });
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  hardStop.unref();
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

  try {
    console.log(
      `parameters: events=${config.events} customers=${config.customers} batch=${config.batch} concurrency=${config.concurrency} ` +
        `latency samples=${config.latencySamples} seed=${config.seed} engine=${engine}${config.databaseUrl ? "" : " (temp file)"} ` +
        `pubsub=${config.redisUrl ? "redis" : "in-process"} grant units=${config.grantUnits} NODE_ENV=${process.env.NODE_ENV ?? "(unset)"}`,
    );

    // --- setup: database, app, organization ---
    log("migrating and starting the server");
    await migrateDeploy(databaseUrl);
    const db: Db = await createPrisma(databaseUrl);
    cleanups.unshift(() => db.$disconnect());
    const { pubsub, close: closePubSub } = createAppPubSub(config.redisUrl);
    cleanups.unshift(closePubSub);
    const app: App = createApp({ db, pubsub, log: createLogger("silent"), limits: UNTHROTTLED });
    const port = await app.listen(0, "127.0.0.1");
    cleanups.unshift(() => app.close());
    const { organization, token } = await createOrganization(db, "Benchmark organization");
    const url = `http://127.0.0.1:${port}/graphql`;
    // With Redis, the subscriber of phase B talks to a second node (its own database client and Redis
    // connections, in this process) while ingestion goes to the first: the push crosses nodes through Redis.
    let subscriberUrl = url;
    if (config.redisUrl) {
      const dbB: Db = await createPrisma(databaseUrl);
      cleanups.unshift(() => dbB.$disconnect());
      const pubsubB = createAppPubSub(config.redisUrl);
      cleanups.unshift(pubsubB.close);
      const nodeB: App = createApp({ db: dbB, pubsub: pubsubB.pubsub, log: createLogger("silent"), limits: UNTHROTTLED });
      subscriberUrl = `http://127.0.0.1:${await nodeB.listen(0, "127.0.0.1")}/graphql`;
      cleanups.unshift(() => nodeB.close());
    }
    const gql = graphqlClient(url, token);

    // --- setup over HTTP: customers and meters ---
    let t = performance.now();
    const customerIds: string[] = Array.from({ length: config.customers });
    await pool(config.customers, 8, async (i) => {
      const data = await gql.request<{ createCustomer: { __typename: string; id?: string; message?: string } }>(CREATE_CUSTOMER, {
        input: { email: `c${i}@bench.example`, externalId: `c${i}`, name: `Customer ${i}` },
      });
      if (data.createCustomer.__typename !== "Customer") throw new BenchFailure(`createCustomer c${i}: ${JSON.stringify(data.createCustomer)}`);
      customerIds[i] = data.createCustomer.id!;
    });
    const meterIds = {} as Record<MeterKey, string>;
    for (const k of METER_KEYS) {
      const data = await gql.request<{ createMeter: { __typename: string; id?: string } }>(CREATE_METER, { input: METERS[k].input });
      if (data.createMeter.__typename !== "Meter") throw new BenchFailure(`createMeter ${k}: ${JSON.stringify(data.createMeter)}`);
      meterIds[k] = data.createMeter.id!;
    }
    log(`${config.customers} customers and ${METER_KEYS.length} meters created in ${seconds(performance.now() - t)} s`);
    if (config.grantUnits > 0) {
      t = performance.now();
      await pool(config.customers * METER_KEYS.length, 8, async (n) => {
        const input = { customerId: customerIds[Math.floor(n / METER_KEYS.length)], meterId: meterIds[METER_KEYS[n % METER_KEYS.length]], units: String(config.grantUnits) };
        const data = await gql.request<{ grantCredits: { __typename: string } }>(GRANT, { input });
        if (data.grantCredits.__typename !== "CreditGrant") throw new BenchFailure(`grantCredits: ${JSON.stringify(data.grantCredits)}`);
      });
      log(`${config.customers * METER_KEYS.length} grants of ${config.grantUnits} units made in ${seconds(performance.now() - t)} s`);
    }
    const granted = BigInt(config.grantUnits) * UNIT_SCALE;

    // --- workload, serialized before timing ---
    t = performance.now();
    const events = generateEvents(config.events, config.customers, config.seed);
    const bodies: { body: string; size: number }[] = [];
    for (let i = 0; i < events.length; i += config.batch) {
      const slice = events.slice(i, i + config.batch);
      bodies.push({ body: JSON.stringify({ query: INGEST, variables: { events: slice.map(eventInput) } }), size: slice.length });
    }
    const expected = expectedBalances(events, config.batch);
    const payloadBytes = bodies.reduce((s, b) => s + Buffer.byteLength(b.body), 0);
    log(`${events.length} events in ${bodies.length} request bodies (${(payloadBytes / 1e6).toFixed(1)} MB) built in ${seconds(performance.now() - t)} s`);

    // --- phase A: throughput through GraphQL ---
    log(`phase A: ingesting with ${config.concurrency} requests in flight`);
    const batchMs: number[] = Array.from({ length: bodies.length });
    const profiler = config.cpuProfile ? await startCpuProfile() : null;
    const a0 = performance.now();
    await pool(bodies.length, config.concurrency, async (i) => {
      const s = performance.now();
      const text = await gql.post(bodies[i].body);
      batchMs[i] = performance.now() - s;
      checkIngest(text, bodies[i].size, `batch ${i}`);
    });
    const ingestMs = performance.now() - a0;
    if (profiler) log(`phase A CPU profile written to ${await profiler.stop(config.cpuProfile!)}`);

    // Every balance row must hold exactly what the generated events add up to (and the grant), at most one
    // version per batch (plus one for the grant).
    const stored = await db.event.count({ where: { organizationId: organization.id } });
    if (stored !== config.events) throw new BenchFailure(`expected ${config.events} stored events, found ${stored}`);
    const rows = await db.customerMeter.findMany({
      where: { organizationId: organization.id },
      select: { customerId: true, meterId: true, consumedUnits: true, creditedUnits: true, balance: true, version: true },
    });
    const customerIndex = new Map(customerIds.map((id, i) => [id, i]));
    const meterKeyOf = new Map(METER_KEYS.map((k) => [meterIds[k], k]));
    // With grants every (customer, meter) has a row; without, only those the events touched.
    const expectedRows = granted > 0n ? config.customers * METER_KEYS.length : expected.size;
    if (rows.length !== expectedRows) throw new BenchFailure(`expected ${expectedRows} balance rows, found ${rows.length}`);
    // What the grants still hold per row: the burn-down must leave exactly the positive part of the balance.
    const remaining = new Map(
      (await db.creditGrant.groupBy({ by: ["customerId", "meterId"], where: { organizationId: organization.id }, _sum: { remainingUnits: true } })).map((g) => [
        `${g.customerId}:${g.meterId}`,
        g._sum.remainingUnits ?? 0n,
      ]),
    );
    for (const r of rows) {
      const k = `${customerIndex.get(r.customerId)}:${meterKeyOf.get(r.meterId)}`;
      const x = expected.get(k) ?? { consumed: 0n, versions: 0, lastBatch: -1 };
      const consumed = BigInt(r.consumedUnits);
      const balance = BigInt(r.balance);
      const maxVersion = x.versions + (granted > 0n ? 1 : 0);
      const left = remaining.get(`${r.customerId}:${r.meterId}`) ?? 0n;
      if (
        consumed !== x.consumed ||
        BigInt(r.creditedUnits) !== granted ||
        balance !== granted - consumed ||
        left !== (balance > 0n ? balance : 0n) ||
        Number(r.version) < 1 ||
        Number(r.version) > maxVersion
      ) {
        throw new BenchFailure(
          `balance row ${k}: consumed ${consumed} credited ${r.creditedUnits} balance ${balance} grants left ${left} version ${r.version}, ` +
            `expected consumed ${x.consumed} credited ${granted} version 1 to ${maxVersion}`,
        );
      }
    }
    // The same through the API, as decimal strings, for a few customers.
    for (let c = 0; c < Math.min(10, config.customers); c++) {
      const data = await gql.request<{ customerMeters: { edges: { node: { meter: { id: string }; consumedUnits: string; balance: string } }[] } }>(
        CUSTOMER_METERS,
        { c: `c${c}` },
      );
      const got = new Map(data.customerMeters.edges.map((e) => [meterKeyOf.get(e.node.meter.id), e.node]));
      for (const k of METER_KEYS) {
        const x = expected.get(`${c}:${k}`);
        const node = got.get(k);
        const consumed = x?.consumed ?? 0n;
        const want = x || granted > 0n ? { consumedUnits: decimalText(consumed, UNIT_DECIMALS), balance: decimalText(granted - consumed, UNIT_DECIMALS) } : undefined;
        if (node?.consumedUnits !== want?.consumedUnits || node?.balance !== want?.balance) {
          throw new BenchFailure(`customerMeters c${c} ${k}: got ${JSON.stringify(node)}, expected ${JSON.stringify(want)}`);
        }
      }
    }
    log(`phase A done and verified (${rows.length} balance rows exact)`);

    // --- phase B: push latency ---
    log(`phase B: ${config.latencySamples} sequential single-event ingests for c0, timed to the subscription message`);
    let wsClosed: string | null = null;
    const ws = createWsClient({
      url: subscriberUrl.replace("http", "ws"),
      webSocketImpl: WebSocket,
      lazy: false,
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${token}` },
      on: { closed: (e) => void (wsClosed = `${(e as { code?: number }).code} ${(e as { reason?: string }).reason ?? ""}`) },
      onNonLazyError: (err) => void (wsClosed = String(err)),
    });
    cleanups.unshift(() => ws.dispose());
    const sub = balanceSubscriber(ws);
    cleanups.unshift(() => sub.close());
    const single = (externalId: string) =>
      JSON.stringify({ query: INGEST, variables: { events: [{ name: "api.request", externalCustomerId: "c0", externalId, metadata: { route: "/v1/latency" } }] } });

    // Warm up until the subscription is live: a message can only arrive once the server listens.
    const deadline = performance.now() + 15_000;
    for (let w = 0; !sub.last; w++) {
      if (sub.failure) throw sub.failure;
      if (performance.now() > deadline) throw new BenchFailure(`subscription not established within 15 s${wsClosed ? ` (socket: ${wsClosed})` : ""}`);
      checkIngest(await gql.post(single(`warmup${w}`)), 1, `warm-up ${w}`);
      await sub.any(250);
    }
    const current = await gql.request<{ customerMeter: Balance | null }>(CUSTOMER_METER, { c: "c0", m: meterIds.requests });
    if (!current.customerMeter) throw new BenchFailure("c0 has no requests balance after the warm-up");
    let version = current.customerMeter.version;
    await sub.version(version, 5000); // every warm-up message delivered: from now on, one message per request

    const responseToPush: number[] = [];
    const requestToPush: number[] = [];
    const latencyBodies = Array.from({ length: config.latencySamples }, (_, k) => single(`latency${k}`));
    let lastPushed: Balance | null = null;
    for (let k = 0; k < latencyBodies.length; k++) {
      version++;
      const t0 = performance.now();
      const text = await gql.post(latencyBodies[k]);
      const t1 = performance.now();
      checkIngest(text, 1, `latency sample ${k}`);
      const m = await sub.version(version, 5000);
      responseToPush.push(m.at - t1);
      requestToPush.push(m.at - t0);
      lastPushed = m;
    }
    await sleep(50); // nothing more may arrive: a stray message would mean an extra balance change
    const final = await gql.request<{ customerMeter: Balance | null }>(CUSTOMER_METER, { c: "c0", m: meterIds.requests });
    // The last message received is the one for the last request (no stray change after it)…
    const noStray = !!lastPushed && sub.last?.version === lastPushed.version;
    const sameAsQuery =
      !!final.customerMeter &&
      !!lastPushed &&
      final.customerMeter.balance === lastPushed.balance &&
      final.customerMeter.consumedUnits === lastPushed.consumedUnits &&
      final.customerMeter.version === lastPushed.version;
    const finalCheck = noStray && sameAsQuery; // …and shows what a query reads
    log(`phase B done (final pushed balance ${lastPushed?.balance}, queried ${final.customerMeter?.balance})`);

    // --- phase C: baseline ---
    let baseline: { ms: number; inserted: number } | null = null;
    let baselineAllIndexes: { ms: number; inserted: number } | null = null;
    let pgBaseline: { ms: number; inserted: number } | null = null;
    if (engine === "PostgreSQL") {
      log(`phase C: baseline, raw node-postgres UNNEST inserts into a copy of the Event table, ${config.concurrency} sessions`);
      pgBaseline = await runPgBaseline(databaseUrl, buildBaseline(events, config.batch, organization.id, customerIds), config.concurrency);
      if (pgBaseline.inserted !== config.events) throw new BenchFailure(`baseline inserted ${pgBaseline.inserted} of ${config.events} rows`);
    }
    if (engine === "SQLite") {
      log("phase C: baseline, raw libsql multi-row inserts into a separate SQLite file");
      const batches = buildBaseline(events, config.batch, organization.id, customerIds);
      baseline = await runBaseline(path.join(tempDir, "baseline.db"), batches, false);
      if (baseline.inserted !== config.events) throw new BenchFailure(`baseline inserted ${baseline.inserted} of ${config.events} rows`);
      baselineAllIndexes = await runBaseline(path.join(tempDir, "baseline-all-indexes.db"), batches, true);
      if (baselineAllIndexes.inserted !== config.events) throw new BenchFailure(`baseline (all indexes) inserted ${baselineAllIndexes.inserted} of ${config.events} rows`);
    }

    // --- report ---
    const rate = (ms: number) => config.events / (ms / 1000);
    console.log(
      `ingest (GraphQL over HTTP, ${engine}): ${config.events} events in ${seconds(ingestMs)} s = ${thousands(rate(ingestMs))} events/s ` +
        `(${bodies.length} request${bodies.length === 1 ? "" : "s"}; per request p50 ${millis(percentile(batchMs, 50))} ms p99 ${millis(percentile(batchMs, 99))} ms)`,
    );
    if (baseline && baselineAllIndexes) {
      console.log(`baseline (raw libsql multi-row insert, events only): ${config.events} events in ${seconds(baseline.ms)} s = ${thousands(rate(baseline.ms))} events/s`);
      console.log(
        `baseline + the Event table's 3 secondary indexes: ${config.events} events in ${seconds(baselineAllIndexes.ms)} s = ${thousands(rate(baselineAllIndexes.ms))} events/s`,
      );
      console.log(`ratio service/baseline: ${(baseline.ms / ingestMs).toFixed(2)} (with all indexes: ${(baselineAllIndexes.ms / ingestMs).toFixed(2)})`);
    } else if (pgBaseline) {
      console.log(`baseline (raw node-postgres UNNEST insert into a copy of Event with its indexes, ${config.concurrency} sessions): ${config.events} events in ${seconds(pgBaseline.ms)} s = ${thousands(rate(pgBaseline.ms))} events/s`);
      console.log(`ratio service/baseline: ${(pgBaseline.ms / ingestMs).toFixed(2)}`);
    }
    const n = responseToPush.length;
    console.log(
      `push latency${config.redisUrl ? " across nodes (ingest on node A, subscriber on node B, via Redis)" : ""} (n=${n}): response→push p50 ${millis(percentile(responseToPush, 50))} ms p99 ${millis(percentile(responseToPush, 99))} ms; ` +
        `request→push p50 ${millis(percentile(requestToPush, 50))} ms p99 ${millis(percentile(requestToPush, 99))} ms`,
    );
    console.log(
      `final balance check: ${finalCheck ? "OK" : "MISMATCH"} (pushed ${JSON.stringify(lastPushed && { balance: lastPushed.balance, consumedUnits: lastPushed.consumedUnits, version: lastPushed.version })}, ` +
        `queried ${JSON.stringify(final.customerMeter)})`,
    );
    return finalCheck ? 0 : 1;
  } catch (err) {
    console.error(`bench: FAILED: ${err instanceof Error ? (err instanceof BenchFailure ? err.message : err.stack) : String(err)}`);
    return 1;
  } finally {
    for (const cleanup of cleanups) {
      try {
        await withTimeout(Promise.resolve().then(cleanup), 10_000, "cleanup");
      } catch (err) {
        console.error(`bench: cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    clearTimeout(hardStop);
  }
}

process.exit(await main());
