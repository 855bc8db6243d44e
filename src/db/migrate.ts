// Migrations without Prisma's native engine: apply (= `migrate deploy`), status and create (= `migrate dev
// --create-only`) through the WebAssembly schema engine. The server applies pending migrations at start,
// the tests in their setup.
import path from "node:path";
import { readdir } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import {
  applyMigrations,
  createMigrationViaDiff,
  listMigrations,
  openSchemaEngine,
  pgShadowDb,
  type SchemaEngineHandle,
} from "./schema-engine.ts";
import { existsSync } from "node:fs";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { sqliteFileOf } from "./libsql.ts";
import { ensureSqliteDir, pgConfig, providerOf, type Provider } from "./url.ts";
import { projectRoot, runsBuilt } from "../project-root.ts";

const schemaPath = (provider: Provider) => path.join(projectRoot, "prisma", provider);
const migrationsDir = (provider: Provider) => path.join(projectRoot, "prisma", provider, "migrations");

async function withEngine<T>(url: string, run: (engine: SchemaEngineHandle, provider: Provider) => Promise<T>): Promise<T> {
  const provider = providerOf(url);
  ensureSqliteDir(url);
  const adapterFactory =
    provider === "postgresql"
      ? new (await import("@prisma/adapter-pg")).PrismaPg(pgConfig(url))
      : new (await import("./libsql.ts")).SingleConnectionLibSql({ url, timeout: 15000 });
  const engine = await openSchemaEngine({
    schemaPath: schemaPath(provider),
    adapterFactory,
    // PrismaPg's own shadow database handling leaks databases (see schema-engine.ts).
    connectToShadowDb: provider === "postgresql" ? () => pgShadowDb(pgConfig(url)) : undefined,
    log: (m) => process.env.DEBUG_SCHEMA_ENGINE && console.error(m),
  });
  try {
    return await run(engine, provider);
  } finally {
    await engine.close();
  }
}

/**
 * Apply pending migrations; returns the names applied (empty when up to date). A database that has every
 * migration folder recorded as applied is left alone without loading the schema engine, whose WebAssembly
 * memory (about 75 MB of resident memory) a process never gives back: a restarted server stays smaller.
 */
export async function migrateDeploy(url: string): Promise<string[]> {
  if (await upToDate(url)) return [];
  return withMigrationLock(url, async () => {
    // another process may have applied them while this one waited for the lock
    if (await upToDate(url)) return [];
    return withEngine(url, async (engine, provider) => (await applyMigrations(engine, migrationsDir(provider))).appliedMigrationNames);
  });
}

function migrationLockLost(cause: Error): Error {
  return new Error(
    `the migration lock's connection was lost while migrating (${cause.message}): another process may have migrated at the same time; run npm run migrate:status before starting again`,
    { cause },
  );
}

/** How long a process waits for another one's migrations (a long one rewrites a large ledger's index). */
export const MIGRATION_LOCK_WAIT_MS = 30 * 60_000;
/** PostgreSQL advisory lock key of the migrations (the schema engine's own lock gives up after 10 s). */
const MIGRATION_LOCK_KEY = 4_729_110_233_857;
/** The schema engine's own advisory lock key, which it holds while it migrates (and waits for 10 s at most). */
const ENGINE_LOCK_KEY = 72_707_369;

/** A lock's wait that ran out, said as what was waited for and for how long. */
function lockWaitRanOut(what: string, waitMs: number, cause: unknown): Error {
  const waited = waitMs >= 60_000 ? `${Math.round(waitMs / 60_000)} minutes` : `${Math.round(waitMs / 1000)} s`;
  return new Error(`waited ${waited} for ${what} to finish; it still holds its lock`, { cause });
}

/** PostgreSQL: `locking`, whose lock_timeout running out (55P03) becomes lockWaitRanOut. */
async function waitedFor<T>(locking: Promise<T>, what: string, waitMs: number): Promise<T> {
  try {
    return await locking;
  } catch (err) {
    if ((err as { code?: unknown }).code !== "55P03") throw err;
    throw lockWaitRanOut(what, waitMs, err);
  }
}

/**
 * Run `work` alone among the processes migrating this database: two nodes starting at once, or `npm start`
 * beside `npm run cli`. The lock is waited for up to `waitMs` (MIGRATION_LOCK_WAIT_MS), then the start fails
 * saying what it waited for. PostgreSQL: a session advisory lock (and a schema engine migrating without it is
 * waited out by its own lock). SQLite: an exclusive transaction on a lock file beside the database
 * (`<file>.migrate-lock`), which the operating system releases if the process dies; without it two processes
 * applied the same migration, and the second one's failure, recorded in the history, refused the next release's
 * migrations.
 */
