// Configuration from the environment (documented in .env.example and the README).
import { DEFAULT_DATABASE_URL, isSqliteSynchronous, pgConfig, providerOf, type SqliteSynchronous } from "./db/url.ts";
import { DEFAULT_METER_LIMITS, type MeterLimits } from "./domain/meters.ts";
import { DEFAULT_LIMITS, LIMIT_ENV, resolveLimits, type Limits } from "./limits.ts";
import { DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from "./webhooks/delivery.ts";
import { defaultWebhookKeyFile } from "./webhooks/key.ts";

export interface Config {
  port: number;
  host: string;
  databaseUrl: string;
  redisUrl: string | undefined;
  adminToken: string | undefined;
  logLevel: string;
  /** LOG_FORMAT: json or pretty; unset, pretty on a terminal (createLogger checks it). */
  logFormat: string | undefined;
  renewalMode: "auto" | "manual";
  schedulerIntervalMs: number;
  /** SQLite's `synchronous` setting for the writer connection (SQLITE_SYNCHRONOUS); see src/db/libsql.ts. */
  sqliteSynchronous: SqliteSynchronous;
  meterLimits: MeterLimits;
  limits: Limits;
  /** How long in-flight requests may take after SIGTERM/SIGINT before the process gives up on them. */
  shutdownGraceMs: number;
  /** Webhook delivery settings (WEBHOOK_*), the key aside: src/webhooks/key.ts loads it at start. */
  webhooks: Omit<WebhookSettings, "key">;
  /** WEBHOOK_SECRET_KEY (hex or base64 of 32 bytes), or the file holding it */
  webhookKey: string | undefined;
  webhookKeyFile: string;
  /** PUBLIC_URL: the service's address as browsers reach it (portal links, WebSocket origin); unset, each request's own. */
  publicUrl: string | undefined;
}

/** PUBLIC_URL: an http(s) URL, without query or fragment; a trailing slash is dropped. */
export function publicUrlFromEnv(raw: string | undefined): string | undefined {
  const value = raw?.trim();
  if (!value) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash || url.username || url.password) {
    throw new Error(`PUBLIC_URL must be an http(s) URL like https://credits.example.com (a path is allowed), got "${value}"`);
  }
  return url.toString().replace(/\/+$/, "");
}

/**
 * What is wrong with a REDIS_URL (null: nothing ioredis would not take). A URL of another scheme (http://…),
 * which ioredis would take for a socket path, and a redis:// or rediss:// URL that does not parse (a port that
 * is not a number) are refused; a bare host:port and a socket path pass, as ioredis reads them.
 */
function redisUrlProblem(value: string): string | null {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) return null;
  if (scheme !== "redis" && scheme !== "rediss") return `got a ${scheme}:// URL`;
  try {
    new URL(value);
    return null;
  } catch {
    return `the ${scheme}:// URL does not parse (a port that is not a number?)`;
  }
}

/** A variable's value, trimmed; empty counts as unset (the default applies), as the README says. */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  return env[name]?.trim() || undefined;
}

/** pino's levels, which LOG_LEVEL names. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** The longest delay Node's timers take: setTimeout, setInterval and AbortSignal.timeout turn a longer one into 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A positive integer setting; one in milliseconds (`…_MS`) at most MAX_TIMER_MS. */
function positiveInteger(env: NodeJS.ProcessEnv, name: string, fallback: number, max = name.endsWith("_MS") ? MAX_TIMER_MS : Number.MAX_SAFE_INTEGER): number {
  const raw = setting(env, name);
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new Error(`${name} must be a positive integer${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ""}, got "${raw}" (default ${fallback})`);
  }
  return value;
}

