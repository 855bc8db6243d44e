// Usage events in: validate a batch all-or-nothing, store it idempotently, count it on every matching meter
// and move the balances, all in one transaction. The hot path of the service.
import { orderedId } from "./ids.ts";
import { sqlOf, type Db } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import { adjustBalances, balanceKey, emptyUsage, type BalanceAdjustment, type BalanceChange } from "./balances.ts";
import { checkMetadata, type Metadata } from "./metadata.ts";
import { InvalidInputError } from "./errors.ts";
import { contribution, filterMatches, unrepresentableNumber, type EventLike } from "./meter-filter.ts";
import { activeMeters, toActiveMeter, type ActiveMeter } from "./meters.ts";
import { overagePairs } from "./overage.ts";
import type { Notify } from "./notify.ts";
import { inSqlTransaction } from "./transactions.ts";
import { DecimalFormatError } from "./units.ts";

/** Most events one ingestEvents call accepts. */
export const MAX_BATCH_SIZE = 10_000;
/** How far in the future a timestamp may be (clock skew between the merchant's servers and ours). */
export const FUTURE_SKEW_MS = 60_000;

export interface EventInput {
  name: string;
  customerId?: string | null;
  externalCustomerId?: string | null;
  externalId?: string | null;
  timestamp?: Date | null;
  metadata?: unknown;
}

/**
 * STANDARD records all usage (past zero it is billable overage, or on a credits-only meter a negative
 * balance that authorizations then refuse). STRICT rejects the whole batch if it would take a credits-only
 * balance below zero.
 */
export type IngestMode = "STANDARD" | "STRICT";

export interface IngestResult {
  inserted: number;
  duplicates: number;
}

interface ValidEvent extends EventLike {
  index: number;
  id: string;
  customerId: string | null;
  externalCustomerId: string | null;
  externalId: string | null;
  timestamp: Date;
  metadata: Metadata;
}

/** A stored event about to be counted for a known customer. */
export interface CountableEvent extends EventLike {
  id: string;
  customerId: string;
}

function checkEvent(e: EventInput, i: number, now: number): ValidEvent {
  const at = (f: string) => `events.${i}.${f}`;
  const name = typeof e.name === "string" ? e.name.trim() : "";
  if (!name || name.length > 200) throw new InvalidInputError("must be 1 to 200 characters", at("name"));
  if (e.customerId && e.externalCustomerId) throw new InvalidInputError("give either customerId or externalCustomerId, not both", at("customerId"));
  if (!e.customerId && !e.externalCustomerId) throw new InvalidInputError("customerId or externalCustomerId is required", at("customerId"));
  if (e.externalCustomerId != null && (!e.externalCustomerId.trim() || e.externalCustomerId.length > 255)) {
    throw new InvalidInputError("must be 1 to 255 characters", at("externalCustomerId"));
  }
  if (e.externalId != null && (!e.externalId.trim() || e.externalId.length > 255)) throw new InvalidInputError("must be 1 to 255 characters", at("externalId"));
  const timestamp = e.timestamp ?? new Date(now);
  if (timestamp.getTime() > now + FUTURE_SKEW_MS) {
    throw new InvalidInputError(`is in the future (more than ${FUTURE_SKEW_MS / 1000} s ahead of the server clock)`, at("timestamp"));
  }
  return {
    index: i,
    id: orderedId(),
    name,
    customerId: e.customerId ?? null,
    externalCustomerId: e.externalCustomerId?.trim() ?? null,
    externalId: e.externalId ?? null,
    timestamp,
    metadata: checkMetadata(e.metadata, at("metadata")),
  };
}

/** Numbers that numeric meters aggregate must be exact micro-units; reject the batch otherwise. */
function checkAggregatedNumbers(events: ValidEvent[], meters: ActiveMeter[]): void {
  const keys = new Set<string>();
  for (const m of meters) {
    if (m.aggregation.property && m.aggregation.func !== "UNIQUE") keys.add(m.aggregation.property.replace(/^metadata\./, ""));
  }
  if (!keys.size) return;
  for (const e of events) {
    for (const k of keys) {
      const v = e.metadata[k];
      if (typeof v !== "number") continue;
      const reason = unrepresentableNumber(v);
      if (reason) throw new InvalidInputError(reason, `events.${e.index}.metadata.${k}`);
    }
  }
}

