// The SQLite read path: a second, read-only connection on the synchronous `libsql` driver (better-sqlite3's
// API), with every statement prepared once and kept. The hot reads (a balance, the rows an ingest or an
// authorization looks up, ledger pages) run here, past Prisma's runtime and the async client's thread hop.
//
// Why a second connection is safe: the database is in WAL mode, so a reader sees every transaction committed
// before its statement began and never waits for the writer; the writer (Prisma's connection, which keeps
// every transaction) never waits for it either. Reads that must see a transaction's own writes run inside
// that transaction, on the writer, as before.
//
// Measured by bench/statement-cost.ts on the 2-core development machine: one indexed single-row SELECT costs
// about 24 µs here, 122 µs through Prisma's raw API and 99 µs on @libsql/client (README, "Performance").
import { CachedStatementClient } from "./libsql.ts";
import type { RawRunner } from "./sql.ts";

export interface SqliteReader extends RawRunner {
  close(): void;
}

/**
 * A read-only connection with statements kept prepared (the writer's client, opened read-only); rows come
 * back as objects. `onQuery` is called with every statement (the client's hook: tests count statements).
 */
export function openSqliteReader(file: string, onQuery?: (sql: string) => void): SqliteReader {
  // A reader waits out a checkpoint's brief lock.
  const client = new CachedStatementClient(file, { busyTimeoutMs: 5000, readOnly: true });
  return {
    async $queryRawUnsafe<T>(text: string, ...values: unknown[]): Promise<T> {
      onQuery?.(text);
      return client.rowObjects(text, values) as T;
    },
    async queryFirst<T>(text: string, values: unknown[]): Promise<T | undefined> {
      onQuery?.(text);
      return client.firstRowObject(text, values) as T | undefined;
    },
    async $executeRawUnsafe(): Promise<number> {
      throw new Error("the SQLite reader is read-only: writes go through a transaction on the writer");
    },
    close() {
      client.close();
    },
  };
}
