// The balance rows (CustomerMeter) and their ledger entries, changed in bulk inside the caller's transaction.
// Every path that moves a balance (ingestion, grants, authorizations, expiry, renewals) comes through
// `BalanceBook` (directly, or through `adjustBalances`), so the row, its aggregation state and the ledger can
// never disagree.
//
// Each row is first brought up to `now`: grants that took effect or expired since it was last written are
// recorded (dated when they happened) before anything else, so no write ever uses an expired grant, whether
// or not the scheduler has run.
//
// Cost is a fixed number of statements per transaction whatever the number of rows or callers: read (and on
// PostgreSQL lock, in id order) exactly the touched rows, create the missing ones, read the distinct values
// they are given, their grants and holds; decide every adjustment in memory; then write the grants, the new
// distinct values, all rows back in one update, and append the ledger.
import { orderedId } from "./ids.ts";
import { asDate, type Sql } from "../db/sql.ts";
import { burn, burnOrder, restore } from "./burn-down.ts";
import { InsufficientCreditsError, MAX_STORED_UNITS, NotFoundError, UnitsOverflowError } from "./errors.ts";
import type { AggregationFunc } from "./meter-filter.ts";
import { settle, type SettleStep, type TimedGrant } from "./settle.ts";
import { formatUnits, UNIT_SCALE } from "./units.ts";
import { availableUnits, grantDue, grantInPlay, grantUsable, holdLive } from "./rules.ts";
import { alertRulesOf, recordCrossings, watchedBalances, type AlertLevel } from "./alerts.ts";
import { writeOutbox, type OutboxEvent } from "./outbox.ts";
import { anyRules as anyTopUps, recordTopUps, topUpRules } from "./topups.ts";
import { drawOf, drawsOf, rateAt, ratedMeters, type RatedMeter, type RatedUsage } from "./credit-systems.ts";
import { meterRatingLock } from "./meters.ts";

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
  /** a rated meter's counted values with their events' timestamps, each drawn from the pool at its rate */
  timed?: RatedUsage;
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

/** Credits a rated meter's usage draws from its pool (src/domain/credit-systems.ts), at one rate. */
export interface Draw {
  /** micro-credits, ≥ 0 */
  units: bigint;
  ratedMeterId: string;
  /** micro-credits per unit */
  creditsPerUnit: bigint;
  eventId: string | null;
  eventCount: number;
  description: string | null;
  /**
   * The rated meter's micro-units this draw stands for, when its entry is also the rated meter's (a fold, see
   * `folds`): the rated meter then writes no USAGE entry of its own for them.
   */
  ratedUnits?: bigint;
  /** the draw's staged ledger row, for the rated meter's balance and entry number once its adjustment is applied */
  row?: unknown[];
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
  /** a credit system's pool: what its rated meters' usage draws, one ledger entry each */
  draws?: Draw[];
  /**
   * A rated meter's usage whose pool draw the caller prices itself (a commit of a hold on a rated meter, at
   * the rate the hold was taken at): it is a separate adjustment on the pool, so this one is not rated again.
   */
  drawn?: boolean;
  /**
   * The caller looked the meter up and found it feeding no pool (authorizeUsage, reserveUsage and their
   * commits): its rates need not be read before its rows. When no other adjustment of the group needs rates
   * first, they are checked in the rows' round trip (BalanceBook.open), and a meter rated since has its pool's
   * rows read after.
   */
  unrated?: boolean;
  /**
   * Usage of a rated meter (ingestion's counted usage, authorizeUsage's direct usage): the pool the caller found
   * the meter feeding when it looked it up. When every rated meter of a group names its pool, the pools' rows
   * are read in the round trip that reads the rates, which then confirm it (BalanceBook.open).
   */
  pool?: string;
  /** micro-units a new reservation holds (already counted once its row exists: insert it afterwards) */
  hold?: bigint;
  /**
   * The reservation holding `hold` is already written in this transaction, so what is read as held counts
   * it: it is taken out when the rows are read and counts again only once this adjustment is applied.
   */
  holdStored?: boolean;
  /**
   * Micro-units of a live hold this adjustment ends (a reservation committed or released whose row is
   * updated after the balances are read): from here on they are no longer held.
   */
  released?: bigint;
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
  /**
   * The NOT_FOUND to answer when the customer was deleted after the caller looked it up (BalanceBook.open's
   * `liveCustomers`), worded as the caller's own lookup words it. Default "No such customer" at "customerId".
   */
  ifCustomerGone?: { message: string; field: string };
}

/**
 * Whether writes to these rows are watched: `levels` when any follows a balance alert rule (its stored level
 * is then read with the rows), `held` when that or an organization's auto top-ups need what holds take.
 * Both come from per-organization caches: usually no statement.
 */
async function watchedPairs(sql: Sql, pairs: { organizationId: string; customerId: string; meterId: string }[]): Promise<{ held: boolean; levels: boolean }> {
  let levels = false;
  let topUps = false;
  // Rules are per organization (cached): one lookup each, then a synchronous check per pair.
  const rulesByOrganization = new Map<string, ((customerId: string, meterId: string) => boolean) | null>();
  for (const p of pairs) {
    let watched = rulesByOrganization.get(p.organizationId);
    if (watched === undefined) {
      rulesByOrganization.set(p.organizationId, (watched = await alertRulesOf(sql, p.organizationId)));
      if (!topUps && (await anyTopUps(sql, p.organizationId))) topUps = true;
    }
    if (!levels && watched?.(p.customerId, p.meterId)) levels = true;
    if (levels && topUps) break;
  }
  return { held: levels || topUps, levels };
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
  /** only when asked for (see BalanceBook.readRows) */
  held?: bigint | number | string | null;
  alertLevel?: AlertLevel | null;
}

/** The distinct values of a meter that counts none (every meter but UNIQUE): one shared set, which refuses values. */
class NoDistinctValues extends Set<string> {
  override add(value: string): this {
    throw new Error(`only a UNIQUE meter's usage has distinct values (given ${value})`);
  }
}
const NO_DISTINCT_VALUES: Set<string> = new NoDistinctValues();

