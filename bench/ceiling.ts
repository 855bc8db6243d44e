// How close PostgreSQL ingest can come to the bench's raw-pg floor at all (README, Performance): the floor's
// statements (events with their indexes, balance changes as upserts) against the least a ledger must write
// for the same events, by the same raw driver with no HTTP, GraphQL, validation or meter matching: the events,
// the balance rows read and locked, their update, and one ledger row per balance per transaction (the design's
// "every change to a balance is an entry"). Two sessions each, 1,000-event transactions over 1,000 customers
// × 3 meters, alternated floor, ceiling, ceiling, floor… in one process; the PostgreSQL server's CPU per event
// beside each (when it runs on this machine).
//
//   npx tsx bench/ceiling.ts <postgresql url> [transactions per run: 40] [pairs of runs: 2]
//
// The database gets the service's migrations and throw-away copies of its tables (dropped at the end).
import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrateDeploy } from "../src/db/migrate.ts";
import { postmasterPid } from "./floor-raw.ts";
import { treeCpuMicros } from "./harness.ts";

const [url, transactionsArg, pairsArg] = process.argv.slice(2);
if (!url?.startsWith("postgres")) throw new Error("usage: npx tsx bench/ceiling.ts <postgresql url> [transactions per run] [pairs of runs]");
const TRANSACTIONS = Number(transactionsArg ?? 40);
const PAIRS = Number(pairsArg ?? 2);
const CUSTOMERS = 1_000;
const METERS = 3;
const BATCH = 1_000;
const UNIT = 1_000_000n;
const ORGANIZATION = "ceiling-org";

const newId = () => `c${randomBytes(12).toString("hex")}`;
let serial = 0;

await migrateDeploy(url);
const admin = new pg.Client({ connectionString: url });
await admin.connect();
const drop = `DROP TABLE IF EXISTS "CeilingEvent", "CeilingBalance", "CeilingLedger", "CeilingFloorBalance"`;
await admin.query(drop);
await admin.query(`CREATE TABLE "CeilingEvent" (LIKE "Event" INCLUDING ALL)`);
await admin.query(`CREATE TABLE "CeilingBalance" (LIKE "CustomerMeter" INCLUDING ALL)`);
await admin.query(`CREATE TABLE "CeilingLedger" (LIKE "LedgerEntry" INCLUDING ALL)`);
await admin.query(`CREATE TABLE "CeilingFloorBalance" ("customerId" TEXT NOT NULL, "meterId" TEXT NOT NULL, "consumed" BIGINT NOT NULL, PRIMARY KEY ("customerId", "meterId"))`);

const customers = Array.from({ length: CUSTOMERS }, (_, i) => `customer${i}`);
const meters = Array.from({ length: METERS }, (_, i) => `meter${i}`);
/** "customer meter" → the balance row's id */
const balanceIds = new Map<string, string>();
{
  const ids: string[] = [];
  const of: string[][] = [[], []];
  for (const c of customers) {
    for (const m of meters) {
      const id = newId();
      balanceIds.set(`${c} ${m}`, id);
      ids.push(id);
      of[0].push(c);
      of[1].push(m);
    }
  }
  await admin.query(`INSERT INTO "CeilingBalance" ("id", "organizationId", "customerId", "meterId", "updatedAt") SELECT i, $4, c, m, now() FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(i, c, m)`, [ids, of[0], of[1], ORGANIZATION]);
  await admin.query(`INSERT INTO "CeilingFloorBalance" SELECT c, m, 0 FROM UNNEST($1::text[], $2::text[]) AS u(c, m)`, [of[0], of[1]]);
  await admin.query(`ANALYZE "CeilingBalance"; ANALYZE "CeilingFloorBalance"`);
}

interface Transaction {
  events: { id: string; customer: string; externalId: string; at: Date }[];
  /** micro-units per "customer meter", in key order (the order locks are taken in) */
  usage: [string, bigint][];
}

function transaction(): Transaction {
  const events: Transaction["events"] = [];
  const usage = new Map<string, bigint>();
  for (let i = 0; i < BATCH; i++) {
    const customer = customers[Math.floor(Math.random() * CUSTOMERS)];
    const meter = meters[Math.floor(Math.random() * METERS)];
    events.push({ id: newId(), customer, externalId: `e${++serial}`, at: new Date() });
    const key = `${customer} ${meter}`;
    usage.set(key, (usage.get(key) ?? 0n) + UNIT);
  }
  return { events, usage: [...usage].sort(([a], [b]) => (a < b ? -1 : 1)) };
}

const INSERT_EVENTS =
  `INSERT INTO "CeilingEvent" ("id", "organizationId", "name", "customerId", "externalCustomerId", "externalId", "timestamp", "metadata", "createdAt") ` +
  `SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamp[], $8::jsonb[], $9::timestamp[]) ON CONFLICT ("organizationId", "externalId") DO NOTHING`;

function insertEvents(client: pg.Client, t: Transaction) {
  const e = t.events;
  const now = new Date();
  return client.query(INSERT_EVENTS, [e.map((x) => x.id), e.map(() => ORGANIZATION), e.map(() => "api.request"), e.map((x) => x.customer), e.map((x) => x.customer), e.map((x) => x.externalId), e.map((x) => x.at), e.map(() => '{"tokens": 12}'), e.map(() => now)]);
}

