// Credit systems: one pool of credits (a Meter of its own, so every balance API works on it) that rated
// meters draw from. Usage on a rated meter is counted on its own balance as usual and draws
// units × creditsPerUnit from the pool in the same write (BalanceBook, src/domain/balances.ts); each event is
// rated at the rate in force at its timestamp. A meter feeds at most one pool.
//
// Exactness: rates are Decimals with at most 6 decimals (micro-credits per unit), units are micro-units, so a
// draw is units × rate / 10^6 micro-credits, rounded half away from zero to the micro-credit — per event for
// counted usage (so the draw never depends on how events were batched), per call for authorizeUsage.
import { providerOfDb, type Db } from "../db/client.ts";
import { asDate, Sql } from "../db/sql.ts";
import type { Meter } from "../generated/prisma-postgresql/client.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "./errors.ts";
import { startInstant } from "./grants.ts";
import { lockMeterDefinitions, meterRatingLock, RATEABLE, RATEABLE_ROW, requireMeter, toActiveMeter } from "./meters.ts";
import { filterMatches, type EventLike } from "./meter-filter.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { grantOpen } from "./rules.ts";
import { UNIT_SCALE } from "./units.ts";

/** Aggregations whose consumption is a sum of per-event values, so each event's draw can be rated on its own. */
/** A pool counts no event: an empty OR filter matches nothing. */
const POOL_FILTER = { conjunction: "OR", clauses: [] };

export interface RateInput {
  meterId: string;
  /** micro-credits per unit, > 0 */
  creditsPerUnit: bigint;
}

export interface CreditSystemInput {
  name: string;
  rates: RateInput[];
}

export interface SetCreditRateInput {
  creditSystemId: string;
  meterId: string;
  creditsPerUnit: bigint;
  effectiveAt?: Date | null;
}

/** One rate of a rated meter, from `at` on. */
export interface Rate {
  at: Date;
  /** micro-credits per unit */
  perUnit: bigint;
}

/** A rated meter's pool and its rates, oldest first. */
export interface RatedMeter {
  poolMeterId: string;
  rates: Rate[];
}

/** Micro-credits `units` (micro-units) draw at `perUnit`: rounded half away from zero to the micro-credit. */
export function drawOf(units: bigint, perUnit: bigint): bigint {
  const n = units * perUnit;
  const q = n / UNIT_SCALE;
  const r = n % UNIT_SCALE;
  if (2n * (r < 0n ? -r : r) >= UNIT_SCALE) return q + (n < 0n ? -1n : 1n);
  return q;
}

