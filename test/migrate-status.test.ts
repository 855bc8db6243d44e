// `npm run migrate:status` (scripts/migrate-status.ts): a summary a person reads, JSON with --json, on a fresh
// database, an up-to-date one and one whose history went wrong (the tests run in order on one database).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { migrateDeploy, withMigrationLock } from "../src/db/migrate.ts";
import { providerOf } from "../src/db/url.ts";
import type { MigrationStatus } from "../scripts/migrate-status.ts";
import { freshDatabase } from "./support/app.ts";
import { tsx } from "./support/process.ts";

const dir = mkdtempSync(path.join(tmpdir(), "credits-status-"));
let database: Awaited<ReturnType<typeof freshDatabase>>;
let local: string[];
beforeAll(async () => {
  database = await freshDatabase(dir);
  const folder = path.join("prisma", providerOf(database.url), "migrations");
  local = (await readdir(folder, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
});
afterAll(async () => {
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** `work` on another fresh database (in a folder of its own under `dir`, named from `name`), dropped after it. */
async function onFreshDatabase(name: string, work: (url: string) => Promise<void>): Promise<void> {
  const other = await freshDatabase(mkdtempSync(path.join(dir, `${name}-`)));
  try {
    await work(other.url);
  } finally {
    await other.drop();
  }
}

/** `scripts/migrate.ts <args>` (npm run migrate:…) against the database at `url`, no .env file read. */
function migrateScript(url: string, ...args: string[]) {
  return promisify(execFile)(tsx, ["scripts/migrate.ts", ...args], { env: { ...process.env, ENV_FILE: "", DATABASE_URL: url } });
}

async function status(...args: string[]): Promise<string> {
  return (await migrateScript(database.url, "status", ...args)).stdout;
}

/** Whether the database at `url` has every migration applied and none failed, as `migrate:status --json` says. */
async function expectMigrated(url: string): Promise<void> {
  expect(JSON.parse((await migrateScript(url, "status", "--json")).stdout) as MigrationStatus).toMatchObject({ failed: [], upToDate: true });
}

/** This process holds the migration lock of the database at `url` (once it resolves) until `release` is awaited. */
async function holdMigrationLock(url: string): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  let locked!: () => void;
  const held = new Promise<void>((resolve) => (locked = resolve));
  const holding = withMigrationLock(url, () => {
    locked();
    return new Promise<void>((resolve) => (release = resolve));
  });
  await held;
  return {
    async release() {
      release();
      await holding;
    },
  };
}

describe("npm run migrate:status", () => {
  it("lists every migration as pending on a database nothing was applied to", async () => {
    // a SQLite file that does not exist is reported, not created (test/startup.test.ts): an empty one is a database
    if (providerOf(database.url) === "sqlite") writeFileSync(database.url.slice("file:".length), "");
    const text = await status();
    expect(text).toContain(`Migrations: ${local.length} in prisma/${providerOf(database.url)}/migrations, 0 applied, ${local.length} pending`);
    expect(text).toContain(`Pending (npm run migrate:deploy or npm start applies them):\n${local.map((n) => `  ${n}`).join("\n")}`);
    expect(text.trim().split("\n").at(-1)).toBe("Not up to date.");
    expect(text).not.toMatch(/^\s*[{[]/); // a summary, not JSON
  });

  it("says up to date once every migration is applied, and gives the same as JSON with --json", async () => {
    await migrateDeploy(database.url);
    const text = await status();
    expect(text).toContain(`${local.length} applied, 0 pending`);
    expect(text.trim().split("\n").at(-1)).toBe("Up to date.");
    const json = JSON.parse(await status("--json")) as MigrationStatus;
    expect(json).toMatchObject({ local, applied: local, pending: [], failed: [], edited: [], onlyInDatabase: [], upToDate: true });
  });

  it("names failed, edited and database-only migrations", async () => {
    const db = await createPrisma(database.url);
    try {
      await db.$executeRawUnsafe(`UPDATE _prisma_migrations SET checksum = 'edited' WHERE migration_name = '${local[0]}'`);
      await db.$executeRawUnsafe(`UPDATE _prisma_migrations SET finished_at = NULL WHERE migration_name = '${local.at(-1)}'`);
      await db.$executeRawUnsafe(
        `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, finished_at, applied_steps_count) VALUES ('other', 'c', '99991231000000_other_branch', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)`,
      );
    } finally {
      await db.$disconnect();
    }
    const json = JSON.parse(await status("--json")) as MigrationStatus;
    expect(json).toMatchObject({ pending: [], failed: [local.at(-1)], edited: [local[0]], onlyInDatabase: ["99991231000000_other_branch"], upToDate: false });
    expect(json.applied).toEqual(local.slice(0, -1));
    const text = await status();
    expect(text).toMatch(new RegExp(`Failed \\(.*\\):\\n  ${local.at(-1)}\\n`));
    expect(text).toMatch(new RegExp(`Edited since they were applied \\(.*\\):\\n  ${local[0]}\\n`));
    expect(text).toMatch(/Only in the database \(.*\):\n {2}99991231000000_other_branch\n/);
    expect(text.trim().split("\n").at(-1)).toBe("Not up to date.");
  });
});

describe("PostgreSQL's text columns", () => {
  it("every one of the service's tables compares bytewise (COLLATE \"C\"), as SQLite's do, whatever the database's locale", async ({ skip }) => {
    if (providerOf(database.url) !== "postgresql") skip("PostgreSQL's collations");
    await onFreshDatabase("collation", async (url) => {
      await migrateDeploy(url);
      const db = await createPrisma(url);
      try {
        const columns = await db.$queryRawUnsafe<{ table_name: string; column_name: string; collation_name: string | null }[]>(
          `SELECT c.table_name, c.column_name, c.collation_name
             FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
            WHERE c.table_schema = current_schema() AND c.data_type IN ('text', 'character varying') AND c.table_name <> '_prisma_migrations'`,
        );
        expect(columns.length).toBeGreaterThan(100); // ids, keys and names of every table
        // A migration adding a text column adds it COLLATE "C" (see prisma/postgresql/migrations/*_bytewise_text):
        // a column left to the database's default collation has none named here, whatever that default is.
        expect(columns.filter((c) => c.collation_name !== "C").map((c) => `${c.table_name}.${c.column_name}`)).toEqual([]);
      } finally {
        await db.$disconnect();
      }
    });
  });
});

describe("processes migrating one database at once", () => {
  it("a deploy waits while another process holds the migration lock, then applies every migration; none is recorded as failed", async () => {
    await onFreshDatabase("lock", async (url) => {
      const lock = await holdMigrationLock(url);
      let exited = false;
      const deploy = migrateScript(url, "deploy").finally(() => (exited = true));
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(exited).toBe(false); // waiting for the lock, not migrating beside its holder
      await lock.release();
      expect((await deploy).stdout).toContain("applied:");
      // a second deploy racing a third: one applies, the other finds them applied
      await onFreshDatabase("race", async (again) => {
        await Promise.all([migrateScript(again, "deploy"), migrateScript(again, "deploy")]);
        for (const migrated of [url, again]) await expectMigrated(migrated);
      });
    });
  }, 120_000);
});

describe("a migration lock held past the wait", () => {
  it("fails the one waiting with what it waited for and how long, without running its work", async () => {
    await onFreshDatabase("wait", async (url) => {
      const lock = await holdMigrationLock(url);
      let ran = false;
      await expect(withMigrationLock(url, async () => void (ran = true), 1_000)).rejects.toThrow(/^waited 1 s for another process's migrations \(the (migration lock|lock file .*\.migrate-lock)\) to finish; it still holds its lock$/);
      expect(ran).toBe(false);
      await lock.release();
      await withMigrationLock(url, async () => void (ran = true), 1_000); // free again
      expect(ran).toBe(true);
    });
  });
});

describe.skipIf(!process.env.TEST_DATABASE_URL)("a schema engine migrating without the migration lock (a node of an older release)", () => {
  it("is waited out past the engine's own 10 s, then every migration is applied and none recorded as failed", async () => {
    await onFreshDatabase("engine", async (url) => {
      const { default: pg } = await import("pg");
      const olderNode = new pg.Client({ connectionString: url });
      await olderNode.connect();
      try {
        // what the schema engine holds while it migrates (prisma-engines: pg_advisory_lock(72707369))
        await olderNode.query("SELECT pg_advisory_lock(72707369)");
        let settled = false;
        const deploy = migrateDeploy(url).finally(() => (settled = true));
        deploy.catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 11_000));
        expect(settled).toBe(false); // still waiting, where the engine alone gave up after 10 s
        await olderNode.query("SELECT pg_advisory_unlock(72707369)");
        expect((await deploy).length).toBeGreaterThan(0);
        await expectMigrated(url);
        // held past the wait: said as what was waited for
        await olderNode.query("SELECT pg_advisory_lock(72707369)");
        await expect(withMigrationLock(url, async () => {}, 1_000)).rejects.toThrow(/^waited 1 s for a schema engine migrating this database \(its advisory lock 72707369\) to finish/);
      } finally {
        await olderNode.end();
      }
    });
  }, 60_000);
});

describe.skipIf(!process.env.TEST_DATABASE_URL)("the PostgreSQL migration lock's session", () => {
  it("outlives the server's idle_session_timeout, and its loss fails the migration as an outcome unknown", async () => {
    await onFreshDatabase("lost", async (url) => {
      const { default: pg } = await import("pg");
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const name = new URL(url).pathname.slice(1);
      const lockHolder = async () =>
        (await admin.query<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = $1) AND pid <> pg_backend_pid()`, [name])).rows;
      try {
        // the session sits idle while the engine migrates on its own connections: a 1 s idle_session_timeout must not end it
        await admin.query(`ALTER DATABASE "${name}" SET idle_session_timeout = '1s'`);
        await withMigrationLock(url, async () => {
          await new Promise((resolve) => setTimeout(resolve, 2_500));
          expect(await lockHolder()).toHaveLength(1);
        });
        await admin.query(`ALTER DATABASE "${name}" RESET idle_session_timeout`);
        // lost all the same (the backend ended): the work's result is not reported as a success
        const outcome = withMigrationLock(url, async () => {
          const [holder] = await lockHolder();
          await admin.query("SELECT pg_terminate_backend($1)", [holder!.pid]);
          await new Promise((resolve) => setTimeout(resolve, 300));
          return ["20990101000000_pretend"];
        });
        await expect(outcome).rejects.toThrow(/the migration lock's connection was lost while migrating/);
      } finally {
        await admin.end();
      }
    });
  });
});
