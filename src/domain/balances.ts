// The balance rows (CustomerMeter) and their ledger entries, changed in bulk inside the caller's transaction.
// Every path that moves a balance (ingestion, grants, later expiry and renewals) comes through
// `adjustBalances`, so the row, its aggregation state and the ledger can never disagree.
//
// Cost is a fixed number of statements per call whatever the number of rows: read (and on PostgreSQL lock,
// in id order) exactly the touched rows, create the missing ones, add distinct values, write all rows back
// in one upsert, append the ledger.
import { orderedId } from "./ids.ts";
import type { Sql } from "../db/sql.ts";
import { burn, burnOrder, restore, type LiveGrant } from "./burn-down.ts";
import type { AggregationFunc } from "./meter-filter.ts";
import { UNIT_SCALE } from "./units.ts";

/** What a set of newly counted events adds to one meter's aggregation state. */
export interface UsageDelta {
  func: AggregationFunc;
  /** events that contributed a value */
  count: bigint;
  /** sum of contributed micro-units (COUNT contributes one unit per event) */
  sum: bigint;
  max: bigint | null;
  min: bigint | null;
  /** UNIQUE: the typed distinct values seen */
  distinct: Set<string>;
  /** events matched (for the ledger), and the last of them */
  eventCount: number;
  lastEventId: string | null;
}

/** A new grant (already inserted by the caller with remainingUnits = units). */
export interface CreditDelta {
  units: bigint;
  grantId: string;
  description?: string | null;
}

/**
 * Credits leaving the balance: a grant's unused remainder at expiry, a cycle reset, a void, a revoke or a
 * refund. The caller has already set the grant's remainingUnits to 0 and its terminal timestamp.
 */
export interface Removal {
  grantId: string;
  units: bigint;
  kind: "EXPIRY" | "RESET" | "VOID" | "REVOKE" | "REFUND";
  description?: string | null;
}

/** Everything that happens to one (customer, meter) in one transaction, applied as removals → credits → usage. */
export interface BalanceAdjustment {
  customerId: string;
  meterId: string;
  removals?: Removal[];
  credits?: CreditDelta[];
  usage?: UsageDelta;
}

/** A committed change to one balance row, for publishing after the transaction. */
export interface BalanceChange {
  customerId: string;
  meterId: string;
  version: number;
}

interface Row {
  id: string;
  customerId: string;
  meterId: string;
  consumedUnits: bigint;
  creditedUnits: bigint;
  aggCount: bigint;
  aggSum: bigint;
  aggMax: bigint | null;
  aggMin: bigint | null;
  version: bigint | number;
  createdAt: unknown;
}

export function emptyUsage(func: AggregationFunc): UsageDelta {
  return { func, count: 0n, sum: 0n, max: null, min: null, distinct: new Set(), eventCount: 0, lastEventId: null };
}

const big = (v: bigint | number | string | null): bigint | null => (v === null ? null : BigInt(v));
const maxOf = (a: bigint | null, b: bigint | null) => (a === null ? b : b === null ? a : a > b ? a : b);
const minOf = (a: bigint | null, b: bigint | null) => (a === null ? b : b === null ? a : a < b ? a : b);

/** Integer division rounded half away from zero (AVG is kept to 6 decimals). */
function divideRounded(n: bigint, d: bigint): bigint {
  const q = n / d;
  const r = n % d;
  if (2n * (r < 0n ? -r : r) >= d) return q + (n < 0n ? -1n : 1n);
  return q;
}

/** Consumed units as the aggregation defines them, from the stored state. */
export function consumedFromState(func: AggregationFunc, s: { aggCount: bigint; aggSum: bigint; aggMax: bigint | null; aggMin: bigint | null }): bigint {
  switch (func) {
    case "COUNT":
    case "SUM":
      return s.aggSum;
    case "MAX":
      return s.aggMax ?? 0n;
    case "MIN":
      return s.aggMin ?? 0n;
    case "AVG":
      return s.aggCount === 0n ? 0n : divideRounded(s.aggSum, s.aggCount);
    case "UNIQUE":
      return s.aggCount * UNIT_SCALE;
  }
}

/** Map key of one balance row. */
export const balanceKey = (customerId: string, meterId: string) => `${customerId}\u0000${meterId}`;

/** (customer, meter) pairs per read: two parameters each. */
const PAIRS_PER_STATEMENT = 2000;

