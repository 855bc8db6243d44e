// Per-request batching of the rows that nested fields point at (a balance's meter and customer): every row
// asked for in one tick of the event loop is read in one statement, past Prisma's runtime (sqlOf: on SQLite
// the read-only connection with kept statements). Nothing is cached beyond the batch, so a long-lived
// subscription context always reads fresh.
import DataLoader from "dataloader";
import { sqlOf, type Db } from "../db/client.ts";
import type { Customer, Meter } from "../generated/prisma-postgresql/client.ts";
import { CUSTOMER_COLUMNS, customerOfRow } from "../domain/customers.ts";
import { METER_COLUMNS, meterOfRow } from "../domain/meters.ts";

export interface Loaders {
  meter: DataLoader<string, Meter | null>;
  customer: DataLoader<string, Customer | null>;
}

/** Ids per statement: within SQLite's parameter limit. */
const IDS_PER_READ = 500;

function byId<T extends { id: string }>(db: Db, table: string, columns: string, rowOf: (row: Record<string, unknown>) => T): DataLoader<string, T | null> {
  return new DataLoader<string, T | null>(
    async (ids) => {
      const sql = sqlOf(db);
      const list = sql.textIn("id", [...ids]);
      const found = await sql.query<Record<string, unknown>>(`SELECT ${columns} FROM "${table}" WHERE ${list.clause}`, list.values);
      const rows = new Map(found.map((r) => [String(r.id), rowOf(r)]));
      return ids.map((id) => rows.get(id) ?? null);
    },
    { cache: false, maxBatchSize: IDS_PER_READ },
  );
}

export function createLoaders(db: Db): Loaders {
  return {
    meter: byId(db, "Meter", METER_COLUMNS, meterOfRow),
    customer: byId(db, "Customer", CUSTOMER_COLUMNS, customerOfRow),
  };
}
