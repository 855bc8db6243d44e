// The ingest floor of `npm run bench`: the same event rows the service stored, written by the raw driver in
// transactions of one batch each (1,000 rows by default): the events into a table with the Event table's own
// definition and indexes (its unique index included), and the batch's balance changes as upserts. No HTTP,
// no GraphQL, no validation, no ledger, no push. SQLite: @libsql/client on a separate file, one connection
// (SQLite has one writer). PostgreSQL: node-postgres, UNNEST statements, as many sessions as the service had
// ingest requests in flight, into copies of the tables in the service's database.
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createClient as createLibsqlClient, type InValue } from "@libsql/client";
import Database, { type Statement } from "libsql";
import pg from "pg";
import { procStatFields } from "./harness.ts";
import { orderedId } from "../src/domain/ids.ts";
import { sqliteIsoText } from "../src/db/sql.ts"; // how the service stores a DateTime
import type { BenchEvent } from "./workload.ts";

export interface FloorResult {
  ms: number;
  events: number;
  balanceRows: number;
  /** PostgreSQL: what `measure` returned right after the timed work, its sessions still open… */
  measured?: number | null;
  /** …and right before it (after the tables were made and the warm-up written) */
  measuredAtStart?: number | null;
}

const EVENT_COLUMNS = ["id", "organizationId", "name", "customerId", "externalCustomerId", "externalId", "timestamp", "metadata", "createdAt"] as const;
const ROWS_PER_STATEMENT = 400; // the service's own chunk size on SQLite (src/db/sql.ts)

interface Prepared {
  /** the event rows without createdAt (the batch's "now", added when written) */
  events: { id: string; name: string; customerId: string; externalCustomerId: string; externalId: string; timestamp: string; metadata: string }[];
  /** consumed micro-units per balance in this batch: added (COUNT, SUM) or the largest (MAX) */
  added: Map<string, bigint>;
  largest: Map<string, bigint>;
  /** events per balance in this batch (the balance's aggregation count and its ledger entry's event count) */
  counts: Map<string, number>;
}

/** Rows and per-batch balance changes, built before timing (ids included) so only writing is measured. */
function prepare(events: BenchEvent[], batch: number, customerIds: string[], meterIds: Record<string, string>): Prepared[] {
  const out: Prepared[] = [];
  for (let i = 0; i < events.length; i += batch) {
    const slice = events.slice(i, i + batch);
    const p: Prepared = { events: [], added: new Map(), largest: new Map(), counts: new Map() };
    for (const e of slice) {
      p.events.push({
        id: orderedId(),
        name: e.name,
        customerId: customerIds[e.customer],
        externalCustomerId: `c${e.customer}`,
        externalId: e.externalId,
        timestamp: e.timestamp,
        metadata: JSON.stringify(e.metadata),
      });
      const key = `${customerIds[e.customer]} ${meterIds[e.meter]}`;
      p.counts.set(key, (p.counts.get(key) ?? 0) + 1);
      if (e.meter === "storage") {
        const was = p.largest.get(key);
        if (was === undefined || e.micro > was) p.largest.set(key, e.micro);
      } else p.added.set(key, (p.added.get(key) ?? 0n) + e.micro);
    }
    out.push(p);
  }
  return out;
}


/**
 * What a floor writes besides the events. `upserts`: each balance's change as an upsert into a three-column
 * table (the floor of the bench's first eight sessions). `ledger`: the same rows the service writes, in copies
 * of its own tables: each balance row (the CustomerMeter table's definition and indexes; created at the
 * customer's first use of the meter, then its consumption, balance, aggregation, version and entry number
 * updated) and one ledger entry per balance per transaction (the LedgerEntry table's definition and indexes).
 */
export type FloorRows = "upserts" | "ledger";

/** Events written before the timed ones, as the service's warm-up (the bench's warm-up customers: their own rows). */
export interface FloorWarmUp {
  events: BenchEvent[];
  customerIds: string[];
}

let ledgerFloorRuns = 0;

