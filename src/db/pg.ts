// Statements on a node-postgres client, past Prisma: the hot write paths' transactions on PostgreSQL. Prisma's
// raw API serializes every parameter to JSON and parses it back before the driver sees it, which for the
// one-JSON-parameter bulk statements of src/db/sql.ts (a megabyte per 1,000 events) was the largest cost
// left per event. Values and results keep the shapes Prisma's raw API gives, so the same domain code runs
// on either runner.
import pg, { type Pool, type PoolClient } from "pg";
import type { RawRunner } from "./sql.ts";

const INT8 = 20;
const TIMESTAMP = 1114;

/**
 * int8 as bigint (Prisma's shape; node-postgres gives strings), and `timestamp` (without time zone, as
 * Prisma's DateTime columns are) as the UTC instant it holds: node-postgres would read it in the process's
 * local time zone.
 */
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8) return (text: string) => BigInt(text);
    if (oid === TIMESTAMP) return (text: string) => new Date(`${text.replace(" ", "T")}Z`);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** Dates as ISO text (node-postgres would write local time), bigints as decimal text. */
function param(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** Statements on one client (inside its transaction) or on the pool (each on whichever connection is free). */
export function pgRunner(client: PoolClient | Pool, onQuery?: (sql: string) => void): RawRunner {
  const run = (text: string, values: unknown[]) => {
    onQuery?.(text);
    return client.query({ text, values: values.map(param), types });
  };
  return {
    async $queryRawUnsafe<T>(text: string, ...values: unknown[]): Promise<T> {
      return (await run(text, values)).rows as T;
    },
    async $executeRawUnsafe(text: string, ...values: unknown[]): Promise<number> {
      return (await run(text, values)).rowCount ?? 0;
    },
  };
}
