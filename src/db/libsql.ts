// Prisma's libsql adapter on our own client: one SQLite connection on the synchronous `libsql` driver, with
// every statement prepared once and kept, and transactions on that same connection.
//
// Why not @libsql/client's local client, which the adapter would create: it prepares every statement again on
// every call (measured here about 170 µs per statement, most of a simple query's cost) and asks the driver
// for the statement's columns twice per call; and its `transaction()` handed its connection away and lazily
// opened a new one for whatever came next, never closing the one it took, so each write transaction left a
// SQLite handle (database, -wal and -shm files) open until the garbage collector happened to finalize it:
// thousands under load, then SQLITE_CANTOPEN once the process hit its descriptor limit.
//
// The adapter serializes everything on its client: `startTransaction` holds the adapter's lock until commit or
// rollback, so no other statement of Prisma's can run on the client while a transaction is open. A transaction
// therefore runs on the client's one connection (BEGIN … COMMIT/ROLLBACK through `execute`).
//
// The hot write paths run their transactions on the same connection past Prisma (`transact`, used by
// src/domain/transactions.ts as PostgreSQL's run on the pool): Prisma's runtime cost more per statement than
// SQLite did. The client keeps its own lock for that: one of Prisma's statements outside a transaction, one of
// Prisma's transactions, or one `transact` holds the connection at a time, in the order they asked. A commit
// gives the connection back before its fsync (below) is awaited, so the next transaction runs meanwhile.
//
// Durable commits without stopping the process (SQLITE_SYNCHRONOUS=FULL, the default). The driver is
// synchronous, so with SQLite's own synchronous=FULL every COMMIT's fsync froze the event loop: no request was
// read, no answer sent, no group formed while the disk flushed (under load most groups held one job, and the
// tail reached seconds). Instead the writer's connection commits without syncing (synchronous=OFF) and the
// commit is acknowledged only once an fsync of the WAL file, run on libuv's thread pool, has finished; one
// fsync covers every commit made before it started, so concurrent commits share it (group commit). Frames in
// the WAL carry checksums: a crash before the fsync loses only commits nobody was told of, never the file.
// Checkpoints, the one place where OFF could let the database file get ahead of the WAL, never run on this
// connection (wal_autocheckpoint=0): a connection of their own at synchronous=FULL runs them off the event loop,
// syncing the WAL before it copies pages and the database file after. See durableCommits below.
import { open, type FileHandle } from "node:fs/promises";
import Database from "libsql";
import AsyncDatabase from "libsql/promise";
import type { Client, InStatement, InValue, ResultSet, Transaction, TransactionMode } from "@libsql/client";
import { LibsqlError } from "@libsql/client";
import { PrismaLibSql } from "@prisma/adapter-libsql";
import { sqliteDateText, type RawRunner } from "./sql.ts";
import { isSqliteSynchronous, type SqliteSynchronous } from "./url.ts";

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

/** Runs a statement on the connection, whose lock the caller holds. */
type LockedExecute = (stmt: InStatement) => ResultSet;

/**
 * A transaction of Prisma's adapter on the client's connection, holding the client's lock from BEGIN until it
 * ends (`end`: gives the lock back; after a COMMIT, resolves once the commit is on disk).
 */
function connectionTransaction(execute: LockedExecute, mode: TransactionMode, end: (committed: boolean) => Promise<void>): Transaction {
  execute(BEGIN[mode]);
  let open = true;
  const run = async (stmt: InStatement): Promise<ResultSet> => {
    if (!open) throw transactionClosed();
    try {
      return execute(stmt);
    } catch (err) {
      if (MAY_HAVE_ROLLED_BACK.test(String((err as { code?: unknown }).code ?? ""))) {
        open = false;
        try {
          execute("ROLLBACK");
        } catch {
          // already rolled back by SQLite
        }
        await end(false);
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
        execute("COMMIT");
      } catch (err) {
        // A COMMIT that fails (SQLITE_BUSY) leaves the transaction open on the connection: end it here.
        try {
          execute("ROLLBACK");
        } catch {
          // nothing open
        }
        await end(false);
        throw err;
      }
      await end(true);
    },
    async rollback() {
      if (!open) return;
      open = false;
      try {
        execute("ROLLBACK");
      } finally {
        await end(false);
      }
    },
    close() {
      if (!open) return;
      open = false;
      try {
        execute("ROLLBACK");
      } catch {
        // nothing open
      }
      void end(false);
    },
    get closed() {
      return !open;
    },
  };
}

