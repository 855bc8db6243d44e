// One codebase, two engines: the generated client and driver adapter are picked from DATABASE_URL.
import type { Pool } from "pg";
import type { PrismaClient } from "../generated/prisma-postgresql/client.ts";
import { pgRunner } from "./pg.ts";
import type { CachedStatementClient } from "./libsql.ts";
import { openSqliteReader, type SqliteReader } from "./sqlite-reader.ts";

import { Sql } from "./sql.ts";
import { ensureSqliteDir, providerOf, type Provider, type SqliteSynchronous } from "./url.ts";

/** Both generated clients have the same model API; the PostgreSQL one is the canonical type. */
export type Db = PrismaClient;
/** A Prisma interactive-transaction client. */
export type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

const providers = new WeakMap<object, Provider>();
const pools = new WeakMap<object, Pool>();
const writerPools = new WeakMap<object, Pool>();
/** PostgreSQL clients whose hot paths run repeated texts as prepared statements (pgRunner, src/db/pg.ts). */
const preparing = new WeakSet<object>();
const queryHooks = new WeakMap<object, (sql: string) => void>();
const readers = new WeakMap<object, SqliteReader>();
const sqliteWriters = new WeakMap<object, { writer: CachedStatementClient | null }>();

/** Which engine a client created by createPrisma talks to (hot paths write engine-specific SQL). */
export function providerOfDb(db: Db): Provider {
  const provider = providers.get(db);
  if (!provider) throw new Error("database client was not created by createPrisma");
  return provider;
}

/**
 * The node-postgres pool under a PostgreSQL client, shared with Prisma's adapter (null on SQLite): the hot
 * write paths run their transactions on it directly (src/domain/transactions.ts, `inSqlTransaction`).
 */
export function pgPoolOf(db: Db): Pool | null {
  return pools.get(db) ?? null;
}

/**
 * Groups the node's writer (src/domain/writer.ts) runs at once on PostgreSQL, each on a connection of its own
 * (`pgWriterPoolOf`): one group's commit overlaps the next one's statements.
 */
export const PG_WRITER_CONNECTIONS = 2;

/**
 * The group writer's own connections on PostgreSQL (null on SQLite), beside the pool Prisma and the reads
 * share. Taking them from that pool made each group queue behind whatever reads were waiting for a connection
 * (measured: 5 to 8 ms per group under 64 concurrent authorizations, about a quarter of the group's time).
 */
export function pgWriterPoolOf(db: Db): Pool | null {
  return writerPools.get(db) ?? null;
}

/**
 * The SQLite connection under a SQLite client (null on PostgreSQL): the hot write paths run their transactions
 * on it past Prisma (`transact`, src/domain/transactions.ts), sharing it with Prisma's own statements.
 */
export function sqliteWriterOf(db: Db): CachedStatementClient | null {
  return sqliteWriters.get(db)?.writer ?? null;
}

/** The client's onQuery hook, for statements sent past Prisma. */
export function queryHookOf(db: Db): ((sql: string) => void) | undefined {
  return queryHooks.get(db);
}

/**
 * Whether the hot paths may keep prepared statements on this client's PostgreSQL sessions: not behind a
 * PgBouncer in transaction mode (`pgbouncer=true` in DATABASE_URL, as Prisma spells it), which hands a
 * session to other clients between transactions.
 */
export function pgPrepares(db: Db): boolean {
  return preparing.has(db);
}

/**
 * The SQL helper outside any transaction, for the hot paths' reads: on PostgreSQL straight on the pool, on
 * SQLite on the read-only synchronous connection with prepared statements (src/db/sqlite-reader.ts); both
 * past Prisma's runtime. Reads only: writes run in a transaction.
 */
export function sqlOf(db: Db): Sql {
  const pool = pgPoolOf(db);
  if (pool) return new Sql(pgRunner(pool, queryHookOf(db), pgPrepares(db)), "postgresql");
  const reader = readers.get(db);
  return reader ? new Sql(reader, "sqlite") : new Sql(db, providerOfDb(db));
}

export interface PrismaOptions {
  /** Called with every SQL statement the client sends (tests count queries with it). */
  onQuery?: (sql: string) => void;
  /** SQLite only: the writer's `synchronous` setting (config SQLITE_SYNCHRONOUS, default FULL). */
  sqliteSynchronous?: SqliteSynchronous;
}

