// One way to run a write: a transaction with the SQL helper, and subscribers told after it commits.
import type { Db } from "../db/client.ts";
import { pgPoolOf, pgPrepares, pgWriterPoolOf, providerOfDb, queryHookOf, sqliteWriterOf } from "../db/client.ts";
import { coalesceWrites, pgRunner } from "../db/pg.ts";
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
 * `inTransaction` for work that needs only the SQL helper (the hot paths), past Prisma's runtime: on PostgreSQL
 * on a node-postgres client of the pool Prisma shares (see src/db/pg.ts), on SQLite on Prisma's connection
 * (see committedSqlTransaction).
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
 * The transaction of `inSqlTransaction`, retried the same way, with nothing published: for background work
 * (webhook deliveries, alert rules) that tells subscribers itself.
 */
export async function sqlTransaction<T>(db: Db, work: (sql: Sql) => Promise<T>): Promise<T> {
  const { value, durable } = await committedSqlTransaction(db, work);
  await durable;
  return value;
}

const ON_DISK = Promise.resolve();
const ROLLED_BACK_AT_COMMIT = "the transaction was rolled back at COMMIT";

/**
 * `sqlTransaction` that resolves as soon as the transaction committed, with `durable`, which resolves once the
 * commit is on disk: for the group writer (src/domain/writer.ts), which lets the next group run meanwhile and
 * answers its callers once `durable` resolved. On PostgreSQL the transaction runs on a node-postgres client of
 * the pool Prisma shares, or with `writer` of the group writer's own pool (pgWriterPoolOf; a COMMIT returns
 * once durable); on SQLite on Prisma's connection, past Prisma
 * (`transact` in src/db/libsql.ts: the commit's fsync runs off the event loop, after the connection is free).
 */
export function committedSqlTransaction<T>(db: Db, work: (sql: Sql) => Promise<T>, writer = false): Promise<{ value: T; durable: Promise<void> }> {
  const onQuery = queryHookOf(db);
  const sqlite = sqliteWriterOf(db);
  if (sqlite) {
    return retried(() =>
      sqlite.transact(async (runner) => {
        const sql = new Sql(runner, "sqlite");
        const value = await work(sql);
        await sql.settle();
        return value;
      }, onQuery),
    );
  }
  const pool = (writer ? pgWriterPoolOf(db) : null) ?? pgPoolOf(db);
  const provider = providerOfDb(db);
  if (!pool) return retried(async () => ({ value: await db.$transaction(async (tx) => work(new Sql(tx, provider)), { maxWait: 30_000, timeout: 120_000 }), durable: ON_DISK }));
  return retried(async () => {
    const client = await pool.connect();
    // Pipelined for the transaction (node-postgres sends each statement at once, the server answers them in
    // order): BEGIN goes out with the first statement, writes sent with Sql.send go out together, and COMMIT
    // right behind them. The client goes back to the pool as it came, one statement at a time.
    const mode = client as unknown as { pipeline: boolean };
    mode.pipeline = true;
    const sql = new Sql(pgRunner(client, onQuery, pgPrepares(db), true), "postgresql", true);
    let broken: Error | undefined;
    let xid: string | undefined;
    let commitSent = false;
    let value: T | undefined;
    try {
      // BEGIN, the id and the work's first statements leave in one write (coalesceWrites); so do its last and COMMIT.
      coalesceWrites(client);
      const begin = client.query("BEGIN");
      begin.catch(() => {}); // awaited below
      // The transaction's id, to ask the database whether it committed if the COMMIT's answer is lost.
      const id = client.query<{ xid: string }>(`SELECT txid_current()::text AS "xid"`);
      id.catch(() => {}); // awaited below
      try {
        value = await work(sql);
        xid = (await id).rows[0]!.xid; // answered before whatever the work awaited, so at once
        coalesceWrites(client);
        const commit = client.query("COMMIT");
        commitSent = true;
        commit.catch(() => {}); // awaited below
        await begin;
        // A write that failed aborted the transaction, and PostgreSQL answers the COMMIT behind it with ROLLBACK.
        await sql.settle();
        if ((await commit).command !== "COMMIT") throw new Error(ROLLED_BACK_AT_COMMIT);
        return { value, durable: ON_DISK };
      } catch (err) {
        // The first failure on the connection is the cause (statements after it fail as "transaction aborted").
        const first = (await sql.firstFailure()) ?? err;
        // A failed ROLLBACK means the connection is unusable: it is destroyed, not returned to the pool.
        await client.query("ROLLBACK").catch((e: Error) => void (broken = e));
        if (commitSent && xid !== undefined && !isStatementError(first)) {
          // The connection failed after COMMIT went out: the transaction may have committed. Ask.
          const outcome = await transactionOutcome(pool, xid);
          if (outcome === "committed") return { value: value as T, durable: ON_DISK };
          if (outcome === "unknown") throw new CommitOutcomeUnknownError(first);
        }
        throw first;
      }
    } finally {
      mode.pipeline = false;
      client.release(broken);
    }
  });
}

/**
 * COMMIT was sent and its answer lost (the connection failed), and the database could not be asked whether
 * the transaction committed: it may have. Its work must not be run again as if it had not (the group writer
 * answers every caller of the group with this error instead of retrying them one by one).
 */
export class CommitOutcomeUnknownError extends Error {
  constructor(readonly cause: unknown) {
    super(`the database connection failed after COMMIT was sent and whether the transaction committed could not be learnt: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** An error the server answered a statement with (the transaction is then aborted), not a lost connection. */
function isStatementError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  // node-postgres's DatabaseError carries the server's severity: ERROR aborts the transaction, while FATAL (a
  // terminated backend) ends the connection, possibly after the commit
  return err.message === ROLLED_BACK_AT_COMMIT || (err as Error & { severity?: unknown }).severity === "ERROR";
}

/** How long a node keeps asking whether a transaction whose COMMIT answer was lost committed. */
const OUTCOME_WAIT_MS = 10_000;

/**
 * Whether transaction `xid` committed, asked on another connection (PostgreSQL's txid_status), retried while
 * the database cannot be reached or the transaction is still finishing, for up to OUTCOME_WAIT_MS.
 */
async function transactionOutcome(pool: { query<R>(text: string, values: unknown[]): Promise<{ rows: R[] }> }, xid: string): Promise<"committed" | "aborted" | "unknown"> {
  const deadline = Date.now() + OUTCOME_WAIT_MS;
  for (;;) {
    try {
      const { rows } = await pool.query<{ status: string | null }>(`SELECT txid_status($1::bigint) AS "status"`, [xid]);
      const status = rows[0]?.status;
      if (status === "committed") return "committed";
      if (status === "aborted") return "aborted";
    } catch {
      // the database is not reachable yet: ask again
    }
    if (Date.now() >= deadline) return "unknown";
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
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
