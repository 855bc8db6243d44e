// `npm run cli -- <command>`: administration against the configured DATABASE_URL, server running or not.
//   org create <name>   create an organization and print its id and admin token (shown once)
import { loadConfig } from "./config.ts";
import { createPrisma } from "./db/client.ts";
import { migrateDeploy } from "./db/migrate.ts";
import { createOrganization } from "./domain/organizations.ts";

const USAGE = "usage: npm run cli -- org create <name>";
const [group, command, ...rest] = process.argv.slice(2);

if (group === "org" && command === "create" && rest.join(" ").trim()) {
  const { databaseUrl } = loadConfig();
  await migrateDeploy(databaseUrl); // a fresh database works without a prior `npm start`
  const db = await createPrisma(databaseUrl);
  try {
    const { organization, token } = await createOrganization(db, rest.join(" "));
    console.log(`organization id: ${organization.id}`);
    console.log(`admin token:     ${token}`);
  } finally {
    await db.$disconnect();
  }
} else {
  console.error(USAGE);
  process.exit(2);
}
