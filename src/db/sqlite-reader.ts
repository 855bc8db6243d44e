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
import Database from "libsql";
import type { RawRunner } from "./sql.ts";

/** Prepared statements kept per connection; the hot paths use a few dozen distinct texts. */
const MAX_STATEMENTS = 500;

export interface SqliteReader extends RawRunner {
  close(): void;
}

/** Parameters as the driver binds them: Dates are never passed (Sql.date gives SQLite dates as text). */
function bindable(value: unknown): unknown {
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}

/** `onQuery` is called with every statement (the client's hook: tests count statements). */
export function openSqliteReader(file: string, onQuery?: (sql: string) => void): SqliteReader {
  const db = new Database(file);
  // Reads only (the driver's `readonly` option is not implemented); a reader waits out a checkpoint's brief lock.
  db.exec("PRAGMA query_only = ON");
  db.exec("PRAGMA busy_timeout = 5000");
  // Integers as bigint: micro-unit columns exceed 2^53 (the Prisma client is configured the same way).
  db.defaultSafeIntegers(true);
  const statements = new Map<string, ReturnType<typeof db.prepare>>();
  const prepared = (text: string) => {
    let stmt = statements.get(text);
    if (!stmt) {
      if (statements.size >= MAX_STATEMENTS) statements.clear();
      stmt = db.prepare(text);
      statements.set(text, stmt);
    }
    return stmt;
  };
  return {
    async $queryRawUnsafe<T>(text: string, ...values: unknown[]): Promise<T> {
      onQuery?.(text);
      const stmt = prepared(text) as unknown as { all(...params: unknown[]): unknown[] };
      return stmt.all(...values.map(bindable)) as T;
    },
    async $executeRawUnsafe(): Promise<number> {
      throw new Error("the SQLite reader is read-only: writes go through a transaction on the writer");
    },
    close() {
      statements.clear();
      db.close();
    },
  };
}
