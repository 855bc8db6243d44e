// Transactions the database aborts for concurrency reasons are retried whole, never surfaced to clients.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma, pgPoolOf, pgPrepares, providerOfDb, type Db } from "../src/db/client.ts";
import { pgRunner } from "../src/db/pg.ts";
import { loadConfig } from "../src/config.ts";
import { CachedStatementClient } from "../src/db/libsql.ts";
import { powerOfTwoChunks, SHARED_VALUES, Sql, type RawRunner } from "../src/db/sql.ts";
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

describe("PostgreSQL prepared statements (src/db/pg.ts)", () => {
  it("a text the hot paths repeat runs as a statement prepared on the session, unless it takes an array; never with prepared off or pgbouncer=true", async ({ skip }) => {
    if (providerOfDb(t.db) !== "postgresql") skip("PostgreSQL sessions only");
    const pool = pgPoolOf(t.db)!;
    const probe = Math.random().toString(36).slice(2);
    const statementsOf = async (client: { query(text: string): Promise<{ rows: { statement: string }[] }> }) =>
      (await client.query(`SELECT "statement" FROM pg_prepared_statements`)).rows.map((r) => r.statement);
    for (const prepared of [true, false]) {
      const client = await pool.connect();
      try {
        const runner = pgRunner(client, undefined, prepared);
        const text = `SELECT $1::int + 1 AS "n" /* probe ${probe} ${prepared} */`;
        for (let i = 0; i < 2; i++) expect(await runner.$queryRawUnsafe(text, i)).toEqual([{ n: i + 1 }]);
        expect(await statementsOf(client)).not.toContain(text); // two uses: still unnamed
        for (let i = 2; i < 5; i++) expect(await runner.$queryRawUnsafe(text, i)).toEqual([{ n: i + 1 }]);
        expect((await statementsOf(client)).includes(text)).toBe(prepared);
        // An array parameter keeps the statement unnamed: only a plan made for its values hashes the list.
        const listed = `SELECT COUNT(*)::int AS "n" FROM generate_series(1, 10) AS g WHERE g = ANY($1::int[]) /* probe ${probe} ${prepared} */`;
        for (let i = 0; i < 5; i++) expect(await runner.$queryRawUnsafe(listed, [1, 2, i + 3])).toEqual([{ n: 3 }]);
        expect(await statementsOf(client)).not.toContain(listed);
        // Nor does a multi-row write whose rows share a value (which columns do varies from call to call).
        const sql = new Sql(runner, "postgresql");
        await runner.$executeRawUnsafe(`CREATE TEMP TABLE "SharedProbe" ("id" TEXT PRIMARY KEY, "tag" TEXT NOT NULL)`);
        for (let i = 0; i < 5; i++) await sql.insertMany("SharedProbe", ["id", "tag"], [[`a${i}`, "same"], [`b${i}`, "same"]]);
        expect((await runner.$queryRawUnsafe<{ n: number }[]>(`SELECT COUNT(*)::int AS "n" FROM "SharedProbe" WHERE "tag" = 'same'`))[0].n).toBe(10);
        expect((await statementsOf(client)).filter((q) => q.includes(SHARED_VALUES))).toEqual([]);
        await runner.$executeRawUnsafe(`DROP TABLE "SharedProbe"`);
      } finally {
        client.release();
      }
    }
    expect(pgPrepares(t.db)).toBe(true);
    const behindPooler = await createPrisma(`${t.databaseUrl}${t.databaseUrl.includes("?") ? "&" : "?"}pgbouncer=true`);
    try {
      expect(pgPrepares(behindPooler)).toBe(false);
    } finally {
      await behindPooler.$disconnect();
    }
  });
});

