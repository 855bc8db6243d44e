// `npm run migrate:status`: the schema engine's diagnosis of a database's migration history, as a short summary
// for a person (or, with --json, for a script): which migrations are applied, pending, failed, edited since
// they were applied, or only in the database.
import path from "node:path";
import { migrateStatus } from "../src/db/migrate.ts";
import { listMigrations } from "../src/db/schema-engine.ts";
import { pgConfig, providerOf } from "../src/db/url.ts";

type Diagnosis = Awaited<ReturnType<typeof migrateStatus>>;

export interface MigrationStatus {
  /** DATABASE_URL without its password. */
  database: string;
  /** Relative to the project root, e.g. prisma/sqlite/migrations. */
  migrationsDirectory: string;
  /** In the migrations directory, oldest first. */
  local: string[];
  applied: string[];
  /** In the directory, not applied yet: `npm run migrate:deploy` (or `npm start`) applies them. */
  pending: string[];
  /** Started and not finished (an error in its SQL, say): the database needs looking at by hand. */
  failed: string[];
  /** Applied, and their migration.sql has changed since. */
  edited: string[];
  /** Applied to the database but not in the directory (another branch's, or deleted). */
  onlyInDatabase: string[];
  upToDate: boolean;
}

const root = path.resolve(import.meta.dirname, "..");

/**
 * The database as a person may see it printed: a PostgreSQL URL rebuilt from what node-postgres reads in it
 * (user, host, port, database), its password shown as *** wherever the URL carried it (before the host, with an
 * `@` in it or not, or as `?password=`), and no other parameter.
 */
function withoutPassword(url: string): string {
  if (!/^postgres(ql)?:\/\//.test(url)) return url;
  try {
    const c = pgConfig(url);
    return `postgresql://${c.user ?? ""}${c.password ? ":***" : ""}@${c.host ?? ""}${c.port ? `:${c.port}` : ""}/${c.database ?? ""}`;
  } catch {
    return "postgresql://… (not a URL node-postgres reads)";
  }
}

/** The status from the engine's diagnosis; `diagnosis` null when the database has no migrations table yet. */
export function summarize(database: string, migrationsDirectory: string, local: string[], diagnosis: Diagnosis | null): MigrationStatus {
  const history = diagnosis?.history ?? null;
  const pending = !diagnosis?.hasMigrationsTable ? [...local] : history && "unappliedMigrationNames" in history ? history.unappliedMigrationNames : [];
  const onlyInDatabase = history && "unpersistedMigrationNames" in history ? history.unpersistedMigrationNames : [];
  const failed = diagnosis?.failedMigrationNames ?? [];
  const edited = diagnosis?.editedMigrationNames ?? [];
  return {
    database: withoutPassword(database),
    migrationsDirectory,
    local,
    applied: local.filter((name) => !pending.includes(name) && !failed.includes(name)),
    pending,
    failed,
    edited,
    onlyInDatabase,
    upToDate: pending.length + failed.length + edited.length + onlyInDatabase.length === 0,
  };
}

/** The summary a person reads. */
export function describe(status: MigrationStatus): string {
  const lines = [
    `Database:   ${status.database}`,
    `Migrations: ${status.local.length} in ${status.migrationsDirectory}, ${status.applied.length} applied, ${status.pending.length} pending`,
  ];
  const list = (names: string[], heading: string) => {
    if (names.length) lines.push("", `${heading}:`, ...names.map((n) => `  ${n}`));
  };
  list(status.pending, "Pending (npm run migrate:deploy or npm start applies them)");
  list(status.failed, "Failed (started, never finished; deploy refuses to go on: see its logs in _prisma_migrations, undo what it did, delete its row, deploy again)");
  list(status.edited, "Edited since they were applied (their migration.sql no longer matches what ran: restore the file)");
  list(status.onlyInDatabase, `Only in the database (applied, but not in ${status.migrationsDirectory}: another branch's, or deleted)`);
  lines.push("", status.upToDate ? "Up to date." : "Not up to date.");
  return lines.join("\n");
}

/** The status of the database at `url` against this checkout's migrations. */
export async function migrationStatus(url: string): Promise<MigrationStatus> {
  const directory = path.join(root, "prisma", providerOf(url), "migrations");
  const local = (await listMigrations(directory)).migrationDirectories.map((d) => d.path);
  let diagnosis: Diagnosis | null;
  try {
    diagnosis = await migrateStatus(url);
  } catch (err) {
    // A database nothing was ever applied to has no _prisma_migrations table, which the engine reports as an error.
    if (!/_prisma_migrations/.test(String((err as Error).message))) throw err;
    diagnosis = null;
  }
  return summarize(url, path.relative(root, directory), local, diagnosis);
}