export async function adjustBalances(sql: Sql, organizationId: string, adjustments: BalanceAdjustment[], now: Date): Promise<BalanceChange[]> {
  if (adjustments.length === 0) return [];
  const nowValue = sql.date(now);

  // 1. Read the touched rows (locked on PostgreSQL, in id order so concurrent writers never deadlock on them).
  const byKey = new Map<string, Row>();
  const read = async (pairs: BalanceAdjustment[]) => {
    for (let i = 0; i < pairs.length; i += PAIRS_PER_STATEMENT) {
      const chunk = pairs.slice(i, i + PAIRS_PER_STATEMENT);
      const rows = await sql.query<Row>(
        `SELECT "id", "customerId", "meterId", "consumedUnits", "creditedUnits", "aggCount", "aggSum", "aggMax", "aggMin", "version", "createdAt"
           FROM "CustomerMeter" WHERE ${sql.pairsIn("customerId", "meterId", chunk.length)} ORDER BY "id"${sql.forUpdate}`,
        chunk.flatMap((a) => [a.customerId, a.meterId]),
      );
      for (const r of rows) byKey.set(balanceKey(r.customerId, r.meterId), r);
    }
  };
  await read(adjustments);

  // 2. Create the rows that do not exist yet (zero state). A concurrent writer may create one first on
  //    PostgreSQL; DO NOTHING and the re-read pick up its row.
  const missing = adjustments.filter((a) => !byKey.has(balanceKey(a.customerId, a.meterId)));
  if (missing.length) {
    await sql.insertMany(
      "CustomerMeter",
      ["id", "organizationId", "customerId", "meterId", "createdAt", "updatedAt"],
      missing.map((a) => [orderedId(), organizationId, a.customerId, a.meterId, nowValue, nowValue]),
      `ON CONFLICT ("customerId", "meterId") DO NOTHING`,
    );
    await read(missing);
  }

  // 3. UNIQUE meters: store the distinct values; only values new to the row count.
  const distinctRows: [string, string][] = [];
  for (const a of adjustments) {
    if (!a.usage?.distinct.size) continue;
    const row = byKey.get(balanceKey(a.customerId, a.meterId))!;
    for (const v of a.usage.distinct) distinctRows.push([row.id, v]);
  }
  const newDistinct = new Map<string, bigint>();
  if (distinctRows.length) {
    const inserted = await sql.insertMany<{ customerMeterId: string }>(
      "CustomerMeterValue",
      ["customerMeterId", "value"],
      distinctRows,
      `ON CONFLICT DO NOTHING RETURNING "customerMeterId"`,
    );
    for (const r of inserted) newDistinct.set(r.customerMeterId, (newDistinct.get(r.customerMeterId) ?? 0n) + 1n);
  }

  // 4. The live grants of these rows, in burn order, for burn-down and for new grants covering overage.
  const grantsByKey = await liveGrants(sql, adjustments, now);
  const dirtyGrants = new Set<LiveGrant>();

  // 5. New state of every row, and what the ledger records.
  const upserts: unknown[][] = [];
  const ledger: unknown[][] = [];
  const changes: BalanceChange[] = [];
  const entry = (a: BalanceAdjustment, kind: string, units: bigint, balance: bigint, grantId: string | null, eventId: string | null, eventCount: number, description: string | null) =>
    ledger.push([orderedId(), organizationId, a.customerId, a.meterId, kind, units, balance, nowValue, grantId, eventId, eventCount, description, nowValue]);
  for (const a of adjustments) {
    const k = balanceKey(a.customerId, a.meterId);
    const row = byKey.get(k);
    if (!row) throw new Error(`balance row missing for ${a.customerId}/${a.meterId}`);
    const grants = grantsByKey.get(k) ?? [];
    const before = {
      aggCount: BigInt(row.aggCount),
      aggSum: BigInt(row.aggSum),
      aggMax: big(row.aggMax),
      aggMin: big(row.aggMin),
    };
    let after = before;
    let consumed = BigInt(row.consumedUnits);
    let credited = BigInt(row.creditedUnits);
    let balance = credited - consumed;

    for (const r of a.removals ?? []) {
      if (r.units === 0n) continue;
      credited -= r.units;
      balance -= r.units;
      entry(a, r.kind, -r.units, balance, r.grantId, null, 0, r.description ?? null);
    }
    for (const c of a.credits ?? []) {
      // A grant arriving while the balance is negative first pays off the overage.
      const overage = balance < 0n ? -balance : 0n;
      const grant = grants.find((g) => g.id === c.grantId);
      if (grant && overage > 0n) {
        grant.remainingUnits -= overage < c.units ? overage : c.units;
        dirtyGrants.add(grant);
      }
      credited += c.units;
      balance += c.units;
      entry(a, "GRANT", c.units, balance, c.grantId, null, 0, c.description ?? null);
    }
    if (a.usage) {
      const u = a.usage;
      after = {
        aggCount: before.aggCount + (u.func === "UNIQUE" ? (newDistinct.get(row.id) ?? 0n) : u.count),
        aggSum: before.aggSum + u.sum,
        aggMax: maxOf(before.aggMax, u.max),
        aggMin: minOf(before.aggMin, u.min),
      };
      const newConsumed = consumedFromState(u.func, after);
      const delta = newConsumed - consumed;
      if (delta > 0n) {
        for (const g of burn(grants, delta).changed) dirtyGrants.add(g);
      } else if (delta < 0n) {
        // Units given back first reduce overage, then refill grants.
        const overage = balance < 0n ? -balance : 0n;
        const refill = -delta - (overage < -delta ? overage : -delta);
        if (refill > 0n) for (const g of restore(grants, refill).changed) dirtyGrants.add(g);
      }
      consumed = newConsumed;
      balance = credited - consumed;
      if (delta !== 0n || u.eventCount > 0) entry(a, "USAGE", -delta, balance, null, u.lastEventId, u.eventCount, null);
    }
    const version = Number(row.version) + 1;
    upserts.push([row.id, organizationId, a.customerId, a.meterId, consumed, credited, balance, after.aggCount, after.aggSum, after.aggMax, after.aggMin, version, row.createdAt, nowValue]);
    changes.push({ customerId: a.customerId, meterId: a.meterId, version });
  }
  await writeRemaining(sql, [...dirtyGrants]);

  // 6. Write every row back in one statement (all rows exist, so this is an update by id).
  await sql.insertMany(
    "CustomerMeter",
    ["id", "organizationId", "customerId", "meterId", "consumedUnits", "creditedUnits", "balance", "aggCount", "aggSum", "aggMax", "aggMin", "version", "createdAt", "updatedAt"],
    upserts,
    `ON CONFLICT ("id") DO UPDATE SET "consumedUnits" = excluded."consumedUnits", "creditedUnits" = excluded."creditedUnits",
       "balance" = excluded."balance", "aggCount" = excluded."aggCount", "aggSum" = excluded."aggSum", "aggMax" = excluded."aggMax",
       "aggMin" = excluded."aggMin", "version" = excluded."version", "updatedAt" = excluded."updatedAt"`,
  );

  // 7. Append the ledger.
  await sql.insertMany(
    "LedgerEntry",
    ["id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "grantId", "eventId", "eventCount", "description", "createdAt"],
    ledger,
  );
  return changes;
}

interface GrantRow {
  id: string;
  customerId: string;
  meterId: string;
  units: bigint;
  remainingUnits: bigint;
  priority: bigint | number;
  expiresAt: Date | string | null;
  createdAt: Date | string;
}

const asDate = (v: Date | string) => (v instanceof Date ? v : new Date(v));

/**
 * Live grants per row, in burn order: effective, not yet expired, not voided or ended. Used-up grants are
 * included, since units given back by negative usage can refill them.
 */
async function liveGrants(sql: Sql, adjustments: BalanceAdjustment[], now: Date): Promise<Map<string, LiveGrant[]>> {
  const out = new Map<string, LiveGrant[]>();
  for (let i = 0; i < adjustments.length; i += PAIRS_PER_STATEMENT) {
    const chunk = adjustments.slice(i, i + PAIRS_PER_STATEMENT);
    const rows = await sql.query<GrantRow>(
      `SELECT "id", "customerId", "meterId", "units", "remainingUnits", "priority", "expiresAt", "createdAt" FROM "CreditGrant"
        WHERE ${sql.pairsIn("customerId", "meterId", chunk.length)} AND "voidedAt" IS NULL AND "expiredAt" IS NULL
          AND "effectiveAt" <= ${sql.param(chunk.length * 2 + 1)} AND ("expiresAt" IS NULL OR "expiresAt" > ${sql.param(chunk.length * 2 + 2)})`,
      [...chunk.flatMap((a) => [a.customerId, a.meterId]), sql.date(now), sql.date(now)],
    );
    for (const r of rows) {
      const k = balanceKey(r.customerId, r.meterId);
      const list = out.get(k) ?? [];
      list.push({
        id: r.id,
        units: BigInt(r.units),
        remainingUnits: BigInt(r.remainingUnits),
        priority: Number(r.priority),
        expiresAt: r.expiresAt === null ? null : asDate(r.expiresAt),
        createdAt: asDate(r.createdAt),
      });
      out.set(k, list);
    }
  }
  for (const list of out.values()) list.sort(burnOrder);
  return out;
}

/** Store the burn-down of the grants that changed, in one statement per chunk. */
async function writeRemaining(sql: Sql, grants: LiveGrant[]): Promise<void> {
  for (let i = 0; i < grants.length; i += PAIRS_PER_STATEMENT) {
    const chunk = grants.slice(i, i + PAIRS_PER_STATEMENT);
    const cases = chunk.map((_, j) => `WHEN ${sql.param(j * 2 + 1)} THEN CAST(${sql.param(j * 2 + 2)} AS BIGINT)`).join(" ");
    await sql.execute(
      `UPDATE "CreditGrant" SET "remainingUnits" = CASE "id" ${cases} END WHERE ${sql.inList("id", chunk.length, chunk.length * 2 + 1)}`,
      [...chunk.flatMap((g) => [g.id, g.remainingUnits]), ...chunk.map((g) => g.id)],
    );
  }
}
