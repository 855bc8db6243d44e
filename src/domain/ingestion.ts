// Usage events in: validate a batch all-or-nothing, store it idempotently, count it on every matching meter
// and move the balances, all in one transaction: the node's writer (src/domain/writer.ts) stores calls that
// arrive together in one, each decided on its own. The hot path of the service.
import { orderedId } from "./ids.ts";
import { sqlOf, type Db } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import { adjustBalances, adjustment, balanceKey, emptyUsage, type BalanceAdjustment, type BalanceChange } from "./balances.ts";
import { checkMetadata, type Metadata } from "./metadata.ts";
import { ConflictError, InvalidInputError, NotFoundError, UnitsOverflowError } from "./errors.ts";
import { contribution, filterMatches, metadataKeyOf, propertyField, propertyValue, type Contains, type EventLike } from "./meter-filter.ts";
import { LikeIndex, worthIndexing } from "./like-index.ts";
import { noSuchCustomerMessage } from "./customers.ts";
import { activeMeters, meterDefinitionLock, toActiveMeter, type ActiveMeter } from "./meters.ts";
import { overagePairs } from "./overage.ts";
import type { Notify } from "./notify.ts";
import { submit, type JobKind, type WriteJob } from "./writer.ts";
import { DecimalFormatError } from "./units.ts";
import { RatedUsage } from "./credit-systems.ts";
import { LRUCache } from "lru-cache";
import { perTurn } from "./lookup-batch.ts";

/** Most events one ingestEvents call accepts. */
export const MAX_BATCH_SIZE = 10_000;
/** Longest stretch (ms) ingestion matches events against meters before letting other work run. */
const MATCHING_SLICE_MS = 10;
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
  /** micro-units credited back by negative values on CREDIT meters (events of known customers) */
  creditedUnits: bigint;
  /** values numeric meters ignored because they are not numbers (non-numeric strings, booleans) */
  ignoredValues: number;
}

/**
 * What one event adds to one meter that matched it: micro-units (negative only on a CREDIT meter, where
 * they are credits), a UNIQUE meter's typed distinct value, or null (matched, no value to aggregate).
 */
export interface Counted {
  meter: ActiveMeter;
  value: bigint | string | null;
}

interface ValidEvent extends EventLike {
  index: number;
  id: string;
  customerId: string | null;
  externalCustomerId: string | null;
  externalId: string | null;
  timestamp: Date;
  metadata: Metadata;
  /** what the event adds to each meter that matched it, decided once at validation */
  counted: Counted[];
  /** values numeric meters ignored (not numbers) */
  ignored: number;
}

/** A stored event about to be counted for a known customer. */
export interface CountableEvent {
  id: string;
  customerId: string;
  /** when the usage happened: rated meters draw at the rate in force then */
  timestamp: Date;
  counted: Counted[];
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
    counted: [],
    ignored: 0,
  };
}

/** Longest value (its typed text, UTF-8) a UNIQUE meter counts. */
export const MAX_DISTINCT_BYTES = 2_000;

/**
 * How `countEvent` treats a value it cannot aggregate. At ingestion (`field` set) it refuses the batch:
 * a number that is not exact micro-units, a negative value on a meter that does not take them, and in
 * STRICT mode a value that is not a number at all (otherwise ignored and reported in the summary). When
 * stored events are counted later (a customer got their externalId), the meters may be newer than the
 * events: such values are then ignored.
 */
interface CountPolicy {
  /** the event's path ("events.3"); null: ignore what ingestion would refuse */
  field: string | null;
  strict: boolean;
}

/** countEvent's refusal of a value, at the event's field for the meter's property. */
function refusal(policy: CountPolicy, property: string | null | undefined, message: string): InvalidInputError {
  return new InvalidInputError(message, `${policy.field}.${propertyField(property ?? "name")}`);
}

