// Engine-less stand-in for `prisma migrate dev --create-only | deploy | status`.
//   npm run migrate:create -- <name>   writes prisma/sqlite/migrations/<ts>_<name> and, when
//                                      PG_MIGRATE_URL (a scratch PostgreSQL) is set, the PostgreSQL twin
//   npm run migrate:deploy             applies pending migrations to DATABASE_URL
//   npm run migrate:status [-- --json] a summary of DATABASE_URL's migrations: applied, pending, failed, edited,
//                                      only in the database (scripts/migrate-status.ts); --json for scripts
import "../src/env-file.ts"; // first: ./.env (or ENV_FILE) as for npm start
import { migrateCreate, migrateDeploy } from "../src/db/migrate.ts";
import { DEFAULT_DATABASE_URL, missingSqliteFile } from "../src/db/url.ts";
import { describe, migrationStatus } from "./migrate-status.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const [cmd, name] = process.argv.slice(2);
// as npm start reads it: empty means the default
const url = process.env.DATABASE_URL?.trim() || DEFAULT_DATABASE_URL;

if (cmd === "create") {
  if (!name) throw new Error("usage: npm run migrate:create -- <name>");
  // Diff against a throw-away SQLite file so the developer's database is never touched.
  const dir = mkdtempSync(path.join(tmpdir(), "credits-migrate-"));
  try {
    console.log("sqlite:", (await migrateCreate(`file:${path.join(dir, "scratch.db")}`, name)) ?? "no changes");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const pgUrl = process.env.PG_MIGRATE_URL;
  if (pgUrl) console.log("postgresql:", (await migrateCreate(pgUrl, name)) ?? "no changes");
  else console.log("postgresql: skipped (set PG_MIGRATE_URL to a scratch PostgreSQL database to create it too)");
} else if (cmd === "deploy") {
  console.log("applied:", await migrateDeploy(url));
} else if (cmd === "status") {
  const missing = missingSqliteFile(url);
  if (missing) {
    // reported, not created: a status check never makes the database it looks at
    console.log(name === "--json" ? JSON.stringify({ database: missing, exists: false }, null, 2) : `No database at ${missing} (npm start or npm run migrate:deploy creates it).`);
    process.exit(1);
  }
  const status = await migrationStatus(url);
  console.log(name === "--json" ? JSON.stringify(status, null, 2) : describe(status));
} else {
  console.error("usage: tsx scripts/migrate.ts create <name> | deploy | status [--json]");
  process.exit(2);
}
