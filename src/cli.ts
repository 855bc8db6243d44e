// `npm run cli -- <command>`: administration against the configured DATABASE_URL, server running or not.
//   org create <name>                create an organization and print its id and admin token (shown once)
//   token list <orgId>               list an organization's tokens (never their secrets)
//   token create <orgId> [name]      mint another admin token (printed once)
//   token revoke <id-or-prefix>      revoke a token; with REDIS_URL, running nodes hear of it at once
import "./env-file.ts"; // first: .env is read before any other module looks at the environment
import { loadConfig } from "./config.ts";
import { createPrisma, type Db } from "./db/client.ts";
import { migrateDeploy } from "./db/migrate.ts";
import { missingSqliteFile } from "./db/url.ts";
import { createAdminToken, findTokenByIdOrPrefix, listAccessTokens, revokeAccessToken } from "./domain/access-tokens.ts";
import { ADMIN_TOKEN_CACHE_MS } from "./domain/auth.ts";
import { DomainError } from "./domain/errors.ts";
import { createOrganization } from "./domain/organizations.ts";
import type { Notify, Revocation } from "./domain/notify.ts";
import { announceRevocation } from "./pubsub.ts";

const USAGE = [
  "usage: npm run cli -- org create <name>",
  "       npm run cli -- token list <orgId>",
  "       npm run cli -- token create <orgId> [name]",
  "       npm run cli -- token revoke <id-or-prefix>",
].join("\n");
const [group, command, ...rest] = process.argv.slice(2);
const argument = rest.join(" ").trim();

function usage(): never {
  console.error(USAGE);
  process.exit(2);
}

async function withDb(work: (db: Db, redisUrl: string | undefined) => Promise<void>, creates = false) {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    process.exit(1);
  }
  const { databaseUrl, redisUrl } = config;
  const missing = missingSqliteFile(databaseUrl);
  if (missing && !creates) {
    // a mistyped DATABASE_URL must not leave a new, empty database behind
    console.error(`error: no database at ${missing} (npm start, or npm run cli -- org create <name>, creates it)`);
    process.exit(1);
  }
  let db: Db;
  try {
    await migrateDeploy(databaseUrl); // a fresh database works without a prior `npm start`
    db = await createPrisma(databaseUrl);
  } catch (err) {
    // an unreachable database, a failed migration: one line (the stack with LOG_LEVEL=debug), exit 1
    console.error(`error: ${process.env.LOG_LEVEL?.trim() === "debug" ? ((err as Error).stack ?? err) : (err as Error).message}`);
    process.exit(1);
  }
  try {
    await work(db, redisUrl);
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  } finally {
    await db.$disconnect();
  }
}

const iso = (d: Date | null) => (d ? d.toISOString() : "-");

if (group === "org" && command === "create" && argument) {
  await withDb(async (db) => {
    const { organization, token } = await createOrganization(db, argument);
    console.log(`organization id: ${organization.id}`);
    console.log(`admin token:     ${token}`);
  }, true);
} else if (group === "token" && command === "list" && rest.length === 1) {
  await withDb(async (db) => {
    if (!(await db.organization.findUnique({ where: { id: rest[0] }, select: { id: true } }))) {
      console.error(`error: no organization ${rest[0]}`);
      process.exitCode = 1;
      return;
    }
    const tokens = await listAccessTokens(db, rest[0]);
    console.log(["id", "kind", "prefix", "name", "customer", "expiresAt", "revokedAt", "createdAt"].join("\t"));
    for (const t of tokens) {
      console.log([t.id, t.kind, t.prefix, t.name ?? "-", t.customerId ?? "-", iso(t.expiresAt), iso(t.revokedAt), iso(t.createdAt)].join("\t"));
    }
  });
} else if (group === "token" && command === "create" && rest.length >= 1) {
  await withDb(async (db) => {
    if (!(await db.organization.findUnique({ where: { id: rest[0] }, select: { id: true } }))) {
      console.error(`error: no organization ${rest[0]}`);
      process.exitCode = 1;
      return;
    }
    const { token, accessToken } = await createAdminToken(db, rest[0], rest.slice(1).join(" "));
    console.log(`token id:    ${accessToken.id}`);
    console.log(`admin token: ${token}`);
  });
} else if (group === "token" && command === "revoke" && rest.length === 1) {
  await withDb(async (db, redisUrl) => {
    const found = await findTokenByIdOrPrefix(db, rest[0]);
    // With Redis the revocation is announced to the running nodes (their sockets close at once); without it
    // they notice on their next look-up or socket sweep, within ADMIN_TOKEN_CACHE_MS.
    const announced: Revocation[] = [];
    const notify: Notify = { balancesChanged() {}, customerChanged() {}, accessRevoked: (_org, r) => void announced.push(r) };
    const revoked = await revokeAccessToken(db, notify, found.organizationId, found.id);
    console.log(`revoked ${revoked.id} (${revoked.kind} ${revoked.prefix}) at ${iso(revoked.revokedAt)}`);
    if (redisUrl) {
      try {
        for (const r of announced) await announceRevocation(redisUrl, { organizationId: found.organizationId, ...r });
      } catch (err) {
        // the revocation is committed: only the running nodes' hearing of it at once failed
        console.error(`warning: could not tell the running servers through Redis (${(err as Error).message}); they refuse the token within ${ADMIN_TOKEN_CACHE_MS / 1000} s`);
      }
    } else {
      console.log(`running servers refuse it within ${ADMIN_TOKEN_CACHE_MS / 1000} s`);
    }
  });
} else {
  usage();
}