/** Match one event against every meter and decide what it adds to each; see CountPolicy for refusals. */
export function countEvent(e: EventLike, meters: readonly ActiveMeter[], policy: CountPolicy, contains?: Contains): { counted: Counted[]; ignored: number } {
  const counted: Counted[] = [];
  let ignored = 0;
  // An index loop and no closure per meter: this runs for every meter of every event ingested.
  for (let i = 0; i < meters.length; i++) {
    const m = meters[i];
    if (!filterMatches(m.filter, e, contains)) continue;
    const { func, property } = m.aggregation;
    let c: ReturnType<typeof contribution>;
    try {
      c = contribution(m.aggregation, e);
    } catch (err) {
      if (!(err instanceof DecimalFormatError)) throw err;
      if (policy.field === null) {
        counted.push({ meter: m, value: null });
        continue;
      }
      throw refusal(policy, property, `${typeof propertyValue(e, property!) === "string" ? "numeric string" : "number"} ${err.message}`);
    }
    if (c === null) {
      // Missing: nothing to aggregate. Present but not a number: ignored, never silently.
      if (func !== "COUNT" && func !== "UNIQUE" && metadataKeyOf(property!) !== null && propertyValue(e, property!) !== undefined) {
        if (policy.strict && policy.field !== null) throw refusal(policy, property, `is not a number: meter ${m.id} aggregates numbers (${func}), and STRICT mode refuses values it would ignore`);
        ignored++;
      }
      counted.push({ meter: m, value: null });
      continue;
    }
    if ("distinct" in c) {
      // The distinct value is a key in an index, and PostgreSQL's btree holds keys up to ~2,700 bytes: a longer
      // one is refused on both engines alike (ignored when stored events are counted later).
      if (c.distinct.length * 3 > MAX_DISTINCT_BYTES && Buffer.byteLength(c.distinct) > MAX_DISTINCT_BYTES) {
        if (policy.field !== null) throw refusal(policy, property, `is too long for meter ${m.id} (UNIQUE counts values of at most ${MAX_DISTINCT_BYTES} bytes in UTF-8)`);
        counted.push({ meter: m, value: null });
        continue;
      }
      counted.push({ meter: m, value: c.distinct });
      continue;
    }
    if (c.units < 0n && m.negativeValues !== "CREDIT") {
      if (policy.field === null) {
        counted.push({ meter: m, value: null });
        continue;
      }
      throw refusal(
        policy,
        property,
        func === "SUM"
          ? `is negative: meter ${m.id} refuses negative values (negativeValues: REJECT; a CREDIT meter turns them into credits)`
          : `is negative: ${func} meters refuse negative values`,
      );
    }
    counted.push({ meter: m, value: c.units });
  }
  return { counted, ignored };
}

/**
 * Usage adjustments for events of known customers: each event adds what `countEvent` decided to its
 * (customer, meter) pairs. Negative values (CREDIT meters) add to `credit`, never to the aggregation.
 */
export function usageAdjustments(events: CountableEvent[]): BalanceAdjustment[] {
  const byKey = new Map<string, BalanceAdjustment>();
  for (const e of events) {
    for (const { meter: m, value } of e.counted) {
      const k = balanceKey(e.customerId, m.id);
      let adj = byKey.get(k);
      if (!adj) byKey.set(k, (adj = adjustment({ customerId: e.customerId, meterId: m.id, usage: emptyUsage(m.aggregation.func), pool: m.poolMeterId ?? undefined })));
      const u = adj.usage!;
      if (typeof value === "bigint" && value < 0n) {
        u.credit -= value;
        u.creditEvents++;
        u.lastCreditEventId = e.id;
        continue;
      }
      u.eventCount++;
      u.lastEventId = e.id;
      if (value === null) continue; // a numeric meter ignores missing and non-numeric values
      if (typeof value === "string") {
        u.distinct.add(value);
        continue;
      }
      u.count++;
      u.sum += value;
      if (m.rated) (u.timed ??= new RatedUsage()).add(e.timestamp.getTime(), value, e.id);
      u.max = u.max === null || value > u.max ? value : u.max;
      u.min = u.min === null || value < u.min ? value : u.min;
    }
  }
  return [...byKey.values()];
}