/** Index of the rate in force at `ms` (epoch milliseconds) in `rates` (oldest first): binary search. */
function rateIndex(rates: Rate[], ms: number): number {
  // the last rate that took effect at or before ms; before any, the first
  let lo = 0;
  let hi = rates.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (rates[mid]!.at.getTime() <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The rate in force at `at`: the latest that took effect at or before it (the first one before any). */
export function rateAt(rates: Rate[], at: Date): Rate {
  return rates[rateIndex(rates, at.getTime())]!;
}

/**
 * A rated meter's counted values (micro-units, ≥ 0) with their events' instants, as ingestion collects
 * them for one balance: the first event's in fields, any others' in two parallel arrays made at the second
 * (most balances of a call get one event: no arrays, no object per event); the earliest and latest instant
 * and the sum let `drawsOf` price the common case (every event under one rate) without looking at each event.
 */
export class RatedUsage {
  /** how many values */
  count = 0;
  first = Infinity;
  last = -Infinity;
  sum = 0n;
  private firstAt = 0;
  private firstValue = 0n;
  private firstId: string | null = null;
  /** epoch milliseconds, values and event ids of the events after the first */
  private moreAt: number[] | null = null;
  private moreValues: bigint[] | null = null;
  private moreIds: (string | null)[] | null = null;

  add(at: number, value: bigint, eventId: string | null = null): void {
    if (this.count === 0) {
      this.firstAt = at;
      this.firstValue = value;
      this.firstId = eventId;
    } else {
      (this.moreAt ??= []).push(at);
      (this.moreValues ??= []).push(value);
      (this.moreIds ??= []).push(eventId);
    }
    this.count++;
    if (at < this.first) this.first = at;
    if (at > this.last) this.last = at;
    this.sum += value;
  }

  /** the i-th value added (0 ≤ i < count) */
  valueAt(i: number): bigint {
    return i === 0 ? this.firstValue : this.moreValues![i - 1]!;
  }

  /** the instant of the i-th value added */
  atOf(i: number): number {
    return i === 0 ? this.firstAt : this.moreAt![i - 1]!;
  }

  /** the event of the i-th value added */
  idOf(i: number): string | null {
    return i === 0 ? this.firstId : this.moreIds![i - 1]!;
  }
}

/** What the events of one rate draw: micro-credits (each event rounded on its own), their units on the rated meter and how many events. */
export interface RateDraw {
  /** the rate, micro-credits per unit */
  perUnit: bigint;
  units: bigint;
  /** the events' micro-units on the rated meter */
  rated: bigint;
  events: number;
  /** the last of those events added (what the draw's ledger entry names) */
  lastEventId: string | null;
}

/**
 * What `usage` draws at `rates` (oldest first), one entry per rate, in the order the rates first occur among
 * the events: exactly the sum of `drawOf` of each event at the rate in force at its instant, so batching never
 * changes a draw.
 *
 * Fast path, exact: rates are sorted, so if the earliest and the latest event fall under the same rate, every
 * event does. Under one rate r, if every value v has v × r a whole number of micro-credits (v × r divisible
 * by 10^6), no event rounds, and Σ drawOf(v, r) = Σ v × r / 10^6 = (Σ v) × r / 10^6: one multiplication.
 * v × r is divisible by 10^6 exactly when v is a multiple of 10^6 / gcd(r, 10^6); that always holds for a
 * rate of whole credits (gcd = 10^6), and is one remainder per event otherwise (whole units, the common
 * case, pass for any rate). Otherwise each event is rounded on its own.
 */
export function drawsOf(rates: Rate[], usage: RatedUsage): RateDraw[] {
  const n = usage.count;
  if (!n) return [];
  const first = rateIndex(rates, usage.first);
  if (first === rateIndex(rates, usage.last)) {
    const perUnit = rates[first]!.perUnit;
    const step = UNIT_SCALE / gcd(perUnit, UNIT_SCALE);
    let exact = true;
    for (let i = 0; i < n && exact && step !== 1n; i++) exact = usage.valueAt(i) % step === 0n;
    let units = 0n;
    if (exact) units = (usage.sum * perUnit) / UNIT_SCALE;
    else for (let i = 0; i < n; i++) units += drawOf(usage.valueAt(i), perUnit);
    return [{ perUnit, units, rated: usage.sum, events: n, lastEventId: usage.idOf(n - 1) }];
  }
  const out: RateDraw[] = [];
  for (let i = 0; i < n; i++) {
    const perUnit = rates[rateIndex(rates, usage.atOf(i))]!.perUnit;
    let d = out.find((x) => x.perUnit === perUnit);
    if (!d) out.push((d = { perUnit, units: 0n, rated: 0n, events: 0, lastEventId: null }));
    const v = usage.valueAt(i);
    d.units += drawOf(v, perUnit);
    d.rated += v;
    d.events++;
    d.lastEventId = usage.idOf(i);
  }
  return out;
}

/** No array per step (a destructuring swap allocated one): this runs for every rated balance an ingest call draws on. */
function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) {
    const r = a % b;
    a = b;
    b = r;
  }
  return a < 0n ? -a : a;
}

/** The rated meters among `meterIds`, with their pool and rates (one statement). */
export async function ratedMeters(sql: Sql, meterIds: string[]): Promise<Map<string, RatedMeter>> {
  const out = new Map<string, RatedMeter>();
  if (!meterIds.length) return out;
  const list = sql.textIn("meterId", meterIds);
  const rows = await sql.query<{ meterId: string; poolMeterId: string; creditsPerUnit: bigint | number | string; effectiveAt: Date | string }>(
    `SELECT "meterId", "poolMeterId", "creditsPerUnit", "effectiveAt" FROM "CreditRate" WHERE ${list.clause} ORDER BY "effectiveAt"`,
    list.values,
  );
  for (const r of rows) {
    let rated = out.get(r.meterId);
    if (!rated) out.set(r.meterId, (rated = { poolMeterId: r.poolMeterId, rates: [] }));
    rated.rates.push({ at: asDate(r.effectiveAt), perUnit: BigInt(r.creditsPerUnit) });
  }
  return out;
}

/** Events read at most to find the usage a new rate must start after (lastCountedFrom). */
const COUNTED_SCAN = 10_000;

/**
 * The latest timestamp, at or after `from`, of an event the meter counted (events may be timestamped up to a
 * minute ahead of the server's clock, so usage can already be drawn past a rate that starts now). A rate
 * starting before it would leave that usage drawn at the rate before it. Reads the organization's events from `from` on, newest first (usually none: `from` is not in
 * the past); past COUNTED_SCAN of them the newest stands for all.
 */
