// Webhook endpoints and their delivery log, as the API manages them. Sending is src/webhooks/delivery.ts.
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { providerOfDb, type Db } from "../db/client.ts";
import { Sql } from "../db/sql.ts";
import type { WebhookDelivery, WebhookEndpoint } from "../generated/prisma-postgresql/client.ts";
import { InvalidInputError, LimitExceededError, NotFoundError } from "./errors.ts";
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from "./outbox.ts";
import { sqlTransaction } from "./transactions.ts";
import { encryptSecret, newWebhookSecret } from "./webhook-secrets.ts";

export const DELIVERY_STATUSES = ["PENDING", "SUCCEEDED", "FAILED"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** What endpoint management needs of the node's webhook settings. */
export interface EndpointPolicy {
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: loopback, private and link-local addresses allowed */
  allowPrivateNetworks: boolean;
  /** the key secrets are stored under (src/domain/webhook-secrets.ts) */
  key: Buffer;
}

/** Addresses a webhook may not reach unless private networks are allowed: loopback, private, link-local, and the like. */
const privateRanges = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 3],
] as const) {
  privateRanges.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 127],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const) {
  privateRanges.addSubnet(net, prefix, "ipv6");
}

/** Is this address (v4, v6, or v4-mapped v6) one a webhook may not reach without the setting? */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return privateRanges.check(mapped[1], "ipv4");
  return privateRanges.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
}

type Lookup = (host: string) => Promise<{ address: string; family: number }[]>;

/** Webhook host lookups running at once, at most: each holds one of libuv's four pool threads, which SQLite's commits need too. */
export const MAX_LOOKUPS = 2;
/** How long a webhook host's lookup is waited for. */
export const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * Host names are resolved by the system's resolver (getaddrinfo, /etc/hosts included) on libuv's thread pool,
 * whose four threads also sync SQLite's commits: a slow DNS server must not take them all. At most MAX_LOOKUPS
 * run at once (the rest wait their turn), and a caller stops waiting after LOOKUP_TIMEOUT_MS (the thread is
 * given back only when getaddrinfo returns, and until then its slot stays taken).
 */
function limitedLookup(resolve: Lookup = (host) => lookup(host, { all: true })) {
  let running = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    running--;
    waiting.shift()?.();
  };
  return (host: string): Promise<{ address: string; family: number }[]> =>
    new Promise((answer, refuse) => {
      let turn: (() => void) | null = null;
      const timer = setTimeout(() => {
        if (turn) waiting.splice(waiting.indexOf(turn), 1); // still waiting: leaves the line
        refuse(new Error(`${host} did not resolve within ${LOOKUP_TIMEOUT_MS / 1000} s`));
      }, LOOKUP_TIMEOUT_MS);
      const run = () => {
        turn = null;
        running++;
        resolve(host)
          .then(answer, refuse)
          .finally(() => {
            clearTimeout(timer);
            release();
          });
      };
      if (running < MAX_LOOKUPS) run();
      else waiting.push((turn = run));
    });
}

let lookUpHost = limitedLookup();

/** Tests: resolve host names with `resolve` (behind the same limits) instead of the system's resolver. */
export function resolveHostsWith(resolve?: Lookup): void {
  lookUpHost = limitedLookup(resolve);
}

/** Every address `host` resolves to, or the refusal: none at all, or a private one without the setting. */
export async function resolvePublicAddresses(host: string, allowPrivate: boolean): Promise<{ address: string; family: number }[]> {
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  const addresses = isIP(bare) ? [{ address: bare, family: isIP(bare) }] : await lookUpHost(bare);
  if (!addresses.length) throw new Error(`${host} does not resolve`);
  if (!allowPrivate) {
    const refused = addresses.find((a) => isPrivateAddress(a.address));
    if (refused) throw new Error(`${host} resolves to ${refused.address}, a loopback, private or link-local address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is not set)`);
  }
  return addresses;
}

async function checkUrl(url: string, policy: EndpointPolicy, field: string): Promise<string> {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new InvalidInputError("must be an absolute http or https URL", field);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new InvalidInputError("must be an http or https URL", field);
  if (parsed.username || parsed.password) throw new InvalidInputError("must not carry credentials", field);
  if (parsed.href.length > 2000) throw new InvalidInputError("must be at most 2,000 characters", field);
  try {
    await resolvePublicAddresses(parsed.hostname, policy.allowPrivateNetworks);
  } catch (err) {
    throw new InvalidInputError((err as Error).message, field);
  }
  return parsed.href;
}

