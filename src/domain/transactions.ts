// One way to run a write: a transaction with the SQL helper, and subscribers told after it commits.
import type { Db } from "../db/client.ts";
import { pgPoolOf, providerOfDb, queryHookOf } from "../db/client.ts";
import { pgRunner } from "../db/pg.ts";
import { Sql } from "../db/sql.ts";
import type { BalanceChange } from "./balances.ts";
import type { Notify } from "./notify.ts";
import { isRetryableTransactionError } from "./prisma-errors.ts";

/** Attempts for a transaction the database aborted because of concurrency (deadlock, serialization, busy). */
export const TRANSACTION_ATTEMPTS = 6;

/**
 * Run `work` in a transaction with a SQL helper, then tell subscribers what changed. A transaction the
 * database aborts for concurrency reasons is rolled back whole and run again (after a short random pause, so
 * the contenders do not collide again), so clients never see a deadlock; `work` must therefore keep all its
 * effects inside the transaction.
 */
export function inTransaction<T>(
  db: Db,
  notify: Notify,
  organizationId: string,
  work: (sql: Sql, tx: Db) => Promise<{ value: T; changes: BalanceChange[] }>,
): Promise<T> {
  const provider = providerOfDb(db);
  return published(
    notify,
    organizationId,
    retried(() => db.$transaction(async (tx) => work(new Sql(tx, provider), tx as unknown as Db), { maxWait: 30_000, timeout: 120_000 })),
  );
}

/**
 * `inTransaction` for work that needs only the SQL helper (the hot paths). On PostgreSQL the transaction runs
 * on a node-postgres client of the pool Prisma shares, past Prisma's runtime (see src/db/pg.ts); on SQLite it
 * is an ordinary Prisma transaction.
 */
export function inSqlTransaction<T>(
  db: Db,
  notify: Notify,
  organizationId: string,
  work: (sql: Sql) => Promise<{ value: T; changes: BalanceChange[] }>,
): Promise<T> {
  return published(notify, organizationId, sqlTransaction(db, work));
}

/**
 * The transaction of `inSqlTransaction`, retried the same way, with nothing published: for the group writer
 * (src/domain/writer.ts), whose callers may belong to several organizations and which tells their
 * subscribers itself once the transaction has committed.
 */
export function sqlTransaction<T>(db: Db, work: (sql: Sql) => Promise<T>): Promise<T> {
  const pool = pgPoolOf(db);
  const provider = providerOfDb(db);
  if (!pool) return retried(() => db.$transaction(async (tx) => work(new Sql(tx, provider)), { maxWait: 30_000, timeout: 120_000 }));
  const onQuery = queryHookOf(db);
  return retried(async () => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      try {
        await client.query("BEGIN");
        const result = await work(new Sql(pgRunner(client, onQuery), "postgresql"));
        await client.query("COMMIT");
        return result;
      } catch (err) {
        // A failed ROLLBACK means the connection is unusable: it is destroyed, not returned to the pool.
        await client.query("ROLLBACK").catch((e: Error) => void (broken = e));
        throw err;
      }
    } finally {
      client.release(broken);
    }
  });
}

async function published<T>(notify: Notify, organizationId: string, committed: Promise<{ value: T; changes: BalanceChange[] }>): Promise<T> {
  const { value, changes } = await committed;
  if (changes.length) notify.balancesChanged(organizationId, changes);
  return value;
}

/** Run `attempt` until it commits, again after an abort for concurrency reasons (at most TRANSACTION_ATTEMPTS times). */
async function retried<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (n >= TRANSACTION_ATTEMPTS || !isRetryableTransactionError(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * 2 ** n));
    }
  }
}
