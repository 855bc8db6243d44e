// Request-path lookups batched on PostgreSQL: a customer (by id or externalId) and a meter of an organization,
// with whatever the caller's statement reads beside them, for every request that asks before the event loop
// turns (under load, the requests read from the sockets in one go). One statement per organization and lookup
// column instead of one per request: each statement costs the server a parse, bind and execute and this
// process a write to the server's socket, which wakes the server's process (under 64 concurrent
// authorizations, these writes were about 8 % of the process's samples). Each request is looked up in its own
// row by a lateral subquery, which probes the same indexes as the one-request statement. SQLite needs none of
// this: its reads run on their own connection at once (src/db/sqlite-reader.ts).
import DataLoader from "dataloader";
import type { Db } from "../db/client.ts";
import { sqlOf } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";

export interface LookupAsk {
  organizationId: string;
  column: "id" | "externalId";
  /** the customer's id or externalId */
  value: string;
  meterId: string;
  now: Date;
}

/** Requests per statement at most. */
const ASKS_PER_STATEMENT = 500;

/**
 * A batched lookup: `select(sql, column, organization, customer, meter)` is the one-request SELECT, given SQL
 * expressions for the organization, the customer's `column` and the meter, and `now` as parameters 1 to 3
 * (they become the latest instant of the batch: its statement reads one snapshot as of then); `answer` turns
 * a row it found into the caller's answer, as of that instant. A request whose lookup finds nothing gets
 * undefined. Nothing is cached beyond a batch.
 */
export function lookupBatches<R>(
  select: (sql: Sql, column: "id" | "externalId", organization: string, customer: string, meter: string) => string,
  answer: (db: Db, row: Record<string, unknown>, at: Date) => R | Promise<R>,
): (db: Db, ask: LookupAsk) => Promise<R | undefined> {
  const loaders = new WeakMap<Db, DataLoader<LookupAsk, R | undefined>>();
  const loaderOf = (db: Db) =>
    new DataLoader<LookupAsk, R | undefined>(
      async (asks) => {
        const sql = sqlOf(db);
        const groups = new Map<string, number[]>();
        asks.forEach((a, i) => {
          const k = `${a.organizationId}\u0000${a.column}`;
          const group = groups.get(k);
          if (group) group.push(i);
          else groups.set(k, [i]);
        });
        const out: (R | undefined)[] = asks.map(() => undefined);
        await Promise.all(
          [...groups.values()].map(async (group) => {
            const first = asks[group[0]!]!;
            let latest = first.now;
            for (const i of group) if (asks[i]!.now > latest) latest = asks[i]!.now;
            const at = sql.date(latest);
            const rows = await sql.query<Record<string, unknown>>(
              `SELECT (q->>0)::int AS "i", t.* FROM jsonb_array_elements($5::jsonb) AS q
                CROSS JOIN LATERAL (${select(sql, first.column, "$4", "(q->>1)", "(q->>2)")}) AS t`,
              [at, at, at, first.organizationId, JSON.stringify(group.map((i) => [i, asks[i]!.value, asks[i]!.meterId]))],
            );
            await Promise.all(rows.map(async (r) => (out[Number(r.i)] = await answer(db, r, latest))));
          }),
        );
        return out;
      },
      { cache: false, maxBatchSize: ASKS_PER_STATEMENT, batchScheduleFn: (run) => setImmediate(run) },
    );
  return (db, ask) => {
    let loader = loaders.get(db);
    if (!loader) loaders.set(db, (loader = loaderOf(db)));
    return loader.load(ask);
  };
}
