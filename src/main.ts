// `npm start`: apply migrations, make sure an organization can log in, serve HTTP + WebSocket GraphQL. A start
// that fails (a bad setting, an unreachable database, a port in use) ends the process with one line saying why
// and exit code 1; the stack only at LOG_LEVEL=debug or trace.
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

async function start(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel, config.logFormat);
  if (envFile) log.info({ envFile }, "environment file loaded (variables already set in the environment win)");
  // before anything is written: a bad WEBHOOK_SECRET_KEY stops the start here
  const webhookKey = loadWebhookKey(config.webhookKey, config.webhookKeyFile);
  if (webhookKey.created) log.warn({ file: webhookKey.source }, "created the webhook secret key file: keep it with the database's backups; every node must use the same key (or set WEBHOOK_SECRET_KEY)");

  const applied = await migrateDeployApart(config.databaseUrl);
  log.info({ applied }, applied.length ? "migrations applied" : "database schema up to date");

  const db = await createPrisma(config.databaseUrl, { sqliteSynchronous: config.sqliteSynchronous });
  if (config.adminToken) {
    const org = await ensureAdminTokenOrganization(db, config.adminToken);
    if (org.revoked) log.warn({ organizationId: org.id }, "ADMIN_TOKEN was revoked and is refused; set a new one or use npm run cli -- token create");
    else if (org.attached) log.info({ organizationId: org.id }, "ADMIN_TOKEN added as an admin token of the organization in this database");
    else log.info({ organizationId: org.id, created: org.created }, "ADMIN_TOKEN accepted as an admin token");
  } else {
    const first = await ensureFirstOrganization(db);
    if (first) {
      // Printed once, on the console only: the database keeps only a hash of the token. Not on a stdout that
      // is not a terminal, where it would break the JSON lines a log collector reads: on stderr then.
      (process.stdout.isTTY ? process.stdout : process.stderr).write(
        `\nCreated organization "${first.organization.name}" (${first.organization.id}).\n` +
          `Admin token (shown once, keep it safe):\n\n  ${first.token}\n\n` +
          `Use it as "Authorization: Bearer <token>". More: npm run cli -- org create <name>\n\n`,
      );
    }
  }

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
}

/** Hints for the usual reasons a start fails, beside the error's own message. */
function hint(err: Error & { code?: string; syscall?: string; hostname?: string }): string {
  if (err.code === "EADDRINUSE") return " (the port is taken: stop what uses it, or set PORT to a free one)";
  if (err.code === "EADDRNOTAVAIL" || (err.code === "ENOTFOUND" && err.syscall === "getaddrinfo" && err.hostname === process.env.HOST?.trim())) return " (HOST must be an address of this machine, e.g. 0.0.0.0 or 127.0.0.1)";
  return "";
}

start().catch((err: unknown) => {
  const error = err instanceof Error ? err : new Error(String(err));
  console.error(`credits-ledger could not start: ${error.message}${hint(error)}`);
  if (["debug", "trace"].includes(process.env.LOG_LEVEL?.trim() ?? "")) console.error(error.stack);
  process.exit(1);
});