/** Every limit of src/limits.ts from its environment variable (a positive integer), or its default. */
export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env): Limits {
  const overrides: Partial<Limits> = {};
  for (const [key, name] of Object.entries(LIMIT_ENV) as [Exclude<keyof Limits, "corsOrigins">, string][]) {
    overrides[key] = positiveInteger(env, name, DEFAULT_LIMITS[key]);
  }
  const origins = (env.CORS_ORIGINS ?? "").split(",").map((o) => o.trim()).filter(Boolean);
  for (const origin of origins) {
    if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin)) throw new Error(`CORS_ORIGINS entries must be origins like https://app.example.com (no path) or *, got "${origin}"`);
  }
  overrides.corsOrigins = origins;
  return resolveLimits(overrides);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = Number(setting(env, "PORT") ?? 4000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number, got "${env.PORT}"`);
  const adminToken = env.ADMIN_TOKEN?.trim() || undefined;
  if (adminToken && adminToken.length < 16) throw new Error("ADMIN_TOKEN must be at least 16 characters");
  const renewalMode = setting(env, "RENEWAL_MODE") ?? "auto";
  if (renewalMode !== "auto" && renewalMode !== "manual") throw new Error(`RENEWAL_MODE must be auto or manual, got "${renewalMode}"`);
  const sqliteSynchronous = (setting(env, "SQLITE_SYNCHRONOUS") ?? "FULL").toUpperCase();
  if (!isSqliteSynchronous(sqliteSynchronous)) throw new Error(`SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, got "${env.SQLITE_SYNCHRONOUS}"`);
  const schedulerIntervalMs = Number(setting(env, "SCHEDULER_INTERVAL_MS") ?? 10_000);
  if (!Number.isInteger(schedulerIntervalMs) || schedulerIntervalMs < 100 || schedulerIntervalMs > MAX_TIMER_MS) throw new Error(`SCHEDULER_INTERVAL_MS must be an integer from 100 to ${MAX_TIMER_MS}`);
  const meterLimits: MeterLimits = {
    maxActiveMeters: positiveInteger(env, "MAX_ACTIVE_METERS", DEFAULT_METER_LIMITS.maxActiveMeters),
    maxFilterClauses: positiveInteger(env, "MAX_FILTER_CLAUSES", DEFAULT_METER_LIMITS.maxFilterClauses),
  };
  const shutdownGraceMs = Number(setting(env, "SHUTDOWN_GRACE_MS") ?? 10_000);
  if (!Number.isInteger(shutdownGraceMs) || shutdownGraceMs < 0 || shutdownGraceMs > MAX_TIMER_MS) throw new Error(`SHUTDOWN_GRACE_MS must be an integer from 0 to ${MAX_TIMER_MS}`);
  const allowPrivate = (env.WEBHOOK_ALLOW_PRIVATE_NETWORKS ?? "").trim().toLowerCase();
  if (allowPrivate && allowPrivate !== "true" && allowPrivate !== "false") throw new Error(`WEBHOOK_ALLOW_PRIVATE_NETWORKS must be true or false, got "${allowPrivate}"`);
  const webhooks: Omit<WebhookSettings, "key"> = {
    allowPrivateNetworks: allowPrivate === "true",
    retryBaseMs: positiveInteger(env, "WEBHOOK_RETRY_BASE_MS", DEFAULT_WEBHOOK_SETTINGS.retryBaseMs),
    retryWindowMs: positiveInteger(env, "WEBHOOK_RETRY_WINDOW_HOURS", DEFAULT_WEBHOOK_SETTINGS.retryWindowMs / 3600_000, 24 * 365 * 10) * 3600_000,
    timeoutMs: positiveInteger(env, "WEBHOOK_TIMEOUT_MS", DEFAULT_WEBHOOK_SETTINGS.timeoutMs),
    maxResponseBytes: DEFAULT_WEBHOOK_SETTINGS.maxResponseBytes,
    pollMs: positiveInteger(env, "WEBHOOK_POLL_MS", DEFAULT_WEBHOOK_SETTINGS.pollMs),
    // a date that far back stays a date (past about 270,000 years it is an invalid one)
    retentionMs: positiveInteger(env, "WEBHOOK_RETENTION_DAYS", DEFAULT_WEBHOOK_SETTINGS.retentionMs / 86_400_000, 36_500) * 86_400_000,
  };
  const databaseUrl = setting(env, "DATABASE_URL") ?? DEFAULT_DATABASE_URL;
  if (providerOf(databaseUrl) === "postgresql") {
    try {
      pgConfig(databaseUrl);
    } catch (err) {
      throw new Error(`DATABASE_URL is not a PostgreSQL URL node-postgres can read (${(err as Error).message})`);
    }
  }
  const redisUrl = setting(env, "REDIS_URL");
  const redisProblem = redisUrl ? redisUrlProblem(redisUrl) : null;
  // the value itself is never printed: it may hold a password
  if (redisProblem) throw new Error(`REDIS_URL must be a redis:// or rediss:// URL (or, as ioredis takes them, host:port or a socket path): ${redisProblem}`);
  const logLevel = setting(env, "LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  return {
    webhooks,
    webhookKey: env.WEBHOOK_SECRET_KEY?.trim() || undefined,
    webhookKeyFile: env.WEBHOOK_SECRET_KEY_FILE?.trim() || defaultWebhookKeyFile(setting(env, "DATABASE_URL") ?? DEFAULT_DATABASE_URL),
    logFormat: env.LOG_FORMAT?.trim() || undefined,
    meterLimits,
    limits: limitsFromEnv(env),
    renewalMode,
    shutdownGraceMs,
    schedulerIntervalMs,
    sqliteSynchronous,
    port,
    host: setting(env, "HOST") ?? "0.0.0.0",
    databaseUrl,
    redisUrl,
    adminToken,
    logLevel,
    publicUrl: publicUrlFromEnv(env.PUBLIC_URL),
  };
}