/**
 * A balance would leave the 64-bit range: name the first event (in the order given) that takes it there,
 * counting from the stored state in the error. Null if no single event can be named.
 */
function overflowingEvent(events: (CountableEvent & { index?: number })[], err: UnitsOverflowError): string | null {
  let positive = 0n;
  let credit = 0n;
  for (const e of events) {
    if (e.customerId !== err.customerId) continue;
    for (const { meter: m, value } of e.counted) {
      if (m.id !== err.meterId || typeof value !== "bigint") continue;
      if (value < 0n) credit -= value;
      else positive += value;
      if (err.exceededBy(positive, credit)) {
        const property = m.aggregation.property;
        if (e.index === undefined || !property) return null;
        return `events.${e.index}.${propertyField(property)}`;
      }
    }
  }
  return null;
}

export async function ingestEvents(db: Db, notify: Notify, organizationId: string, inputs: EventInput[], now = new Date(), mode: IngestMode = "STANDARD"): Promise<IngestResult> {
  if (inputs.length === 0) return { inserted: 0, duplicates: 0, creditedUnits: 0n, ignoredValues: 0 };
  if (inputs.length > MAX_BATCH_SIZE) throw new InvalidInputError(`at most ${MAX_BATCH_SIZE} events per call (got ${inputs.length})`, "events");
  const nowMs = now.getTime();
  const events = inputs.map((e, i) => checkEvent(e, i, nowMs));

  // Customers named by id must exist; external ids that match no customer yet are kept for later.
  const ids = [...new Set(events.filter((e) => e.customerId).map((e) => e.customerId!))];
  const externalIds = [...new Set(events.filter((e) => e.externalCustomerId).map((e) => e.externalCustomerId!))];
  const { known, external, meters, definitions } = await lookUpCustomersAndMeters(db, { organizationId, ids, externalIds });
  for (const e of events) {
    if (e.customerId && !known.has(e.customerId)) throw new NotFoundError("No such customer", `events.${e.index}.customerId`);
    if (e.externalCustomerId) e.customerId = external.get(e.externalCustomerId) ?? null;
  }
  // Every event against every meter, once: refusals happen here, before anything is written. Matching is
  // the CPU-bound part (up to MAX_FILTER_CLAUSES clauses per event); other requests get the event loop back
  // every few milliseconds, so one tenant's expensive filters never stall another tenant's calls.
  // Many LIKE clauses: one scan of each event's text answers all of them (src/domain/like-index.ts).
  const filters = meters.map((m) => m.filter);
  const likes = worthIndexing(events.length, filters) ? new LikeIndex(filters) : null;
  let since = performance.now();
  for (const e of events) {
    Object.assign(e, countEvent(e, meters, { field: `events.${e.index}`, strict: mode === "STRICT" }, likes?.forEvent()));
    if (performance.now() - since > MATCHING_SLICE_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      since = performance.now();
    }
  }

  // The same externalId twice in one batch: the first one counts.
  const seen = new Set<string>();
  const unique = events.filter((e) => !e.externalId || (!seen.has(e.externalId) && (seen.add(e.externalId), true)));
  // The definitions of the meters the events matched, as matched: the writer checks they still hold (staleJobs).
  const matched = new Map<string, string>();
  for (const e of unique) for (const { meter } of e.counted) if (!matched.has(meter.id)) matched.set(meter.id, definitions.get(meter.id)!);

  // STRICT: which balances may go into overage, read before the group (which then needs nothing but SQL) for
  // every balance the batch could touch; the others are credits-only for this call.
  const overage = mode === "STRICT" ? await strictOverage(db, meters, usageAdjustments(unique.filter((e) => e.customerId) as CountableEvent[])) : null;
  return submit<IngestJob, IngestResult>(db, ingestKind, { organizationId, notify, now, events: unique.length, batch: { events: unique, received: events.length, now }, overage, matched });
}

/**
 * Of the balances a STRICT batch touches, those that may go into overage: a rated meter's usage draws from
 * its pool, so the pool's policy decides for it, as for authorizeUsage.
 */
