// The webhook worker each node runs beside the scheduler, in two steps per pass:
//  1. dispatch: outbox rows not yet dispatched, oldest first, become one delivery per endpoint that wants
//     their type, numbered per endpoint without gaps; balance alerts are published to `balanceAlerts`
//     subscribers. One node at a time (PostgreSQL: a transaction-scoped advisory lock, skipped when busy), so
//     sequence numbers follow the order rows were dispatched in and each message is published once.
//  2. send: endpoints with due deliveries are leased, least recently served first (PostgreSQL: FOR UPDATE
//     SKIP LOCKED, then a lease time and token in the row), so two nodes never send an endpoint's deliveries
//     at once: the lease is renewed before each send, by its token, and a pass that lost it stops. Each leased
//     endpoint's due deliveries go out in sequence order (first attempts therefore in commit order), signed
//     per Standard Webhooks. A failure schedules that delivery's retry (exponential backoff with jitter); after
//     an answer (an HTTP error) the next delivery goes on, so one failing delivery never holds back the rest,
//     while no answer at all (a timeout, a refused connection) ends the endpoint's turn for this pass, so an
//     unresponsive endpoint costs a pass one timeout, not one per delivery. Deliveries are made for disabled
//     endpoints too and wait, unsent, until the endpoint is enabled again. Everything is in the database, so
//     a restarted node resumes where it stopped.
import http from "node:http";
import https from "node:https";
import { isIP, type LookupFunction } from "node:net";
import { Webhook } from "standardwebhooks";
import type { Db } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import { asDate } from "../db/sql.ts";
import { orderedId } from "../domain/ids.ts";
import { isAlertType } from "../domain/outbox.ts";
import { sqlTransaction } from "../domain/transactions.ts";
import { decryptSecret } from "../domain/webhook-secrets.ts";
import { eventTypesOf, resolvePublicAddresses } from "../domain/webhooks.ts";
import type { Logger } from "../log.ts";
import type { PubSub } from "../pubsub.ts";
import { onePassAtATime } from "../one-pass.ts";

export interface WebhookSettings {
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS */
  allowPrivateNetworks: boolean;
  /** the key endpoint secrets are stored under (WEBHOOK_SECRET_KEY or the key file) */
  key: Buffer;
  /** WEBHOOK_RETRY_BASE_MS: the first retry's delay, doubling with every attempt (with jitter) */
  retryBaseMs: number;
  /** WEBHOOK_RETRY_WINDOW_HOURS, in ms: how long a delivery is retried, and how long an endpoint may fail before it is disabled */
  retryWindowMs: number;
  /** WEBHOOK_TIMEOUT_MS: one request, connection to last byte read */
  timeoutMs: number;
  /** response bytes read at most (the rest is dropped) */
  maxResponseBytes: number;
  /** WEBHOOK_POLL_MS: how often the worker looks for work */
  pollMs: number;
  /** WEBHOOK_RETENTION_DAYS, in ms: succeeded deliveries and dispatched outbox rows older than this are pruned (by the scheduler) */
  retentionMs: number;
}

export const DEFAULT_WEBHOOK_SETTINGS: Omit<WebhookSettings, "key"> = {
  allowPrivateNetworks: false,
  retryBaseMs: 5_000,
  retryWindowMs: 24 * 3600_000,
  timeoutMs: 10_000,
  maxResponseBytes: 64 * 1024,
  pollMs: 1_000,
  retentionMs: 30 * 86_400_000,
};

/** Longest wait between two attempts, whatever the doubling says. */
const MAX_RETRY_DELAY_MS = 3600_000;
/** Outbox rows per dispatch transaction; endpoints per pass; deliveries per leased endpoint. */
const DISPATCH_BATCH = 500;
const ENDPOINTS_PER_PASS = 16;
const DELIVERIES_PER_LEASE = 50;
/** Key of the dispatcher's advisory lock (PostgreSQL). */
const DISPATCH_LOCK = "webhooks:dispatch";