function checkEventTypes(types: readonly string[] | null | undefined, field: string): WebhookEventType[] {
  const list = [...new Set(types ?? [])];
  for (const [i, t] of list.entries()) {
    if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(t)) throw new InvalidInputError(`unknown event type "${t}" (one of ${WEBHOOK_EVENT_TYPES.join(", ")})`, `${field}.${i}`);
  }
  return list as WebhookEventType[];
}

function checkDescription(description: string | null | undefined, field: string): string | null {
  const trimmed = description?.trim() ?? "";
  if (trimmed.length > 500) throw new InvalidInputError("must be at most 500 characters", field);
  return trimmed || null;
}

export interface EndpointInput {
  url: string;
  /** empty or omitted: every type */
  eventTypes?: readonly string[] | null;
  description?: string | null;
}

/** The endpoint's event types as stored (JSON text). */
export const eventTypesOf = (e: Pick<WebhookEndpoint, "eventTypes">): string[] => JSON.parse(e.eventTypes) as string[];

/** Most webhook endpoints one organization has (each event is one delivery per endpoint that wants it). */
export const MAX_WEBHOOK_ENDPOINTS = 20;

/** A new endpoint and its secret (`whsec_…`), returned this once: only its ciphertext is stored. */
export async function createWebhookEndpoint(db: Db, policy: EndpointPolicy, organizationId: string, input: EndpointInput): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  const url = await checkUrl(input.url, policy, "input.url");
  const eventTypes = checkEventTypes(input.eventTypes, "input.eventTypes");
  const description = checkDescription(input.description, "input.description");
  const secret = newWebhookSecret();
  const provider = providerOfDb(db);
  const endpoint = await db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    // counted under the organization's lock (PostgreSQL; SQLite has one writer), so concurrent calls cannot pass the cap together
    await new Sql(tx, provider).lockKeys([`webhook-endpoints:${organizationId}`]);
    if ((await tx.webhookEndpoint.count({ where: { organizationId } })) >= MAX_WEBHOOK_ENDPOINTS) {
      throw new LimitExceededError(`An organization has at most ${MAX_WEBHOOK_ENDPOINTS} webhook endpoints: delete one first (one endpoint can take every event type)`, "input", MAX_WEBHOOK_ENDPOINTS);
    }
    return tx.webhookEndpoint.create({ data: { organizationId, url, eventTypes: JSON.stringify(eventTypes), description, secretCiphertext: encryptSecret(policy.key, secret) } });
  });
  return { endpoint, secret };
}

/** Longest overlap of an old secret with its successor after rotateWebhookSecret. */
export const MAX_PREVIOUS_SECRET_HOURS = 168;

/**
 * A new signing secret for the endpoint, returned this once. The one it replaces keeps signing deliveries
 * beside it for `keepPreviousHours` (0 to 168, default 24): each delivery then carries both signatures in its
 * webhook-signature header (Standard Webhooks), so receivers can switch to the new secret at their own pace.
 * Rotating again replaces the previous secret with the one now current.
 */
export async function rotateWebhookSecret(db: Db, policy: EndpointPolicy, organizationId: string, id: string, keepPreviousHours: number | null | undefined, now: Date): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
  const hours = keepPreviousHours ?? 24;
  if (!Number.isInteger(hours) || hours < 0 || hours > MAX_PREVIOUS_SECRET_HOURS) throw new InvalidInputError(`must be a whole number of hours from 0 to ${MAX_PREVIOUS_SECRET_HOURS}`, "keepPreviousHours");
  const endpoint = await requireEndpoint(db, organizationId, id);
  const secret = newWebhookSecret();
  const rotated = await db.webhookEndpoint.update({
    where: { id: endpoint.id },
    data: {
      secretCiphertext: encryptSecret(policy.key, secret),
      previousSecretCiphertext: hours ? endpoint.secretCiphertext : null,
      previousSecretExpiresAt: hours ? new Date(now.getTime() + hours * 3600_000) : null,
    },
  });
  return { endpoint: rotated, secret };
}

async function requireEndpoint(db: Db, organizationId: string, id: string): Promise<WebhookEndpoint> {
  const endpoint = await db.webhookEndpoint.findFirst({ where: { id, organizationId } });
  if (!endpoint) throw new NotFoundError("No such webhook endpoint", "id");
  return endpoint;
}

