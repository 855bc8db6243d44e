// One way to run a write: a transaction with the SQL helper, and subscribers told after it commits.
import type { Db } from "../db/client.ts";
import { providerOfDb } from "../db/client.ts";
import { Sql } from "../db/sql.ts";
import type { BalanceChange } from "./balances.ts";
import type { Notify } from "./notify.ts";

/** Run `work` in a transaction with a SQL helper, then tell subscribers what changed. */
export async function inTransaction<T>(
  db: Db,
  notify: Notify,
  organizationId: string,
  work: (sql: Sql, tx: Db) => Promise<{ value: T; changes: BalanceChange[] }>,
): Promise<T> {
  const provider = providerOfDb(db);
  const { value, changes } = await db.$transaction(async (tx) => work(new Sql(tx, provider), tx as unknown as Db), { maxWait: 30_000, timeout: 120_000 });
  if (changes.length) notify.balancesChanged(organizationId, changes);
  return value;
}