/** SQLite: `serviceDbFile` lends the tables' definitions and indexes; the floor writes to its own file. */
export async function sqliteFloor(
  serviceDbFile: string,
  dir: string,
  organizationId: string,
  events: BenchEvent[],
  warm: FloorWarmUp,
  batch: number,
  customerIds: string[],
  meterIds: Record<string, string>,
  rows: FloorRows,
): Promise<FloorResult> {
  const tables = rows === "ledger" ? ["Event", "CustomerMeter", "LedgerEntry"] : ["Event"];
  const source = createLibsqlClient({ url: `file:${serviceDbFile}` });
  const ddl = (
    await source.execute(`SELECT "sql" FROM sqlite_master WHERE "tbl_name" IN (${tables.map((t) => `'${t}'`).join(", ")}) AND "sql" IS NOT NULL ORDER BY "type" DESC`)
  ).rows.map((r) => String(r.sql));
  source.close();
  if (!ddl.some((s) => /UNIQUE/i.test(s))) throw new Error("the service's Event table has no unique index to copy");
  // Without their foreign keys: the tables they reference are not in the floor's file (on PostgreSQL, LIKE
  // copies none either).
  const tablesDdl = ddl.map((s) => s.replace(/,\s*CONSTRAINT "[^"]+" FOREIGN KEY \([^)]*\) REFERENCES "[^"]+" \([^)]*\)(\s+ON (DELETE|UPDATE) (CASCADE|RESTRICT|SET NULL|SET DEFAULT|NO ACTION))*/g, ""));
  const prepared = prepare(events, batch, customerIds, meterIds);
  const warmUp = prepare(warm.events, batch, warm.customerIds, meterIds);
  // a file of its own for every run (a row may run its floor more than once)
  if (rows === "ledger") return sqliteLedgerFloor(path.join(dir, `floor-ledger-${++ledgerFloorRuns}.db`), tablesDdl, organizationId, warmUp, prepared);
  const client = createLibsqlClient({ url: `file:${path.join(dir, "floor.db")}` });
  try {
    await client.execute("PRAGMA journal_mode=WAL"); // as the service's connection (src/db/libsql.ts)
    for (const s of tablesDdl) await client.execute(s);
    await client.execute(`CREATE TABLE "Balance" ("customerId" TEXT NOT NULL, "meterId" TEXT NOT NULL, "consumed" INTEGER NOT NULL, PRIMARY KEY ("customerId", "meterId"))`);
    const group = `(${EVENT_COLUMNS.map(() => "?").join(", ")})`;
    const insertSql = new Map<number, string>();
    const insertFor = (n: number) => {
      let s = insertSql.get(n);
      if (!s) {
        s = `INSERT INTO "Event" (${EVENT_COLUMNS.map((c) => `"${c}"`).join(", ")}) VALUES ${Array(n).fill(group).join(", ")} ON CONFLICT ("organizationId", "externalId") DO NOTHING`;
        insertSql.set(n, s);
      }
      return s;
    };
    const upsertFor = (n: number, max: boolean) =>
      `INSERT INTO "Balance" ("customerId", "meterId", "consumed") VALUES ${Array(n).fill("(?, ?, ?)").join(", ")} ` +
      `ON CONFLICT ("customerId", "meterId") DO UPDATE SET "consumed" = ${max ? `max("consumed", excluded."consumed")` : `"consumed" + excluded."consumed"`}`;
    let written = 0;
    let balanceRows = 0;
    const writeBatches = async (batches: Prepared[]) => {
      for (const p of batches) {
        const createdAt = sqliteIsoText(new Date().toISOString());
        const tx = await client.transaction("write");
        try {
          for (let j = 0; j < p.events.length; j += ROWS_PER_STATEMENT) {
            const chunk = p.events.slice(j, j + ROWS_PER_STATEMENT);
            const args: InValue[] = [];
            for (const e of chunk) args.push(e.id, organizationId, e.name, e.customerId, e.externalCustomerId, e.externalId, sqliteIsoText(e.timestamp), e.metadata, createdAt);
            written += (await tx.execute({ sql: insertFor(chunk.length), args })).rowsAffected;
          }
          for (const [map, max] of [[p.added, false], [p.largest, true]] as const) {
            const entries = [...map];
            for (let j = 0; j < entries.length; j += ROWS_PER_STATEMENT) {
              const chunk = entries.slice(j, j + ROWS_PER_STATEMENT);
              const args: InValue[] = [];
              for (const [key, micro] of chunk) args.push(...key.split(" "), micro);
              balanceRows += (await tx.execute({ sql: upsertFor(chunk.length, max), args })).rowsAffected;
            }
          }
          await tx.commit();
        } finally {
          tx.close();
        }
      }
    };
    await writeBatches(warmUp);
    written = balanceRows = 0;
    const t0 = performance.now();
    await writeBatches(prepared);
    return { ms: performance.now() - t0, events: written, balanceRows };
  } finally {
    client.close();
  }
}

