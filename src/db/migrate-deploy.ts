// The process of migrateDeployApart (src/db/migrate.ts): applies DATABASE_URL's pending migrations and prints
// their names as JSON. A failure prints its message on stderr (its stack too at LOG_LEVEL=debug), exit code 1:
// the server's start then reports it in its own one line.
import { migrateDeploy } from "./migrate.ts";

try {
  process.stdout.write(`${JSON.stringify(await migrateDeploy(process.env.DATABASE_URL ?? ""))}\n`);
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`${process.env.LOG_LEVEL?.trim() === "debug" ? (e.stack ?? e.message) : e.message}\n`);
  process.exitCode = 1;
}
