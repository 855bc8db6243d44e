// The balance rows (CustomerMeter) and their ledger entries, changed in bulk inside the caller's transaction.
// Every path that moves a balance (ingestion, grants, authorizations, expiry, renewals) comes through
// `adjustBalances`, so the row, its aggregation state and the ledger can never disagree.
//
// Each row is first brought up to `now`: grants that took effect or expired since it was last written are
// recorded (dated when they happened) before anything else, so no write ever uses an expired grant, whether
// or not the scheduler has run.
//
// Cost is a fixed number of statements per call whatever the number of rows: read (and on PostgreSQL lock,
// in id order) exactly the touched rows, create the missing ones, add distinct values, read their grants,
// write all rows back in one update, append the ledger.
import { orderedId } from "./ids.ts";
import { asDate, type Sql } from "../db/sql.ts";
import { burn, burnOrder, restore } from "./burn-down.ts";
import { InsufficientCreditsError, MAX_STORED_UNITS, UnitsOverflowError } from "./errors.ts";
import type { AggregationFunc } from "./meter-filter.ts";
import { settle, type TimedGrant } from "./settle.ts";
import { formatUnits, UNIT_SCALE } from "./units.ts";
import { availableUnits, grantDue, grantInPlay, grantUsable, holdLive } from "./rules.ts";

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
  /** events matched (for the ledger), and the last of them; events whose value was a credit not included */
  eventCount: number;
  lastEventId: string | null;
  /**
   * CREDIT meters: micro-units (> 0) that negative values give back, as a new grant (source NEGATIVE_USAGE)
   * credited in this write; the events that did so, and the last of them.
   */
  credit: bigint;
  creditEvents: number;
  lastCreditEventId: string | null;
}