async function strictOverage(db: Db, meters: readonly ActiveMeter[], touched: { customerId: string; meterId: string }[]): Promise<Set<string>> {
  const poolOf = new Map(meters.flatMap((m) => (m.poolMeterId ? [[m.id, m.poolMeterId] as const] : [])));
  const policy = (p: { customerId: string; meterId: string }) => ({ customerId: p.customerId, meterId: poolOf.get(p.meterId) ?? p.meterId });
  const allowed = await overagePairs(db, touched.map(policy));
  return new Set(touched.filter((p) => allowed.has(balanceKey(p.customerId, policy(p).meterId))).map((p) => balanceKey(p.customerId, p.meterId)));
}

/**
 * The statement of customersAndMeters: the live customers among `ids` and `externalIds` (kind `C`), and one row
 * (kind `M`) whose `meters` is the organization's active meters as one JSON text, in id order: each meter as
 * `[id, filter, aggregationFunc, aggregationProperty, negativeValues, creditPoolId]`.
 */
export function customersAndMetersStatement(sql: Sql, organizationId: string, ids: string[], externalIds: string[]): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const branches: string[] = [];
  const customers = (named: { clause: string; values: unknown[] }, organization: string) => {
    branches.push(`SELECT 'C' AS "kind", "id", "externalId", NULL AS "meters" FROM "Customer" WHERE ${named.clause} AND ${organization} = ${sql.param(values.length + named.values.length + 1)} AND "deletedAt" IS NULL`);
    values.push(...named.values, organizationId);
  };
  // One branch per list that names someone, each on its own index: the primary key for ids, (organization,
  // externalId) for external ids. SQLite plans without statistics, and given eight ids or more beside the
  // organization's equality it preferred the organization's index, reading every customer of the organization
  // on every call; its unary `+` keeps that term out of the choice (PostgreSQL has statistics and no such operator).
  if (ids.length) customers(sql.textIn("id", ids, values.length + 1), sql.provider === "postgresql" ? `"organizationId"` : `+"organizationId"`);
  if (externalIds.length) customers(sql.textIn("externalId", externalIds, values.length + 1), `"organizationId"`);
  const meters = sql.provider === "postgresql" ? `(json_agg(${meterDefinition(sql)} ORDER BY "id"))::text` : `json_group_array(${meterDefinition(sql)} ORDER BY "id")`;
  branches.push(`SELECT 'M' AS "kind", NULL AS "id", NULL AS "externalId", ${meters} AS "meters" FROM "Meter" WHERE "organizationId" = ${sql.param(values.length + 1)} AND "archivedAt" IS NULL`);
  values.push(organizationId);
  return { text: branches.join("\n     UNION ALL\n     "), values };
}

/**
 * One meter's definition as one JSON array, `[id, filter, aggregationFunc, aggregationProperty, negativeValues,
 * creditPoolId]`: in customersAndMetersStatement, and alone where ingestion checks the meters it matched
 * against are unchanged (`staleJobs`), so both read the same text.
 */
function meterDefinition(sql: Sql): string {
  const columns = `"id", "filter", "aggregationFunc", "aggregationProperty", "negativeValues", "creditPoolId"`;
  return sql.provider === "postgresql" ? `json_build_array(${columns})` : `json_array(${columns})`;
}

/**
 * Each organization's active meters as last read: the JSON text they were read as, and what it gave. A call
 * whose statement returns the same text takes the same (frozen) meters instead of parsing them again. The text
 * is the meters' whole definition, read on every call, so a meter created, changed or archived anywhere shows
 * in the next call's text: nothing here can be stale. Bounded by the texts' total length.
 */
const meterSets = new LRUCache<string, MeterSet>({ max: 1_000, maxSize: 32_000_000, sizeCalculation: (v) => 2 * v.text.length + 1 });

interface MeterSet {
  text: string;
  meters: readonly ActiveMeter[];
  /** each meter's definition (meterDefinition) as JSON text, by id */
  definitions: ReadonlyMap<string, string>;
}