const BALANCE_COLUMNS = ["id", "organizationId", "customerId", "meterId", "consumedUnits", "creditedUnits", "balance", "aggCount", "aggSum", "aggMax", "version", "ledgerSequence", "ledgerAt", "updatedAt"] as const;
const LEDGER_COLUMNS = ["id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "sequence", "eventCount", "createdAt"] as const;
const placeholders = (columns: number, rows: number) => Array(rows).fill(`(${Array(columns).fill("?").join(", ")})`).join(", ");
const quoted = (columns: readonly string[]) => columns.map((c) => `"${c}"`).join(", ");

/**
 * SQLite, `ledger` rows: on the synchronous `libsql` driver with statements prepared once (as the service's
 * hot path), one write transaction per batch: the events, then per chunk of its balances their rows read (one
 * writer, so what is read stays current), their new values worked out here and written back as upserts
 * (inserted at first use), and one ledger entry each.
 */
function sqliteLedgerFloor(file: string, ddl: string[], organizationId: string, warmUp: Prepared[], prepared: Prepared[]): FloorResult {
  const db = new Database(file);
  try {
    db.defaultSafeIntegers(true);
    db.exec("PRAGMA journal_mode=WAL"); // as the service's connection (src/db/libsql.ts)
    for (const s of ddl) db.exec(s);
    const statements = new Map<string, Statement>();
    const statement = (kind: string, rows: number, text: () => string) => {
      const key = `${kind} ${rows}`;
      let st = statements.get(key);
      if (!st) statements.set(key, (st = db.prepare(text())));
      return st;
    };
    const update = BALANCE_COLUMNS.slice(4).map((c) => `"${c}" = excluded."${c}"`).join(", ");
    let written = 0;
    let balanceRows = 0;
    const writeBatches = (batches: Prepared[]) => {
      for (const p of batches) {
        const now = sqliteIsoText(new Date().toISOString());
        db.exec("BEGIN IMMEDIATE");
        for (let j = 0; j < p.events.length; j += ROWS_PER_STATEMENT) {
          const chunk = p.events.slice(j, j + ROWS_PER_STATEMENT);
          const args: unknown[] = [];
          for (const e of chunk) args.push(e.id, organizationId, e.name, e.customerId, e.externalCustomerId, e.externalId, sqliteIsoText(e.timestamp), e.metadata, now);
          const insert = statement("events", chunk.length, () => `INSERT INTO "Event" (${quoted(EVENT_COLUMNS)}) VALUES ${placeholders(EVENT_COLUMNS.length, chunk.length)} ON CONFLICT ("organizationId", "externalId") DO NOTHING`);
          written += insert.run(...args).changes;
        }
        const keys = [...p.counts.keys()];
        for (let j = 0; j < keys.length; j += ROWS_PER_STATEMENT) {
          const chunk = keys.slice(j, j + ROWS_PER_STATEMENT);
          const pairs = chunk.map((k) => k.split(" "));
          const read = statement("read", chunk.length, () => `SELECT "customerId", "meterId", "consumedUnits", "creditedUnits", "aggCount", "aggSum", "aggMax", "version", "ledgerSequence" FROM "CustomerMeter" WHERE ("customerId", "meterId") IN (VALUES ${placeholders(2, chunk.length)})`);
          const current = new Map((read.all(...pairs.flat()) as Record<string, bigint | string | null>[]).map((r) => [`${r.customerId} ${r.meterId}`, r]));
          const balanceArgs: unknown[] = [];
          const ledgerArgs: unknown[] = [];
          for (let n = 0; n < chunk.length; n++) {
            const key = chunk[n];
            const [customerId, meterId] = pairs[n];
            const was = current.get(key);
            const count = BigInt(p.counts.get(key)!);
            const wasConsumed = (was?.consumedUnits as bigint | undefined) ?? 0n;
            const credited = (was?.creditedUnits as bigint | undefined) ?? 0n;
            const largest = p.largest.get(key);
            const added = p.added.get(key) ?? 0n;
            const wasMax = (was?.aggMax as bigint | null | undefined) ?? null;
            const aggMax = largest === undefined ? wasMax : wasMax !== null && wasMax > largest ? wasMax : largest;
            const consumed = largest === undefined ? wasConsumed + added : (aggMax as bigint);
            const balance = credited - consumed;
            const sequence = ((was?.ledgerSequence as bigint | undefined) ?? 0n) + 1n;
            balanceArgs.push(orderedId(), organizationId, customerId, meterId, consumed, credited, balance, ((was?.aggCount as bigint | undefined) ?? 0n) + count);
            balanceArgs.push(((was?.aggSum as bigint | undefined) ?? 0n) + added, aggMax, ((was?.version as bigint | undefined) ?? 0n) + 1n, sequence, now, now);
            ledgerArgs.push(orderedId(), organizationId, customerId, meterId, "USAGE", wasConsumed - consumed, balance, now, sequence, count, now);
          }
          const upsert = statement("balances", chunk.length, () => `INSERT INTO "CustomerMeter" (${quoted(BALANCE_COLUMNS)}) VALUES ${placeholders(BALANCE_COLUMNS.length, chunk.length)} ON CONFLICT ("customerId", "meterId") DO UPDATE SET ${update}`);
          balanceRows += upsert.run(...balanceArgs).changes;
          statement("ledger", chunk.length, () => `INSERT INTO "LedgerEntry" (${quoted(LEDGER_COLUMNS)}) VALUES ${placeholders(LEDGER_COLUMNS.length, chunk.length)}`).run(...ledgerArgs);
        }
        db.exec("COMMIT");
      }
    };
    writeBatches(warmUp);
    written = balanceRows = 0;
    const t0 = performance.now();
    writeBatches(prepared);
    return { ms: performance.now() - t0, events: written, balanceRows };
  } finally {
    db.close();
  }
}

/**
 * The pid of the PostgreSQL server's postmaster (the parent of a backend), when it runs on this machine, so
 * that its CPU time can be read (treeCpuMicros); null otherwise.
 */
export async function postmasterPid(databaseUrl: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    return Number(procStatFields(rows[0].pid)[1]); // the backend's parent
  } catch {
    return null;
  } finally {
    await client.end();
  }
}