/** A stored number a newer meter cannot represent exactly (ingestion checked only the meters of its day). */
function contributionOrIgnored(...args: Parameters<typeof contribution>): ReturnType<typeof contribution> {
  try {
    return contribution(...args);
  } catch (err) {
    if (err instanceof DecimalFormatError) return null;
    throw err;
  }
}

/**
 * Usage adjustments for events of known customers: each event is matched against every meter and adds its
 * contribution to that (customer, meter).
 */
export function usageAdjustments(events: CountableEvent[], meters: ActiveMeter[]): BalanceAdjustment[] {
  const byKey = new Map<string, BalanceAdjustment>();
  for (const e of events) {
    for (const m of meters) {
      if (!filterMatches(m.filter, e)) continue;
      const k = balanceKey(e.customerId, m.id);
      let adj = byKey.get(k);
      if (!adj) byKey.set(k, (adj = { customerId: e.customerId, meterId: m.id, usage: emptyUsage(m.aggregation.func) }));
      const u = adj.usage!;
      u.eventCount++;
      u.lastEventId = e.id;
      const c = contributionOrIgnored(m.aggregation, e);
      if (c === null) continue; // a numeric meter ignores missing and non-numeric values
      if ("distinct" in c) {
        u.distinct.add(c.distinct);
        continue;
      }
      u.count++;
      u.sum += c.units;
      u.max = u.max === null || c.units > u.max ? c.units : u.max;
      u.min = u.min === null || c.units < u.min ? c.units : u.min;
    }
  }
  return [...byKey.values()];
}

export async function ingestEvents(db: Db, notify: Notify, organizationId: string, inputs: EventInput[], now = new Date(), mode: IngestMode = "STANDARD"): Promise<IngestResult> {
  if (inputs.length === 0) return { inserted: 0, duplicates: 0 };
  if (inputs.length > MAX_BATCH_SIZE) throw new InvalidInputError(`at most ${MAX_BATCH_SIZE} events per call (got ${inputs.length})`, "events");
  const nowMs = now.getTime();
  const events = inputs.map((e, i) => checkEvent(e, i, nowMs));

  // Customers named by id must exist; external ids that match no customer yet are kept for later.
  const ids = [...new Set(events.filter((e) => e.customerId).map((e) => e.customerId!))];
  const externalIds = [...new Set(events.filter((e) => e.externalCustomerId).map((e) => e.externalCustomerId!))];
  const { known, external, meters } = await customersAndMeters(sqlOf(db), organizationId, ids, externalIds);
  for (const e of events) {
    if (e.customerId && !known.has(e.customerId)) throw new InvalidInputError("no such customer", `events.${e.index}.customerId`);
    if (e.externalCustomerId) e.customerId = external.get(e.externalCustomerId) ?? null;
  }
  checkAggregatedNumbers(events, meters);

  // The same externalId twice in one batch: the first one counts.
  const seen = new Set<string>();
  const unique = events.filter((e) => !e.externalId || (!seen.has(e.externalId) && (seen.add(e.externalId), true)));

  const batch: Batch = { events: unique, received: events.length, now, meters };
  if (mode === "STANDARD") return coalesced(db, notify, organizationId, batch);

  // STRICT: which balances may go into overage, read before the transaction (which then needs nothing but
  // SQL) for every balance the batch could touch. A STRICT batch is refused or stored on its own.
  const overage = await overagePairs(db, usageAdjustments(unique.filter((e) => e.customerId) as CountableEvent[], meters));
  const [result] = await storeBatches(db, notify, organizationId, [batch], (adjustments) => {
    for (const a of adjustments) if (!overage.has(balanceKey(a.customerId, a.meterId))) Object.assign(a, { creditsOnly: true, field: "events" });
  });
  return result;
}

/**
 * The live customers among `ids` and `externalIds`, and the organization's active meters (as activeMeters
 * gives them), in one statement: every call pays for it, however small.
 */