/** The meters of a `customersAndMetersStatement` text (frozen: every call of the organization shares them). */
function metersOfText(text: string | null): MeterSet {
  const rows = (text === null ? [] : JSON.parse(text)) as [string, unknown, string, string | null, string, string | null][];
  const meters = Object.freeze(
    rows.map(([id, filter, aggregationFunc, aggregationProperty, negativeValues, creditPoolId]) =>
      // SQLite's json_array takes the filter column's JSON text as a string; PostgreSQL's jsonb arrives as JSON
      deepFreeze(toActiveMeter({ id, filter: (typeof filter === "string" ? JSON.parse(filter) : filter) as never, aggregationFunc, aggregationProperty, negativeValues, creditPoolId })),
    ),
  );
  return { text: text ?? "", meters, definitions: new Map(rows.map((row) => [row[0], JSON.stringify(row)])) };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * The live customers among `ids` and `externalIds`, and the organization's active meters (as activeMeters
 * gives them), in one statement: every call pays for it, however small.
 */
async function customersAndMeters(sql: Sql, organizationId: string, ids: string[], externalIds: string[]) {
  const statement = customersAndMetersStatement(sql, organizationId, ids, externalIds);
  const rows = await sql.query<{ kind: string; id: string; externalId: string | null; meters: string | null }>(statement.text, statement.values);
  const known = new Set<string>();
  const external = new Map<string, string>();
  let meters = NO_METERS;
  for (const r of rows) {
    if (r.kind === "M") {
      const cached = meterSets.get(organizationId);
      if (cached && cached.text === r.meters) meters = cached;
      else {
        meters = metersOfText(r.meters);
        if (r.meters !== null) meterSets.set(organizationId, meters);
      }
      continue;
    }
    known.add(r.id);
    if (r.externalId !== null) external.set(r.externalId, r.id);
  }
  return { known, external, meters: meters.meters, definitions: meters.definitions };
}

const NO_METERS = metersOfText(null);

/** What an ingest call looks up before it queues for the writer: the customers it names, by id and by externalId. */
interface CustomersAsk {
  organizationId: string;
  ids: string[];
  externalIds: string[];
}

type CustomersAndMeters = Awaited<ReturnType<typeof customersAndMeters>>;

/** Customers one lookup statement names at most (a call naming more has a statement of its own). */
const NAMES_PER_LOOKUP = 1_024;

/**
 * customersAndMeters for the ingest calls that ask in one turn (src/domain/lookup-batch.ts), one statement per
 * organization for all of them: each call's customers are among the statement's, and the organization's meters
 * are the same for every call. Each call reads a snapshot taken after it arrived, as it did alone.
 */
const lookUpCustomersAndMeters = perTurn<CustomersAsk, CustomersAndMeters>(async (db, asks) => {
  const sql = sqlOf(db);
  const statements: { index: number; organizationId: string; ids: Set<string>; externalIds: Set<string> }[] = [];
  const filling = new Map<string, (typeof statements)[number]>();
  // each call's statement, by its index in `statements`
  const statementOf = asks.map((a) => {
    let s = filling.get(a.organizationId);
    if (s && s.ids.size + s.externalIds.size + a.ids.length + a.externalIds.length > NAMES_PER_LOOKUP) s = undefined;
    if (!s) {
      s = { index: statements.length, organizationId: a.organizationId, ids: new Set(), externalIds: new Set() };
      filling.set(a.organizationId, s);
      statements.push(s);
    }
    for (const id of a.ids) s.ids.add(id);
    for (const x of a.externalIds) s.externalIds.add(x);
    return s.index;
  });
  // A statement that fails fails its own calls only.
  const found = await Promise.all(
    statements.map((s) => customersAndMeters(sql, s.organizationId, [...s.ids], [...s.externalIds]).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))),
  );
  return statementOf.map((i) => found[i]!);
}, 500);