/**
 * PostgreSQL, `ledger` rows of one batch in one statement: the batch's existing balance rows locked in key order
 * (`old`, which also keeps what they held), every balance upserted (inserted at first use; a MAX meter's
 * consumption is its largest value), and one ledger entry per balance from what the upsert returned. A row
 * another session creates between this statement's snapshot and its insert is missing from `old`: its
 * entry's units then count that session's usage too. Nothing reads the floor's entries.
 */
const POSTGRES_LEDGER = `WITH i AS (
  SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::int[], $7::text[]) AS i(id, customer, meter, micro, max, events, entry)
), old AS (
  SELECT b."customerId", b."meterId", b."consumedUnits" FROM "FloorMeter" b JOIN i ON b."customerId" = i.customer AND b."meterId" = i.meter
  ORDER BY b."customerId", b."meterId" FOR UPDATE OF b
), u AS (
  INSERT INTO "FloorMeter" AS b ("id", "organizationId", "customerId", "meterId", "consumedUnits", "balance", "aggCount", "aggSum", "aggMax", "version", "ledgerSequence", "ledgerAt", "updatedAt")
  SELECT i.id, $8, i.customer, i.meter, i.micro, -i.micro, i.events, CASE WHEN i.max THEN 0 ELSE i.micro END, CASE WHEN i.max THEN i.micro END, 1, 1, $9, $9
  FROM i LEFT JOIN old ON old."customerId" = i.customer AND old."meterId" = i.meter ORDER BY i.customer, i.meter
  ON CONFLICT ("customerId", "meterId") DO UPDATE SET
    "consumedUnits" = CASE WHEN excluded."aggMax" IS NULL THEN b."consumedUnits" + excluded."consumedUnits" ELSE greatest(b."consumedUnits", excluded."consumedUnits") END,
    "balance" = b."creditedUnits" - CASE WHEN excluded."aggMax" IS NULL THEN b."consumedUnits" + excluded."consumedUnits" ELSE greatest(b."consumedUnits", excluded."consumedUnits") END,
    "aggCount" = b."aggCount" + excluded."aggCount",
    "aggSum" = b."aggSum" + excluded."aggSum",
    "aggMax" = CASE WHEN excluded."aggMax" IS NULL THEN b."aggMax" ELSE greatest(b."aggMax", excluded."aggMax") END,
    "version" = b."version" + 1,
    "ledgerSequence" = b."ledgerSequence" + 1,
    "ledgerAt" = excluded."ledgerAt",
    "updatedAt" = excluded."updatedAt"
  RETURNING b."customerId", b."meterId", b."consumedUnits", b."balance", b."ledgerSequence"
)
INSERT INTO "FloorLedger" ("id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "sequence", "eventCount", "createdAt")
SELECT i.entry, $8, u."customerId", u."meterId", 'USAGE', coalesce(old."consumedUnits", 0) - u."consumedUnits", u."balance", $9, u."ledgerSequence", i.events, $9
FROM u JOIN i ON i.customer = u."customerId" AND i.meter = u."meterId" LEFT JOIN old ON old."customerId" = u."customerId" AND old."meterId" = u."meterId"`;