/** A lock granted in the order it was asked for; `acquire` resolves with its release. */
class FifoLock {
  #tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const granted = this.#tail.then(() => release);
    this.#tail = released;
    return granted;
  }
}

const asIs = (v: unknown) => v;

/**
 * How Prisma's raw API on SQLite gives a value of a column declared `declType` (@prisma/adapter-libsql's
 * column types, then the client's): INTEGER a number, BIGINT a bigint, DATETIME a Date, BOOLEAN a boolean,
 * JSONB parsed; TEXT and computed columns as the driver reads them (integers as bigint, with safe integers on).
 * The domain code then sees the same rows on `transact` as it did through Prisma.
 */
function prismaShape(declType: string): (v: unknown) => unknown {
  switch (declType.toUpperCase()) {
    case "INTEGER":
    case "INT":
      return (v) => (typeof v === "bigint" ? Number(v) : v);
    case "DATETIME":
      return (v) => (typeof v === "string" ? new Date(v) : new Date(Number(v)));
    case "BOOLEAN":
      return (v) => (typeof v === "boolean" ? v : Number(v) !== 0);
    case "JSONB":
      return (v) => (typeof v === "string" ? JSON.parse(v) : v);
    case "BLOB":
      return (v) => (v instanceof ArrayBuffer ? new Uint8Array(v) : v);
    default:
      return asIs;
  }
}

/** SQLite's primary result codes (https://sqlite.org/rescode.html), by number: an error's base code. */
const PRIMARY_CODES = [
  "OK", "ERROR", "INTERNAL", "PERM", "ABORT", "BUSY", "LOCKED", "NOMEM", "READONLY", "INTERRUPT", "IOERR", "CORRUPT", "NOTFOUND",
  "FULL", "CANTOPEN", "PROTOCOL", "EMPTY", "SCHEMA", "TOOBIG", "CONSTRAINT", "MISMATCH", "MISUSE", "NOLFS", "AUTH", "FORMAT",
  "RANGE", "NOTADB", "NOTICE", "WARNING",
];

/** The driver's error as the adapter reads errors: base code, extended code and raw code (constraint kinds, P2002…). */
function driverError(err: unknown): unknown {
  if (!(err instanceof Database.SqliteError)) return err;
  const rawCode = (err as { rawCode?: number }).rawCode;
  const base = rawCode === undefined ? "UNKNOWN" : (PRIMARY_CODES[rawCode & 0xff] ?? `UNKNOWN_${rawCode & 0xff}`);
  return new LibsqlError(err.message, `SQLITE_${base}`, (err as { code?: string }).code, rawCode, err);
}

/**
 * A value as the driver binds it. Prisma's adapter already turns dates into text; the hot paths' Dates become
 * text in the form Prisma stores (sqliteDateText).
 */
function bindable(value: InValue | Date | undefined): unknown {
  if (value === undefined) return null;
  if (value instanceof Date) return sqliteDateText(value);
  if (typeof value === "boolean") return value ? 1n : 0n;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return value;
}

/** A BLOB as the driver gives it (a Buffer over its own memory) as the ArrayBuffer @libsql/client answers; anything else as it is. */
function blobOut(v: unknown): unknown {
  return typeof v === "object" && v !== null && Buffer.isBuffer(v) ? v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) : v;
}

/** A row's values by column name. */
function objectOf(names: readonly string[], row: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) out[names[i]] = row[i];
  return out;
}

interface Prepared {
  /**
   * Values are passed as one array: the driver binds an array argument as it is, while separate arguments are
   * gathered and flattened into new arrays on every call (an insert of 1,000 events has about 12,000).
   */
  stmt: { all(args: unknown[]): unknown[][]; get(args: unknown[]): unknown[] | undefined; run(args: unknown[]): { changes: number; lastInsertRowid: number | bigint } };
  /** a statement that returns rows (SELECT, … RETURNING), with its columns; null: one that does not */
  columns: { names: string[]; types: string[] } | null;
}

