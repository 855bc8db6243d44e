// Drive Prisma's WASM schema engine (the same engine Prisma 6's `engine: "js"` mode uses)
// with a Prisma driver adapter. No native schema-engine binary needed.
import { readFile, readdir, mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { bindMigrationAwareSqlAdapterFactory } from "@prisma/driver-adapter-utils";
import type { SqlMigrationAwareDriverAdapterFactory, SqlDriverAdapter } from "@prisma/driver-adapter-utils";
import type { SchemaEngine, MigrationList } from "@prisma/schema-engine-wasm";
import type { PoolConfig } from "pg";

const require = createRequire(import.meta.url);

let engineClass: typeof SchemaEngine | undefined;
async function loadSchemaEngineClass(): Promise<typeof SchemaEngine> {
  if (engineClass) return engineClass;
  // The package's main entry does `import * as wasm from "./schema_engine_bg.wasm"`,
  // which Node 20 cannot load. Instantiate the wasm by hand, like Prisma 6's CLI does.
  const glue = await import("@prisma/schema-engine-wasm/schema_engine_bg");
  const wasmPath = path.join(path.dirname(require.resolve("@prisma/schema-engine-wasm/schema_engine_bg")), "schema_engine_bg.wasm");
  const module = new WebAssembly.Module(await readFile(wasmPath));
  const instance = new WebAssembly.Instance(module, { "./schema_engine_bg.js": glue as any });
  (glue as any).__wbg_set_wasm(instance.exports);
  (instance.exports as any).__wbindgen_start();
  engineClass = (glue as any).SchemaEngine as typeof SchemaEngine;
  return engineClass;
}

/**
 * The wasm engine replays migrations into the shadow DB with adapter.executeRaw(script) (one call per
 * migration.sql). libsql's execute() silently runs only the FIRST statement of a multi-statement string,
 * so the shadow schema is wrong and the diff is garbage. Route arg-less executeRaw on the shadow
 * connection to executeScript() (which runs all statements).
 */
function withScriptAwareShadowDb(
  factory: SqlMigrationAwareDriverAdapterFactory,
  connectToShadowDb: () => Promise<SqlDriverAdapter> = () => factory.connectToShadowDb(),
  opened: SqlDriverAdapter[] = [],
): SqlMigrationAwareDriverAdapterFactory {
  const wrapped = {
    provider: factory.provider,
    adapterName: factory.adapterName,
    // remember the main connection: engine.free() does not dispose it (a pg Pool would keep the process alive)
    connect: async () => { const a = await factory.connect(); opened.push(a); return a; },
    connectToShadowDb: async () => {
      const shadow = await connectToShadowDb();
      return new Proxy(shadow, {
        get(target, prop) {
          if (prop === "executeRaw") {
            return async (q: { sql: string; args: unknown[] }) => {
              if (q.args.length === 0) { await target.executeScript(q.sql); return 0; }
              return target.executeRaw(q as any);
            };
          }
          const v = Reflect.get(target, prop, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
    },
  };
  return wrapped as SqlMigrationAwareDriverAdapterFactory;
}

/**
 * @prisma/adapter-pg 7.10 throws UnsupportedNativeDataType for PostgreSQL's internal `"char"` type (OID 18),
 * which the schema engine's catalog queries return when describing a database (shadow DB / db push):
 *   "Column type 'char' could not be deserialized from the database."
 * Report those columns as text (OID 25) - only inside the migration tooling process.
 */
let pgCharPatched = false;
export async function patchPgCharColumns() {
  if (pgCharPatched) return;
  const require2 = createRequire(require.resolve("@prisma/adapter-pg"));
  const pg = require2("pg");
  const orig = pg.Result.prototype.addFields;
  pg.Result.prototype.addFields = function (fields: { dataTypeID: number }[]) {
    for (const f of fields) if (f.dataTypeID === 18) f.dataTypeID = 25;
    return orig.call(this, fields);
  };
  pgCharPatched = true;
}

/**
 * Replacement for PrismaPg#connectToShadowDb (7.10), which (a) ignores the shadow DB name when the factory was
 * built from a connectionString and (b) DROPs the shadow DB before closing its pool ("database ... is being
 * accessed by other users"), leaking prisma_migrate_shadow_db_* databases.
 */
export async function pgShadowDb(pgConfig: PoolConfig): Promise<SqlDriverAdapter> {
  const { PrismaPg } = await import("@prisma/adapter-pg");
  const admin = await new PrismaPg(pgConfig).connect();
  const name = `prisma_migrate_shadow_db_${crypto.randomUUID()}`;
  await admin.executeScript(`CREATE DATABASE "${name}"`);
  const shadow = await new PrismaPg({ ...pgConfig, database: name }).connect();
  return new Proxy(shadow, {
    get(target, prop) {
      if (prop === "dispose") {
        return async () => {
          await target.dispose(); // closes the shadow pool first
          await admin.executeScript(`DROP DATABASE IF EXISTS "${name}"`);
          await admin.dispose();
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

export type SchemaEngineHandle = SchemaEngine & { close(): Promise<void> };

export async function openSchemaEngine(opts: {
  schemaPath: string;
  adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  /** override the factory's shadow DB (use pgShadowDb(config) for PostgreSQL) */
  connectToShadowDb?: () => Promise<SqlDriverAdapter>;
  log?: (msg: string) => void;
}): Promise<SchemaEngineHandle> {
  const SE = await loadSchemaEngineClass();
  if (opts.adapterFactory.provider === "postgres") await patchPgCharColumns();
  const files = await readSchemaFiles(opts.schemaPath);
  const opened: SqlDriverAdapter[] = [];
  const bound = bindMigrationAwareSqlAdapterFactory(withScriptAwareShadowDb(opts.adapterFactory, opts.connectToShadowDb, opened));
  // A driver's error reaches the engine as "External error id#N", its text kept in the bound factory's
  // registry: the engine's errors (opening it, and every call) get that text back ("file is not a database", …).
  const explained = (err: unknown): unknown => {
    const id = err instanceof Error ? /External error id#(\d+)/.exec(err.message)?.[1] : undefined;
    const found = id === undefined ? undefined : bound.errorRegistry.consumeError(Number(id));
    if (!found) return err;
    const cause = found.error as { message?: unknown; cause?: { message?: unknown } } | null;
    const said = typeof cause?.message === "string" && cause.message ? cause.message : typeof cause?.cause?.message === "string" ? cause.cause.message : String(found.error);
    return new Error((err as Error).message.replace(/External error id#\d+/, said), { cause: found.error });
  };
  let engine: SchemaEngine;
  try {
    engine = await SE.new({ datamodels: files.map((f) => [f.path, f.content]) }, opts.log ?? (() => {}), bound);
  } catch (err) {
    throw explained(err);
  }
  const handle = Object.assign(engine, {
    async close() {
      engine.free();
      await Promise.all(opened.map((a) => a.dispose()));
    },
  });
  return new Proxy(handle, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function" || prop === "close" || prop === "free") return value;
      return (...args: unknown[]) => {
        try {
          const result = value.apply(target, args);
          return result instanceof Promise ? result.catch((err: unknown) => Promise.reject(explained(err))) : result;
        } catch (err) {
          throw explained(err);
        }
      };
    },
  });
}

/** schemaPath may be a single file or a folder of *.prisma files (multi-file schema; symlinks followed). */
export async function readSchemaFiles(schemaPath: string): Promise<{ path: string; content: string }[]> {
  const { stat } = await import("node:fs/promises");
  if (!(await stat(schemaPath)).isDirectory()) return [{ path: schemaPath, content: await readFile(schemaPath, "utf8") }];
  const names = (await readdir(schemaPath)).filter((n) => n.endsWith(".prisma")).sort();
  return Promise.all(names.map(async (n) => ({ path: path.join(schemaPath, n), content: await readFile(path.join(schemaPath, n), "utf8") })));
}

// Same shape Prisma's CLI builds (listMigrations): sorted dirs, each with migration.sql
export async function listMigrations(migrationsDir: string): Promise<MigrationList> {
  const lockPath = "migration_lock.toml";
  const lockContent = await readFile(path.join(migrationsDir, lockPath), "utf8").catch(() => null);
  const entries = existsSync(migrationsDir) ? await readdir(migrationsDir, { withFileTypes: true }) : [];
  const dirs = [] as MigrationList["migrationDirectories"];
  for (const e of entries.filter((d) => d.isDirectory())) {
    const content = await readFile(path.join(migrationsDir, e.name, "migration.sql"), "utf8")
      .then((value) => ({ tag: "ok" as const, value }))
      .catch((err: Error) => ({ tag: "error" as const, value: err.message }));
    dirs.push({ path: e.name, migrationFile: { path: "migration.sql", content } });
  }
  dirs.sort((a, b) => a.path.localeCompare(b.path));
  return { baseDir: migrationsDir, lockfile: { path: lockPath, content: lockContent }, shadowDbInitScript: "", migrationDirectories: dirs };
}

const noFilter = { externalTables: [], externalEnums: [] };

/** `prisma migrate deploy` equivalent. */
export async function applyMigrations(engine: SchemaEngine, migrationsDir: string) {
  const migrationsList = await listMigrations(migrationsDir);
  return engine.applyMigrations({ migrationsList, filters: noFilter });
}

/**
 * `prisma migrate dev --create-only --name X` equivalent.
 * NOTE: engine.createMigration() fails in the wasm engine ("SQLite shadow DB must be provided through an
 * external factory"), because it is not handed the adapter factory. engine.diff() is, so we diff
 * (migrations dir replayed on the adapter's shadow DB) -> (schema file) and write the SQL ourselves.
 */
export async function createMigrationViaDiff(engine: SchemaEngine, opts: { schemaPath: string; migrationsDir: string; name: string; provider: "sqlite" | "postgresql" }) {
  const migrationsList = await listMigrations(opts.migrationsDir);
  const files = await readSchemaFiles(opts.schemaPath);
  const lockText = `# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "${opts.provider}"\n`;
  // The engine reads the connector from migration_lock.toml; supply it for the very first migration.
  if (migrationsList.lockfile.content === null) migrationsList.lockfile.content = lockText;
  // Always diff from the (possibly empty) migration history replayed on a shadow DB, like `migrate dev`.
  const from = { tag: "migrations", ...migrationsList } as const;
  const res = await engine.diff({ from, to: { tag: "schemaDatamodel", files }, script: true, exitCode: true, filters: noFilter });
  // exitCode 0 = no difference, 2 = difference (like `prisma migrate diff --exit-code`)
  if (res.exitCode === 0) return null;
  const script = res.stdout ?? "";
  const ts = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14); // YYYYMMDDHHMMSS like Prisma
  const dirName = `${ts}_${opts.name.replace(/[^A-Za-z0-9_]/g, "_")}`;
  await mkdir(path.join(opts.migrationsDir, dirName), { recursive: true });
  await writeFile(path.join(opts.migrationsDir, dirName, "migration.sql"), script);
  await writeFile(path.join(opts.migrationsDir, "migration_lock.toml"), lockText);
  return dirName;
}