/** A new grant (already inserted by the caller with remainingUnits = units). */
export interface CreditDelta {
  units: bigint;
  grantId: string;
  description?: string | null;
  /** the events it came from (negative values on a CREDIT meter), for the ledger entry */
  eventId?: string | null;
  eventCount?: number;
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

/** Usage recorded directly (authorizeUsage, a committed reservation) rather than counted from events. */
export interface DirectUsage {
  /** micro-units, ≥ 0 */
  units: bigint;
  description?: string | null;
}

/**
 * Everything that happens to one (customer, meter) in one transaction, applied as due grant activations and
 * expiries → removals → credits → usage → direct usage.
 */
export interface BalanceAdjustment {
  customerId: string;
  meterId: string;
  removals?: Removal[];
  credits?: CreditDelta[];
  usage?: UsageDelta;
  direct?: DirectUsage;
  /** micro-units a new reservation holds (already counted once its row exists: insert it afterwards) */
  hold?: bigint;
  /**
   * Credits-only: refuse (throw InsufficientCreditsError, so the caller's transaction rolls back) if this
   * adjustment uses units and leaves less than zero available (balance minus live holds).
   */
  creditsOnly?: boolean;
  /**
   * Units of this adjustment's usage that a hold already guaranteed (a reservation being committed): usage up
   * to that much is never refused, whatever happened to the balance since the hold was taken.
   */
  covered?: bigint;
  /** Input path named in a refusal, e.g. "input.units". */
  field?: string;
  /**
   * Only bring the row up to now (the scheduler): a row with nothing due is left alone and not reported.
   * Any other adjustment is written and reported even if the balance did not move (a released hold changes
   * what is available).
   */
  settleOnly?: boolean;
}

/** A committed change to one balance row, for publishing after the transaction. */
export interface BalanceChange {
  customerId: string;
  meterId: string;
  version: number;
  /** the balance after the change, micro-units */
  balance: bigint;
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
  directUnits: bigint;
  version: bigint | number;
  ledgerSequence: bigint | number;
  ledgerAt: Date | string | null;
  createdAt: unknown;
}

export function emptyUsage(func: AggregationFunc): UsageDelta {
  return { func, count: 0n, sum: 0n, max: null, min: null, distinct: new Set(), eventCount: 0, lastEventId: null, credit: 0n, creditEvents: 0, lastCreditEventId: null };
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
      const inPairs = sql.pairsIn("customerId", "meterId", chunk);
      const rows = await sql.query<Row>(
        `SELECT "id", "customerId", "meterId", "consumedUnits", "creditedUnits", "aggCount", "aggSum", "aggMax", "aggMin", "directUnits", "version", "ledgerSequence", "ledgerAt", "createdAt"
           FROM "CustomerMeter" WHERE ${inPairs.clause} ORDER BY "id"${sql.forUpdate}`,
        inPairs.values,
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

  // 4. Negative values on CREDIT meters become grants (one per row per write), credited below like any other.
  const creditRows: unknown[][] = [];
  for (const a of adjustments) {
    const u = a.usage;
    if (!u || u.credit <= 0n) continue;
    if (u.credit > MAX_STORED_UNITS) {
      const row = byKey.get(balanceKey(a.customerId, a.meterId))!;
      throw overflow(a, row);
    }
    const grantId = orderedId();
    const description = `${u.creditEvents} negative usage ${u.creditEvents === 1 ? "value" : "values"}`;
    // createdAt is the wall clock, as Prisma stamps every other grant (it orders grants of equal priority and expiry).
    creditRows.push([grantId, organizationId, a.customerId, a.meterId, u.credit, u.credit, 10, nowValue, nowValue, false, "NEGATIVE_USAGE", description, sql.date(new Date())]);
    a.credits = [...(a.credits ?? []), { units: u.credit, grantId, description, eventId: u.lastCreditEventId, eventCount: u.creditEvents }];
  }
  if (creditRows.length) {
    await sql.insertMany(
      "CreditGrant",
      ["id", "organizationId", "customerId", "meterId", "units", "remainingUnits", "priority", "effectiveAt", "creditedAt", "rollover", "source", "description", "createdAt"],
      creditRows,
    );
  }

  // 5. The grants of these rows (live, or due to take effect), and what live reservations hold where a
  //    credits-only check needs it.
  const grantsByKey = await timedGrants(sql, adjustments, now);
  const heldByKey = adjustments.some((a) => a.creditsOnly || a.hold) ? await heldUnits(sql, adjustments.filter((a) => a.creditsOnly || a.hold), now) : new Map<string, bigint>();
  const dirtyGrants = new Set<TimedGrant>();
  const activated: TimedGrant[] = [];
  const expired: TimedGrant[] = [];

  // 6. New state of every row, and what the ledger records.
  const updates: unknown[][] = [];
  const ledger: unknown[][] = [];
  const changes: BalanceChange[] = [];
  // Each row's entries are numbered on from its last one and never dated before it: the row is locked, so
  // the ledger's order is the commit order, whichever node wrote and whatever its clock said.
  const cursor = { sequence: 0n, at: now };
  const entry = (a: BalanceAdjustment, kind: string, units: bigint, balance: bigint, grantId: string | null, eventId: string | null, eventCount: number, description: string | null, at = now) => {
    if (at > cursor.at) cursor.at = at;
    cursor.sequence++;
    ledger.push([orderedId(), organizationId, a.customerId, a.meterId, kind, units, balance, at === now && cursor.at === now ? nowValue : sql.date(cursor.at), cursor.sequence, grantId, eventId, eventCount, description, nowValue]);
  };
  for (const a of adjustments) {
    const k = balanceKey(a.customerId, a.meterId);
    const row = byKey.get(k);
    if (!row) throw new Error(`balance row missing for ${a.customerId}/${a.meterId}`);
    const allGrants = grantsByKey.get(k) ?? [];
    const before = {
      aggCount: BigInt(row.aggCount),
      aggSum: BigInt(row.aggSum),
      aggMax: big(row.aggMax),
      aggMin: big(row.aggMin),
    };
    let after = before;
    let direct = BigInt(row.directUnits);
    let consumed = BigInt(row.consumedUnits);
    let credited = BigInt(row.creditedUnits);
    let balance = credited - consumed;
    cursor.sequence = BigInt(row.ledgerSequence);
    cursor.at = row.ledgerAt === null ? new Date(0) : asDate(row.ledgerAt);

    // Time first: grants that took effect or expired since the row was last written.
    const settled = settle(balance, allGrants, now);
    for (const step of settled.steps) {
      credited += step.units;
      balance = step.balanceAfter;
      (step.kind === "GRANT" ? activated : expired).push(step.grant);
      dirtyGrants.add(step.grant);
      if (step.units !== 0n) entry(a, step.kind, step.units, balance, step.grant.id, null, 0, null, step.at);
    }
    if (a.settleOnly && !settled.steps.length) continue;
    const grants = allGrants.filter((g) => grantUsable(g, now));
    const held = heldByKey.get(k) ?? 0n;

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
      entry(a, "GRANT", c.units, balance, c.grantId, c.eventId ?? null, c.eventCount ?? 0, c.description ?? null);
    }
    const balanceBeforeUse = balance;
    let used = 0n;
    const consume = (delta: bigint) => {
      if (delta > 0n) {
        for (const g of burn(grants, delta).changed) dirtyGrants.add(g);
      } else if (delta < 0n) {
        // Units given back first reduce overage, then refill grants.
        const overage = balance < 0n ? -balance : 0n;
        const refill = -delta - (overage < -delta ? overage : -delta);
        if (refill > 0n) for (const g of restore(grants, refill).changed) dirtyGrants.add(g);
      }
      used += delta;
      consumed += delta;
      balance = credited - consumed;
    };
    if (a.usage) {
      const u = a.usage;
      after = {
        aggCount: before.aggCount + (u.func === "UNIQUE" ? (newDistinct.get(row.id) ?? 0n) : u.count),
        aggSum: before.aggSum + u.sum,
        aggMax: maxOf(before.aggMax, u.max),
        aggMin: minOf(before.aggMin, u.min),
      };
      const delta = consumedFromState(u.func, after) + direct - consumed;
      consume(delta);
      if (delta !== 0n || u.eventCount > 0) entry(a, "USAGE", -delta, balance, null, u.lastEventId, u.eventCount, null);
    }
    if (a.direct) {
      direct += a.direct.units;
      consume(a.direct.units);
      entry(a, "USAGE", -a.direct.units, balance, null, null, 0, a.direct.description ?? null);
    }
    if (a.creditsOnly && (used > (a.covered ?? 0n) || (a.hold ?? 0n) > 0n) && availableUnits(balance, held) - (a.hold ?? 0n) < 0n) {
      const available = availableUnits(balanceBeforeUse, held);
      throw new InsufficientCreditsError(
        `Not enough credits: ${formatUnits(available > 0n ? available : 0n)} available`,
        a.field ?? null,
        a.customerId,
        a.meterId,
        balanceBeforeUse,
        available,
      );
    }
    // Every column is a signed 64-bit integer: refuse (nothing written) rather than fail in the database.
    for (const v of [consumed, credited, balance, after.aggSum, direct]) if (v > MAX_STORED_UNITS || v < -MAX_STORED_UNITS) throw overflow(a, row);
    const version = Number(row.version) + 1;
    const ledgerAt = cursor.sequence === 0n ? null : sql.date(cursor.at);
    updates.push([row.id, consumed, credited, balance, after.aggCount, after.aggSum, after.aggMax, after.aggMin, direct, version, cursor.sequence, ledgerAt, nowValue]);
    changes.push({ customerId: a.customerId, meterId: a.meterId, version, balance });
  }
  await writeGrants(sql, [...dirtyGrants], activated, expired);
  if (!updates.length) return changes;

  // 7. Write every row back in one statement.
  await sql.updateById(
    "CustomerMeter",
    ["id", "consumedUnits", "creditedUnits", "balance", "aggCount", "aggSum", "aggMax", "aggMin", "directUnits", "version", "ledgerSequence", "ledgerAt", "updatedAt"],
    updates,
  );

  // 8. Append the ledger.
  await sql.insertMany(
    "LedgerEntry",
    ["id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "sequence", "grantId", "eventId", "eventCount", "description", "createdAt"],
    ledger,
  );
  return changes;
}

function overflow(a: BalanceAdjustment, row: Row): UnitsOverflowError {
  return new UnitsOverflowError(
    "would take the balance past the largest value stored (about 9.2 trillion units): split the usage across meters or customers",
    a.field ?? null,
    a.customerId,
    a.meterId,
    { aggSum: BigInt(row.aggSum), consumed: BigInt(row.consumedUnits), credited: BigInt(row.creditedUnits) },
  );
}

interface GrantRow {
  id: string;
  customerId: string;
  meterId: string;
  units: bigint;
  remainingUnits: bigint;
  priority: bigint | number;
  effectiveAt: Date | string;
  creditedAt: Date | string | null;
  expiresAt: Date | string | null;
  createdAt: Date | string;
}


export function timedGrantOf(r: GrantRow): TimedGrant {
  return {
    id: r.id,
    units: BigInt(r.units),
    remainingUnits: BigInt(r.remainingUnits),
    priority: Number(r.priority),
    effectiveAt: asDate(r.effectiveAt),
    credited: r.creditedAt !== null,
    expiresAt: r.expiresAt === null ? null : asDate(r.expiresAt),
    createdAt: asDate(r.createdAt),
  };
}

const GRANT_COLUMNS = `"id", "customerId", "meterId", "units", "remainingUnits", "priority", "effectiveAt", "creditedAt", "expiresAt", "createdAt"`;

/** Grants of (customer, meter) pairs matching `condition` (given the number of its first parameter). */
async function grantsOfPairs(sql: Sql, pairs: { customerId: string; meterId: string }[], condition: (next: number) => string, values: unknown[]): Promise<Map<string, TimedGrant[]>> {
  const out = new Map<string, TimedGrant[]>();
  for (let i = 0; i < pairs.length; i += PAIRS_PER_STATEMENT) {
    const chunk = pairs.slice(i, i + PAIRS_PER_STATEMENT);
    const inPairs = sql.pairsIn("customerId", "meterId", chunk);
    const rows = await sql.query<GrantRow>(
      `SELECT ${GRANT_COLUMNS} FROM "CreditGrant" WHERE ${inPairs.clause} AND ${condition(inPairs.values.length + 1)}`,
      [...inPairs.values, ...values],
    );
    for (const r of rows) {
      const k = balanceKey(r.customerId, r.meterId);
      out.set(k, [...(out.get(k) ?? []), timedGrantOf(r)]);
    }
  }
  for (const list of out.values()) list.sort(burnOrder);
  return out;
}

/** Grants per row in play at `now` (rules.ts), in burn order. */
function timedGrants(sql: Sql, pairs: { customerId: string; meterId: string }[], now: Date): Promise<Map<string, TimedGrant[]>> {
  return grantsOfPairs(sql, pairs, (n) => grantInPlay.sql(sql, n), [sql.date(now)]);
}

/**
 * What a read of these rows must fold in, in one statement per chunk: the grants time has changed since the
 * last write (as `dueGrants`) and what live reservations hold (as `heldUnits`).
 */
export async function dueGrantsAndHolds(
  sql: Sql,
  pairs: { customerId: string; meterId: string }[],
  now: Date,
): Promise<{ due: Map<string, TimedGrant[]>; held: Map<string, bigint> }> {
  const due = new Map<string, TimedGrant[]>();
  const held = new Map<string, bigint>();
  const at = sql.date(now);
  for (let i = 0; i < pairs.length; i += PAIRS_PER_STATEMENT) {
    const chunk = pairs.slice(i, i + PAIRS_PER_STATEMENT);
    const grantPairs = sql.pairsIn("customerId", "meterId", chunk);
    const n = grantPairs.values.length + 1;
    const holdPairs = sql.pairsIn("customerId", "meterId", chunk, n + 2);
    const rows = await sql.query<GrantRow & { source: string; held: bigint | number | string | null }>(
      `SELECT 'G' AS "source", ${GRANT_COLUMNS}, NULL AS "held" FROM "CreditGrant" WHERE ${grantPairs.clause} AND ${grantDue.sql(sql, n)}
       UNION ALL
       SELECT 'H', NULL, "customerId", "meterId", NULL, NULL, NULL, NULL, NULL, NULL, NULL, SUM("units") FROM "Reservation"
        WHERE ${holdPairs.clause} AND ${holdLive.sql(sql, n + 2 + holdPairs.values.length)}
        GROUP BY "customerId", "meterId"`,
      [...grantPairs.values, at, at, ...holdPairs.values, at],
    );
    for (const r of rows) {
      const k = balanceKey(r.customerId, r.meterId);
      if (r.source === "H") held.set(k, BigInt(r.held ?? 0));
      else due.set(k, [...(due.get(k) ?? []), timedGrantOf(r)]);
    }
  }
  for (const list of due.values()) list.sort(burnOrder);
  return { due, held };
}

/** Only the grants that time has changed and no write has recorded yet: what reads must fold in. */
export function dueGrants(sql: Sql, pairs: { customerId: string; meterId: string }[], now: Date): Promise<Map<string, TimedGrant[]>> {
  return grantsOfPairs(sql, pairs, (n) => grantDue.sql(sql, n), [sql.date(now), sql.date(now)]);
}

/** Micro-units held by live reservations (HELD and not yet expired), per row. */
export async function heldUnits(sql: Sql, pairs: { customerId: string; meterId: string }[], now: Date): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (let i = 0; i < pairs.length; i += PAIRS_PER_STATEMENT) {
    const chunk = pairs.slice(i, i + PAIRS_PER_STATEMENT);
    const inPairs = sql.pairsIn("customerId", "meterId", chunk);
    const rows = await sql.query<{ customerId: string; meterId: string; held: bigint | number | string }>(
      `SELECT "customerId", "meterId", SUM("units") AS "held" FROM "Reservation"
        WHERE ${inPairs.clause} AND ${holdLive.sql(sql, inPairs.values.length + 1)}
        GROUP BY "customerId", "meterId"`,
      [...inPairs.values, sql.date(now)],
    );
    for (const r of rows) out.set(balanceKey(r.customerId, r.meterId), BigInt(r.held));
  }
  return out;
}

/** Store the burn-down of the grants that changed, and which took effect or expired, in a few statements. */
async function writeGrants(sql: Sql, grants: TimedGrant[], activated: TimedGrant[], expired: TimedGrant[]): Promise<void> {
  for (let i = 0; i < grants.length; i += PAIRS_PER_STATEMENT) {
    const chunk = grants.slice(i, i + PAIRS_PER_STATEMENT);
    const cases = chunk.map((_, j) => `WHEN ${sql.param(j * 2 + 1)} THEN CAST(${sql.param(j * 2 + 2)} AS BIGINT)`).join(" ");
    await sql.execute(
      `UPDATE "CreditGrant" SET "remainingUnits" = CASE "id" ${cases} END WHERE ${sql.inList("id", chunk.length, chunk.length * 2 + 1)}`,
      [...chunk.flatMap((g) => [g.id, g.remainingUnits]), ...chunk.map((g) => g.id)],
    );
  }
  // The recorded instant is when it happened, as the ledger entry says.
  const stamp = async (list: TimedGrant[], set: string) => {
    for (let i = 0; i < list.length; i += PAIRS_PER_STATEMENT) {
      const chunk = list.slice(i, i + PAIRS_PER_STATEMENT);
      await sql.execute(`UPDATE "CreditGrant" SET ${set} WHERE ${sql.inList("id", chunk.length, 1)}`, chunk.map((g) => g.id));
    }
  };
  await stamp(activated, `"creditedAt" = "effectiveAt"`);
  await stamp(expired, `"expiredAt" = "expiresAt"`);
}