async function lastCountedFrom(db: Db, organizationId: string, meter: Meter, from: Date): Promise<Date | null> {
  const events = await db.event.findMany({
    where: { organizationId, timestamp: { gte: from } },
    orderBy: { timestamp: "desc" },
    take: COUNTED_SCAN,
    select: { name: true, metadata: true, timestamp: true },
  });
  const { filter } = toActiveMeter(meter);
  for (const e of events) if (filterMatches(filter, { name: e.name, metadata: e.metadata as EventLike["metadata"] })) return e.timestamp;
  return events.length === COUNTED_SCAN ? events[0].timestamp : null;
}

/** Most meters one createCreditSystem names. */
export const MAX_CREATED_RATES = 100;

function checkRate(perUnit: bigint, field: string): void {
  if (perUnit <= 0n) throw new InvalidInputError("must be greater than 0", field);
}

/** A meter that may start feeding a pool: the organization's, active, additive, not a pool, not rated yet. */
function checkRateable(meter: Meter, field: string): void {
  if (meter.archivedAt) throw new ConflictError("The meter is archived", field);
  if (meter.creditSystem) throw new InvalidInputError("a credit system cannot feed another one", field);
  if (!RATEABLE.includes(meter.aggregationFunc)) throw new InvalidInputError(`only COUNT and SUM meters can be rated (this one is ${meter.aggregationFunc})`, field);
  // A negative value on a CREDIT meter gives credits back on the meter's own balance, which a rated meter
  // spends nothing from: the pool would never see them.
  if (meter.negativeValues === "CREDIT") throw new InvalidInputError("a meter that turns negative values into credits (negativeValues: CREDIT) cannot be rated", field);
}

/**
 * A meter may start feeding a pool only when nothing would credit it any more: usage on a rated meter is paid
 * by the pool, so credits left on the meter itself would be burnt by usage the pool pays for too. Refused
 * (CONFLICT) while a customer holds unspent credits on it (open grants with units left, scheduled ones
 * included; void them, or let them be spent or expire) or a product grants credits on it that is on sale or
 * has active subscriptions (take the benefit out of the product). Checked in the transaction that claims the
 * meter, after its update and under the meter's rating lock, which grantCredits, createProduct and
 * updateProduct take too: a grant or product racing the join either committed first (and is found here) or
 * finds the meter rated.
 */
async function checkNoCreditsOn(db: Db, meterId: string, now: Date, field: string): Promise<void> {
  const open = await db.creditGrant.findFirst({
    where: { meterId, ...grantOpen.where, remainingUnits: { gt: 0n }, OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] },
    select: { id: true },
  });
  if (open) throw new ConflictError(`Customers hold unspent credits on this meter (grant ${open.id}): void them or let them be spent or expire before it is rated`, field);
  // on sale, or renewing for its active subscriptions (an archived product's subscriptions still renew)
  const sold = await db.productBenefit.findFirst({
    where: { benefit: { meterId }, product: { OR: [{ archivedAt: null }, { subscriptions: { some: { status: "ACTIVE" } } }] } },
    select: { productId: true },
  });
  if (sold) throw new ConflictError(`Product ${sold.productId} grants credits on this meter: take that benefit out of the product before the meter is rated`, field);
}

/**
 * A new pool meter fed by `rates`' meters from now on. Each meter is claimed with a conditional update, so a
 * meter claimed by a concurrent call (or already feeding a pool) refuses the whole creation.
 */
export async function createCreditSystem(db: Db, organizationId: string, input: CreditSystemInput, now = new Date()): Promise<Meter> {
  const name = input.name.trim();
  if (!name || name.length > 200) throw new InvalidInputError("must be 1 to 200 characters", "input.name");
  if (!input.rates.length) throw new InvalidInputError("must name at least one meter", "input.rates");
  if (input.rates.length > MAX_CREATED_RATES) throw new InvalidInputError(`names at most ${MAX_CREATED_RATES} meters (add more with setCreditRate)`, "input.rates");
  const seen = new Set<string>();
  for (const [i, r] of input.rates.entries()) {
    if (seen.has(r.meterId)) throw new InvalidInputError("names a meter twice", `input.rates.${i}.meterId`);
    seen.add(r.meterId);
    checkRate(r.creditsPerUnit, `input.rates.${i}.creditsPerUnit`);
    checkRateable(await requireMeter(db, organizationId, r.meterId, `input.rates.${i}.meterId`), `input.rates.${i}.meterId`);
  }
  const provider = providerOfDb(db);
  return db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    // The meters join: what they count changes (their usage draws from the pool from now on).
    await lockMeterDefinitions(db, tx, input.rates.map((r) => r.meterId));
    await new Sql(tx, provider).lockKeys(input.rates.map((r) => meterRatingLock(r.meterId)));
    const pool = await tx.meter.create({
      data: { organizationId, name, filter: POOL_FILTER, aggregationFunc: "COUNT", aggregationProperty: null, creditSystem: true },
    });
    for (const [i, r] of input.rates.entries()) {
      const { count } = await tx.meter.updateMany({ where: { id: r.meterId, organizationId, creditPoolId: null }, data: { creditPoolId: pool.id } });
      if (count !== 1) throw new ConflictError("The meter already feeds a credit system", `input.rates.${i}.meterId`);
      await checkNoCreditsOn(tx, r.meterId, now, `input.rates.${i}.meterId`);
      await tx.creditRate.create({ data: { organizationId, poolMeterId: pool.id, meterId: r.meterId, creditsPerUnit: r.creditsPerUnit, effectiveAt: now } });
    }
    return pool;
  });
}

