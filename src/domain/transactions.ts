// One way to run a write: a transaction with the SQL helper, and subscribers told after it commits.
import type { Db } from "../db/client.ts";
import { providerOfDb } from "../db/client.ts";
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
export async function inTransaction<T>(
  db: Db,
  notify: Notify,
  organizationId: string,
  work: (sql: Sql, tx: Db) => Promise<{ value: T; changes: BalanceChange[] }>,
): Promise<T> {
  const provider = providerOfDb(db);
  for (let attempt = 1; ; attempt++) {
    try {
      const { value, changes } = await db.$transaction(async (tx) => work(new Sql(tx, provider), tx as unknown as Db), { maxWait: 30_000, timeout: 120_000 });
      if (changes.length) notify.balancesChanged(organizationId, changes);
      return value;
    } catch (err) {
      if (attempt >= TRANSACTION_ATTEMPTS || !isRetryableTransactionError(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * 2 ** attempt));
    }
  }
}