/** What the bench's floor writes (bench/floor-raw.ts). */
async function floor(client: pg.Client, t: Transaction): Promise<void> {
  await client.query("BEGIN");
  await insertEvents(client, t);
  await client.query(
    `INSERT INTO "CeilingFloorBalance" SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) ON CONFLICT ("customerId", "meterId") DO UPDATE SET "consumed" = "CeilingFloorBalance"."consumed" + excluded."consumed"`,
    [t.usage.map(([k]) => k.split(" ")[0]), t.usage.map(([k]) => k.split(" ")[1]), t.usage.map(([, v]) => v.toString())],
  );
  await client.query("COMMIT");
}

/** The least a ledger writes for the same events: the balance rows locked, updated, and one entry each. */
async function ceiling(client: pg.Client, t: Transaction): Promise<void> {
  await client.query("BEGIN");
  await insertEvents(client, t);
  const { rows } = await client.query<{ id: string; consumedUnits: string; creditedUnits: string; aggCount: string; aggSum: string; version: number; ledgerSequence: string }>(
    `SELECT "id", "consumedUnits", "creditedUnits", "aggCount", "aggSum", "version", "ledgerSequence" FROM "CeilingBalance" WHERE "id" = ANY($1::text[]) ORDER BY "id" FOR UPDATE`,
    [t.usage.map(([k]) => balanceIds.get(k)!)],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  const now = new Date();
  const update: string[][] = [[], [], [], [], [], [], []];
  const ledger: string[][] = [[], [], [], [], [], [], []];
  for (const [key, used] of t.usage) {
    const row = byId.get(balanceIds.get(key)!)!;
    const consumed = BigInt(row.consumedUnits) + used;
    const balance = BigInt(row.creditedUnits) - consumed;
    const sequence = BigInt(row.ledgerSequence) + 1n;
    const [customer, meter] = key.split(" ");
    [row.id, consumed, balance, BigInt(row.aggCount) + used / UNIT, BigInt(row.aggSum) + used, row.version + 1, sequence].forEach((v, i) => update[i].push(String(v)));
    [newId(), customer, meter, -used, balance, sequence, used / UNIT].forEach((v, i) => ledger[i].push(String(v)));
  }
  await client.query(
    `UPDATE "CeilingBalance" AS t SET "consumedUnits" = r.consumed, "balance" = r.balance, "aggCount" = r.count, "aggSum" = r.sum, "version" = r.version, "ledgerSequence" = r.sequence, "ledgerAt" = $8, "updatedAt" = $8 ` +
      `FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::int[], $7::bigint[]) AS r(id, consumed, balance, count, sum, version, sequence) WHERE t."id" = r.id`,
    [...update, now],
  );
  await client.query(
    `INSERT INTO "CeilingLedger" ("id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "sequence", "eventCount", "createdAt") ` +
      `SELECT id, $8, customer, meter, 'USAGE', units, after, $9, sequence, events, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::int[]) AS r(id, customer, meter, units, after, sequence, events)`,
    [...ledger, ORGANIZATION, now],
  );
  await client.query("COMMIT");
}

const postmaster = await postmasterPid(url);

async function run(kind: "floor" | "ceiling"): Promise<{ kind: string; eventsPerSecond: number; clientMicros: number; serverMicros: number | null }> {
  const work = Array.from({ length: TRANSACTIONS }, transaction);
  const sessions = await Promise.all(
    [0, 1].map(async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let next = 0;
  const cpu = process.cpuUsage();
  const server = postmaster === null ? null : treeCpuMicros(postmaster);
  const started = performance.now();
  await Promise.all(sessions.map(async (s) => {
    while (next < work.length) await (kind === "floor" ? floor : ceiling)(s, work[next++]);
  }));
  const ms = performance.now() - started;
  const serverAfter = postmaster === null ? null : treeCpuMicros(postmaster); // before the sessions end
  const used = process.cpuUsage(cpu);
  await Promise.all(sessions.map((s) => s.end()));
  const events = TRANSACTIONS * BATCH;
  return {
    kind,
    eventsPerSecond: events / (ms / 1000),
    clientMicros: (used.user + used.system) / events,
    serverMicros: server === null || serverAfter === null ? null : (serverAfter - server) / events,
  };
}

try {
  await run("floor"); // warm-up: caches, plans, the tables' first pages
  await run("ceiling");
  const runs: Awaited<ReturnType<typeof run>>[] = [];
  for (let pair = 0; pair < PAIRS; pair++) {
    for (const kind of pair % 2 ? (["ceiling", "floor"] as const) : (["floor", "ceiling"] as const)) {
      const r = await run(kind);
      runs.push(r);
      console.log(`${r.kind.padEnd(8)} ${Math.round(r.eventsPerSecond).toLocaleString("en-US").padStart(7)} events/s   CPU per event: this process ${r.clientMicros.toFixed(1)} µs, PostgreSQL ${r.serverMicros?.toFixed(1) ?? "?"} µs`);
    }
  }
  const mean = (kind: string) => runs.filter((r) => r.kind === kind).reduce((sum, r) => sum + r.eventsPerSecond, 0) / PAIRS;
  console.log(`ceiling / floor: ${(mean("ceiling") / mean("floor")).toFixed(2)}× (the most a service writing a ledger could reach against the floor, with none of its own work)`);
} finally {
  await admin.query(drop);
  await admin.end();
}