/** One validated ingestEvents call, ready to store. */
interface Batch {
  /** the events to store (a repeat of an externalId within the call already dropped) */
  events: ValidEvent[];
  /** events the call sent, repeats included */
  received: number;
  now: Date;
}

/** An ingestEvents call waiting for the writer (src/domain/writer.ts). */
interface IngestJob extends WriteJob {
  batch: Batch;
  /** STRICT: the balances that may go into overage (every other one the batch touches is credits-only); STANDARD: null */
  overage: Set<string> | null;
  /** the definitions (meterDefinition's JSON text) of the meters its events matched, by id, as they were matched */
  matched: ReadonlyMap<string, string>;
}

/** What one call does in a group: its events that were new, those of them counted for a customer, their adjustments. */
interface IngestPlan {
  inserted: string[];
  countable: (CountableEvent & { index: number })[];
  adjustments: BalanceAdjustment[];
}

/**
 * Ingest calls in a group: all their events inserted in one statement (an externalId that two calls share is
 * stored for the first), then each call decided in turn: its usage applied as one all-or-nothing step. A call
 * refused there (a STRICT batch past a credits-only balance, a balance out of range) gets its error, and its
 * events are deleted again before the group commits.
 */
const ingestKind: JobKind<IngestJob> = {
  order: 1,
  async prepare(sql, jobs) {
    // Sent ahead of the events' insert, which it does not wait for.
    const staleRead = staleJobs(sql, jobs);
    staleRead.catch(() => {}); // awaited below, unless the insert failed first
    const rows: unknown[][] = [];
    for (const job of jobs) {
      const createdAt = sql.date(job.batch.now);
      for (const e of job.batch.events) {
        rows.push([e.id, job.organizationId, e.name, e.customerId, e.externalCustomerId, e.externalId, sql.date(e.timestamp), sql.jsonRow(e.metadata), createdAt]);
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
    const late = new Map<string, ValidEvent[]>();
    for (const job of jobs) {
      const waiting = job.batch.events.filter((e) => !e.customerId && e.externalCustomerId && insertedIds.has(e.id));
      if (waiting.length) late.set(job.organizationId, [...(late.get(job.organizationId) ?? []), ...waiting]);
    }
    const linked = new Map<string, string>();
    for (const [organizationId, waiting] of late) for (const [id, customerId] of await linkLateCustomers(sql, organizationId, waiting)) linked.set(id, customerId);
    const stale = await staleRead;

    const plans = new Map<IngestJob, IngestPlan>();
    for (const job of jobs) {
      const plan: IngestPlan = { inserted: [], countable: [], adjustments: [] };
      for (const e of job.batch.events) {
        if (!insertedIds.has(e.id)) continue;
        plan.inserted.push(e.id);
        const customerId = e.customerId ?? linked.get(e.id);
        if (customerId) plan.countable.push({ id: e.id, customerId, timestamp: e.timestamp, counted: e.counted, index: e.index });
      }
      // Each event counts on the meters its call was validated against, unless one of them changed since.
      plan.adjustments = stale.has(job) ? [] : usageAdjustments(plan.countable);
      if (job.overage) for (const a of plan.adjustments) if (!job.overage.has(balanceKey(a.customerId, a.meterId))) Object.assign(a, { creditsOnly: true, field: "events" });
      plans.set(job, plan);
    }
    const refused: IngestJob[] = [];
    return {
      adjustments: (job) => plans.get(job)!.adjustments,
      customers(job) {
        // customers whose events count on no meter: no balance row of theirs is read, so they are checked apart
        const plan = plans.get(job)!;
        const withRows = new Set(plan.adjustments.map((a) => a.customerId));
        const out = new Set<string>();
        for (const e of plan.countable) if (!withRows.has(e.customerId)) out.add(e.customerId);
        return [...out];
      },
      decide(book, job) {
        const plan = plans.get(job)!;
        if (stale.has(job)) {
          refused.push(job);
          throw new ConflictError(
            "A meter this call's events matched changed while the call waited to be written (its filter, aggregation, negative values or credit system, or it was archived): nothing was stored; send the call again",
            "events",
          );
        }
        const gone = book.goneAmong(plan.countable); // every customer its events count for, with a balance row or not
        if (gone !== null) {
          // Deleted since the call was checked: NOT_FOUND, nothing stored (an externalCustomerId's events are then
          // stored as those of an unknown one if the call is sent again).
          refused.push(job);
          const first = job.batch.events.find((e) => e.customerId === gone || linked.get(e.id) === gone)!;
          const field = `events.${first.index}.${first.externalCustomerId ? "externalCustomerId" : "customerId"}`;
          throw new NotFoundError(noSuchCustomerMessage({ column: first.externalCustomerId ? "externalId" : "id" }), field);
        }
        try {
          book.apply(plan.adjustments, false);
        } catch (err) {
          refused.push(job);
          // Name the event that took a balance out of range, counting from the balance as the calls decided
          // before this one left it.
          if (err instanceof UnitsOverflowError) throw new InvalidInputError(err.message, overflowingEvent(plan.countable, err) ?? "events");
          throw err;
        }
        let creditedUnits = 0n;
        let ignoredValues = 0;
        const counted = new Set(plan.countable.map((e) => e.id));
        for (const e of job.batch.events) {
          if (!insertedIds.has(e.id)) continue;
          ignoredValues += e.ignored;
          if (counted.has(e.id)) for (const { value } of e.counted) if (typeof value === "bigint" && value < 0n) creditedUnits -= value;
        }
        return { inserted: plan.inserted.length, duplicates: job.batch.received - plan.inserted.length, creditedUnits, ignoredValues } satisfies IngestResult;
      },
      shadowing() {
        // An externalId a refused call stored first, that a later call of the group also sent (and was told
        // is a duplicate): that call must be decided again without the refused one.
        const claimed = new Map<string, IngestJob>();
        for (const job of refused) for (const e of job.batch.events) if (e.externalId && insertedIds.has(e.id)) claimed.set(`${job.organizationId}\u0000${e.externalId}`, job);
        const out = new Set<IngestJob>();
        if (!claimed.size) return [];
        for (const job of jobs) {
          for (const e of job.batch.events) {
            const owner = e.externalId ? claimed.get(`${job.organizationId}\u0000${e.externalId}`) : undefined;
            if (owner && owner !== job) out.add(owner);
          }
        }
        return [...out];
      },
      async write(sql) {
        const ids = refused.flatMap((job) => plans.get(job)!.inserted);
        if (ids.length) await sql.deleteIds("Event", ids);
      },
    };
  },
};

/**
 * The jobs whose events matched a meter that has changed since (updateMeter, archiveMeter, a credit system
 * joining it): read under each such meter's definition lock, shared, which those changes take alone
 * (src/domain/meters.ts meterDefinitionLock), so none commits between this read and the group's commit. On
 * SQLite the group's transaction runs alone. Such a job is refused whole: its events, aggregated as the old
 * definition says, would be counted by the new one.
 */
async function staleJobs(sql: Sql, jobs: IngestJob[]): Promise<Set<IngestJob>> {
  const ids = new Set<string>();
  for (const job of jobs) for (const id of job.matched.keys()) ids.add(id);
  const stale = new Set<IngestJob>();
  if (!ids.size) return stale;
  const list = [...ids];
  // The read is sent right behind the locks (PostgreSQL runs it once they are held).
  const locked = sql.lockKeys(list.map(meterDefinitionLock), true);
  locked.catch(() => {});
  // PostgreSQL: the ids as one JSON parameter, so the text is the same in every group and runs as a prepared
  // statement (src/db/pg.ts), each id probing the meters' primary key.
  const named = sql.provider === "postgresql" ? null : sql.textIn("id", list);
  const found = await sql.query<{ id: string; definition: string | null }>(
    named
      ? `SELECT "id", ${meterDefinition(sql)} AS "definition" FROM "Meter" WHERE ${named.clause} AND "archivedAt" IS NULL`
      : `SELECT x."id", (SELECT ${meterDefinition(sql)}::text FROM "Meter" WHERE "id" = x."id" AND "archivedAt" IS NULL) AS "definition"
           FROM jsonb_array_elements_text($1::jsonb) AS x("id")`,
    named ? named.values : [JSON.stringify(list)],
  );
  await locked;
  const current = new Map(found.flatMap((r) => (r.definition === null ? [] : [[r.id, JSON.stringify(JSON.parse(r.definition))] as const])));
  for (const job of jobs) {
    for (const [id, definition] of job.matched) {
      if (current.get(id) === definition) continue;
      stale.add(job);
      break;
    }
  }
  return stale;
}

/** The lock under which an external customer id is given to a customer, and looked up by ingestion. */
export const externalIdLock = (organizationId: string, externalId: string) => `customer-external-id:${organizationId}:${externalId}`;

/**
 * Events stored for an externalCustomerId that matched no customer when the call was checked: a customer
 * created since may have it now. Looked up again inside the transaction, after the insert, under a lock per
 * external id that creating or renaming a customer takes too: either that customer committed first and is
 * found here, or its transaction starts after this one commits and finds these events pending. So every such
 * event is counted exactly once, never by neither transaction. Answers the customer of each event linked.
 */
async function linkLateCustomers(sql: Sql, organizationId: string, events: ValidEvent[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!events.length) return out;
  const externalIds = [...new Set(events.map((e) => e.externalCustomerId!))];
  await sql.lockKeys(externalIds.map((x) => externalIdLock(organizationId, x)));
  const named = sql.textIn("externalId", externalIds, 2);
  const found = await sql.query<{ id: string; externalId: string }>(
    `SELECT "id", "externalId" FROM "Customer" WHERE "organizationId" = ${sql.param(1)} AND "deletedAt" IS NULL AND ${named.clause}`,
    [organizationId, ...named.values],
  );
  if (!found.length) return out;
  const byExternal = new Map(found.map((c) => [c.externalId, c.id]));
  const linked = new Map<string, string[]>();
  for (const e of events) {
    const customerId = byExternal.get(e.externalCustomerId!);
    if (!customerId) continue;
    out.set(e.id, customerId);
    linked.set(customerId, [...(linked.get(customerId) ?? []), e.id]);
  }
  for (const [customerId, ids] of linked) {
    for (let i = 0; i < ids.length; i += 400) {
      const chunk = sql.padded(ids.slice(i, i + 400));
      await sql.execute(`UPDATE "Event" SET "customerId" = ${sql.param(1)} WHERE ${sql.inList("id", chunk.length, 2)}`, [customerId, ...chunk]);
    }
  }
  return out;
}

/**
 * A customer just got an externalId: link the events stored for it while it was unknown and count them.
 * Runs inside the caller's transaction.
 */
export async function countPendingEvents(sql: Sql, tx: Db, organizationId: string, customerId: string, externalId: string, now: Date): Promise<BalanceChange[]> {
  const pending = await tx.event.findMany({
    where: { organizationId, externalCustomerId: externalId, customerId: null },
    select: { id: true, name: true, metadata: true, timestamp: true },
  });
  if (!pending.length) return [];
  const meters = await activeMeters(tx, organizationId);
  const events = pending.map((e) => {
    const event = { name: e.name, metadata: e.metadata as Metadata };
    return { id: e.id, customerId, timestamp: e.timestamp, counted: countEvent(event, meters, { field: null, strict: false }).counted };
  });
  let changes: BalanceChange[];
  try {
    changes = await adjustBalances(sql, organizationId, usageAdjustments(events), now);
  } catch (err) {
    // Usage past the 64-bit range (ingestion refuses it for a known customer, but stored events of an unknown
    // one add up unchecked) is refused before anything is written: the customer is created all the same, and
    // those events stay stored and uncounted, as the refused batch of a known customer would be.
    if (err instanceof UnitsOverflowError) return [];
    throw err;
  }
  await tx.event.updateMany({ where: { id: { in: pending.map((e) => e.id) } }, data: { customerId } });
  return changes;
}
