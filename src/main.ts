// `npm start`: apply migrations, make sure an organization can log in, serve HTTP + WebSocket GraphQL.
import { envFile } from "./env-file.ts"; // first: .env is read before any other module looks at the environment
import { loadConfig } from "./config.ts";
import { createPrisma } from "./db/client.ts";
import { migrateDeployApart } from "./db/migrate.ts";
import { ensureAdminTokenOrganization, ensureFirstOrganization } from "./domain/organizations.ts";
import { createLogger } from "./log.ts";
import { createAppPubSub } from "./pubsub.ts";
import { createApp } from "./server.ts";
import { onShutdownSignals } from "./shutdown.ts";
import { loadWebhookKey } from "./webhooks/key.ts";

const config = loadConfig();
const log = createLogger(config.logLevel, config.logFormat);
if (envFile) log.info({ envFile }, "environment file loaded (variables already set in the environment win)");

const applied = await migrateDeployApart(config.databaseUrl);
log.info({ applied }, applied.length ? "migrations applied" : "database schema up to date");

const db = await createPrisma(config.databaseUrl, { sqliteSynchronous: config.sqliteSynchronous });
if (config.adminToken) {
  const org = await ensureAdminTokenOrganization(db, config.adminToken);
  if (org.revoked) log.warn({ organizationId: org.id }, "ADMIN_TOKEN was revoked and is refused; set a new one or use npm run cli -- token create");
  else log.info({ organizationId: org.id, created: org.created }, "ADMIN_TOKEN accepted as an admin token");
} else {
  const first = await ensureFirstOrganization(db);
  if (first) {
    // Printed once, on the console only: the database keeps only a hash of the token.
    process.stdout.write(
      `\nCreated organization "${first.organization.name}" (${first.organization.id}).\n` +
        `Admin token (shown once, keep it safe):\n\n  ${first.token}\n\n` +
        `Use it as "Authorization: Bearer <token>". More: npm run cli -- org create <name>\n\n`,
    );
  }
}

const webhookKey = loadWebhookKey(config.webhookKey, config.webhookKeyFile);
if (webhookKey.created) log.warn({ file: webhookKey.source }, "created the webhook secret key file: keep it with the database's backups; every node must use the same key (or set WEBHOOK_SECRET_KEY)");

const { pubsub, redis, close: closePubSub } = createAppPubSub(config.redisUrl, log);
const app = createApp({ db, pubsub, redis, log, renewalMode: config.renewalMode, meterLimits: config.meterLimits, limits: config.limits, webhooks: { ...config.webhooks, key: webhookKey.key }, publicUrl: config.publicUrl });
const port = await app.listen(config.port, config.host);
app.scheduler.start(config.schedulerIntervalMs);
app.webhooks.start();
log.info({ pid: process.pid, url: `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${port}/graphql`, pubsub: config.redisUrl ? "redis" : "in-process" }, "serving GraphQL");

onShutdownSignals({
  log,
  graceMs: config.shutdownGraceMs,
  closeServer: (graceMs) => app.close(graceMs),
  disconnect: [closePubSub, () => db.$disconnect()],
});