/** Distinct statement texts kept prepared per connection (Prisma's and the hot paths' number in the hundreds). */
const MAX_PREPARED = 1_000;

function resultSet(columns: string[], columnTypes: string[], rows: unknown[][], rowsAffected: number, lastInsertRowid: bigint | undefined): ResultSet {
  return {
    columns,
    columnTypes,
    rows: rows as unknown as ResultSet["rows"],
    rowsAffected,
    lastInsertRowid,
    toJSON: () => ({ columns, columnTypes, rows, rowsAffected, lastInsertRowid: lastInsertRowid?.toString() ?? null }),
  };
}

/**
 * The subset of @libsql/client's Client that Prisma's adapter uses (execute, transaction, executeMultiple,
 * close), on one synchronous connection with prepared statements kept. Rows are plain arrays: the adapter
 * reads them by index.
 */
export class CachedStatementClient {
  readonly protocol = "file";
  closed = false;
  readonly #db: InstanceType<typeof Database>;
  readonly #prepared = new Map<string, Prepared>();

  /**
   * `synchronous`: the writer's durability (src/db/url.ts). `readOnly`: a connection that refuses writes (the
   * hot reads' own, src/db/sqlite-reader.ts; the driver's `readonly` option is not implemented).
   */
  constructor(file: string, { busyTimeoutMs, synchronous = "FULL", readOnly = false, syncFile, walRestartFrames = WAL_RESTART_FRAMES }: CachedStatementClientOptions) {
    this.#db = new Database(file);
    this.#db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    if (!isSqliteSynchronous(synchronous)) throw new Error(`unknown synchronous setting ${String(synchronous)}`);
    if (readOnly) this.#db.exec("PRAGMA query_only = ON");
    else if (synchronous === "FULL" && !isMemory(file)) this.#durable = durableCommits(this.#db, file, () => this.#lock.acquire(), walRestartFrames, syncFile);
    if (!this.#durable) this.#db.exec(`PRAGMA synchronous = ${synchronous}`);
    // micro-unit columns exceed 2^53
    this.#db.defaultSafeIntegers(true);
  }

  /** FULL on a file: commits synced off the event loop (see the top of this file); null otherwise. */
  readonly #durable: DurableCommits | null = null;

  #prepare(sql: string): Prepared {
    let p = this.#prepared.get(sql);
    if (p) return p;
    const stmt = this.#db.prepare(sql) as unknown as Prepared["stmt"] & { raw(on: boolean): void; columns(): { name: string; type: string | null }[] };
    let columns: Prepared["columns"] = null;
    try {
      stmt.raw(true); // throws for a statement that returns no data
      const defs = stmt.columns();
      columns = { names: defs.map((c) => c.name), types: defs.map((c) => c.type ?? "") };
    } catch {
      columns = null;
    }
    p = { stmt, columns };
    if (this.#prepared.size >= MAX_PREPARED) this.#prepared.clear();
    this.#prepared.set(sql, p);
    return p;
  }

  /** Who holds the connection: Prisma's statement or transaction, or a `transact` (see the top of this file). */
  readonly #lock = new FifoLock();

  async execute(statement: InStatement): Promise<ResultSet> {
    const release = await this.#lock.acquire();
    let result: ResultSet;
    try {
      result = this.#execute(statement);
    } finally {
      release();
    }
    // A statement that may have committed (a write outside a transaction) is answered once on disk.
    const sql = typeof statement === "string" ? statement : statement.sql;
    if (this.#durable && !this.#db.inTransaction && !NEVER_COMMITS.test(sql)) await this.#durable.synced();
    return result;
  }

  /** `execute` for a caller that holds the lock. */
  #execute(statement: InStatement): ResultSet {
    const sql = typeof statement === "string" ? statement : statement.sql;
    const args = typeof statement === "string" || !statement.args ? [] : Array.isArray(statement.args) ? statement.args : null;
    if (!args) throw new Error("named arguments are not used by the adapter");
    return this.#run(sql, args);
  }

  /**
   * Run `work` in a write transaction (BEGIN IMMEDIATE) on this connection, past Prisma, with statements whose
   * rows have the shapes Prisma's raw API gives (prismaShaped); `onQuery` hears every statement of `work`.
   * Resolves once it committed, and the connection is then free for the next one; `durable` resolves once the
   * commit is on disk (at once when commits are not synced off the event loop: see the top of this file).
   */
  async transact<T>(work: (runner: RawRunner) => Promise<T>, onQuery?: (sql: string) => void): Promise<{ value: T; durable: Promise<void> }> {
    const release = await this.#lock.acquire();
    let value: T;
    let open = true;
    try {
      this.#run("BEGIN IMMEDIATE", []);
      const runner: RawRunner = {
        $queryRawUnsafe: async <R>(text: string, ...values: unknown[]): Promise<R> => {
          if (!open) throw transactionClosed();
          onQuery?.(text);
          return this.#shapedRows(text, values) as R;
        },
        $executeRawUnsafe: async (text: string, ...values: unknown[]): Promise<number> => {
          if (!open) throw transactionClosed();
          onQuery?.(text);
          return this.#run(text, values as InValue[]).rowsAffected;
        },
      };
      try {
        value = await work(runner);
        open = false;
        this.#run("COMMIT", []);
      } catch (err) {
        open = false;
        // SQLite may already have rolled back (see MAY_HAVE_ROLLED_BACK); a failed COMMIT leaves it open.
        if (this.#db.inTransaction) this.#run("ROLLBACK", []);
        throw err;
      }
    } finally {
      release();
    }
    return { value, durable: this.#durable ? this.#durable.synced() : Promise.resolve() };
  }

  /** A query's rows as objects, each value as Prisma's raw API gives it for the column's declared type. */
  #shapedRows(sql: string, values: readonly unknown[]): Record<string, unknown>[] {
    const { columns, columnTypes, rows } = this.#run(sql, values as InValue[]);
    const convert = columnTypes.map(prismaShape);
    return (rows as unknown as unknown[][]).map((row) => {
      const out: Record<string, unknown> = {};
      for (let i = 0; i < columns.length; i++) out[columns[i]] = row[i] === null ? null : convert[i](row[i]);
      return out;
    });
  }

  /** A query's rows as objects by column name (the shape the hot reads take), on the same kept statements. */
  rowObjects(sql: string, args: readonly unknown[]): Record<string, unknown>[] {
    const { columns, rows } = this.#run(sql, args as InValue[]);
    return (rows as unknown as unknown[][]).map((row) => objectOf(columns, row));
  }

  /**
   * The first row of a query as an object by column name (rowObjects' shape), or undefined: one step of the kept
   * statement, which the driver then resets (so no read snapshot stays open), instead of its row iterator.
   */
  firstRowObject(sql: string, args: readonly unknown[]): Record<string, unknown> | undefined {
    const bound = (args as InValue[]).map(bindable);
    try {
      const { stmt, columns } = this.#prepare(sql);
      if (!columns) throw new Error("firstRowObject needs a statement that returns rows");
      const row = stmt.get(bound) as unknown[] | undefined;
      if (!row) return undefined;
      for (let i = 0; i < row.length; i++) row[i] = blobOut(row[i]);
      return objectOf(columns.names, row);
    } catch (err) {
      throw driverError(err);
    }
  }

  #run(sql: string, values: readonly InValue[]): ResultSet {
    const args = values.map(bindable);
    try {
      const { stmt, columns } = this.#prepare(sql);
      if (columns) {
        const rows = stmt.all(args);
        for (const row of rows) {
          for (let i = 0; i < row.length; i++) row[i] = blobOut(row[i]);
        }
        return resultSet(columns.names, columns.types, rows, 0, undefined);
      }
      const info = stmt.run(args);
      return resultSet([], [], [], info.changes, BigInt(info.lastInsertRowid));
    } catch (err) {
      throw driverError(err);
    }
  }

  async executeMultiple(sql: string): Promise<void> {
    const release = await this.#lock.acquire();
    try {
      this.#db.exec(sql);
    } catch (err) {
      throw driverError(err);
    } finally {
      release();
    }
  }

  async transaction(mode: TransactionMode = "write"): Promise<Transaction> {
    const release = await this.#lock.acquire();
    const end = async (committed: boolean) => {
      release();
      // The commit is answered once on disk; the connection is already free for the next transaction.
      if (committed && this.#durable) await this.#durable.synced();
    };
    try {
      return connectionTransaction((stmt) => this.#execute(stmt), mode, end);
    } catch (err) {
      release();
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#prepared.clear();
    // Whichever connection closes last checkpoints the WAL into the database file: synced, at FULL.
    this.#durable?.close();
    this.#db.close();
  }
}

export interface CachedStatementClientOptions {
  busyTimeoutMs: number;
  /** the writer's durability (src/db/url.ts) */
  synchronous?: SqliteSynchronous;
  /** a connection that refuses writes (the hot reads' own, src/db/sqlite-reader.ts; the driver's `readonly` option is not implemented) */
  readOnly?: boolean;
  /** how the WAL file is flushed to disk (default: fdatasync on libuv's thread pool); tests hold it to watch commits wait */
  syncFile?: (path: string) => Promise<void>;
  /** FULL: frames in the WAL past which the checkpointer holds the writer once so the WAL starts over (WAL_RESTART_FRAMES; tests lower it) */
  walRestartFrames?: number;
}

const DONE = Promise.resolve();

const isMemory = (file: string) => file === ":memory:" || file === "" || file.startsWith("file::memory:");

/** Statements that never end a transaction with a write: no flush after them. */
const NEVER_COMMITS = /^\s*(SELECT|BEGIN|ROLLBACK)\b/i;

/** How often the checkpointer copies the WAL's committed pages into the database file. */
const CHECKPOINT_INTERVAL_MS = 200;
/**
 * Frames in the WAL (about 4 KB each) past which a checkpoint round holds the writer once, so that the WAL starts
 * over from the beginning of its file (see startCheckpointer): about 256 MB.
 */
const WAL_RESTART_FRAMES = 65_536;

interface DurableCommits {
  /** Resolves once everything committed before the call is on disk. */
  synced(): Promise<void>;
  close(): void;
}

/**
 * Set the writer's connection up for commits synced off the event loop and return the flusher: fsyncs of the
 * WAL, shared by every commit made before each one starts, and the checkpointer (see the top of this file).
 */
function durableCommits(
  db: InstanceType<typeof Database>,
  file: string,
  holdWriter: () => Promise<() => void>,
  restartFrames: number,
  syncFile?: (path: string) => Promise<void>,
): DurableCommits {
  db.exec("PRAGMA journal_mode = WAL"); // commits then write only the WAL, the one file flushed here
  db.exec("PRAGMA synchronous = OFF");
  db.exec("PRAGMA wal_autocheckpoint = 0");
  const wal = `${file}-wal`;
  let handle: FileHandle | null = null;
  const flush =
    syncFile ??
    (async (path: string) => {
      handle ??= await open(path, "r");
      await handle.datasync();
    });
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const start = (): Promise<void> => {
    const p = flush(wal).finally(() => {
      if (running === p) running = null;
    });
    return (running = p);
  };
  let closed = false;
  const checkpointer = startCheckpointer(file, holdWriter, restartFrames, () => {
    // Without its checkpoints the WAL would grow for ever: back to SQLite's own synced commits and checkpoints.
    if (closed) return;
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA wal_autocheckpoint = 1000");
  });
  return {
    synced() {
      if (closed) return DONE; // nothing commits on a closed connection; what committed before is flushed (close)
      if (!running) return start();
      // A flush already under way may have started before this commit: the next one starts after it, once.
      next ??= running.catch(() => {}).then(() => {
        next = null;
        return start();
      });
      return next;
    },
    close() {
      closed = true;
      // The writer's own close-time checkpoint, if it is the last connection, must sync like any other.
      db.exec("PRAGMA synchronous = FULL");
      checkpointer.stop();
      // The file closes once the flushes already asked for (the one under way, the one queued behind it) are done:
      // closed under them, they would fail ("file closed") and commits made before the close would be reported lost.
      void (next ?? running ?? DONE)
        .catch(() => {})
        .then(() => handle?.close())
        .catch(() => {});
    },
  };
}

/**
 * Checkpoints of the WAL on a connection of their own at synchronous=FULL, every CHECKPOINT_INTERVAL_MS, run off
 * the event loop: through the driver's promise API (`libsql/promise`), whose statements run on the driver's own
 * native threads, so the checkpoint's fsyncs never stop the process. (A worker thread did this before: a second
 * V8 isolate and a second copy of the driver's JavaScript, about 17 MB resident for one statement every 200 ms.)
 * `failed` is called if the connection cannot be opened or set up.
 *
 * The WAL starts over from the beginning of its file only when a writer begins while every frame in it has been
 * copied into the database. With writes pausing now and then that happens by itself; under steady writes a
 * checkpoint running beside the writer never got there, and the WAL file grew for as long as the writes went on
 * (205 MB, 49,961 frames, beside a database of 2,961 pages, after one `npm run bench -- --only calls`): a busy
 * node's disk would have filled. So a round that finds `restartFrames` or more frames in the WAL is followed by
 * one with the writer's connection held (`holdWriter`: its transactions wait, the event loop does not), which
 * copies what is left; the writer's next transaction then writes from the start of the file again (unless a read
 * that began before is still running: then the next such round does). The held round takes as long as copying
 * what was written during the round before it (40–130 ms under the bench's batch ingest, which fills 256 MB of
 * WAL every few seconds); writes that arrive meanwhile wait and go in the next group.
 */
function startCheckpointer(file: string, holdWriter: () => Promise<() => void>, restartFrames: number, failed: () => void): { stop(): void } {
  let db: AsyncDatabase;
  try {
    db = new AsyncDatabase(file, {});
  } catch {
    failed();
    return { stop() {} };
  }
  let stopped = false;
  // One statement at a time on the connection: the setup, then each checkpoint; a round is skipped while one runs.
  let running: Promise<void> | null = (async () => {
    await db.exec("PRAGMA busy_timeout = 5000");
    await db.exec("PRAGMA synchronous = FULL");
  })().then(
    () => {
      running = null;
    },
    () => {
      running = null;
      if (!stopped) {
        stop();
        failed();
      }
    },
  );
  /** One checkpoint (with the writer held, or beside it): answers the frames the WAL holds (its `log`). */
  const checkpoint = async (held: boolean): Promise<number> => {
    const release = held ? await holdWriter() : null;
    try {
      if (stopped) return 0;
      // The driver's promise API runs the statement on its own thread, as exec does.
      const [result] = (await db.pragma("wal_checkpoint(PASSIVE)", {})) as { log: number | bigint }[];
      return Number(result?.log ?? 0);
    } finally {
      release?.();
    }
  };
  // The WAL's frames right after the last held round: an idle writer leaves them as they were (it starts the WAL
  // over at its next write), and holding it again would copy nothing.
  let heldAt = -1;
  // Past `restartFrames`, a held round follows.
  const round = async (): Promise<void> => {
    const frames = await checkpoint(false);
    if (frames < restartFrames || frames === heldAt || stopped) return;
    heldAt = await checkpoint(true);
  };
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = round().then(
      () => {
        running = null;
      },
      () => {
        running = null; // busy or closing: the next round
      },
    );
  }, CHECKPOINT_INTERVAL_MS);
  timer.unref();
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    // Closed once its statement in flight, if any, has ended.
    const close = () => db.close();
    if (running) void running.then(close);
    else close();
  };
  return { stop };
}

/** The path a `file:` URL names (query string dropped). */
export function sqliteFileOf(url: string): string {
  return (url.startsWith("file:") ? url.slice("file:".length) : url).split("?")[0];
}


/** PrismaLibSql on CachedStatementClient (see the top of this file). */
export class SingleConnectionLibSql extends PrismaLibSql {
  readonly #synchronous: SqliteSynchronous;

  readonly #url: string;

  constructor(config: ConstructorParameters<typeof PrismaLibSql>[0], synchronous: SqliteSynchronous = "FULL") {
    super(config);
    this.#synchronous = synchronous;
    this.#url = config.url;
  }

  /** The client of the connection Prisma opened last (a shadow database's aside): the hot paths' transactions run on it. */
  writer: CachedStatementClient | null = null;

  override createClient(config: Parameters<PrismaLibSql["createClient"]>[0]): Client {
    const client = new CachedStatementClient(sqliteFileOf(config.url), { busyTimeoutMs: config.timeout ?? 5000, synchronous: this.#synchronous });
    if (config.url === this.#url) this.writer = client;
    return client as unknown as Client;
  }
}
