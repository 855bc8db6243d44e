// The process of migrateDeployApart (src/db/migrate.ts): applies DATABASE_URL's pending migrations and prints
// their names as JSON; an error goes to stderr with exit code 1.
import { migrateDeploy } from "./migrate.ts";

process.stdout.write(`${JSON.stringify(await migrateDeploy(process.env.DATABASE_URL ?? ""))}\n`);