/** PostgreSQL: copies of the service's tables (LIKE, with their indexes) in its database (see FloorRows). */
export async function postgresFloor(
  databaseUrl: string,
  sessions: number,
  organizationId: string,
  events: BenchEvent[],
  warm: FloorWarmUp,
  batch: number,
  customerIds: string[],
  meterIds: Record<string, string>,
  rows: FloorRows,
  /** read before the sessions close: a backend's CPU time reaches its postmaster's only once it is reaped */
  measure: () => number | null = () => null,
): Promise<FloorResult> {
  const clients = await Promise.all(
    Array.from({ length: sessions }, async () => {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      return c;
    }),
  );
  const [first] = clients;
  try {
    const drop = `DROP TABLE IF EXISTS "FloorEvent", "FloorBalance", "FloorMeter", "FloorLedger"`;
    await first.query(drop);
    await first.query(`CREATE TABLE "FloorEvent" (LIKE "Event" INCLUDING DEFAULTS INCLUDING INDEXES)`);
    if (rows === "ledger") {
      await first.query(`CREATE TABLE "FloorMeter" (LIKE "CustomerMeter" INCLUDING DEFAULTS INCLUDING INDEXES)`);
      await first.query(`CREATE TABLE "FloorLedger" (LIKE "LedgerEntry" INCLUDING DEFAULTS INCLUDING INDEXES)`);
      // LIKE copies no foreign keys: the service's tables' own are added, checked on every row as the service's are.
      for (const [copy, table] of [["FloorEvent", "Event"], ["FloorMeter", "CustomerMeter"], ["FloorLedger", "LedgerEntry"]]) {
        const { rows: keys } = await first.query<{ def: string }>(`SELECT pg_get_constraintdef("oid") AS "def" FROM pg_constraint WHERE "conrelid" = $1::regclass AND "contype" = 'f'`, [`"${table}"`]);
        for (const { def } of keys) await first.query(`ALTER TABLE "${copy}" ADD ${def}`);
      }
    } else await first.query(`CREATE TABLE "FloorBalance" ("customerId" TEXT NOT NULL, "meterId" TEXT NOT NULL, "consumed" BIGINT NOT NULL, PRIMARY KEY ("customerId", "meterId"))`);
    const insert =
      `INSERT INTO "FloorEvent" (${EVENT_COLUMNS.map((c) => `"${c}"`).join(", ")}) ` +
      `SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamp[], $8::jsonb[], $9::timestamp[]) ` +
      `ON CONFLICT ("organizationId", "externalId") DO NOTHING`;
    // Sorted keys: concurrent sessions lock balance rows in one order, as the service does, so no deadlocks.
    const upsert = (max: boolean) =>
      `INSERT INTO "FloorBalance" ("customerId", "meterId", "consumed") SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) ` +
      `ON CONFLICT ("customerId", "meterId") DO UPDATE SET "consumed" = ${max ? `greatest("FloorBalance"."consumed", excluded."consumed")` : `"FloorBalance"."consumed" + excluded."consumed"`}`;
    const prepared = prepare(events, batch, customerIds, meterIds);
    let written = 0;
    let balanceRows = 0;
    const writeBatches = async (batches: Prepared[]) => {
      let next = 0;
      await Promise.all(
        clients.map(async (client) => {
          while (next < batches.length) {
            const p = batches[next++];
            const createdAt = new Date();
            const e = p.events;
            await client.query("BEGIN");
            const r = await client.query(insert, [
              e.map((x) => x.id),
              e.map(() => organizationId),
              e.map((x) => x.name),
              e.map((x) => x.customerId),
              e.map((x) => x.externalCustomerId),
              e.map((x) => x.externalId),
              e.map((x) => new Date(x.timestamp)),
              e.map((x) => x.metadata),
              e.map(() => createdAt),
            ]);
            written += r.rowCount ?? 0;
            if (rows === "ledger") {
              const keys = [...p.counts.keys()].sort().map((k) => [k, ...k.split(" ")] as const);
              const u = await client.query(POSTGRES_LEDGER, [
                keys.map(() => orderedId()),
                keys.map(([, c]) => c),
                keys.map(([, , m]) => m),
                keys.map(([k]) => (p.largest.get(k) ?? p.added.get(k)!).toString()),
                keys.map(([k]) => p.largest.has(k)),
                keys.map(([k]) => p.counts.get(k)!),
                keys.map(() => orderedId()),
                organizationId,
                createdAt,
              ]);
              balanceRows += u.rowCount ?? 0;
            } else for (const [map, max] of [[p.added, false], [p.largest, true]] as const) {
              const entries = [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [...k.split(" "), v.toString()]);
              const u = await client.query(upsert(max), [entries.map((x) => x[0]), entries.map((x) => x[1]), entries.map((x) => x[2])]);
              balanceRows += u.rowCount ?? 0;
            }
            await client.query("COMMIT");
          }
        }),
      );
    };
    await writeBatches(prepare(warm.events, batch, warm.customerIds, meterIds));
    written = balanceRows = 0;
    await first.query("CHECKPOINT").catch(() => {}); // as before the service's row (ingest.ts `checkpoint`)
    const measuredAtStart = measure();
    const t0 = performance.now();
    await writeBatches(prepared);
    const ms = performance.now() - t0;
    const measured = measure();
    await first.query(drop);
    return { ms, events: written, balanceRows, measured, measuredAtStart };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}
