// The ingest floor of `npm run bench`: the same event rows the service stored, written by the raw driver in
// transactions of one batch each (1,000 rows by default): the events into a table with the Event table's own
// definition and indexes (its unique index included), and the batch's balance changes as upserts. No HTTP,
// no GraphQL, no validation, no ledger, no push. SQLite: @libsql/client on a separate file, one connection
// (SQLite has one writer). PostgreSQL: node-postgres, UNNEST statements, as many sessions as the service had
// ingest requests in flight, into copies of the tables in the service's database.
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createClient as createLibsqlClient, type InValue } from "@libsql/client";
import pg from "pg";
import { procStatFields } from "./harness.ts";
import { orderedId } from "../src/domain/ids.ts";
import { sqliteIsoText } from "../src/db/sql.ts"; // how the service stores a DateTime
import type { BenchEvent } from "./workload.ts";

export interface FloorResult {
  ms: number;
  events: number;
  balanceRows: number;
  /** PostgreSQL: what `measure` returned right after the timed work, its sessions still open */
  measured?: number | null;
}

const EVENT_COLUMNS = ["id", "organizationId", "name", "customerId", "externalCustomerId", "externalId", "timestamp", "metadata", "createdAt"] as const;
const ROWS_PER_STATEMENT = 400; // the service's own chunk size on SQLite (src/db/sql.ts)

interface Prepared {
  /** the event rows without createdAt (the batch's "now", added when written) */
  events: { id: string; name: string; customerId: string; externalCustomerId: string; externalId: string; timestamp: string; metadata: string }[];
  /** consumed micro-units per balance in this batch: added (COUNT, SUM) or the largest (MAX) */
  added: Map<string, bigint>;
  largest: Map<string, bigint>;
}

/** Rows and per-batch balance changes, built before timing (ids included) so only writing is measured. */
function prepare(events: BenchEvent[], batch: number, customerIds: string[], meterIds: Record<string, string>): Prepared[] {
  const out: Prepared[] = [];
  for (let i = 0; i < events.length; i += batch) {
    const slice = events.slice(i, i + batch);
    const p: Prepared = { events: [], added: new Map(), largest: new Map() };
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
      if (e.meter === "storage") {
        const was = p.largest.get(key);
        if (was === undefined || e.micro > was) p.largest.set(key, e.micro);
      } else p.added.set(key, (p.added.get(key) ?? 0n) + e.micro);
    }
    out.push(p);
  }
  return out;
}


/** SQLite: `serviceDbFile` lends the Event table's definition and indexes; the floor writes to its own file. */
export async function sqliteFloor(
  serviceDbFile: string,
  dir: string,
  organizationId: string,
  events: BenchEvent[],
  batch: number,
  customerIds: string[],
  meterIds: Record<string, string>,
): Promise<FloorResult> {
  const source = createLibsqlClient({ url: `file:${serviceDbFile}` });
  const ddl = (await source.execute(`SELECT "sql" FROM sqlite_master WHERE "tbl_name" = 'Event' AND "sql" IS NOT NULL ORDER BY "type" DESC`)).rows.map((r) => String(r.sql));
  source.close();
  if (!ddl.some((s) => /UNIQUE/i.test(s))) throw new Error("the service's Event table has no unique index to copy");
  const client = createLibsqlClient({ url: `file:${path.join(dir, "floor.db")}` });
  try {
    await client.execute("PRAGMA journal_mode=WAL"); // as the service's connection (src/db/libsql.ts)
    for (const s of ddl) await client.execute(s);
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
    const prepared = prepare(events, batch, customerIds, meterIds);
    let written = 0;
    let balanceRows = 0;
    const t0 = performance.now();
    for (const p of prepared) {
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
    return { ms: performance.now() - t0, events: written, balanceRows };
  } finally {
    client.close();
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

/** PostgreSQL: copies of Event (LIKE, with its indexes) and a balance table in the service's database. */
export async function postgresFloor(
  databaseUrl: string,
  sessions: number,
  organizationId: string,
  events: BenchEvent[],
  batch: number,
  customerIds: string[],
  meterIds: Record<string, string>,
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
    await first.query(`DROP TABLE IF EXISTS "FloorEvent"; DROP TABLE IF EXISTS "FloorBalance"`);
    await first.query(`CREATE TABLE "FloorEvent" (LIKE "Event" INCLUDING DEFAULTS INCLUDING INDEXES)`);
    await first.query(`CREATE TABLE "FloorBalance" ("customerId" TEXT NOT NULL, "meterId" TEXT NOT NULL, "consumed" BIGINT NOT NULL, PRIMARY KEY ("customerId", "meterId"))`);
    const insert =
      `INSERT INTO "FloorEvent" (${EVENT_COLUMNS.map((c) => `"${c}"`).join(", ")}) ` +
      `SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamp[], $8::jsonb[], $9::timestamp[]) ` +
      `ON CONFLICT ("organizationId", "externalId") DO NOTHING`;
    // Sorted keys: concurrent sessions lock balance rows in one order, as the service does, so no deadlocks.
    const upsert = (max: boolean) =>
      `INSERT INTO "FloorBalance" ("customerId", "meterId", "consumed") SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) ` +
      `ON CONFLICT ("customerId", "meterId") DO UPDATE SET "consumed" = ${max ? `greatest("FloorBalance"."consumed", excluded."consumed")` : `"FloorBalance"."consumed" + excluded."consumed"`}`;
    const prepared = prepare(events, batch, customerIds, meterIds);
    let next = 0;
    let written = 0;
    let balanceRows = 0;
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        while (next < prepared.length) {
          const p = prepared[next++];
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
          for (const [map, max] of [[p.added, false], [p.largest, true]] as const) {
            const entries = [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [...k.split(" "), v.toString()]);
            const u = await client.query(upsert(max), [entries.map((x) => x[0]), entries.map((x) => x[1]), entries.map((x) => x[2])]);
            balanceRows += u.rowCount ?? 0;
          }
          await client.query("COMMIT");
        }
      }),
    );
    const ms = performance.now() - t0;
    const measured = measure();
    await first.query(`DROP TABLE "FloorEvent"; DROP TABLE "FloorBalance"`);
    return { ms, events: written, balanceRows, measured };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}