async function customersAndMeters(sql: Sql, organizationId: string, ids: string[], externalIds: string[]) {
  const byId = sql.textIn("id", ids, 2);
  const byExternal = sql.textIn("externalId", externalIds, 2 + byId.values.length);
  const org = sql.param(2 + byId.values.length + byExternal.values.length);
  const rows = await sql.query<{ kind: string; id: string; externalId: string | null; filter: unknown; func: string | null; property: string | null }>(
    `SELECT 'C' AS "kind", "id", "externalId", NULL AS "filter", NULL AS "func", NULL AS "property" FROM "Customer"
      WHERE "organizationId" = ${sql.param(1)} AND "deletedAt" IS NULL AND (${byId.clause} OR ${byExternal.clause})
     UNION ALL
     SELECT 'M', "id", NULL, "filter", "aggregationFunc", "aggregationProperty" FROM "Meter"
      WHERE "organizationId" = ${org} AND "archivedAt" IS NULL
     ORDER BY 1, 2`,
    [organizationId, ...byId.values, ...byExternal.values, organizationId],
  );
  const known = new Set<string>();
  const external = new Map<string, string>();
  const meters: ActiveMeter[] = [];
  for (const r of rows) {
    if (r.kind === "M") {
      // jsonb arrives parsed from PostgreSQL, as text from SQLite
      const filter = typeof r.filter === "string" ? JSON.parse(r.filter) : r.filter;
      meters.push(toActiveMeter({ id: r.id, filter: filter as never, aggregationFunc: r.func!, aggregationProperty: r.property }));
      continue;
    }
    known.add(r.id);
    if (r.externalId !== null) external.set(r.externalId, r.id);
  }
  return { known, external, meters };
}

/** One validated ingestEvents call, ready to store. */
interface Batch {
  /** the events to store (a repeat of an externalId within the call already dropped) */
  events: ValidEvent[];
  /** events the call sent, repeats included */
  received: number;
  now: Date;
  meters: ActiveMeter[];
}

/**
 * Store batches in one transaction: insert their events, count the new ones, move the balances. Each batch
 * gets its own summary; an externalId that two of them share counts once, for the first.
 */
function storeBatches(db: Db, notify: Notify, organizationId: string, batches: Batch[], refine?: (adjustments: BalanceAdjustment[]) => void): Promise<IngestResult[]> {
  return inSqlTransaction(db, notify, organizationId, async (sql) => {
    const rows: unknown[][] = [];
    for (const b of batches) {
      const createdAt = sql.date(b.now);
      for (const e of b.events) {
        rows.push([e.id, organizationId, e.name, e.customerId, e.externalCustomerId, e.externalId, sql.date(e.timestamp), sql.json(e.metadata), createdAt]);
      }
    }
    // Idempotency is the unique (organizationId, externalId) index: a duplicate is skipped, also when a
    // concurrent request holds the same event (its insert waits for ours to commit or roll back).
    const insertedIds = await sql.insertNew(
      "Event",
      ["id", "organizationId", "name", "customerId", "externalCustomerId", "externalId", "timestamp", "metadata", "createdAt"],
      rows,
      `("organizationId", "externalId")`,
    );
    await linkLateCustomers(sql, organizationId, batches.flatMap((b) => b.events.filter((e) => !e.customerId && e.externalCustomerId && insertedIds.has(e.id))));
    // The latest of the batches' clocks and meters: the transaction happens now.
    const last = batches.reduce((a, b) => (b.now > a.now ? b : a));
    const countable = batches.flatMap((b) => b.events.filter((e) => e.customerId && insertedIds.has(e.id))) as CountableEvent[];
    const adjustments = usageAdjustments(countable, last.meters);
    refine?.(adjustments);
    const changes = await adjustBalances(sql, organizationId, adjustments, last.now);
    const value = batches.map((b) => {
      const inserted = b.events.reduce((n, e) => n + (insertedIds.has(e.id) ? 1 : 0), 0);
      return { inserted, duplicates: b.received - inserted };
    });
    return { value, changes };
  });
}

/** The lock under which an external customer id is given to a customer, and looked up by ingestion. */
export const externalIdLock = (organizationId: string, externalId: string) => `customer-external-id:${organizationId}:${externalId}`;

/**
 * Events stored for an externalCustomerId that matched no customer when the call was checked: a customer
 * created since may have it now. Looked up again inside the transaction, after the insert, under a lock per
 * external id that creating or renaming a customer takes too: either that customer committed first and is
 * found here, or its transaction starts after this one commits and finds these events pending. So every such
 * event is counted exactly once, never by neither transaction.
 */