export function emptyUsage(func: AggregationFunc): UsageDelta {
  // no Set for every (customer, meter) an ingest call counts on a meter of any other kind (about 100 bytes each)
  const distinct = func === "UNIQUE" ? new Set<string>() : NO_DISTINCT_VALUES;
  return { func, count: 0n, sum: 0n, max: null, min: null, distinct, eventCount: 0, lastEventId: null, credit: 0n, creditEvents: 0, lastCreditEventId: null, timed: undefined };
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

/**
 * Apply `adjustments` (at most one per row) in the caller's transaction: read and lock the rows, apply them
 * all, write them back. A refusal (InsufficientCreditsError) or an overflow throws before anything is written
 * to the rows, so the caller's transaction rolls back. The group writer (src/domain/writer.ts) uses the
 * book below directly, to decide many callers' adjustments against one read.
 */
export async function adjustBalances(sql: Sql, organizationId: string, adjustments: BalanceAdjustment[], now: Date): Promise<BalanceChange[]> {
  if (adjustments.length === 0) return [];
  const book = await BalanceBook.open(sql, [{ organizationId, adjustments }], now);
  book.apply(adjustments);
  return (await book.write()).get(organizationId) ?? [];
}

interface AggState {
  aggCount: bigint;
  aggSum: bigint;
  aggMax: bigint | null;
  aggMin: bigint | null;
}

/** One balance row as the book holds it: the stored state, brought forward by every adjustment applied so far. */
interface Balance {
  organizationId: string;
  id: string;
  customerId: string;
  meterId: string;
  /** as stored; written back as version + 1 once anything was applied to the row */
  storedVersion: number;
  consumed: bigint;
  credited: bigint;
  direct: bigint;
  agg: AggState;
  /** the ledger cursor: the last entry's sequence number and date */
  sequence: bigint;
  at: Date;
  /** grants in play and not yet expired, in burn order */
  grants: TimedGrant[];
  /** what live holds take; null where no adjustment of the row needed it read */
  held: bigint | null;
  /** the balance alert level stored for the row (null: none yet, read as OK); undefined where not read */
  alertLevel?: AlertLevel | null;
  /**
   * distinct values the row holds, among those the adjustments bring (stored, or added by one applied); null
   * until there is one (only UNIQUE meters have any: no Set for every row read)
   */
  values: Set<string> | null;
  /** an applied adjustment changed it: it is written and reported */
  written: boolean;
  /** an applied adjustment reached it (written, or only settled and nothing was due) */
  reached: boolean;
}

/** A row's live holds and stored alert level, as readWatched reads them on PostgreSQL. */
type Watched = Pick<Row, "customerId" | "meterId" | "held" | "alertLevel">;

/** What one `apply` adds to the book if all its adjustments go through. */
interface Staged {
  ledger: unknown[][];
  activated: TimedGrant[];
  expired: TimedGrant[];
  newGrants: { grant: TimedGrant; balance: Balance; description: string }[];
  /** per row id, distinct values new to it */
  values: Map<string, Set<string>>;
  /** grants credited and expired, for the outbox */
  events: OutboxEvent[];
}

/** A row to change: its grants copied (applies change their remainders); a grant list is only ever replaced, so an empty one is shared. */
const draftOf = (b: Balance): Balance => ({ ...b, agg: { ...b.agg }, grants: b.grants.length ? b.grants.map((g) => ({ ...g })) : b.grants });

/** The columns of a ledger row as BalanceBook stages it; the three rated ones are a fold's (see `folds`). */
const LEDGER_COLUMNS = ["id", "organizationId", "customerId", "meterId", "kind", "units", "balanceAfter", "occurredAt", "sequence", "grantId", "eventId", "eventCount", "description", "ratedMeterId", "creditsPerUnit", "ratedUnits", "ratedBalanceAfter", "ratedSequence", "createdAt"];
const LEDGER_RATED_UNITS = LEDGER_COLUMNS.indexOf("ratedUnits");

/**
 * `a` with every field of a BalanceAdjustment, in one order: BalanceBook reads a dozen of them per row, and
 * objects of one shape keep those reads monomorphic (rated ingestion's pool and own adjustments were two more
 * shapes beside ingestion's, and applyOne ran several times slower on the mix).
 */
export function adjustment(a: BalanceAdjustment): BalanceAdjustment {
  return {
    customerId: a.customerId,
    meterId: a.meterId,
    removals: a.removals,
    credits: a.credits,
    usage: a.usage,
    direct: a.direct,
    draws: a.draws,
    drawn: a.drawn,
    unrated: a.unrated,
    pool: a.pool,
    hold: a.hold,
    holdStored: a.holdStored,
    released: a.released,
    creditsOnly: a.creditsOnly,
    covered: a.covered,
    field: a.field,
    settleOnly: a.settleOnly,
    ifCustomerGone: a.ifCustomerGone,
  };
}

/**
 * The pool draws that can carry a rated meter's usage of `units` micro-units: all of them staged, their rated
 * units adding up to it exactly; otherwise null and the usage gets its own entries.
 *
 * Carried, the pool's entries stand for the rated meter's usage too, with its units, balance after and entry
 * number, so a rated event costs one ledger row as a plain one does. Usage whose draws do not add up to it
 * exactly (none known: a guard) gets its own entries instead.
 */
function folds(draws: Draw[] | undefined, units: bigint): Draw[] | null {
  if (!draws?.length) return null;
  let sum = 0n;
  for (const d of draws) {
    if (d.ratedUnits === undefined || !d.row) return null;
    sum += d.ratedUnits;
  }
  return sum === units ? draws : null;
}

/**
 * The balance rows a transaction touches, read once (locked on PostgreSQL, in id order, so concurrent writers
 * never deadlock on them) with their grants, holds and known distinct values; then changed in memory, one
 * `apply` after another, each against the state the previous ones left; then written back in a fixed number
 * of statements, whatever the number of rows or applies.
 *
 * An `apply` is all or nothing: if one of its adjustments is refused (InsufficientCreditsError) or would
 * overflow a column (UnitsOverflowError), it throws and the book is as it was, so the next apply is decided
 * as if the refused one had never been asked. Each row is first brought up to `now` by the first apply that
 * reaches it (grants that took effect or expired since its last write, dated when they happened).
 */
export class BalanceBook {
  private readonly rows = new Map<string, Balance>();
  /** ids of rows this book inserted (dropped again if no applied adjustment reached them) */
  private readonly inserted = new Set<string>();
  /** remainingUnits of each grant as read */
  private readonly storedRemaining = new Map<string, bigint>();
  private readonly activated = new Set<string>();
  private readonly expired = new Map<string, TimedGrant>();
  /** grants created by applies (negative values on CREDIT meters), inserted when written */
  private readonly newGrants = new Map<string, { balance: Balance; description: string }>();
  private readonly newValues: [string, string][] = [];
  private readonly ledger: unknown[][] = [];
  /** credit_grant.created / .expired of the applied adjustments (alerts are added when written) */
  private readonly events: OutboxEvent[] = [];
  /** keys in the order they were first written */
  private readonly order: string[] = [];
  private readonly nowValue: Date | string;
  /** rated meters among those the adjustments touch: their usage also draws from their pool */
  private rated = new Map<string, RatedMeter>();
  /** `liveCustomers`: check that the rows' customers are not deleted (open) */
  private liveOnly = false;
  /** customers of the rows read that are deleted (only with `liveCustomers`) */
  private readonly gone = new Set<string>();
  /** `liveCustomers`: customers to check beside the rows' (`alsoCustomers` of open), with the first rows read */
  private alsoCustomers: string[] = [];

  private constructor(
    private readonly sql: Sql,
    private readonly now: Date,
  ) {
    this.nowValue = sql.date(now);
  }

  /**
   * Read (and lock) every row the adjustments may touch, creating the missing ones, with what deciding them
   * needs. An adjustment whose `hold` is already stored (`holdStored`) has its hold taken out of what is read
   * as held, to be counted again only if it is applied.
   *
   * `liveCustomers` (the node's writer, whose callers looked their customers up before the transaction): the
   * rows' customers are checked once the rows are locked, and an adjustment of a customer deleted since is
   * refused (NOT_FOUND, as its `ifCustomerGone` says). deleteCustomer locks the customer and its rows first
   * (src/domain/customers.ts), so a write either commits before a deletion or sees it: no balance of a deleted
   * customer moves after its deletion. `alsoCustomers` are checked with them (customers a job writes for without
   * a balance row): one whose deletion commits before that read is seen, one committing later is concurrent.
   */
  static async open(sql: Sql, wanted: { organizationId: string; adjustments: BalanceAdjustment[] }[], now: Date, options: { liveCustomers?: boolean; alsoCustomers?: string[] } = {}): Promise<BalanceBook> {
    const book = new BalanceBook(sql, now);
    book.liveOnly = options.liveCustomers === true;
    book.alsoCustomers = options.alsoCustomers ?? [];
    // Which meters are rated decides which rows are read: counted usage says so itself (`timed`: plain
    // ingestion reads no rates); direct usage and holds on a meter the caller found feeding no pool (`unrated`)
    // are checked in the round trip that reads the rows; any other is looked up first, unless every rated
    // meter's usage names the pool its caller found (`pool`): then its rows are read in that round trip too.
    const first = new Set<string>();
    const checked = new Set<string>();
    // the pools the rated meters' usage names (`pool`): null once one of `first` names none
    let named: Map<string, RatedMeter> | null = new Map();
    for (const w of wanted) {
      for (const a of w.adjustments) {
        const priced = (a.direct || a.hold) && !a.drawn;
        if (a.usage?.timed || (priced && !a.unrated)) {
          first.add(a.meterId);
          if (a.pool) named?.set(a.meterId, { poolMeterId: a.pool, rates: [] });
          else named = null;
        } else if (priced) checked.add(a.meterId);
      }
    }
    let rates: Promise<Map<string, RatedMeter>> | null = null;
    let locked: Promise<unknown> = DONE;
    if (first.size) {
      // Rates are read under their meters' rating locks, shared (setCreditRate takes them alone): a new rate
      // then starts after whatever usage this group draws at the rates read here (src/domain/credit-systems.ts).
      // Sent with the read, which the server runs once they are held, so its snapshot is taken after.
      locked = sql.lockKeys([...first].map(meterRatingLock), true);
      locked.catch(() => {}); // awaited below, unless reading the rates failed first
      rates = ratedMeters(sql, [...first, ...checked]);
      rates.catch(() => {});
      if (!named) {
        await locked;
        book.rated = await rates;
        rates = null;
      } else {
        // Every rated meter names its pool: the rows (its pool's among them) are read behind the locks and the
        // rates, in the same round trip, and the rates confirm the pools below.
        book.rated = named;
      }
    } else if (checked.size) {
      rates = ratedMeters(sql, [...checked]);
      rates.catch(() => {}); // awaited below, unless reading the rows failed first
    }
    try {
      await book.load(wanted);
    } catch (err) {
      // The statements sent ahead of the rows' failed first (a deadlock is retried): theirs is the failure.
      await locked;
      await rates;
      throw err;
    }
    await locked;
    if (rates) {
      const found = await rates;
      const moved = [...found].some(([meterId, r]) => book.rated.get(meterId)?.poolMeterId !== r.poolMeterId);
      book.rated = found;
      if (moved) {
        // A meter feeds another pool than its caller found (one found feeding no pool, or a pool named by
        // counted usage, when the meter was rated or moved between the caller's lookup and its write): its
        // pool's rows are read (and locked) too, after the others. A group locking both in one statement may
        // then wait on this one in a cycle, which PostgreSQL breaks within its deadlock_timeout and the writer
        // retries. (Ingestion refuses a call whose meters changed meanwhile: staleJobs.)
        await book.load(wanted);
      }
    }
    return book;
  }

  /** Read (and lock) the rows `wanted` may touch that the book has not read yet, with what deciding them needs. */
  private async load(wanted: { organizationId: string; adjustments: BalanceAdjustment[] }[]): Promise<void> {
    const { sql, now } = this;
    const pairs = new Map<string, { organizationId: string; customerId: string; meterId: string }>();
    const want = (k: string, organizationId: string, customerId: string, meterId: string) => {
      if (!pairs.has(k) && !this.rows.has(k)) pairs.set(k, { organizationId, customerId, meterId });
      return pairs.has(k);
    };
    let needsHeld = false;
    const storedHolds = new Map<string, bigint>();
    const values = new Map<string, Set<string>>();
    for (const { organizationId, adjustments } of wanted) {
      for (const a of adjustments) {
        const rated = this.rated.get(a.meterId);
        if (rated && want(balanceKey(a.customerId, rated.poolMeterId), organizationId, a.customerId, rated.poolMeterId) && (a.creditsOnly || a.hold)) needsHeld = true;
        const k = balanceKey(a.customerId, a.meterId);
        if (!want(k, organizationId, a.customerId, a.meterId)) continue;
        if (a.creditsOnly || a.hold) needsHeld = true;
        if (a.hold && a.holdStored) storedHolds.set(k, (storedHolds.get(k) ?? 0n) + a.hold);
        if (!a.usage?.distinct.size) continue;
        let set = values.get(k);
        if (!set) values.set(k, (set = new Set()));
        for (const v of a.usage.distinct) set.add(v);
      }
    }
    // Customers checked beside the rows' (open's `alsoCustomers`): with the first rows read.
    const also = this.alsoCustomers.map((customerId) => ({ customerId }));
    this.alsoCustomers = [];
    if (!pairs.size) {
      for (const id of await this.readGone(also)) this.gone.add(id);
      return;
    }
    // Rows whose writes are watched (a balance alert rule, an organization with auto top-ups) need their holds
    // and stored alert level when written: read with the rows rather than by two statements more per write.
    const list = [...pairs.values()];
    const watching = await watchedPairs(sql, list);
    const reads = { holds: needsHeld || watching.held, levels: watching.levels };
    // The grants are read right behind the locking read of the rows, without waiting for its answer: on
    // PostgreSQL's pipelined connection both go out at once, and the server runs the second once the first has
    // locked every row, so it sees what their last writers committed. Only when one statement locks them all.
    const rowsRead = this.readRows(list, reads);
    const ahead = list.length <= PAIRS_PER_STATEMENT;
    const grantsRead = ahead ? timedGrants(sql, list, now) : null;
    grantsRead?.catch(() => {}); // awaited below, unless the rows' read failed first
    // PostgreSQL: the holds and stored levels, by the same reasoning, behind the grants (see readRows).
    const watchedRead = ahead ? this.readWatched(list, reads) : null;
    watchedRead?.catch(() => {});
    // And which of their customers are deleted, by the same reasoning (a deletion holding their rows has
    // committed by the time this runs).
    const goneOf = also.length ? [...list, ...also] : list;
    const goneRead = ahead ? this.readGone(goneOf) : null;
    goneRead?.catch(() => {});
    const { created, createdRead } = await rowsRead;
    // Rows created here were locked after the grants and holds were read: a writer that created one first may
    // have given it grants or holds since, so theirs are read again. Creating a row waited for a deletion of its
    // customer in progress (its foreign key): the customer is checked again too. Sent right behind the created
    // rows' read, as the first reads were behind the first: one round trip for the rows created, not three.
    const again = created.length && grantsRead ? Promise.all([timedGrants(sql, created, now), this.readWatched(created, reads), this.readGone(created)]) : null;
    again?.catch(() => {}); // awaited below, unless reading the created rows failed first
    await createdRead;
    await this.readValues(values);
    this.setGrants(await (grantsRead ?? timedGrants(sql, list, now)));
    this.setWatched(await (watchedRead ?? this.readWatched(list, reads)), reads);
    for (const id of await (goneRead ?? this.readGone(goneOf))) this.gone.add(id);
    if (again) {
      const [grants, watched, gone] = await again;
      this.setGrants(grants, created);
      this.setWatched(watched, reads);
      for (const id of gone) this.gone.add(id);
    }
    if (reads.holds) {
      for (const k of pairs.keys()) {
        const row = this.rows.get(k)!;
        row.held = (row.held ?? 0n) - (storedHolds.get(k) ?? 0n);
      }
    }
  }

  /**
   * 1. The rows, locked; the missing ones created (a concurrent writer may create one first: its row is used),
   * and answered.
   * With `holds`, what live reservations hold on each row (holdLive, src/domain/rules.ts) and with `levels`
   * its stored alert level, each by a subquery. On SQLite, whose writer is alone (the transaction began
   * IMMEDIATE), in the same statement. On PostgreSQL only once the rows are locked, by one statement more:
   * a statement that waited for a row lock returns the row as committed by the writer it waited for, but its
   * subqueries would still see what was committed when it began — not that writer's holds and level.
   */
  private async readRows(
    pairs: { organizationId: string; customerId: string; meterId: string }[],
    want: { holds: boolean; levels: boolean },
  ): Promise<{ created: { customerId: string; meterId: string }[]; createdRead: Promise<void> }> {
    const organizationOf = new Map(pairs.map((p) => [balanceKey(p.customerId, p.meterId), p.organizationId]));
    const sql = this.sql;
    const inline = sql.provider !== "postgresql";
    const extra = this.watchColumns(want);
    // PostgreSQL locks the rows in one order (no two groups wait on each other in a cycle); SQLite's writer is
    // alone, so its rows need no order (and no sort).
    const lockOrder = inline ? "" : ` ORDER BY cm."id"${sql.forUpdate}`;
    const columns = inline ? extra : { sql: "", values: [] };
    const read = async (list: { customerId: string; meterId: string }[]) => {
      const rows = await pairRows<Row>(
        sql,
        list,
        (clause) =>
          `SELECT cm."id", cm."customerId", cm."meterId", cm."consumedUnits", cm."creditedUnits", cm."aggCount", cm."aggSum", cm."aggMax", cm."aggMin", cm."directUnits", cm."version", cm."ledgerSequence", cm."ledgerAt"${columns.sql}
             FROM "CustomerMeter" cm WHERE ${clause}${lockOrder}`,
        columns.values,
      );
      for (const r of rows) {
        const k = balanceKey(r.customerId, r.meterId);
        this.rows.set(k, {
          organizationId: organizationOf.get(k)!,
          id: r.id,
          customerId: r.customerId,
          meterId: r.meterId,
          storedVersion: Number(r.version),
          consumed: BigInt(r.consumedUnits),
          credited: BigInt(r.creditedUnits),
          direct: BigInt(r.directUnits),
          agg: { aggCount: BigInt(r.aggCount), aggSum: BigInt(r.aggSum), aggMax: big(r.aggMax), aggMin: big(r.aggMin) },
          sequence: BigInt(r.ledgerSequence),
          at: r.ledgerAt === null ? new Date(0) : asDate(r.ledgerAt),
          grants: [],
          held: want.holds && inline ? heldUnitsOf(r.held) : null,
          // undefined: not read (no object spread per row to leave it out)
          alertLevel: want.levels && inline ? (r.alertLevel ?? null) : undefined,
          values: null,
          written: false,
          reached: false,
        });
      }
    };
    await read(pairs);
    // Created in one order (customer, then meter) by every writer: a row another group is creating makes the
    // insert wait for that group, and two groups creating rows in each other's reverse order waited for each
    // other until PostgreSQL's deadlock check broke in a second later (an ingest call's p99 of 1.3 s).
    const missing = pairs.filter((p) => !this.rows.has(balanceKey(p.customerId, p.meterId))).sort(byCustomerThenMeter);
    if (!missing.length) return { created: missing, createdRead: DONE };
    const ids = missing.map(() => orderedId());
    for (const id of ids) this.inserted.add(id);
    // On PostgreSQL's pipelined connection sent, not awaited: the server runs the read behind it (and what the
    // caller sends behind that) once it is done, and a failure of it is the transaction's (Sql.firstFailure).
    await this.sql.insertMany(
      "CustomerMeter",
      ["id", "organizationId", "customerId", "meterId", "createdAt", "updatedAt"],
      missing.map((p, i) => [ids[i], p.organizationId, p.customerId, p.meterId, this.nowValue, this.nowValue]),
      `ON CONFLICT ("customerId", "meterId") DO NOTHING`,
      { send: this.sql.settledAtCommit },
    );
    const createdRead = read(missing);
    createdRead.catch(() => {}); // awaited by the caller
    return { created: missing, createdRead };
  }

  /** The subqueries that read a row's holds and stored alert level, and their parameters (they come first). */
  private watchColumns(want: { holds: boolean; levels: boolean }): { sql: string; values: unknown[] } {
    // The holds this group stored are in the sum (they are taken out of it after), and may take it past the 64-bit
    // range, where SQLite's SUM fails: there it adds millions and what is left over apart, as text (heldUnitsOf).
    const sum = this.sql.provider === "postgresql" ? `SUM(h."units")` : `SUM(h."units" / 1000000) || ' ' || SUM(h."units" % 1000000)`;
    const held = `(SELECT ${sum} FROM "Reservation" h WHERE h."customerId" = cm."customerId" AND h."meterId" = cm."meterId" AND ${holdLive.sql(this.sql, 1, "h")})`;
    const level = `(SELECT s."level" FROM "BalanceAlertState" s WHERE s."customerId" = cm."customerId" AND s."meterId" = cm."meterId")`;
    return {
      sql: (want.holds ? `, ${held} AS "held"` : "") + (want.levels ? `, ${level} AS "alertLevel"` : ""),
      values: want.holds ? [this.nowValue] : [],
    };
  }

  /**
   * PostgreSQL: the holds and stored levels of `pairs`' rows (see readRows), by a statement that must run once
   * they are locked: sent right behind the locking read (the server runs it after), or after it answered.
   * Nothing to read on SQLite, or where no adjustment needs them.
   */
  private async readWatched(pairs: { customerId: string; meterId: string }[], want: { holds: boolean; levels: boolean }): Promise<Watched[]> {
    const extra = this.watchColumns(want);
    if (this.sql.provider !== "postgresql" || !extra.sql || !pairs.length) return [];
    return pairRows<Watched>(this.sql, pairs, (clause) => `SELECT cm."customerId", cm."meterId"${extra.sql} FROM "CustomerMeter" cm WHERE ${clause}`, extra.values);
  }

  private setWatched(found: Watched[], want: { holds: boolean; levels: boolean }): void {
    for (const r of found) {
      const b = this.rows.get(balanceKey(r.customerId, r.meterId))!;
      if (want.holds) b.held = heldUnitsOf(r.held);
      if (want.levels) b.alertLevel = r.alertLevel ?? null;
    }
  }

  /** `liveCustomers`: the customers of `pairs` that are deleted (nothing is read otherwise). */
  private async readGone(pairs: { customerId: string }[]): Promise<string[]> {
    if (!this.liveOnly || !pairs.length) return [];
    const sql = this.sql;
    const ids = [...new Set(pairs.map((p) => p.customerId))];
    const out: string[] = [];
    for (const chunk of sql.inChunks(ids, PAIRS_PER_STATEMENT)) {
      if (sql.provider === "postgresql") {
        // The ids as one JSON parameter, so the text never changes and runs as a prepared statement (src/db/pg.ts;
        // an array parameter would be planned again in every group's locked section), each id probing the
        // customers' primary key whatever the planner thinks of the table.
        const found = await sql.query<{ id: string }>(
          `SELECT x."id" FROM jsonb_array_elements_text(${sql.param(1)}::jsonb) AS x("id")
            WHERE (SELECT c."deletedAt" FROM "Customer" c WHERE c."id" = x."id") IS NOT NULL`,
          [JSON.stringify(chunk)],
        );
        for (const r of found) out.push(r.id);
        continue;
      }
      const named = sql.textIn("id", chunk);
      for (const r of await sql.query<{ id: string }>(`SELECT "id" FROM "Customer" WHERE ${named.clause} AND "deletedAt" IS NOT NULL`, named.values)) out.push(r.id);
    }
    return out;
  }

  /** The first customer among `adjustments`' (a scheduler's settling aside) deleted since its caller looked it up, or null. */
  private goneCustomer(adjustments: BalanceAdjustment[]): string | null {
    if (!this.gone.size) return null;
    return this.goneAmong(adjustments.filter((a) => !a.settleOnly));
  }

  /** The first customer of `items` deleted since its caller looked it up (among the rows' customers and `alsoCustomers`), or null. */
  goneAmong(items: Iterable<{ customerId: string }>): string | null {
    if (!this.gone.size) return null;
    for (const { customerId } of items) if (this.gone.has(customerId)) return customerId;
    return null;
  }

  /** 2. UNIQUE meters: which of the values the adjustments bring each row already holds. */
  private async readValues(values: Map<string, Set<string>>): Promise<void> {
    const tuples: [string, string][] = [];
    for (const [k, set] of values) {
      const row = this.rows.get(k)!;
      if (this.inserted.has(row.id)) continue; // a new row holds nothing yet
      for (const v of set) tuples.push([row.id, v]);
    }
    if (!tuples.length) return;
    const byId = new Map([...this.rows.values()].map((b) => [b.id, b]));
    for (let i = 0; i < tuples.length; i += PAIRS_PER_STATEMENT) {
      const inTuples = this.sql.tuplesIn("customerMeterId", "value", tuples.slice(i, i + PAIRS_PER_STATEMENT));
      const found = await this.sql.query<{ customerMeterId: string; value: string }>(
        `SELECT "customerMeterId", "value" FROM "CustomerMeterValue" WHERE ${inTuples.clause}`,
        inTuples.values,
      );
      for (const r of found) {
        const row = byId.get(r.customerMeterId);
        if (row) (row.values ??= new Set()).add(r.value);
      }
    }
  }

  /** 3. The grants of the rows in play at `now` (timedGrants), in burn order; with `of`, those rows' grants are these. */
  private setGrants(found: Map<string, TimedGrant[]>, of: { customerId: string; meterId: string }[] = []): void {
    for (const p of of) {
      const row = this.rows.get(balanceKey(p.customerId, p.meterId));
      if (row) row.grants = [];
    }
    for (const [k, grants] of found) {
      const row = this.rows.get(k);
      if (!row) continue;
      row.grants = grants;
      for (const g of grants) this.storedRemaining.set(g.id, g.remainingUnits);
    }
  }

  /**
   * Apply one caller's adjustments after everything applied before: returns the change each makes (the
   * balance right after it; a settleOnly adjustment that found nothing due makes none). Throws
   * InsufficientCreditsError or UnitsOverflowError, and then changes nothing in the book. `report` false:
   * the caller needs no changes (ingestion, whose call writes about 1,000 balances): none is made.
   */
  apply(adjustments: BalanceAdjustment[], report = true): BalanceChange[] {
    const gone = this.goneCustomer(adjustments);
    if (gone !== null) {
      const answer = adjustments.find((a) => a.customerId === gone)!.ifCustomerGone ?? { message: "No such customer", field: "customerId" };
      throw new NotFoundError(answer.message, answer.field);
    }
    const drafts = new Map<string, Balance>();
    const staged: Staged = { ledger: [], activated: [], expired: [], newGrants: [], values: new Map(), events: [] };
    const out: BalanceChange[] = [];
    const rated = this.rated.size ? this.withDraws(adjustments) : null;
    const list = rated ? rated.adjustments : adjustments;
    for (let i = 0; i < list.length; i++) {
      const a = list[i]!;
      const k = balanceKey(a.customerId, a.meterId);
      let draft = drafts.get(k);
      if (!draft) {
        const row = this.rows.get(k);
        if (!row) throw new Error(`balance row missing for ${a.customerId}/${a.meterId}`);
        drafts.set(k, (draft = draftOf(row)));
      }
      draft.reached = true;
      const changed = this.applyOne(draft, a, staged, rated ? rated.folds[i] : undefined);
      if (changed && report) out.push({ customerId: a.customerId, meterId: a.meterId, version: draft.storedVersion + 1, balance: draft.credited - draft.consumed });
    }
    // All went through: the drafts become the rows.
    for (const [k, draft] of drafts) {
      if (draft.written && !this.rows.get(k)!.written) this.order.push(k);
      const added = staged.values.get(draft.id);
      if (added) {
        const values = (draft.values ??= new Set());
        for (const v of added) values.add(v);
      }
      this.rows.set(k, draft);
    }
    for (const row of staged.ledger) this.ledger.push(row);
    for (const event of staged.events) this.events.push(event);
    for (const g of staged.activated) this.activated.add(g.id);
    for (const g of staged.expired) this.expired.set(g.id, g);
    for (const n of staged.newGrants) this.newGrants.set(n.grant.id, { balance: n.balance, description: n.description });
    for (const [id, added] of staged.values) for (const v of added) this.newValues.push([id, v]);
    return out;
  }

  /**
   * The adjustments, each rated meter's as two: what it draws from its pool, checked there (credits-only, a
   * hold), then its own counting, which never refuses, with the draws that carry it (`folds`, in the same
   * place). Any other adjustment as it is, in the same order.
   */
  private withDraws(adjustments: BalanceAdjustment[]): { adjustments: BalanceAdjustment[]; folds: (Draw[] | undefined)[] } {
    const out: BalanceAdjustment[] = [];
    const foldsOf: (Draw[] | undefined)[] = [];
    for (const a of adjustments) {
      const rated = this.rated.get(a.meterId);
      if (!rated || a.drawn) {
        out.push(a);
        foldsOf.push(undefined);
        continue;
      }
      const draws: Draw[] = [];
      const u = a.usage;
      if (u?.timed) {
        for (const d of drawsOf(rated.rates, u.timed)) {
          // one draw per rate: each names the last event drawn at its rate (one rate: the usage's last event)
          const eventId = d.events === u.timed.count ? u.lastEventId : d.lastEventId;
          draws.push({ units: d.units, ratedMeterId: a.meterId, creditsPerUnit: d.perUnit, eventId, eventCount: d.events, description: null, ratedUnits: d.rated, row: undefined });
        }
      }
      const current = a.direct || a.hold ? rateAt(rated.rates, this.now).perUnit : 0n;
      if (a.direct) {
        const units = a.direct.units;
        const d = draws.find((x) => x.creditsPerUnit === current);
        if (d) {
          d.units += drawOf(units, current);
          d.ratedUnits! += units;
        } else {
          draws.push({ units: drawOf(units, current), ratedMeterId: a.meterId, creditsPerUnit: current, eventId: null, eventCount: 0, description: a.direct.description ?? null, ratedUnits: units, row: undefined });
        }
      }
      const hold = a.hold ? drawOf(a.hold, current) : undefined;
      if (draws.length || hold) {
        out.push(adjustment({ customerId: a.customerId, meterId: rated.poolMeterId, draws, creditsOnly: a.creditsOnly, field: a.field, hold, ifCustomerGone: a.ifCustomerGone }));
        foldsOf.push(undefined);
      }
      // Its own counting never refuses and holds nothing: the pool does both. Counted usage (ingestion) asks
      // neither, and is applied as it is (no copy of it for every rated balance of a call).
      let own = a;
      if (a.creditsOnly || a.hold !== undefined || a.holdStored !== undefined || a.covered !== undefined || a.released !== undefined) {
        own = adjustment(a);
        own.creditsOnly = false;
        own.hold = own.holdStored = own.covered = own.released = undefined;
      }
      out.push(own);
      foldsOf.push(draws);
    }
    return { adjustments: out, folds: foldsOf };
  }

  /**
   * Everything that happens to one row in one adjustment: time, removals, credits, usage, direct usage, checks.
   * `carried`: a rated meter's usage, the pool draws that carry it (see `folds`). No closure is made here: this
   * runs for every balance of every call (about 1,500 of a rated ingest call).
   */
  private applyOne(b: Balance, a: BalanceAdjustment, staged: Staged, carried: Draw[] | undefined): boolean {
    const now = this.now;
    // What the row stored before this adjustment, for an overflow's error (no object unless one is thrown).
    const startAggSum = b.agg.aggSum;
    const startConsumed = b.consumed;
    const startCredited = b.credited;

    // Time first: grants that took effect or expired since the row was last written.
    const steps = b.grants.length ? settle(b.credited - b.consumed, b.grants, now).steps : NO_STEPS;
    for (const step of steps) {
      b.credited += step.units;
      (step.kind === "GRANT" ? staged.activated : staged.expired).push(step.grant);
      if (step.units !== 0n) this.entry(b, staged, step.kind, step.units, null, step.grant.id, null, 0, null, step.at);
      grantEvent(staged, b, step.kind === "GRANT" ? "credit_grant.created" : "credit_grant.expired", step.grant.id, step.units < 0n ? -step.units : step.units, step.at);
    }
    if (steps.length && steps.some((s) => s.kind === "EXPIRY")) {
      const gone = new Set(steps.filter((s) => s.kind === "EXPIRY").map((s) => s.grant));
      b.grants = b.grants.filter((g) => !gone.has(g));
    }
    if (a.settleOnly && !steps.length) return false;
    b.written = true;
    if (a.released && b.held !== null) b.held -= a.released;
    const held = b.held ?? 0n;

    for (const r of a.removals ?? NO_REMOVALS) {
      if (r.units === 0n) continue;
      b.credited -= r.units;
      this.entry(b, staged, r.kind, -r.units, null, r.grantId, null, 0, r.description ?? null);
      if (r.kind === "EXPIRY" || r.kind === "RESET") grantEvent(staged, b, "credit_grant.expired", r.grantId, r.units, now);
    }

    // Negative values on CREDIT meters become a grant (one per row per adjustment), credited like any other.
    let credits = a.credits ?? NO_CREDITS;
    const u = a.usage;
    if (u && u.credit > 0n) {
      if (u.credit > MAX_STORED_UNITS) throw overflow(a, { aggSum: startAggSum, consumed: startConsumed, credited: startCredited });
      const description = `${u.creditEvents} negative usage ${u.creditEvents === 1 ? "value" : "values"}`;
      // createdAt is the wall clock, as Prisma stamps every other grant (it orders grants of equal priority and expiry).
      const grant: TimedGrant = { id: orderedId(), units: u.credit, remainingUnits: u.credit, priority: 10, effectiveAt: now, credited: true, expiresAt: null, createdAt: new Date() };
      b.grants = [...b.grants, grant].sort(burnOrder);
      staged.newGrants.push({ grant, balance: b, description });
      credits = [...credits, { units: u.credit, grantId: grant.id, description, eventId: u.lastCreditEventId, eventCount: u.creditEvents }];
    }
    const grants = usableGrants(b.grants, now);
    for (const c of credits) {
      // A grant arriving while the balance is negative first pays off the overage.
      const balance = b.credited - b.consumed;
      const overage = balance < 0n ? -balance : 0n;
      const grant = grants.find((g) => g.id === c.grantId);
      if (grant && overage > 0n) grant.remainingUnits -= overage < c.units ? overage : c.units;
      b.credited += c.units;
      this.entry(b, staged, "GRANT", c.units, null, c.grantId, c.eventId ?? null, c.eventCount ?? 0, c.description ?? null);
      grantEvent(staged, b, "credit_grant.created", c.grantId, c.units, now);
    }

    const balanceBeforeUse = b.credited - b.consumed;
    const consumedBeforeUse = b.consumed;
    let fold: Draw[] | null = null;
    if (u) {
      let fresh = 0n;
      if (u.func === "UNIQUE") {
        let added = staged.values.get(b.id);
        for (const v of u.distinct) {
          if (b.values?.has(v) || added?.has(v)) continue;
          if (!added) staged.values.set(b.id, (added = new Set()));
          added.add(v);
          fresh++;
        }
      }
      // The row's state is a draft's own copy (draftOf): changed in place.
      const agg = b.agg;
      agg.aggCount += u.func === "UNIQUE" ? fresh : u.count;
      agg.aggSum += u.sum;
      agg.aggMax = maxOf(agg.aggMax, u.max);
      agg.aggMin = minOf(agg.aggMin, u.min);
      const delta = consumedFromState(u.func, agg) + b.direct - b.consumed;
      fold = folds(carried, delta + (a.direct?.units ?? 0n));
      consume(b, grants, delta);
      if (!fold && (delta !== 0n || u.eventCount > 0)) this.entry(b, staged, "USAGE", -delta, null, null, u.lastEventId, u.eventCount, null);
    } else fold = folds(carried, a.direct?.units ?? 0n);
    if (a.direct) {
      b.direct += a.direct.units;
      consume(b, grants, a.direct.units);
      if (!fold) this.entry(b, staged, "USAGE", -a.direct.units, null, null, null, 0, a.direct.description ?? null);
    }
    if (fold) {
      // The pool's draws carry this usage: each entry gets the rated meter's units, balance and entry number.
      let after = balanceBeforeUse;
      for (const d of fold) {
        after -= d.ratedUnits!;
        if (now > b.at) b.at = now;
        b.sequence++;
        d.row![LEDGER_RATED_UNITS] = d.ratedUnits;
        d.row![LEDGER_RATED_UNITS + 1] = after;
        d.row![LEDGER_RATED_UNITS + 2] = b.sequence;
      }
    }
    for (const d of a.draws ?? NO_DRAWS) {
      b.direct += d.units;
      consume(b, grants, d.units);
      this.entry(b, staged, "USAGE", -d.units, d, null, d.eventId, d.eventCount, d.description);
    }
    const used = b.consumed - consumedBeforeUse;
    const balance = b.credited - b.consumed;
    const hold = a.hold ?? 0n;
    if (a.creditsOnly && (used > (a.covered ?? 0n) || hold > 0n) && availableUnits(balance, held) - hold < 0n) {
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
    if (outOfRange(b.consumed) || outOfRange(b.credited) || outOfRange(balance) || outOfRange(b.agg.aggSum) || outOfRange(b.direct)) throw overflow(a, { aggSum: startAggSum, consumed: startConsumed, credited: startCredited });
    // The live holds are summed by the database (SQLite's SUM fails past the range): their total stays in it too.
    if (hold > 0n && outOfRange(held + hold)) throw overflow(a, { aggSum: startAggSum, consumed: startConsumed, credited: startCredited }, HELD_PAST_RANGE);
    if (hold > 0n && b.held !== null) b.held += hold;
    return true;
  }

  /**
   * Stage a ledger entry of `b` (its balance after is the row's, unless `balance` says otherwise), dated `at`
   * (now), and move the row's ledger cursor. `rated`: a pool's draw, whose entry its rated meter's adjustment
   * may fill in (ratedUnits, ratedBalanceAfter, ratedSequence; applyOne's `fold`).
   */
  private entry(b: Balance, staged: Staged, kind: string, units: bigint, rated: Draw | null, grantId: string | null, eventId: string | null, eventCount: number, description: string | null, at = this.now): void {
    const now = this.now;
    if (at > b.at) b.at = at;
    b.sequence++;
    const occurredAt = at === now && b.at === now ? this.nowValue : this.sql.date(b.at);
    const row = [orderedId(), b.organizationId, b.customerId, b.meterId, kind, units, b.credited - b.consumed, occurredAt, b.sequence, grantId, eventId, eventCount, description, rated?.ratedMeterId ?? null, rated?.creditsPerUnit ?? null, null, null, null, this.nowValue];
    if (rated?.ratedUnits !== undefined) rated.row = row;
    staged.ledger.push(row);
  }

  /**
   * Write everything applied: grants, distinct values, every changed row in one statement, the ledger.
   * Answers the final change of each written row, by organization, in the order the rows were first written.
   */
  async write(): Promise<Map<string, BalanceChange[]>> {
    await this.dropUnreached();
    await this.writeGrants();
    if (this.newValues.length) await this.sql.insertMany("CustomerMeterValue", ["customerMeterId", "value"], this.newValues, `ON CONFLICT DO NOTHING`, { send: true });
    const changes = new Map<string, BalanceChange[]>();
    if (!this.order.length) {
      await this.sql.flush();
      return changes;
    }
    const updates: unknown[][] = [];
    for (const k of this.order) {
      const b = this.rows.get(k)!;
      const version = b.storedVersion + 1;
      const balance = b.credited - b.consumed;
      const ledgerAt = b.sequence === 0n ? null : this.sql.date(b.at);
      updates.push([b.id, b.consumed, b.credited, balance, b.agg.aggCount, b.agg.aggSum, b.agg.aggMax, b.agg.aggMin, b.direct, version, b.sequence, ledgerAt, this.nowValue]);
      const list = changes.get(b.organizationId) ?? [];
      list.push({ customerId: b.customerId, meterId: b.meterId, version, balance });
      changes.set(b.organizationId, list);
    }
    await this.sql.updateById(
      "CustomerMeter",
      ["id", "consumedUnits", "creditedUnits", "balance", "aggCount", "aggSum", "aggMax", "aggMin", "directUnits", "version", "ledgerSequence", "ledgerAt", "updatedAt"],
      updates,
      { send: true },
    );
    await this.sql.insertMany(
      "LedgerEntry",
      LEDGER_COLUMNS,
      this.ledger,
      "",
      { send: true },
    );
    await writeOutbox(this.sql, [...this.events, ...(await this.alerts())], this.now);
    // The writes above were sent without waiting for their answers (Sql.send): on PostgreSQL the group writer's
    // COMMIT follows them on the connection; anywhere else they are awaited here.
    await this.sql.flush();
    return changes;
  }

  /**
   * The balance alerts and auto top-ups the written rows cross (src/domain/alerts.ts, src/domain/topups.ts):
   * nothing is read for an organization without rules; otherwise the levels and rules, and the holds of
   * watched rows whose holds this write did not read.
   */
  private async alerts(): Promise<OutboxEvent[]> {
    const rows = this.order.map((k) => this.rows.get(k)!);
    // An organization with neither alert rules nor auto top-ups (both cached per organization) needs nothing
    // more: no object per written row (a rated ingest call writes about 1,400 rows).
    const organizations = new Set<string>();
    for (const b of rows) organizations.add(b.organizationId);
    let ruled = false;
    for (const organizationId of organizations) {
      if ((await alertRulesOf(this.sql, organizationId)) !== null || (await anyTopUps(this.sql, organizationId))) ruled = true;
    }
    if (!ruled) return [];
    const written = rows.map((b) => ({ organizationId: b.organizationId, customerId: b.customerId, meterId: b.meterId, balance: b.credited - b.consumed, held: b.held, level: b.alertLevel }));
    const watched = await watchedBalances(this.sql, written);
    const topUps = await topUpRules(this.sql, written, this.now);
    if (!watched.length && !topUps.length) return [];
    const unread = [...watched, ...topUps].filter((w) => w.balance.held === null).map((w) => w.balance);
    const held = unread.length ? await heldUnits(this.sql, unread, this.now) : new Map<string, bigint>();
    const known = <R>(list: { balance: (typeof written)[number]; rule: R }[]) =>
      list.map(({ balance: b, rule }) => ({ rule, balance: { ...b, held: b.held ?? held.get(balanceKey(b.customerId, b.meterId)) ?? 0n } }));
    return [...(await recordCrossings(this.sql, known(watched), this.now)), ...(await recordTopUps(this.sql, known(topUps), this.now))];
  }

  /** Rows this book created that no applied adjustment reached (only refused ones asked for them) do not stay. */
  private async dropUnreached(): Promise<void> {
    const unreached = [...this.rows.values()].filter((b) => !b.reached && this.inserted.has(b.id)).map((b) => b.id);
    if (unreached.length) await this.sql.deleteIds("CustomerMeter", unreached);
  }

  /** New grants with what is left of them, the burn-down of the others, and which took effect or expired. */
  private async writeGrants(): Promise<void> {
    const created: unknown[][] = [];
    const changed: TimedGrant[] = [];
    const current = [...[...this.rows.values()].flatMap((b) => b.grants), ...this.expired.values()];
    for (const g of current) {
      const made = this.newGrants.get(g.id);
      if (made) {
        const b = made.balance;
        created.push([g.id, b.organizationId, b.customerId, b.meterId, g.units, g.remainingUnits, g.priority, this.nowValue, this.nowValue, false, "NEGATIVE_USAGE", made.description, this.sql.date(g.createdAt)]);
      } else if (this.storedRemaining.get(g.id) !== g.remainingUnits) changed.push(g);
    }
    if (created.length) {
      await this.sql.insertMany(
        "CreditGrant",
        ["id", "organizationId", "customerId", "meterId", "units", "remainingUnits", "priority", "effectiveAt", "creditedAt", "rollover", "source", "description", "createdAt"],
        created,
        "",
        { send: true },
      );
    }
    const sql = this.sql;
    for (let i = 0; i < changed.length; i += PAIRS_PER_STATEMENT) {
      // Padded on SQLite (one statement text per power of two): a repeated grant sets the same value again.
      const chunk = sql.padded(changed.slice(i, i + PAIRS_PER_STATEMENT));
      const cases = chunk.map((_, j) => `WHEN ${sql.param(j * 2 + 1)} THEN CAST(${sql.param(j * 2 + 2)} AS BIGINT)`).join(" ");
      sql.send(
        `UPDATE "CreditGrant" SET "remainingUnits" = CASE "id" ${cases} END WHERE ${sql.inList("id", chunk.length, chunk.length * 2 + 1)}`,
        [...chunk.flatMap((g) => [g.id, g.remainingUnits]), ...chunk.map((g) => g.id)],
      );
    }
    // The recorded instant is when it happened, as the ledger entry says.
    const stamp = (ids: string[], set: string) => {
      for (let i = 0; i < ids.length; i += PAIRS_PER_STATEMENT) {
        const chunk = sql.padded(ids.slice(i, i + PAIRS_PER_STATEMENT));
        sql.send(`UPDATE "CreditGrant" SET ${set} WHERE ${sql.inList("id", chunk.length, 1)}`, chunk);
      }
    };
    stamp([...this.activated], `"creditedAt" = "effectiveAt"`);
    stamp([...this.expired.keys()], `"expiredAt" = "expiresAt"`);
  }
}

/**
 * The rows a statement over (customer, meter) pairs returns, one statement per chunk of the pairs: `text` gets
 * the pairs' condition and the number of the first parameter after it; `before` are bound ahead of the pairs'
 * parameters, `after` behind them.
 */
async function pairRows<T>(
  sql: Sql,
  pairs: { customerId: string; meterId: string }[],
  text: (clause: string, next: number) => string,
  before: unknown[] = [],
  after: unknown[] = [],
): Promise<T[]> {
  const chunks = sql.inChunks(pairs, PAIRS_PER_STATEMENT);
  const out: T[] = [];
  for (const chunk of chunks) {
    const inPairs = sql.pairsIn("customerId", "meterId", chunk, before.length + 1);
    const rows = await sql.query<T>(text(inPairs.clause, before.length + inPairs.values.length + 1), [...before, ...inPairs.values, ...after]);
    if (chunks.length === 1) return rows;
    for (const r of rows) out.push(r);
  }
  return out;
}

const DONE = Promise.resolve();

const byCustomerThenMeter = (a: { customerId: string; meterId: string }, b: { customerId: string; meterId: string }) =>
  a.customerId < b.customerId ? -1 : a.customerId > b.customerId ? 1 : a.meterId < b.meterId ? -1 : a.meterId > b.meterId ? 1 : 0;

const NO_CREDITS: CreditDelta[] = [];
const NO_DRAWS: Draw[] = [];
const NO_STEPS: readonly SettleStep[] = [];

/** A grant of `b` created or expired, for the outbox; `b`'s balance as it stands. */
function grantEvent(staged: Staged, b: Balance, type: "credit_grant.created" | "credit_grant.expired", grantId: string, units: bigint, at: Date): void {
  staged.events.push({ organizationId: b.organizationId, type, data: { grantId, customerId: b.customerId, meterId: b.meterId, units: formatUnits(units), balance: formatUnits(b.credited - b.consumed), at: at.toISOString() } });
}

/**
 * `delta` micro-units of usage on `b` (negative: given back), burning its usable `grants` in order; units given
 * back first reduce overage, then refill grants.
 */
function consume(b: Balance, grants: TimedGrant[], delta: bigint): void {
  if (delta > 0n) burn(grants, delta);
  else if (delta < 0n) {
    const balance = b.credited - b.consumed;
    const overage = balance < 0n ? -balance : 0n;
    const refill = -delta - (overage < -delta ? overage : -delta);
    if (refill > 0n) restore(grants, refill);
  }
  b.consumed += delta;
}
const NO_REMOVALS: Removal[] = [];

/** The grants usage may burn or refill at `now`: the list itself when all of them are (usually), no copy. */
function usableGrants(grants: TimedGrant[], now: Date): TimedGrant[] {
  for (let i = 0; i < grants.length; i++) if (!grantUsable(grants[i], now)) return grants.filter((g) => grantUsable(g, now));
  return grants;
}
/** The `held` column of watchColumns: a sum, or on SQLite "<millions> <rest>" (null: no live hold). */
function heldUnitsOf(v: bigint | number | string | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v !== "string") return BigInt(v);
  const space = v.indexOf(" ");
  return space < 0 ? BigInt(v) : BigInt(v.slice(0, space)) * 1_000_000n + BigInt(v.slice(space + 1));
}

const outOfRange = (v: bigint) => v > MAX_STORED_UNITS || v < -MAX_STORED_UNITS;

const PAST_RANGE = "would take the balance past the largest value stored (about 9.2 trillion units): split the usage across meters or customers";
const HELD_PAST_RANGE = "would take the units held on this balance past the largest value stored (about 9.2 trillion units): commit or release holds first";

function overflow(a: BalanceAdjustment, stored: { aggSum: bigint; consumed: bigint; credited: bigint }, message = PAST_RANGE): UnitsOverflowError {
  return new UnitsOverflowError(
    message,
    a.field ?? null,
    a.customerId,
    a.meterId,
    stored,
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

/**
 * The grants table for a read of some (customer, meter) pairs' grants, searched by their index. SQLite plans
 * without statistics, and beside two or more pairs it preferred the index on `expiredAt` (the grants' `IS NULL`
 * looks to it like a narrow equality): every open grant of every customer read on every write. Named, the index
 * is what it must use (test/plans.test.ts); PostgreSQL plans by its statistics.
 */
function grantsByPair(sql: Sql): string {
  return sql.provider === "postgresql" ? `"CreditGrant"` : `"CreditGrant" INDEXED BY "CreditGrant_customerId_meterId_expiresAt_idx"`;
}

/** Grants of (customer, meter) pairs matching `condition` (given the number of its first parameter). */
async function grantsOfPairs(sql: Sql, pairs: { customerId: string; meterId: string }[], condition: (next: number) => string, values: unknown[]): Promise<Map<string, TimedGrant[]>> {
  const out = new Map<string, TimedGrant[]>();
  const rows = await pairRows<GrantRow>(sql, pairs, (clause, next) => `SELECT ${GRANT_COLUMNS} FROM ${grantsByPair(sql)} WHERE ${clause} AND ${condition(next)}`, [], values);
  for (const r of rows) {
    const k = balanceKey(r.customerId, r.meterId);
    out.set(k, [...(out.get(k) ?? []), timedGrantOf(r)]);
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
  for (const chunk of sql.inChunks(pairs, PAIRS_PER_STATEMENT)) {
    const grantPairs = sql.pairsIn("customerId", "meterId", chunk);
    const n = grantPairs.values.length + 1;
    const holdPairs = sql.pairsIn("customerId", "meterId", chunk, n + 2);
    const rows = await sql.query<GrantRow & { source: string; held: bigint | number | string | null }>(
      `SELECT 'G' AS "source", ${GRANT_COLUMNS}, NULL AS "held" FROM ${grantsByPair(sql)} WHERE ${grantPairs.clause} AND ${grantDue.sql(sql, n)}
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
  const rows = await pairRows<{ customerId: string; meterId: string; held: bigint | number | string }>(
    sql,
    pairs,
    (clause, next) => `SELECT "customerId", "meterId", SUM("units") AS "held" FROM "Reservation" WHERE ${clause} AND ${holdLive.sql(sql, next)} GROUP BY "customerId", "meterId"`,
    [],
    [sql.date(now)],
  );
  for (const r of rows) out.set(balanceKey(r.customerId, r.meterId), BigInt(r.held));
  return out;
}