export interface WebhookWorker {
  /** One pass now: dispatch, then send what is due (tests call it). */
  tick(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

interface MessageRow {
  id: string;
  organizationId: string;
  type: string;
  payload: string;
}

/**
 * The delay before retry number `attempts` (1 = after the first failure): base × 2^(attempts−1) with ±25 %
 * jitter, never more than MAX_RETRY_DELAY_MS (the cap applies after the jitter: retries are at most an hour apart).
 */
export function retryDelay(baseMs: number, attempts: number): number {
  const exponential = baseMs * 2 ** Math.min(attempts - 1, 30);
  return Math.min(Math.round(exponential * (0.75 + Math.random() * 0.5)), MAX_RETRY_DELAY_MS);
}

/** 1. Fan undispatched outbox rows out to deliveries; answers the alerts to publish once committed. */
async function dispatch(sql: Sql, now: Date): Promise<{ alerts: MessageRow[]; more: boolean }> {
  if (sql.provider === "postgresql") {
    const [got] = await sql.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS "ok"`, [DISPATCH_LOCK]);
    if (!got.ok) return { alerts: [], more: false }; // another node is dispatching
  }
  const messages = await sql.query<MessageRow>(
    `SELECT "id", "organizationId", "type", "payload" FROM "OutboxMessage" WHERE "dispatchedAt" IS NULL ORDER BY "id" LIMIT ${DISPATCH_BATCH}`,
  );
  if (!messages.length) return { alerts: [], more: false };
  const organizations = sql.textIn("organizationId", [...new Set(messages.map((m) => m.organizationId))]);
  // disabled endpoints included: what happens meanwhile waits for them (pruned after the retention)
  const endpoints = await sql.query<{ id: string; organizationId: string; eventTypes: string; nextSequence: bigint | number | string }>(
    `SELECT "id", "organizationId", "eventTypes", "nextSequence" FROM "WebhookEndpoint" WHERE ${organizations.clause} ORDER BY "id"${sql.forUpdate}`,
    organizations.values,
  );
  const at = sql.date(now);
  const deliveries: unknown[][] = [];
  const next = new Map(endpoints.map((e) => [e.id, BigInt(e.nextSequence)]));
  for (const m of messages) {
    for (const e of endpoints) {
      if (e.organizationId !== m.organizationId) continue;
      const wanted = eventTypesOf(e);
      if (wanted.length && !wanted.includes(m.type)) continue;
      const sequence = next.get(e.id)!;
      next.set(e.id, sequence + 1n);
      deliveries.push([orderedId(), m.organizationId, e.id, m.id, m.type, sequence, "PENDING", 0, at, at, at]);
    }
  }
  if (deliveries.length) {
    await sql.insertMany("WebhookDelivery", ["id", "organizationId", "endpointId", "messageId", "eventType", "sequence", "status", "attempts", "nextAttemptAt", "createdAt", "updatedAt"], deliveries);
    const moved = endpoints.filter((e) => next.get(e.id) !== BigInt(e.nextSequence));
    await sql.updateById("WebhookEndpoint", ["id", "nextSequence"], moved.map((e) => [e.id, next.get(e.id)]));
  }
  const ids = sql.textIn("id", messages.map((m) => m.id), 2);
  await sql.execute(`UPDATE "OutboxMessage" SET "dispatchedAt" = ${sql.param(1)} WHERE ${ids.clause}`, [at, ...ids.values]);
  return { alerts: messages.filter((m) => isAlertType(m.type)), more: messages.length === DISPATCH_BATCH };
}

/**
 * 2a. Lease endpoints that have due deliveries and no live lease, least recently served first (a given-back
 * lease keeps the time it was given back; never leased: first of all), under `token`.
 */
async function lease(sql: Sql, now: Date, until: Date, token: string): Promise<string[]> {
  const lock = sql.provider === "postgresql" ? ` FOR UPDATE OF e SKIP LOCKED` : "";
  const found = await sql.query<{ id: string }>(
    `SELECT e."id" FROM "WebhookEndpoint" e
      WHERE e."disabledAt" IS NULL AND (e."leaseUntil" IS NULL OR e."leaseUntil" < ${sql.param(1)})
        AND EXISTS (SELECT 1 FROM "WebhookDelivery" d WHERE d."endpointId" = e."id" AND d."status" = 'PENDING' AND d."nextAttemptAt" <= ${sql.param(2)})
      ORDER BY e."leaseUntil" NULLS FIRST, e."id" LIMIT ${ENDPOINTS_PER_PASS}${lock}`,
    [sql.date(now), sql.date(now)],
  );
  if (!found.length) return [];
  const ids = sql.textIn("id", found.map((r) => r.id), 3);
  await sql.execute(`UPDATE "WebhookEndpoint" SET "leaseUntil" = ${sql.param(1)}, "leaseToken" = ${sql.param(2)} WHERE ${ids.clause}`, [sql.date(until), token, ...ids.values]);
  return found.map((r) => r.id);
}

/** The outcome of one attempt: the HTTP status (null: no response) and what went wrong. */
interface Attempt {
  status: number | null;
  error: string | null;
}

/** A DNS lookup that refuses loopback, private and link-local answers (checked at send time, and the address checked is the one used). */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolvePublicAddresses(hostname, allowPrivate).then(
      (list) => (options.all ? callback(null, list) : callback(null, list[0].address, list[0].family)),
      (err: Error) => callback(Object.assign(err, { code: "EPRIVATE" }), "", 0),
    );
  };
}

/** POST `body` to `url`: the status once the response began, reading at most `maxResponseBytes` of it, within the timeout. */
async function post(url: string, headers: Record<string, string>, body: string, settings: WebhookSettings): Promise<Attempt> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host)) {
    try {
      await resolvePublicAddresses(host, settings.allowPrivateNetworks);
    } catch (err) {
      return { status: null, error: (err as Error).message };
    }
  }
  return new Promise<Attempt>((resolve) => {
    const signal = AbortSignal.timeout(settings.timeoutMs);
    const request = (target.protocol === "https:" ? https : http).request(target, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body), "user-agent": "credits-ledger-webhooks" },
      lookup: guardedLookup(settings.allowPrivateNetworks),
      signal,
    });
    request.on("response", (response) => {
      let read = 0;
      const done = () => resolve({ status: response.statusCode ?? null, error: null });
      response.on("data", (chunk: Buffer) => {
        read += chunk.length;
        if (read > settings.maxResponseBytes) {
          response.destroy();
          done();
        }
      });
      response.on("end", done);
      response.on("error", done);
      response.on("close", done);
    });
    request.on("error", (err) => resolve({ status: null, error: signal.aborted ? `no response within ${settings.timeoutMs} ms` : err.message }));
    request.end(body);
  });
}

interface DueDelivery {
  id: string;
  messageId: string;
  eventType: string;
  sequence: bigint | number | string;
  attempts: number | bigint;
  createdAt: Date | string;
  payload: string;
  messageCreatedAt: Date | string;
}

export function createWebhookWorker(deps: { db: Db; pubsub: PubSub; log: Logger; settings: WebhookSettings }): WebhookWorker {
  const { db, pubsub, log, settings } = deps;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** A lease covers one send (the timeout) and the bookkeeping around it; it is renewed before each send. */
  const leaseMs = settings.timeoutMs + 5_000;

  /** Extend `token`'s lease on the endpoint for one more send: false if the lease was lost or the endpoint disabled. */
  const renew = (endpointId: string, token: string) =>
    db.webhookEndpoint
      .updateMany({ where: { id: endpointId, leaseToken: token, disabledAt: null }, data: { leaseUntil: new Date(Date.now() + leaseMs) } })
      .then(({ count }) => count === 1);

  async function dispatchAll(): Promise<void> {
    for (let more = true; more && !stopped; ) {
      const result = await sqlTransaction(db, (sql) => dispatch(sql, new Date()));
      more = result.more;
      for (const m of result.alerts) {
        const data = JSON.parse(m.payload) as { customerId: string; meterId: string };
        pubsub.publish("balance:alert", m.organizationId, { id: m.id, customerId: data.customerId, meterId: data.meterId });
      }
    }
  }

  /** Send one leased endpoint's due deliveries in sequence order, then give the lease back. */
  async function sendEndpoint(endpointId: string, token: string): Promise<void> {
    const endpoint = await db.webhookEndpoint.findUnique({ where: { id: endpointId } });
    if (!endpoint) return;
    try {
      // after a rotation, the previous secret signs beside the current one until it expires
      const signers = [endpoint.secretCiphertext, ...(endpoint.previousSecretCiphertext && endpoint.previousSecretExpiresAt && endpoint.previousSecretExpiresAt > new Date() ? [endpoint.previousSecretCiphertext] : [])].map(
        (ciphertext) => new Webhook(decryptSecret(settings.key, ciphertext)),
      );
      const due = await sqlTransaction(db, (sql) =>
        sql.query<DueDelivery>(
          `SELECT d."id", d."messageId", d."eventType", d."sequence", d."attempts", d."createdAt", m."payload", m."createdAt" AS "messageCreatedAt"
             FROM "WebhookDelivery" d JOIN "OutboxMessage" m ON m."id" = d."messageId"
            WHERE d."endpointId" = ${sql.param(1)} AND d."status" = 'PENDING' AND d."nextAttemptAt" <= ${sql.param(2)}
            ORDER BY d."sequence" LIMIT ${DELIVERIES_PER_LEASE}`,
          [endpointId, sql.date(new Date())],
        ),
      );
      for (const d of due) {
        if (stopped || !(await renew(endpointId, token))) break;
        const sequence = String(d.sequence);
        // The contract's body, exactly { type, timestamp, data }; the per-endpoint sequence goes in a header of its own.
        const body = JSON.stringify({ type: d.eventType, timestamp: asDate(d.messageCreatedAt).toISOString(), data: JSON.parse(d.payload) });
        const webhookId = `msg_${d.messageId}`;
        const sentAt = new Date();
        const headers = { "webhook-id": webhookId, "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)), "webhook-signature": signers.map((w) => w.sign(webhookId, sentAt, body)).join(" "), "webhook-sequence": sequence };
        const attempt = await post(endpoint.url, headers, body, settings);
        await record(endpointId, d, attempt);
        if (attempt.status === null) break; // no answer: the rest waits for the endpoint's next turn
      }
    } finally {
      // given back with the time it was: the endpoint goes behind those served less recently
      await db.webhookEndpoint.updateMany({ where: { id: endpointId, leaseToken: token }, data: { leaseUntil: new Date(), leaseToken: null } });
    }
  }

  /** Store an attempt's outcome: success, a retry later, or (past the window) failure; an endpoint failing for the whole window is disabled. */
  async function record(endpointId: string, d: DueDelivery, attempt: Attempt): Promise<void> {
    const now = new Date();
    const attempts = Number(d.attempts) + 1;
    const ok = attempt.status !== null && attempt.status >= 200 && attempt.status < 300;
    const error = ok ? null : (attempt.error ?? `HTTP ${attempt.status}`);
    const retryAt = new Date(now.getTime() + retryDelay(settings.retryBaseMs, attempts));
    const gaveUp = !ok && retryAt.getTime() > asDate(d.createdAt).getTime() + settings.retryWindowMs;
    await db.webhookDelivery.update({
      where: { id: d.id },
      data: {
        attempts,
        status: ok ? "SUCCEEDED" : gaveUp ? "FAILED" : "PENDING",
        lastResponseStatus: attempt.status,
        lastError: error?.slice(0, 500) ?? null,
        lastAttemptAt: now,
        nextAttemptAt: ok || gaveUp ? null : retryAt,
        updatedAt: now,
      },
    });
    if (ok) {
      await db.webhookEndpoint.updateMany({ where: { id: endpointId, failingSince: { not: null } }, data: { failingSince: null } });
      return;
    }
    log.info({ endpointId, deliveryId: d.id, attempts, status: attempt.status, error, retryAt: gaveUp ? null : retryAt }, "webhook delivery failed");
    const endpoint = await db.webhookEndpoint.findUnique({ where: { id: endpointId } });
    if (!endpoint) return;
    if (!endpoint.failingSince) {
      await db.webhookEndpoint.update({ where: { id: endpointId }, data: { failingSince: now } });
    } else if (now.getTime() - endpoint.failingSince.getTime() >= settings.retryWindowMs) {
      await db.webhookEndpoint.update({ where: { id: endpointId }, data: { disabledAt: now, disabledReason: `every delivery failed for ${settings.retryWindowMs / 3600_000} h (last: ${error})`.slice(0, 500) } });
      log.warn({ endpointId, url: endpoint.url }, "webhook endpoint disabled: its deliveries failed for the whole retry window");
    }
  }

  const pass = async () => {
    try {
      await dispatchAll();
      const now = new Date();
      const token = orderedId();
      const leased = await sqlTransaction(db, (sql) => lease(sql, now, new Date(now.getTime() + leaseMs), token));
      await Promise.all(leased.map((id) => sendEndpoint(id, token).catch((err: unknown) => log.error({ err, endpointId: id }, "webhook sending failed"))));
    } catch (err) {
      log.error({ err }, "webhook pass failed");
    }
  };
  const { tick, idle } = onePassAtATime(pass);
  let busy = false;
  return {
    tick,
    start() {
      stopped = false;
      // a pass still running when the next is due is not queued behind: the interval skips it
      timer = setInterval(() => {
        if (busy) return;
        busy = true;
        void tick().finally(() => (busy = false));
      }, settings.pollMs);
      timer.unref();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await idle();
    },
  };
}