export interface EndpointPatch {
  url?: string | null;
  eventTypes?: readonly string[] | null;
  description?: string | null;
  /** false re-enables a disabled endpoint (its failed deliveries stay failed: redeliver them); true disables it */
  disabled?: boolean | null;
}

export async function updateWebhookEndpoint(db: Db, policy: EndpointPolicy, organizationId: string, id: string, patch: EndpointPatch): Promise<WebhookEndpoint> {
  const endpoint = await requireEndpoint(db, organizationId, id);
  const data: Partial<WebhookEndpoint> = {};
  if (patch.url != null) data.url = await checkUrl(patch.url, policy, "input.url");
  if (patch.eventTypes != null) data.eventTypes = JSON.stringify(checkEventTypes(patch.eventTypes, "input.eventTypes"));
  if (patch.description !== undefined) data.description = checkDescription(patch.description, "input.description");
  if (patch.disabled === true && !endpoint.disabledAt) Object.assign(data, { disabledAt: new Date(), disabledReason: "disabled through the API" });
  if (patch.disabled === false) Object.assign(data, { disabledAt: null, disabledReason: null, failingSince: null });
  return db.webhookEndpoint.update({ where: { id }, data });
}

/** Deletes the endpoint and its delivery log. */
export async function deleteWebhookEndpoint(db: Db, organizationId: string, id: string): Promise<WebhookEndpoint> {
  const endpoint = await requireEndpoint(db, organizationId, id);
  await db.webhookEndpoint.delete({ where: { id } });
  return endpoint;
}

/** Send a delivery again (whatever its status): the same webhook-id, attempted as soon as a worker is free. */
export async function redeliverWebhook(db: Db, organizationId: string, id: string, now: Date): Promise<WebhookDelivery> {
  const delivery = await db.webhookDelivery.findFirst({ where: { id, organizationId } });
  if (!delivery) throw new NotFoundError("No such webhook delivery", "id");
  return db.webhookDelivery.update({ where: { id }, data: { status: "PENDING", nextAttemptAt: now, updatedAt: now } });
}

/** Rows deleted per statement when pruning, and statements per table per pass (the rest waits for the next pass). */
const PRUNE_BATCH = 1000;
const PRUNE_BATCHES_PER_PASS = 20;

/**
 * Retention (WEBHOOK_RETENTION_DAYS): succeeded deliveries last changed before `cutoff` and deliveries made
 * before it that still wait for a disabled endpoint, then outbox rows
 * dispatched before it that no delivery refers to any more, are deleted in bounded batches (one short
 * transaction each). Pending and failed deliveries stay (a failed one can still be redelivered by hand), and
 * so do the messages they send. The scheduler runs it; several nodes may at once (each batch deletes what is
 * still there). Answers how many deliveries and messages went.
 */
export async function pruneWebhookHistory(db: Db, cutoff: Date): Promise<{ deliveries: number; messages: number }> {
  const pruned = { deliveries: 0, messages: 0 };
  const batches = async (kind: keyof typeof pruned, statement: (sql: Sql) => string) => {
    for (let i = 0; i < PRUNE_BATCHES_PER_PASS; i++) {
      const deleted = await sqlTransaction(db, (sql) => sql.execute(statement(sql), [sql.date(cutoff)]));
      pruned[kind] += deleted;
      if (deleted < PRUNE_BATCH) break;
    }
  };
  await batches(
    "deliveries",
    (sql) =>
      `DELETE FROM "WebhookDelivery" WHERE "id" IN (SELECT "id" FROM "WebhookDelivery" WHERE "status" = 'SUCCEEDED' AND "updatedAt" < ${sql.param(1)} LIMIT ${PRUNE_BATCH})`,
  );
  // what waits for a disabled endpoint is kept for the retention, no longer
  await batches(
    "deliveries",
    (sql) =>
      `DELETE FROM "WebhookDelivery" WHERE "id" IN (SELECT d."id" FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId"
         WHERE d."status" = 'PENDING' AND d."createdAt" < ${sql.param(1)} AND e."disabledAt" IS NOT NULL LIMIT ${PRUNE_BATCH})`,
  );
  await batches(
    "messages",
    (sql) =>
      `DELETE FROM "OutboxMessage" WHERE "id" IN (SELECT m."id" FROM "OutboxMessage" m WHERE m."dispatchedAt" < ${sql.param(1)}
         AND NOT EXISTS (SELECT 1 FROM "WebhookDelivery" d WHERE d."messageId" = m."id") ORDER BY m."dispatchedAt" LIMIT ${PRUNE_BATCH})`,
  );
  return pruned;
}
