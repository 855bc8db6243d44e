// Prisma's libsql adapter with transactions that stay on the client's one connection.
//
// Why: @libsql/client's local (file:) client hands its connection to every `transaction()` and lazily opens a
// new one for whatever comes next; the transaction object never closes the connection it took (its close()
// only rolls back), so each write transaction left a SQLite handle (database, -wal and -shm files) open until
// the garbage collector happened to finalize it: one leaked descriptor set per write, thousands under load,
// then SQLITE_CANTOPEN once the process hit its descriptor limit.
//
// The adapter already serializes everything on its client: `startTransaction` holds the adapter's lock until
// commit or rollback, so no other statement can run on the client while a transaction is open. A transaction
// can therefore run on the client's own connection (BEGIN … COMMIT/ROLLBACK through `execute`), and the
// process keeps exactly one SQLite connection per client.
import type { Client, InStatement, ResultSet, Transaction, TransactionMode } from "@libsql/client";
import { PrismaLibSql } from "@prisma/adapter-libsql";

const BEGIN: Record<TransactionMode, string> = {
  write: "BEGIN IMMEDIATE",
  read: "BEGIN TRANSACTION READONLY",
  deferred: "BEGIN DEFERRED",
};

/**
 * SQLite may roll a transaction back by itself after these errors (https://sqlite.org/lang_transaction.html):
 * the transaction is then treated as closed, as @libsql/client's own transaction does, so no later statement
 * runs outside it by accident.
 */
const MAY_HAVE_ROLLED_BACK = /^SQLITE_(FULL|IOERR|BUSY|NOMEM|INTERRUPT|CORRUPT|NOTADB)/;

function transactionClosed(): Error {
  return Object.assign(new Error("The transaction is closed"), { code: "TRANSACTION_CLOSED" });
}

/** A transaction on `client`'s own connection. Only valid while the caller keeps other work off the client. */
async function connectionTransaction(client: Client, mode: TransactionMode): Promise<Transaction> {
  await client.execute(BEGIN[mode]);
  let open = true;
  const run = async (stmt: InStatement): Promise<ResultSet> => {
    if (!open) throw transactionClosed();
    try {
      return await client.execute(stmt);
    } catch (err) {
      if (MAY_HAVE_ROLLED_BACK.test(String((err as { code?: unknown }).code ?? ""))) {
        open = false;
        await client.execute("ROLLBACK").catch(() => {});
      }
      throw err;
    }
  };
  return {
    execute: run,
    async batch(stmts) {
      const results: ResultSet[] = [];
      for (const stmt of stmts) results.push(await run(stmt));
      return results;
    },
    async executeMultiple() {
      // The client's executeMultiple rolls back any open transaction when it ends; never needed by the adapter.
      throw new Error("executeMultiple is not supported inside a transaction");
    },
    async commit() {
      if (!open) throw transactionClosed();
      open = false;
      try {
        await client.execute("COMMIT");
      } catch (err) {
        // A COMMIT that fails (SQLITE_BUSY) leaves the transaction open on the connection: end it here.
        await client.execute("ROLLBACK").catch(() => {});
        throw err;
      }
    },
    async rollback() {
      if (!open) return;
      open = false;
      await client.execute("ROLLBACK");
    },
    close() {
      if (!open) return;
      open = false;
      void client.execute("ROLLBACK").catch(() => {});
    },
    get closed() {
      return !open;
    },
  };
}

/** `client` with `transaction()` replaced by one that keeps to the client's connection; all else unchanged. */
export function singleConnectionClient(client: Client): Client {
  const transaction = (mode: TransactionMode = "write") => connectionTransaction(client, mode);
  return new Proxy(client, {
    get(target, prop) {
      if (prop === "transaction") return transaction;
      const value = Reflect.get(target, prop, target);
      // the client keeps its connection in private fields: its methods must run with the client as `this`
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** PrismaLibSql whose clients run transactions on their one connection (see the top of this file). */
export class SingleConnectionLibSql extends PrismaLibSql {
  override createClient(config: Parameters<PrismaLibSql["createClient"]>[0]): Client {
    return singleConnectionClient(super.createClient(config));
  }
}