async function linkLateCustomers(sql: Sql, organizationId: string, events: ValidEvent[]): Promise<void> {
  if (!events.length) return;
  const externalIds = [...new Set(events.map((e) => e.externalCustomerId!))];
  await sql.lockKeys(externalIds.map((x) => externalIdLock(organizationId, x)));
  const named = sql.textIn("externalId", externalIds, 2);
  const found = await sql.query<{ id: string; externalId: string }>(
    `SELECT "id", "externalId" FROM "Customer" WHERE "organizationId" = ${sql.param(1)} AND "deletedAt" IS NULL AND ${named.clause}`,
    [organizationId, ...named.values],
  );
  if (!found.length) return;
  const byExternal = new Map(found.map((c) => [c.externalId, c.id]));
  const linked = new Map<string, string[]>();
  for (const e of events) {
    const customerId = byExternal.get(e.externalCustomerId!);
    if (!customerId) continue;
    e.customerId = customerId;
    linked.set(customerId, [...(linked.get(customerId) ?? []), e.id]);
  }
  for (const [customerId, ids] of linked) {
    for (let i = 0; i < ids.length; i += 400) {
      const chunk = ids.slice(i, i + 400);
      await sql.execute(`UPDATE "Event" SET "customerId" = ${sql.param(1)} WHERE ${sql.inList("id", chunk.length, 2)}`, [customerId, ...chunk]);
    }
  }
}

/**
 * Most transactions one node runs at once for one organization's STANDARD batches. Two keep the database
 * busy (one inserts its events while the other holds the balance rows); calls arriving meanwhile wait and
 * are then stored together, up to MAX_BATCH_SIZE events a transaction. Many small concurrent calls thus cost
 * a few transactions instead of one each, and a lone call starts at once.
 */
export const INGEST_TRANSACTIONS_PER_ORGANIZATION = 2;

interface Waiting {
  batch: Batch;
  resolve(result: IngestResult): void;
  reject(err: unknown): void;
}

interface Lane {
  waiting: Waiting[];
  running: number;
}

const lanes = new WeakMap<Db, Map<string, Lane>>();

function coalesced(db: Db, notify: Notify, organizationId: string, batch: Batch): Promise<IngestResult> {
  let byOrganization = lanes.get(db);
  if (!byOrganization) lanes.set(db, (byOrganization = new Map()));
  let lane = byOrganization.get(organizationId);
  if (!lane) byOrganization.set(organizationId, (lane = { waiting: [], running: 0 }));
  const result = new Promise<IngestResult>((resolve, reject) => lane.waiting.push({ batch, resolve, reject }));
  if (lane.running < INGEST_TRANSACTIONS_PER_ORGANIZATION) void drain(db, notify, organizationId, byOrganization, lane);
  return result;
}

/** Store what waits in the lane, as many batches a transaction as fit, until nothing is left. */
async function drain(db: Db, notify: Notify, organizationId: string, byOrganization: Map<string, Lane>, lane: Lane): Promise<void> {
  lane.running++;
  try {
    while (lane.waiting.length) {
      const group: Waiting[] = [];
      let size = 0;
      while (lane.waiting.length && (group.length === 0 || size + lane.waiting[0].batch.events.length <= MAX_BATCH_SIZE)) {
        const next = lane.waiting.shift()!;
        group.push(next);
        size += next.batch.events.length;
      }
      try {
        const results = await storeBatches(db, notify, organizationId, group.map((w) => w.batch));
        group.forEach((w, i) => w.resolve(results[i]));
      } catch (err) {
        if (group.length === 1) {
          group[0].reject(err);
          continue;
        }
        // Whatever failed the group, one call's failure must not be another's: each is tried on its own.
        for (const w of group) {
          await storeBatches(db, notify, organizationId, [w.batch]).then(([r]) => w.resolve(r), w.reject);
        }
      }
    }
  } finally {
    lane.running--;
    if (lane.running === 0 && !lane.waiting.length) byOrganization.delete(organizationId);
  }
}

/**
 * A customer just got an externalId: link the events stored for it while it was unknown and count them.
 * Runs inside the caller's transaction.
 */
export async function countPendingEvents(sql: Sql, tx: Db, organizationId: string, customerId: string, externalId: string, now: Date): Promise<BalanceChange[]> {
  const pending = await tx.event.findMany({
    where: { organizationId, externalCustomerId: externalId, customerId: null },
    select: { id: true, name: true, metadata: true },
  });
  if (!pending.length) return [];
  await tx.event.updateMany({ where: { id: { in: pending.map((e) => e.id) } }, data: { customerId } });
  const meters = await activeMeters(tx, organizationId);
  const events = pending.map((e) => ({ id: e.id, customerId, name: e.name, metadata: e.metadata as Metadata }));
  return adjustBalances(sql, organizationId, usageAdjustments(events, meters), now);
}