describe("PostgreSQL prepared statements after a migration", () => {
  it("a statement whose result a migration changed fails once, then runs unnamed", async ({ skip }) => {
    if (providerOfDb(t.db) !== "postgresql") skip("PostgreSQL sessions only");
    const table = `PreparedProbe_${Math.random().toString(36).slice(2, 8)}`;
    await t.db.$executeRawUnsafe(`CREATE TABLE "${table}" ("id" INT PRIMARY KEY)`);
    await t.db.$executeRawUnsafe(`INSERT INTO "${table}" VALUES (1)`);
    const client = await pgPoolOf(t.db)!.connect();
    try {
      const runner = pgRunner(client, undefined, true);
      const text = `SELECT * FROM "${table}" WHERE "id" = $1`;
      for (let i = 0; i < 3; i++) expect(await runner.$queryRawUnsafe(text, 1)).toEqual([{ id: 1 }]);
      await t.db.$executeRawUnsafe(`ALTER TABLE "${table}" ADD COLUMN "more" INT`);
      await expect(runner.$queryRawUnsafe(text, 1)).rejects.toMatchObject({ code: "0A000" });
      expect(await runner.$queryRawUnsafe(text, 1)).toEqual([{ id: 1, more: null }]);
    } finally {
      client.release();
      await t.db.$executeRawUnsafe(`DROP TABLE "${table}"`);
    }
  });
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

  it("SQLITE_SYNCHRONOUS: FULL by default (commits flushed off the event loop: the connection itself syncs nothing and never checkpoints), NORMAL when asked; anything else is refused at start", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("a SQLite setting");
    const pragma = async (db: Db, name: string) => Number(Object.values((await db.$queryRawUnsafe<Record<string, bigint>[]>(`PRAGMA ${name}`))[0])[0]);
    expect(await pragma(t.db, "synchronous")).toBe(0); // OFF on the connection: the commit's fsync is ours (src/db/libsql.ts)
    expect(await pragma(t.db, "wal_autocheckpoint")).toBe(0); // checkpoints run on a connection of their own, off the event loop, at FULL
    const normal = await createPrisma(t.databaseUrl, { sqliteSynchronous: loadConfig({ SQLITE_SYNCHRONOUS: "normal" }).sqliteSynchronous });
    try {
      expect(await pragma(normal, "synchronous")).toBe(1); // NORMAL: SQLite's own
      expect(await pragma(normal, "wal_autocheckpoint")).toBe(1000);
    } finally {
      await normal.$disconnect();
    }
    expect(loadConfig({}).sqliteSynchronous).toBe("FULL");
    expect(() => loadConfig({ SQLITE_SYNCHRONOUS: "OFF" })).toThrow(/SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA/);
  });

  it("FULL: a commit is answered only once the WAL is flushed, and writes made while a flush runs share the next one", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's commit path");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-durable-"));
    const flushes: { path: string; done: () => void }[] = [];
    const client = new CachedStatementClient(path.join(dir, "d.db"), {
      busyTimeoutMs: 1000,
      syncFile: (file) => new Promise<void>((resolve) => flushes.push({ path: file, done: resolve })),
    });
    const settled = (p: Promise<unknown>) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 50))]);
    try {
      const created = client.execute(`CREATE TABLE "P" ("v" INTEGER NOT NULL)`);
      expect(await settled(created)).toBe(false); // written, but not answered before the flush
      expect(flushes).toHaveLength(1);
      expect(flushes[0].path).toBe(path.join(dir, "d.db-wal"));
      flushes[0].done();
      await created;
      // a transaction's COMMIT is answered after its flush
      const tx = await client.transaction("write");
      await tx.execute({ sql: `INSERT INTO "P" ("v") VALUES (?)`, args: [1] });
      const committed = tx.commit();
      expect(await settled(committed)).toBe(false);
      expect(flushes).toHaveLength(2);
      flushes[1].done();
      await committed;
      // three writes while one flush runs: the first started it, the other two share the next, started after it
      const writes = [2, 3, 4].map((v) => client.execute({ sql: `INSERT INTO "P" ("v") VALUES (?)`, args: [v] }));
      await new Promise((r) => setTimeout(r, 10));
      expect(flushes).toHaveLength(3);
      flushes[2].done();
      expect(await settled(writes[0])).toBe(true);
      expect(flushes).toHaveLength(4); // one more for both
      expect(await settled(Promise.all(writes.slice(1)))).toBe(false);
      flushes[3].done();
      await Promise.all(writes);
      // reads never wait for a flush
      expect((await client.execute(`SELECT COUNT(*) AS "n" FROM "P"`)).rows[0]).toEqual([4n]);
      expect(flushes).toHaveLength(4);
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("FULL: commits whose flush is under way or queued when the connection closes are still flushed, not failed", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's commit path");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-close-"));
    const client = new CachedStatementClient(path.join(dir, "c.db"), { busyTimeoutMs: 1000 });
    try {
      await client.execute(`CREATE TABLE "P" ("v" INTEGER NOT NULL)`); // the WAL's file is open from here on
      // the first commit's flush starts at once, the second's waits behind it; the connection closes meanwhile
      const first = await client.transact((runner) => runner.$executeRawUnsafe(`INSERT INTO "P" ("v") VALUES (1)`));
      const second = await client.transact((runner) => runner.$executeRawUnsafe(`INSERT INTO "P" ("v") VALUES (2)`));
      client.close();
      await expect(Promise.all([first.durable, second.durable])).resolves.toEqual([undefined, undefined]);
      const reopened = new CachedStatementClient(path.join(dir, "c.db"), { busyTimeoutMs: 1000 });
      expect(reopened.rowObjects(`SELECT COUNT(*) AS "n" FROM "P"`, [])).toEqual([{ n: 2n }]);
      reopened.close();
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the hot paths' transactions past Prisma (transact) share the connection with Prisma's statements, one at a time, and give it back before their flush", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's connection");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-transact-"));
    const flushes: (() => void)[] = [];
    const client = new CachedStatementClient(path.join(dir, "t.db"), { busyTimeoutMs: 1000, syncFile: () => new Promise<void>((resolve) => flushes.push(resolve)) });
    const settled = (p: Promise<unknown>) => Promise.race([p.then(() => true, () => true), new Promise((r) => setTimeout(() => r(false), 50))]);
    /** Finish every flush asked for until `p` is settled. */
    const flushUntil = async (p: Promise<unknown>) => {
      while (!(await settled(p))) while (flushes.length) flushes.shift()!();
      return p;
    };
    try {
      await flushUntil(client.execute(`CREATE TABLE "T" ("n" INTEGER NOT NULL, "b" BIGINT, "at" DATETIME, "yes" BOOLEAN, "j" JSONB, "s" TEXT)`));
      // A statement of Prisma's while a transaction is open runs after it, never inside it: here the
      // transaction fails, and only the statement's row stays.
      let gate!: () => void;
      const opened = new Promise<void>((resolve) => (gate = resolve));
      let proceed!: () => void;
      const held = new Promise<void>((resolve) => (proceed = resolve));
      const failing = client.transact(async (runner) => {
        await runner.$executeRawUnsafe(`INSERT INTO "T" ("n") VALUES (?)`, 1);
        gate();
        await held;
        throw new Error("refused");
      });
      await opened;
      const outside = client.execute({ sql: `INSERT INTO "T" ("n") VALUES (?)`, args: [2] });
      expect(await settled(outside)).toBe(false);
      proceed();
      await expect(failing).rejects.toThrow("refused");
      await flushUntil(outside);
      expect((await client.execute(`SELECT "n" FROM "T"`)).rows).toEqual([[2n]]);
      // Rows have the shapes Prisma's raw API gives, by declared type (computed columns as the driver reads them).
      const { value: rows, durable } = await client.transact(async (runner) => {
        await runner.$executeRawUnsafe(`INSERT INTO "T" VALUES (?, ?, ?, ?, ?, ?)`, 3, 2n ** 60n, new Date("2026-01-02T03:04:05.006Z"), true, `{"a":[1]}`, "x");
        return runner.$queryRawUnsafe<Record<string, unknown>[]>(`SELECT "n", "b", "at", "yes", "j", "s", COUNT(*) OVER () AS "count", MAX("at") OVER () AS "latest" FROM "T" WHERE "n" = ?`, 3);
      });
      expect(rows).toEqual([{ n: 3, b: 2n ** 60n, at: new Date("2026-01-02T03:04:05.006Z"), yes: true, j: { a: [1] }, s: "x", count: 1n, latest: "2026-01-02T03:04:05.006+00:00" }]);
      // Committed and the connection free: another transaction commits while the first one's flush is pending;
      // each is answered once a flush that began after its commit is done.
      const second = client.transact(async (runner) => runner.$executeRawUnsafe(`INSERT INTO "T" ("n") VALUES (?)`, 4));
      const answered = await second;
      expect(await settled(durable)).toBe(false);
      expect(await settled(answered.durable)).toBe(false);
      await flushUntil(Promise.all([durable, answered.durable]));
      expect((await client.execute(`SELECT COUNT(*) FROM "T"`)).rows).toEqual([[3n]]);
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a statement's values reach the driver as one list: a lone BLOB or null is a value, and a reader's first row binds the same way", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's driver");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-bind-"));
    const file = path.join(dir, "b.db");
    // Given as separate arguments, one object (a Buffer, or null) was taken for named parameters: the driver's
    // native code aborted the whole process on a Buffer, and refused a null.
    const client = new CachedStatementClient(file, { busyTimeoutMs: 1000, synchronous: "NORMAL" });
    try {
      await client.execute(`CREATE TABLE "Bin" ("b" BLOB NOT NULL, "n" BIGINT NOT NULL)`);
      await client.execute({ sql: `INSERT INTO "Bin" ("b", "n") VALUES (?, 7), (?, 9)`, args: [new Uint8Array([1, 2, 3]), new Uint8Array([4])] });
      const one = await client.execute({ sql: `SELECT length(?) AS "n"`, args: [new Uint8Array([1, 2, 3, 4, 5])] });
      expect(Number(one.rows[0][0])).toBe(5);
      // a lone null too (it failed: "failed to downcast any to object")
      const none = await client.execute({ sql: `SELECT ? IS NULL AS "n"`, args: [null] });
      expect(Number(none.rows[0][0])).toBe(1);
      const found = await client.execute({ sql: `SELECT "n" FROM "Bin" WHERE "b" = ?`, args: [new Uint8Array([4])] });
      expect(found.rows.map((r) => Number(r[0]))).toEqual([9]);
      const reader = new CachedStatementClient(file, { busyTimeoutMs: 1000, readOnly: true });
      try {
        expect(reader.firstRowObject(`SELECT "n" FROM "Bin" WHERE "b" = ?`, [new Uint8Array([1, 2, 3])])).toEqual({ n: 7n });
        expect(reader.rowObjects(`SELECT "n" FROM "Bin" ORDER BY "n"`, []).map((r) => r.n)).toEqual([7n, 9n]);
      } finally {
        reader.close();
      }
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("FULL: the checkpointer copies committed pages into the database file by itself", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's checkpoints");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-checkpoint-"));
    const file = path.join(dir, "c.db");
    const client = new CachedStatementClient(file, { busyTimeoutMs: 1000 });
    try {
      await client.execute(`CREATE TABLE "Blob" ("b" BLOB NOT NULL)`);
      const before = statSync(file).size;
      const tx = await client.transaction("write");
      for (let i = 0; i < 64; i++) await tx.execute({ sql: `INSERT INTO "Blob" ("b") VALUES (randomblob(16384))`, args: [] });
      await tx.commit();
      // a megabyte in the WAL; the writer never checkpoints (wal_autocheckpoint=0), so only the checkpointer can move it
      const deadline = Date.now() + 10_000;
      while (statSync(file).size < before + 1_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(statSync(file).size).toBeGreaterThanOrEqual(before + 1_000_000);
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("FULL: under writes that never pause, the WAL still starts over (its file stays near the restart size)", async ({ skip }) => {
    if (providerOfDb(t.db) !== "sqlite") skip("SQLite's checkpoints");
    const dir = mkdtempSync(path.join(tmpdir(), "credits-wal-restart-"));
    const file = path.join(dir, "w.db");
    // 256 frames (about a megabyte) instead of the service's 65,536, so that a few seconds of writes show it
    const client = new CachedStatementClient(file, { busyTimeoutMs: 1000, walRestartFrames: 256 });
    const reader = new CachedStatementClient(file, { busyTimeoutMs: 1000, readOnly: true });
    try {
      await client.execute(`CREATE TABLE "Row" ("id" INTEGER PRIMARY KEY, "b" BLOB NOT NULL)`);
      await client.execute(`INSERT INTO "Row" ("id", "b") SELECT value, randomblob(1000) FROM json_each('[${Array.from({ length: 512 }, (_, i) => i).join(",")}]')`);
      // Rewrite some of the rows (the database file stays small) back to back for three seconds, reading between
      // transactions as the service's reader does, and letting the event loop turn (the checkpointer's timer and
      // answers): never a moment without a write in progress or just begun, as under a steady load.
      let rewritten = 0;
      const until = Date.now() + 3_000;
      for (let n = 0; Date.now() < until; n++) {
        const { durable } = await client.transact(async (runner) => {
          rewritten += await runner.$executeRawUnsafe(`UPDATE "Row" SET "b" = randomblob(1000) WHERE "id" % 32 = ?`, n % 32);
        });
        await durable;
        expect(reader.rowObjects(`SELECT COUNT(*) AS "n" FROM "Row"`, [])).toEqual([{ n: 512n }]);
        await new Promise((resolve) => setImmediate(resolve));
      }
      // Every transaction put the pages of its 16 rows in the WAL, a 4 KB frame for each kilobyte row (they lie on
      // 16 pages): without the held rounds its file held every frame written, about four times `rewritten`
      // kilobytes (262 MB against 64 MB rewritten, measured); with them it starts over every round or two (25 MB
      // against 83 MB). The bound is half the first, for a machine busy enough to slow the checkpointer's rounds.
      const wal = statSync(`${file}-wal`).size;
      expect(rewritten * 1000).toBeGreaterThan(5_000_000); // thousands of frames: the 256-frame mark passed many times
      expect(wal).toBeLessThan(2 * rewritten * 1000);
      expect(reader.rowObjects(`SELECT COUNT(*) AS "n" FROM "Row"`, [])).toEqual([{ n: 512n }]);
    } finally {
      reader.close();
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
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

describe("statement texts of the multi-row helpers (src/db/sql.ts)", () => {
  it("a Json column's objects (jsonRow) are stored as given, in one row or many, whatever their strings hold", async () => {
    const provider = providerOfDb(t.db);
    const sql = new Sql(t.db, provider);
    await t.db.$executeRawUnsafe(`CREATE TABLE "JsonProbe" ("id" TEXT PRIMARY KEY, "doc" ${provider === "postgresql" ? "JSONB" : "TEXT"} NOT NULL)`);
    const docs = [
      { route: "/v1/items", status: 200, ok: true },
      { quote: 'say "hi"', slash: "back\\slash", line: "a\nb", unicode: "é ✓ \u2028", empty: "" },
      { n: 1.5, big: 9007199254740991, neg: -3 },
    ];
    await sql.insertMany("JsonProbe", ["id", "doc"], docs.map((d, i) => [`many-${i}`, sql.jsonRow(d)]));
    await sql.insertMany("JsonProbe", ["id", "doc"], [["one", sql.jsonRow(docs[1])]]);
    const rows = await sql.query<{ id: string; doc: unknown }>(`SELECT "id", "doc" FROM "JsonProbe" ORDER BY "id"`);
    const read = (doc: unknown) => (typeof doc === "string" ? JSON.parse(doc) : doc);
    expect(rows.map((r) => [r.id, read(r.doc)])).toEqual([
      ["many-0", docs[0]],
      ["many-1", docs[1]],
      ["many-2", docs[2]],
      ["one", docs[1]],
    ]);
    // one object (or array) for every row travels once, as its own parameter, and reads back the same
    const list = [1, "two", { three: 3 }];
    await sql.insertMany("JsonProbe", ["id", "doc"], ["same-a", "same-b"].map((id) => [id, sql.jsonRow(docs[2])]));
    await sql.insertMany("JsonProbe", ["id", "doc"], ["list-a", "list-b"].map((id) => [id, sql.jsonRow(list)]));
    const same = await sql.query<{ id: string; doc: unknown }>(`SELECT "id", "doc" FROM "JsonProbe" WHERE "id" LIKE 'same-%' OR "id" LIKE 'list-%' ORDER BY "id"`);
    expect(same.map((r) => [r.id, read(r.doc)])).toEqual([
      ["list-a", list],
      ["list-b", list],
      ["same-a", docs[2]],
      ["same-b", docs[2]],
    ]);
    // objects and JSON text in one column are refused on PostgreSQL rather than stored twice encoded
    if (provider === "postgresql") {
      await expect(sql.insertMany("JsonProbe", ["id", "doc"], [["mixed-a", sql.jsonRow(docs[0])], ["mixed-b", JSON.stringify(docs[0])]])).rejects.toThrow(/mixes objects/);
    }
  });

  it("power-of-two chunks add up to the rows, the full ones first", () => {
    for (const count of [0, 1, 2, 3, 255, 256, 257, 1000, 2047]) {
      const sizes = powerOfTwoChunks(count, 256);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(count);
      expect(sizes.every((s) => s >= 1 && s <= 256 && (s & (s - 1)) === 0)).toBe(true);
      expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
      expect(sizes.filter((s) => s < 256).length).toBeLessThanOrEqual(8);
    }
    expect(powerOfTwoChunks(1000, 256)).toEqual([256, 256, 256, 128, 64, 32, 8]);
  });

  it("any count of rows or values takes a few statement texts (each one a statement SQLite keeps prepared), and each statement does exactly its rows", async () => {
    const provider = providerOfDb(t.db);
    const texts = new Set<string>();
    const runner: RawRunner = {
      $queryRawUnsafe: (q, ...v) => (texts.add(q), t.db.$queryRawUnsafe(q, ...v)),
      $executeRawUnsafe: (q, ...v) => (texts.add(q), t.db.$executeRawUnsafe(q, ...v)),
    };
    const sql = new Sql(runner, provider);
    await t.db.$executeRawUnsafe(`CREATE TABLE "ShapeProbe" ("id" TEXT PRIMARY KEY, "tag" TEXT NOT NULL, "n" BIGINT NOT NULL)`);
    const counts = [...Array.from({ length: 40 }, (_, i) => i + 1), 63, 64, 65, 255, 256, 257, 600];
    const idsOf = (count: number) => Array.from({ length: count }, (_, i) => `${count}-${i}`);
    for (const count of counts) {
      await sql.insertMany("ShapeProbe", ["id", "tag", "n"], idsOf(count).map((id, i) => [id, `t${count}`, BigInt(i)]));
    }
    const kinds = (prefix: string) => [...texts].filter((q) => q.startsWith(prefix)).length;
    // SQLite: one text per power of two up to 256 rows; PostgreSQL: one JSON parameter whatever the count, and a
    // parameter of its own for a column with one value in every row (the tag here: one row, or several)
    expect(kinds("INSERT")).toBeLessThanOrEqual(provider === "sqlite" ? 9 : 2);
    // columns that hold one value in every row (bigint, text) come back as given, beside those that vary
    await sql.insertMany("ShapeProbe", ["id", "tag", "n"], ["same-a", "same-b", "same-c"].map((id) => [id, "same", 5n]));
    const same = await sql.query<{ id: string; tag: string; n: bigint | number }>(`SELECT "id", "tag", "n" FROM "ShapeProbe" WHERE "id" LIKE 'same-%' ORDER BY "id"`);
    expect(same.map((r) => [r.id, r.tag, Number(r.n)])).toEqual([
      ["same-a", "same", 5],
      ["same-b", "same", 5],
      ["same-c", "same", 5],
    ]);
    await sql.deleteIds("ShapeProbe", ["same-a", "same-b", "same-c"]);

    texts.clear();
    for (const count of counts) {
      const list = sql.textIn("id", idsOf(count));
      const found = await sql.query<{ id: string }>(`SELECT "id" FROM "ShapeProbe" WHERE ${list.clause} ORDER BY "id"`, list.values);
      expect(found.map((r) => r.id)).toEqual(idsOf(count).sort());
      const pairs = sql.tuplesIn("id", "tag", idsOf(count).map((id) => [id, `t${count}`]));
      const paired = await sql.query<{ n: bigint | number }>(`SELECT "n" FROM "ShapeProbe" WHERE ${pairs.clause}`, pairs.values);
      expect(paired.length).toBe(count);
    }
    // lists of 1 to 600 values or pairs: padded to 1, 2, 4 … 1,024 on SQLite (11 texts each), one on PostgreSQL
    expect(kinds("SELECT")).toBeLessThanOrEqual(provider === "sqlite" ? 22 : 2);

    // values that mean something in a list's syntax are matched as themselves
    const odd = ["", "NULL", "a,b", "{c}", 'say "hi"', "back\\slash", "end\\", " padded ", "é ✓"];
    await sql.insertMany("ShapeProbe", ["id", "tag", "n"], odd.map((id, i) => [id, "odd", BigInt(i)]));
    for (const list of [odd, odd.slice(1, 2), ["NULL", "nothing stored"]]) {
      const named = sql.textIn("id", list);
      const found = await sql.query<{ id: string }>(`SELECT "id" FROM "ShapeProbe" WHERE "tag" = 'odd' AND ${named.clause}`, named.values);
      expect(found.map((r) => r.id).sort()).toEqual(list.filter((id) => odd.includes(id)).sort());
    }
    await sql.deleteIds("ShapeProbe", odd);

    texts.clear();
    for (const count of counts) await sql.updateById("ShapeProbe", ["id", "n"], idsOf(count).map((id, i) => [id, BigInt(i + 1000)]));
    expect(kinds("UPDATE")).toBeLessThanOrEqual(provider === "sqlite" ? 9 : 1);
    const sums = await t.db.$queryRawUnsafe<{ n: bigint | number; rows: bigint | number }[]>(`SELECT SUM("n") AS "n", COUNT(*) AS "rows" FROM "ShapeProbe"`);
    const rows = counts.reduce((a, c) => a + c, 0);
    expect(Number(sums[0].rows)).toBe(rows);
    expect(BigInt(sums[0].n)).toBe(BigInt(counts.reduce((a, c) => a + (c * (c - 1)) / 2 + 1000 * c, 0)));

    // insertNew answers exactly the new ids, past chunks that met a conflict (every third row is a stored (tag, n))
    await t.db.$executeRawUnsafe(`CREATE UNIQUE INDEX "ShapeProbe_tag_n" ON "ShapeProbe" ("tag", "n")`);
    const fresh = Array.from({ length: 300 }, (_, i) => [`new-${i}`, "t600", BigInt(i % 3 === 0 ? 1000 + i : 100_000 + i)]);
    const inserted = await sql.insertNew("ShapeProbe", ["id", "tag", "n"], fresh, `("tag", "n")`);
    const wanted = fresh.filter((_, i) => i % 3 !== 0).map((r) => r[0] as string);
    expect([...inserted].sort()).toEqual(wanted.sort());
    expect(await sql.deleteIds("ShapeProbe", wanted)).toBe(200);
  }, 60_000);
});
