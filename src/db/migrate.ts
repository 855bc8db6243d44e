// Migrations without Prisma's native engine: apply (= `migrate deploy`), status and create (= `migrate dev
// --create-only`) through the WebAssembly schema engine. The server applies pending migrations at start,
// the tests in their setup.
import path from "node:path";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  applyMigrations,
  createMigrationViaDiff,
  listMigrations,
  openSchemaEngine,
  pgShadowDb,
  type SchemaEngineHandle,
} from "./schema-engine.ts";
import { ensureSqliteDir, pgConfig, providerOf, type Provider } from "./url.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const schemaPath = (provider: Provider) => path.join(root, "prisma", provider);
const migrationsDir = (provider: Provider) => path.join(root, "prisma", provider, "migrations");

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

/** Apply pending migrations; returns the names applied (empty when up to date). */
export function migrateDeploy(url: string): Promise<string[]> {
  return withEngine(url, async (engine, provider) =>
    (await applyMigrations(engine, migrationsDir(provider))).appliedMigrationNames,
  );
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

/**
 * `migrateDeploy` in a process of its own, for the server's start: the WebAssembly schema engine takes about
 * 40–75 MB of resident memory that a process never gives back, even after the engine is closed (a worker
 * thread gave back less than half of it).
 */
export function migrateDeployIsolated(url: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(root, "src", "db", "migrate-child.ts"), url],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`migrations failed: ${stderr.trim() || err.message}`));
        resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as string[]);
      },
    );
  });
}
