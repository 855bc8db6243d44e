// Transactions the database aborts for concurrency reasons are retried whole, never surfaced to clients.
import { readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, providerOfDb, type Db } from "../src/db/client.ts";
import { loadConfig } from "../src/config.ts";
import { inSqlTransaction, inTransaction } from "../src/domain/transactions.ts";
import { startTestApp, type TestApp } from "./support/app.ts";

let t: TestApp;
const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

describe.each([
  { kind: "Prisma (inTransaction)", transaction: inTransaction },
  { kind: "node-postgres (inSqlTransaction)", transaction: inSqlTransaction },
])("transaction retries through $kind", ({ transaction }) => {
  it("a deadlock between two transactions is retried: both complete, one of them twice", async ({ skip }) => {
    if (providerOfDb(t.db) !== "postgresql") skip("row locks and deadlock detection are PostgreSQL's; SQLite serializes writers");
    await t.db.$executeRawUnsafe(`DROP TABLE IF EXISTS "DeadlockProbe"`);
    await t.db.$executeRawUnsafe(`CREATE TABLE "DeadlockProbe" ("id" INT PRIMARY KEY, "v" INT NOT NULL)`);
    await t.db.$executeRawUnsafe(`INSERT INTO "DeadlockProbe" VALUES (1, 0), (2, 0)`);
    let attempts = 0;
    let arrived = 0;
    let release!: () => void;
    const bothLocked = new Promise<void>((resolve) => (release = resolve));
    const run = (first: number, second: number) =>
      transaction(t.db, silent, t.organizationId, async (sql) => {
        const attempt = ++attempts;
        await sql.execute(`UPDATE "DeadlockProbe" SET "v" = "v" + 1 WHERE "id" = $1`, [first]);
        if (attempt <= 2) {
          // the first two attempts meet here, each holding the row the other wants next
          if (++arrived === 2) release();
          await bothLocked;
        }
        await sql.execute(`UPDATE "DeadlockProbe" SET "v" = "v" + 1 WHERE "id" = $1`, [second]);
        return { value: first, changes: [] };
      });
    expect(await Promise.all([run(1, 2), run(2, 1)])).toEqual([1, 2]);
    expect(attempts).toBe(3);
    const rows = await t.db.$queryRawUnsafe<{ id: number; v: number }[]>(`SELECT "id", "v" FROM "DeadlockProbe" ORDER BY "id"`);
    expect(rows.map((r) => Number(r.v))).toEqual([2, 2]);
  }, 20_000);
});

describe("SQLite connections", () => {
  const openFds = () => readdirSync("/proc/self/fd").length;

  it("1,000 write transactions (8 writers at once) leave the process's open file descriptors where they were", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("the leak was @libsql/client's, SQLite only");
    await t.db.$executeRawUnsafe(`CREATE TABLE "FdProbe" ("id" INTEGER PRIMARY KEY, "writer" INTEGER NOT NULL)`);
    const write = (writer: number) =>
      inSqlTransaction(t.db, silent, t.organizationId, async (sql) => {
        await sql.execute(`INSERT INTO "FdProbe" ("writer") VALUES ($1)`, [writer]);
        return { value: undefined, changes: [] };
      });
    await write(-1); // the first transaction on a fresh client
    const before = openFds();
    await Promise.all(
      Array.from({ length: 8 }, async (_, writer) => {
        for (let i = 0; i < 125; i++) await write(writer);
      }),
    );
    const after = openFds();
    const rows = await t.db.$queryRawUnsafe<{ n: bigint }[]>(`SELECT COUNT(*) AS "n" FROM "FdProbe" WHERE "writer" >= 0`);
    expect(Number(rows[0].n)).toBe(1000);
    expect(Math.abs(after - before), `open fds before ${before}, after ${after}`).toBeLessThanOrEqual(10);
    console.log(`SQLite: open file descriptors ${before} before 1,000 write transactions, ${after} after`);
  }, 60_000);

  it("SQLITE_SYNCHRONOUS sets the writer's synchronous mode: FULL by default, NORMAL when asked; anything else is refused at start", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("a SQLite setting");
    const mode = async (db: Db) => Number((await db.$queryRawUnsafe<{ synchronous: bigint }[]>("PRAGMA synchronous"))[0].synchronous);
    expect(await mode(t.db)).toBe(2); // FULL
    const normal = await createPrisma(t.databaseUrl, { sqliteSynchronous: loadConfig({ SQLITE_SYNCHRONOUS: "normal" }).sqliteSynchronous });
    try {
      expect(await mode(normal)).toBe(1); // NORMAL
    } finally {
      await normal.$disconnect();
    }
    expect(loadConfig({}).sqliteSynchronous).toBe("FULL");
    expect(() => loadConfig({ SQLITE_SYNCHRONOUS: "OFF" })).toThrow(/SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA/);
  });

  it("on the one connection, a failed transaction leaves nothing behind and the next one commits", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's connection handling");
    await t.db.$executeRawUnsafe(`CREATE TABLE "RollbackProbe" ("id" INTEGER PRIMARY KEY, "v" INTEGER NOT NULL)`);
    const failed = inSqlTransaction(t.db, silent, t.organizationId, async (sql) => {
      await sql.execute(`INSERT INTO "RollbackProbe" ("v") VALUES (1)`);
      throw new Error("abandon");
    });
    await expect(failed).rejects.toThrow("abandon");
    // a constraint violation inside the transaction: the whole transaction goes, not just the statement
    const violated = inSqlTransaction(t.db, silent, t.organizationId, async (sql) => {
      await sql.execute(`INSERT INTO "RollbackProbe" ("id", "v") VALUES (7, 2)`);
      await sql.execute(`INSERT INTO "RollbackProbe" ("id", "v") VALUES (7, 3)`);
      return { value: undefined, changes: [] };
    });
    await expect(violated).rejects.toThrow();
    await inSqlTransaction(t.db, silent, t.organizationId, async (sql) => {
      await sql.execute(`INSERT INTO "RollbackProbe" ("v") VALUES (4)`);
      return { value: undefined, changes: [] };
    });
    const rows = await t.db.$queryRawUnsafe<{ v: bigint }[]>(`SELECT "v" FROM "RollbackProbe"`);
    expect(rows.map((r) => Number(r.v))).toEqual([4]);
  });
});
