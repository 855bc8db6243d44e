// The cost of one SQLite statement on each path the service has had, measured in one run (README,
// "Performance"): @libsql/client's local client (which Prisma's adapter created until this service brought
// its own: the statement is prepared again on every call), Prisma's raw API over our client, our client
// directly (statements prepared once and kept), and the read-only synchronous connection of the hot reads.
//
//   npx tsx bench/statement-cost.ts [calls]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient } from "@libsql/client";
import { createPrisma } from "../src/db/client.ts";
import { CachedStatementClient } from "../src/db/libsql.ts";
import { migrateDeploy } from "../src/db/migrate.ts";
import { openSqliteReader } from "../src/db/sqlite-reader.ts";
import { createOrganization } from "../src/domain/organizations.ts";

const calls = Number(process.argv[2] ?? 20_000);
const dir = mkdtempSync(path.join(tmpdir(), "statement-cost-"));
const file = path.join(dir, "cost.db");
const url = `file:${file}`;
await migrateDeploy(url);
const db = await createPrisma(url);
const { organization } = await createOrganization(db, "cost");
const customer = await db.customer.create({ data: { organizationId: organization.id, externalId: "c1", email: "c1@example.com", emailKey: "c1@example.com", metadata: {} } });

// One indexed single-row read, as the hot paths issue them.
const text = `SELECT "id", "organizationId", "externalId", "deletedAt" FROM "Customer" WHERE "organizationId" = ? AND "id" = ?`;
const args = [organization.id, customer.id];

async function measure(name: string, run: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < Math.min(2_000, calls); i++) await run();
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < calls; i++) await run();
  const used = process.cpuUsage(cpu);
  const wall = ((performance.now() - started) * 1000) / calls;
  console.log(`${name.padEnd(58)} ${wall.toFixed(1).padStart(7)} µs wall, ${((used.user + used.system) / calls).toFixed(1).padStart(7)} µs CPU per statement`);
}

const libsqlClient = createClient({ url, intMode: "bigint" });
const cached = new CachedStatementClient(file, { busyTimeoutMs: 5_000 });
const reader = openSqliteReader(file);
console.log(`one indexed single-row SELECT on SQLite, ${calls.toLocaleString("en-US")} calls each:`);
await measure("@libsql/client execute (prepared on every call)", () => libsqlClient.execute({ sql: text, args }));
await measure("Prisma $queryRawUnsafe (over the kept-statement client)", () => db.$queryRawUnsafe(text, ...args));
await measure("kept-statement client execute (what Prisma's adapter calls)", () => cached.execute({ sql: text, args }));
await measure("read-only synchronous connection (the hot reads)", () => reader.$queryRawUnsafe(text, ...args));
libsqlClient.close();
cached.close();
reader.close();
await db.$disconnect();
rmSync(dir, { recursive: true, force: true });
