// The migration process (migrateDeployIsolated in migrate.ts): applies pending migrations to the database
// named on the command line and prints the names applied as JSON, on its last line.
import { migrateDeploy } from "./migrate.ts";

const url = process.argv[2];
if (!url) throw new Error("usage: migrate-child.ts <database url>");
process.stdout.write(`${JSON.stringify(await migrateDeploy(url))}\n`);