export async function createPrisma(url: string, options: PrismaOptions = {}): Promise<Db> {
  const db = await connect(url, options.onQuery ? { log: [{ emit: "event", level: "query" }] } : {}, options);
  if (options.onQuery) {
    const onQuery = options.onQuery;
    (db as unknown as { $on(e: "query", cb: (e: { query: string }) => void): void }).$on("query", (e) => onQuery(e.query));
    queryHooks.set(db, onQuery);
  }
  providers.set(db, providerOf(url));
  return db;
}

/**
 * A connection the server ends (a restart, a failover, pg_terminate_backend, a dropped database) raises an
 * 'error' event on its node-postgres client; with no listener Node ends the process. The pool listens on
 * its idle clients only ("error" on the pool: that client is removed, a new one opens for the next query),
 * and a checked-out client, in a transaction, has none: every client gets one of its own for its lifetime.
 * The statement in flight fails with the error all the same, and whoever holds the client releases it as
 * broken (src/domain/transactions.ts), so it never goes back to the pool.
 */
function survivesLostConnections(pool: { on(event: "error", listener: () => void): unknown; on(event: "connect", listener: (client: { on(event: "error", listener: () => void): unknown }) => void): unknown }): void {
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
}

async function connect(url: string, clientOptions: object, { onQuery, sqliteSynchronous }: PrismaOptions): Promise<Db> {
  if (providerOf(url) === "postgresql") {
    const [{ PrismaClient }, { PrismaPg }, { default: pg }] = await Promise.all([
      import("../generated/prisma-postgresql/client.ts"),
      import("@prisma/adapter-pg"),
      import("pg"),
    ]);
    // One pool for Prisma and the hot paths' reads (the group writer has its own, below); $disconnect ends
    // both. A request that cannot get a connection within 30 s fails instead of queueing forever (Prisma's own
    // transactions wait as long).
    const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: 30_000 });
    // An idle connection the server ends (a restart, a failover, an administrator, a dropped database) is
    // removed from the pool, which opens a new one for the next query. Without a listener, node-postgres
    // raises that as an uncaught exception and the process dies.
    survivesLostConnections(pool);
    const db = new PrismaClient({ ...clientOptions, adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
    pools.set(db, pool);
    // Read from the text (a URL parser refuses some passwords node-postgres accepts, such as one with a `#`).
    if (!/[?&]pgbouncer=true(&|$)/.test(url)) preparing.add(db);
    // Connections open as the writer first needs them; $disconnect ends them with the shared pool.
    const writerPool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: 30_000, max: PG_WRITER_CONNECTIONS });
    survivesLostConnections(writerPool);
    writerPools.set(db, writerPool);
    const disconnect = db.$disconnect.bind(db);
    let closing: Promise<void> | undefined;
    // Once: a pool ended twice throws.
    db.$disconnect = () => (closing ??= Promise.all([disconnect(), writerPool.end()]).then(() => {}));
    return db;
  }
  ensureSqliteDir(url);
  const [{ PrismaClient: SqliteClient }, { SingleConnectionLibSql, sqliteFileOf }] = await Promise.all([
    import("../generated/prisma-sqlite/client.ts"),
    import("./libsql.ts"),
  ]);
  // timeout = SQLite busy timeout: writers from other processes wait instead of failing at once.
  // intMode bigint: micro-unit columns exceed 2^53; libsql would otherwise throw on reading them.
  // SingleConnectionLibSql: one SQLite connection per client (libsql's own transactions leak one per write).
  const adapter = new SingleConnectionLibSql({ url, timeout: 5000, intMode: "bigint" }, sqliteSynchronous);
  const prisma = new SqliteClient({ ...clientOptions, adapter });
  sqliteWriters.set(prisma, adapter);
  // WAL lets readers proceed while one writer commits. The pragma answers with a row, hence $queryRaw.
  await prisma.$queryRawUnsafe("PRAGMA journal_mode=WAL");
  const file = sqliteFileOf(url);
  if (file && file !== ":memory:") {
    // The hot reads' own connection (an in-memory database has no second connection to open).
    const reader = openSqliteReader(file, onQuery);
    readers.set(prisma, reader);
    const disconnect = prisma.$disconnect.bind(prisma);
    prisma.$disconnect = async () => {
      reader.close();
      await disconnect();
    };
  }
  return prisma as unknown as Db;
}