/**
 * Rate `meterId`'s usage into the credit system from `effectiveAt` (default now; never in the past) on; usage
 * timestamped earlier keeps the rate it had. Each rate is a row of its own, never edited: a second rate at the
 * same instant is a CONFLICT. A meter not feeding any pool joins this one; one feeding another is refused.
 */
export async function setCreditRate(db: Db, organizationId: string, input: SetCreditRateInput, now = new Date()): Promise<Meter> {
  checkRate(input.creditsPerUnit, "input.creditsPerUnit");
  const pool = await requireMeter(db, organizationId, input.creditSystemId, "input.creditSystemId");
  if (!pool.creditSystem) throw new NotFoundError("No such credit system", "input.creditSystemId");
  const meter = await requireMeter(db, organizationId, input.meterId, "input.meterId");
  checkRateable(meter, "input.meterId");
  const asked = startInstant(input.effectiveAt, now, "usage already counted keeps the rate it was drawn at");
  const provider = providerOfDb(db);
  try {
    return await db.$transaction(async (txClient) => {
      const tx = txClient as unknown as Db;
      // A meter joining: what it counts changes (its usage draws from the pool from now on).
      if (meter.creditPoolId !== pool.id) await lockMeterDefinitions(db, tx, [meter.id]);
      // The meter's rating lock, alone: writes drawing at its rates hold it shared from their read of the rates
      // to their commit (BalanceBook.open), so every one that read the rates before this one has committed.
      await new Sql(tx, provider).lockKeys([meterRatingLock(meter.id)]);
      // Usage may be timestamped up to a minute ahead of the clock: a new rate of a meter already drawing from
      // this pool starts after any it drew (a meter joining drew nothing before, whatever the timestamps).
      const counted = meter.creditPoolId === pool.id ? await lastCountedFrom(tx, organizationId, meter, asked) : null;
      if (counted && asked > now) {
        throw new ConflictError(`usage timestamped ${counted.toISOString()} was already counted at the rate then in force: give an effectiveAt after it`, "input.effectiveAt");
      }
      const effectiveAt = counted ? new Date(counted.getTime() + 1) : asked;
      if (meter.creditPoolId !== pool.id) {
        // only while still rateable: an updateMeter racing this one changes the aggregation or negative values
        // only of a meter not rated yet (src/domain/meters.ts updateMeter)
        const { count } = await tx.meter.updateMany({
          where: { id: meter.id, creditPoolId: null, ...RATEABLE_ROW },
          data: { creditPoolId: pool.id },
        });
        if (count !== 1) {
          const current = await tx.meter.findUniqueOrThrow({ where: { id: meter.id } });
          if (current.creditPoolId) throw new ConflictError("The meter already feeds another credit system", "input.meterId");
          checkRateable(current, "input.meterId");
          throw new ConflictError("The meter changed meanwhile; try again", "input.meterId");
        }
        await checkNoCreditsOn(tx, meter.id, now, "input.meterId");
      }
      await tx.creditRate.create({ data: { organizationId, poolMeterId: pool.id, meterId: meter.id, creditsPerUnit: input.creditsPerUnit, effectiveAt } });
      return pool;
    });
  } catch (err) {
    if (isUniqueViolation(err, "effectiveAt")) throw new ConflictError("A rate of this meter already starts at this instant; rates are never edited: give another effectiveAt", "input.effectiveAt");
    throw err;
  }
}

/** A credit system's rates, per meter, oldest first. */
export function creditRates(db: Db, poolMeterId: string) {
  return db.creditRate.findMany({ where: { poolMeterId }, orderBy: [{ meterId: "asc" }, { effectiveAt: "asc" }] });
}
