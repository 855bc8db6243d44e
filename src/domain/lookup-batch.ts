// Request-path lookups batched per turn of the event loop: what every request asks before the event loop turns
// (under load, the requests read from the sockets in one go) is read by one statement per organization instead
// of one per request. Each statement costs the database a parse, bind and execute, and on PostgreSQL this
// process a write to the server's socket, which wakes the server's process (under 64 concurrent
// authorizations, these writes were about 8 % of the process's samples); on SQLite, whose reads run on their own
// connection at once (src/db/sqlite-reader.ts), a one-event ingest call's lookup still cost about 90 µs of the
// main thread under load against 27 µs alone. `perTurn` is the batching itself (an ingest call's customers and
// meters use it on both engines); `lookupBatches` the PostgreSQL lookup of a customer (by id or externalId) and a
// meter with whatever the caller's statement reads beside them, each request in its own row of a lateral
// subquery that probes the same indexes as the one-request statement.
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
  return perTurn<LookupAsk, R | undefined>(async (db, asks) => {
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
  }, ASKS_PER_STATEMENT);
}

/**
 * `batch` for the keys asked of one database before the event loop turns (a dataloader per database, run at
 * `setImmediate`, nothing cached beyond a batch, at most `maxBatchSize` keys a batch): it answers each key in
 * order, or an Error for that key alone.
 */
export function perTurn<K, V>(batch: (db: Db, keys: readonly K[]) => Promise<(V | Error)[]>, maxBatchSize: number): (db: Db, key: K) => Promise<V> {
  const loaders = new WeakMap<Db, DataLoader<K, V>>();
  return (db, key) => {
    let loader = loaders.get(db);
    if (!loader) loaders.set(db, (loader = new DataLoader<K, V>((keys) => batch(db, keys), { cache: false, maxBatchSize, batchScheduleFn: (run) => setImmediate(run) })));
    return loader.load(key);
  };
}