export async function withMigrationLock<T>(url: string, work: () => Promise<T>, waitMs = MIGRATION_LOCK_WAIT_MS): Promise<T> {
  if (providerOf(url) === "postgresql") {
    const { default: pg } = await import("pg");
    // The lock lives as long as this session, which sits idle while the engine migrates on its own connections:
    // kept alive (TCP keepalive, no idle_session_timeout), and if it is lost all the same the migration's
    // outcome is reported as unknown, since another process may then have migrated beside this one.
    const client = new pg.Client({ ...pgConfig(url), keepAlive: true });
    let lost: Error | null = null;
    client.on("error", (err: Error) => (lost ??= err));
    client.on("end", () => (lost ??= new Error("the connection ended")));
    await client.connect();
    let released = false;
    try {
      await client.query(`SET lock_timeout = ${Math.floor(waitMs)}`);
      await client.query(`SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'`);
      await waitedFor(client.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`), "another process's migrations (the migration lock)", waitMs);
      // A schema engine migrating without that lock (a node of an older release starting beside this one, a
      // `prisma migrate deploy` by hand) holds its own: waited out here, taken and given back at once, since the
      // engine this process starts would give up on it after 10 s. `work` then finds what it applied.
      await waitedFor(client.query(`SELECT pg_advisory_lock(${ENGINE_LOCK_KEY})`), `a schema engine migrating this database (its advisory lock ${ENGINE_LOCK_KEY})`, waitMs);
      await client.query(`SELECT pg_advisory_unlock(${ENGINE_LOCK_KEY})`);
      const result = await work();
      await client.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`);
      released = true;
      return result;
    } catch (err) {
      if (lost && !released) throw migrationLockLost(lost);
      throw err;
    } finally {
      await client.end().catch(() => {}); // the session's lock ends with it
    }
  }
  const file = sqliteFileOf(url);
  if (!file || file === ":memory:") return work();
  ensureSqliteDir(url); // a first start: the database's folder does not exist yet
  const { default: Database } = await import("libsql");
  const lock = new Database(`${file}.migrate-lock`);
  try {
    lock.exec(`PRAGMA busy_timeout = ${Math.floor(waitMs)}`);
    try {
      lock.exec("BEGIN EXCLUSIVE");
    } catch (err) {
      if ((err as { code?: unknown }).code !== "SQLITE_BUSY") throw err;
      throw lockWaitRanOut(`another process's migrations (the lock file ${file}.migrate-lock)`, waitMs, err);
    }
    return await work();
  } finally {
    lock.close();
  }
}

/**
 * `migrateDeploy` for the server: pending migrations are applied by a short-lived process of their own
 * (`node dist/migrate-deploy.js` when the server runs the build, as `npm start` does; `node --import tsx
 * src/db/migrate-deploy.ts` when it runs from source, as the tests do), so that the schema engine's
 * WebAssembly memory and compiled code never enter the server's process, which would keep about 55 MB of
 * them resident for as long as it runs (a worker thread gave back only a third of it). A database that is up
 * to date never starts it.
 */
export async function migrateDeployApart(url: string): Promise<string[]> {
  if (await upToDate(url)) return [];
  // By absolute path (and tsx's loader by absolute URL): the server may run in any working directory.
  const args = runsBuilt
    ? ["--enable-source-maps", path.join(projectRoot, "dist", "migrate-deploy.js")]
    : ["--import", pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href, path.join(projectRoot, "src", "db", "migrate-deploy.ts")];
  // The URL goes by the environment, not the command line (`ps` shows arguments, and it may hold a password).
  const child = spawn(process.execPath, args, { env: { ...process.env, DATABASE_URL: url }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((resolve, reject) => child.once("error", reject).once("close", resolve));
  if (code !== 0) {
    // its message in the start's one line (the whole of what it printed at LOG_LEVEL=debug)
    const said = process.env.LOG_LEVEL?.trim() === "debug" ? err.trim() : (err.split("\n").find((line) => line.trim()) ?? "").trim();
    throw new Error(`applying migrations failed: ${said || `the migration process exited with ${code}`}`);
  }
  if (err) process.stderr.write(err); // what it printed beside succeeding (a warning), as it printed it
  return JSON.parse(out) as string[];
}

class UnreachableDatabaseError extends Error {}

/** Every migration folder is recorded in _prisma_migrations as finished and not rolled back. */
async function upToDate(url: string): Promise<boolean> {
  const provider = providerOf(url);
  const folders = (await readdir(migrationsDir(provider), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  const query = `SELECT "migration_name" FROM "_prisma_migrations" WHERE "finished_at" IS NOT NULL AND "rolled_back_at" IS NULL`;
  let applied: string[];
  try {
    if (provider === "postgresql") {
      const { default: pg } = await import("pg");
      const client = new pg.Client(pgConfig(url));
      // A database that cannot be reached (or does not answer within the connect timeout) fails the start
      // here, in one line, rather than again in the migration process after as long once more.
      await client.connect().catch((err: Error) => {
        throw new UnreachableDatabaseError(`cannot connect to the database: ${err.message}`);
      });
      try {
        applied = (await client.query<{ migration_name: string }>(query)).rows.map((r) => r.migration_name);
      } finally {
        await client.end();
      }
    } else {
      const file = sqliteFileOf(url);
      if (!file || file === ":memory:" || !existsSync(file)) return false;
      const { default: Database } = await import("libsql");
      const db = new Database(file);
      try {
        applied = (db.prepare(query).all() as { migration_name: string }[]).map((r) => r.migration_name);
      } finally {
        db.close();
      }
    }
  } catch (err) {
    if (err instanceof UnreachableDatabaseError) throw err;
    return false; // no history table yet, or the database cannot be read: the engine decides (and reports)
  }
  const done = new Set(applied);
  return folders.every((f) => done.has(f));
}

export function migrateStatus(url: string) {
  return withEngine(url, async (engine, provider) =>
    engine.diagnoseMigrationHistory({
      migrationsList: await listMigrations(migrationsDir(provider)),
      optInToShadowDatabase: false,
      filters: { externalTables: [], externalEnums: [] },
    }),
  );
}

/** Write a new migration folder with the SQL that takes the migration history to prisma/models.prisma. */
export function migrateCreate(url: string, name: string): Promise<string | null> {
  return withEngine(url, (engine, provider) =>
    createMigrationViaDiff(engine, {
      schemaPath: schemaPath(provider),
      migrationsDir: migrationsDir(provider),
      name,
      provider,
    }),
  );
}
