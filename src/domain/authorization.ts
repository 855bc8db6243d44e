// Usage authorization on the merchant's request path: check and deduct in one transaction, so concurrent
// requests can never together use more than a credits-only balance holds. Reservations hold units for a
// while (a long job whose final size is unknown) and are then committed, released, or expire by themselves.
//
// authorizeUsage, reserveUsage, commitReservation and releaseReservation are jobs of the node's writer
// (src/domain/writer.ts): the calls that arrive together share one transaction in which the balance rows are
// read and locked once and each call is decided in turn against what the ones before it left. A refusal is
// that call's answer and writes nothing; its neighbours go through.
import type { Db } from "../db/client.ts";
import { sqlOf } from "../db/client.ts";
import { asDate, type Sql } from "../db/sql.ts";
import type { Reservation } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances, adjustment, balanceKey, type BalanceAdjustment, type BalanceChange } from "./balances.ts";
import { drawOf, rateAt, ratedMeters } from "./credit-systems.ts";
import { availableUnits, grantDue, holdLive, holdStatus, overageAllowed } from "./rules.ts";
import { customerLookup, noSuchCustomerMessage, resolveCustomerRef, type CustomerRef } from "./customers.ts";
import { ConflictError, InsufficientCreditsError, InvalidInputError, MAX_STORED_UNITS, NotFoundError } from "./errors.ts";
import { checkIdempotencyKey } from "./idempotency.ts";
import { orderedId } from "./ids.ts";
import { lookupBatches } from "./lookup-batch.ts";
import { overagePairs } from "./overage.ts";
import { requireMeter } from "./meters.ts";
import type { Notify } from "./notify.ts";
import { inTransaction } from "./transactions.ts";
import { submit, type JobKind, type WriteJob } from "./writer.ts";

/**
 * The description of an authorizeUsage's USAGE entry, followed by the call's idempotencyKey when it had one
 * (an admin's ledger names the call; a customer session reads the description without the key: `publicDescription`).
 */
export const AUTHORIZED = "authorizeUsage";

/** A ledger entry's description as a customer session reads it: the merchant's idempotency key left out. */
export function publicDescription(kind: string, description: string | null): string | null {
  return kind === "USAGE" && description?.startsWith(`${AUTHORIZED} `) ? AUTHORIZED : description;
}

export interface UsageRequest extends CustomerRef {
  meterId: string;
  /** micro-units, > 0 */
  units: bigint;
  idempotencyKey?: string | null;
}

export interface ReserveRequest extends UsageRequest {
  /** how long the hold lasts; default DEFAULT_HOLD_SECONDS */
  ttlSeconds?: number | null;
}

export type AuthorizationCode = "OK" | "INSUFFICIENT_CREDITS";

export interface Authorization {
  allowed: boolean;
  /** the balance after the deduction (allowed) or as it stands (refused), micro-units */
  balance: bigint;
  code: AuthorizationCode;
  /** the same idempotencyKey was already authorized: nothing was deducted this time */
  replayed: boolean;
}

export interface ReserveResult extends Omit<Authorization, "replayed"> {
  reservation: Reservation | null;
}

export const DEFAULT_HOLD_SECONDS = 300;
export const MAX_HOLD_SECONDS = 7 * 86_400;

interface Target {
  customerId: string;
  /** what to answer if the customer is deleted before the write: what looking it up would answer then */
  ifCustomerGone: { message: string; field: string };
  meterId: string;
  creditsOnly: boolean;
  /** the credit system a rated meter draws from (its overage policy decides creditsOnly), else null */
  poolMeterId: string | null;
  /** As of the lookup: the stored balance, what live holds take from it, and whether time has changed it since. */
  snapshot: { balance: bigint; held: bigint; due: boolean };
}

const truthy = (v: unknown) => v === true || Number(v) === 1; // booleans on PostgreSQL, 0/1 on SQLite

/** What the target statement answers for one request. */
interface TargetRow {
  customerId: string;
  meterId: string;
  archived: unknown;
  pool: string | null;
  overage: unknown;
  balance: unknown;
  held: unknown;
  due: unknown;
}

/**
 * The target statement's SELECT for one request: the live customer whose `column` is `customer` and the meter
 * `meter` of `organization` (SQL expressions), with the balance row, what live holds take from it (at
 * parameter 1) and whether a grant of it is due (parameters 2 and 3).
 */
function targetSelect(sql: Sql, column: "id" | "externalId", organization: string, customer: string, meter: string): string {
  return `SELECT c."id" AS "customerId", m."id" AS "meterId", m."archivedAt" AS "archived", m."creditPoolId" AS "pool",
            ${overageAllowed.sql(`c."id"`, `COALESCE(m."creditPoolId", m."id")`)} AS "overage",
            cm."balance" AS "balance",
            (SELECT SUM(r."units") FROM "Reservation" r
              WHERE r."customerId" = c."id" AND r."meterId" = m."id" AND ${holdLive.sql(sql, 1, "r")}) AS "held",
            EXISTS (SELECT 1 FROM "CreditGrant" g
                     WHERE g."customerId" = c."id" AND g."meterId" = m."id" AND ${grantDue.sql(sql, 2, "g")}) AS "due"
       FROM "Customer" c CROSS JOIN "Meter" m
       LEFT JOIN "CustomerMeter" cm ON cm."customerId" = c."id" AND cm."meterId" = m."id"
      WHERE c."organizationId" = ${organization} AND c."${column}" = ${customer} AND c."deletedAt" IS NULL
        AND m."organizationId" = ${organization} AND m."id" = ${meter}`;
}

/**
 * The target row of one request. On PostgreSQL the lookups of requests asked together are batched
 * (src/domain/lookup-batch.ts): one statement per organization and lookup column, one snapshot, holds and due
 * grants judged at the latest of the requests' instants. A later instant only finds fewer live holds and more
 * due grants, so an early refusal (`refusedBySnapshot`) stays one that a serial check at the request's own
 * instant would make. SQLite reads on its own connection at once.
 */
function lookUpTarget(db: Db, organizationId: string, lookup: { column: "id" | "externalId"; value: string }, meterId: string, now: Date): Promise<TargetRow | undefined> {
  const sql = sqlOf(db);
  if (sql.provider === "postgresql") return batchedTarget(db, { organizationId, column: lookup.column, value: lookup.value, meterId, now });
  const at = sql.date(now);
  // SQLite numbers its parameters by position: the values in the order they appear
  return sql.first<TargetRow>(targetSelect(sql, lookup.column, sql.param(4), sql.param(5), sql.param(6)), [at, at, at, organizationId, lookup.value, organizationId, meterId]);
}

const batchedTarget = lookupBatches(targetSelect, (_db, row) => row as unknown as TargetRow);

/**
 * The balance a request addresses, its overage policy and a snapshot of what is available, in one statement
 * on the hot path (`lookUpTarget`). When it finds nothing, the ordinary lookups run to say which input is at fault.
 */
async function target(db: Db, organizationId: string, input: UsageRequest, now: Date): Promise<Target> {
  if (input.units <= 0n) throw new InvalidInputError("must be greater than 0", "input.units");
  checkIdempotencyKey(input.idempotencyKey, "input.idempotencyKey");
  const lookup = customerLookup(input, "input");
  const found = await lookUpTarget(db, organizationId, lookup, input.meterId, now);
  if (!found) {
    await resolveCustomerRef(db, organizationId, input, "input");
    await requireMeter(db, organizationId, input.meterId, "input.meterId");
    throw new Error("customer and meter exist but were not found together");
  }
  if (found.archived !== null) throw new ConflictError("The meter is archived", "input.meterId");
  const big = (v: unknown) => (v === null || v === undefined ? 0n : BigInt(v as string | number | bigint));
  return {
    customerId: found.customerId,
    ifCustomerGone: { message: noSuchCustomerMessage(lookup), field: lookup.field },
    meterId: found.meterId,
    creditsOnly: !truthy(found.overage),
    poolMeterId: found.pool,
    // a rated meter's own balance says nothing of its pool's: only the locked check decides
    snapshot: { balance: big(found.balance), held: big(found.held), due: found.pool !== null || truthy(found.due) },
  };
}

/**
 * A credits-only request the snapshot already shows cannot fit is refused without a write transaction: the
 * snapshot is one statement's consistent view, so the refusal is exactly what a serial check at that instant
 * answers, and a refusal changes nothing. Anything else (it fits, or time changed the balance since its last
 * write) goes through the locked check.
 */
function refusedBySnapshot(t: Target, units: bigint): { allowed: false; balance: bigint; code: "INSUFFICIENT_CREDITS" } | null {
  const { balance, held, due } = t.snapshot;
  if (!t.creditsOnly || due || availableUnits(balance, held) >= units) return null;
  return { allowed: false, balance, code: "INSUFFICIENT_CREDITS" };
}

const refusal = (err: InsufficientCreditsError) => ({ allowed: false as const, balance: err.balance, code: "INSUFFICIENT_CREDITS" as const });

async function currentBalance(db: Db, customerId: string, meterId: string): Promise<bigint> {
  const row = await db.customerMeter.findUnique({ where: { customerId_meterId: { customerId, meterId } }, select: { balance: true } });
  return row?.balance ?? 0n;
}

/**
 * The meter and units a reservation was asked for: a hold on a rated meter is stored as credits held on its
 * pool, with the rated meter and units beside them.
 */
export function asked(r: Pick<Reservation, "meterId" | "units" | "ratedMeterId" | "ratedUnits">): { meterId: string; units: bigint } {
  return r.ratedMeterId !== null && r.ratedUnits !== null ? { meterId: r.ratedMeterId, units: r.ratedUnits } : { meterId: r.meterId, units: r.units };
}

/** The balance a request's answer reports: a rated meter's pool, where the credits are. */
const answeredMeter = (t: Target) => t.poolMeterId ?? t.meterId;

/**
 * The record made under an idempotency key, if it is for the same request. Authorizations and reservations
 * share the key space; an authorization's record has no expiresAt.
 */
async function existingForKey(db: Db, organizationId: string, key: string | null | undefined, t: Target, units: bigint, kind: "authorization" | "reservation"): Promise<Reservation | null> {
  if (!key) return null;
  const r = await db.reservation.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey: key } } });
  if (r && (r.customerId !== t.customerId || asked(r).meterId !== t.meterId || asked(r).units !== units || (r.expiresAt === null) !== (kind === "authorization"))) {
    throw new ConflictError("This idempotencyKey was used for a different request", "input.idempotencyKey");
  }
  return r;
}

/**
 * Check and deduct `units` now. Credits-only: allowed only if what is available (balance minus live holds)
 * covers it, otherwise refused with nothing changed. With billable overage: always allowed. An allowed call
 * with an idempotencyKey is recorded, so a retry is answered without deducting again.
 */
export async function authorizeUsage(db: Db, notify: Notify, organizationId: string, input: UsageRequest, now = new Date()): Promise<Authorization> {
  const t = await target(db, organizationId, input, now);
  const replay = async () => ({ allowed: true, balance: await currentBalance(db, t.customerId, answeredMeter(t)), code: "OK" as const, replayed: true });
  if (await existingForKey(db, organizationId, input.idempotencyKey, t, input.units, "authorization")) return replay();
  const early = refusedBySnapshot(t, input.units);
  if (early) return { ...early, replayed: false };
  const job: AuthorizeJob = { type: "authorize", organizationId, notify, now, events: 0, target: t, units: input.units, key: input.idempotencyKey ?? null };
  const answer = await submit<UsageJob, Authorization | "replay">(db, usageKind, job);
  if (answer !== "replay") return answer;
  // A concurrent call recorded the key first: the same request is answered as a replay, another one is a conflict.
  await existingForKey(db, organizationId, input.idempotencyKey, t, input.units, "authorization");
  return replay();
}

/**
 * An adjustment of `t`'s balance. `unrated`: the meter was found feeding no pool when it was looked up (the
 * target's meter without a pool, a pool, a hold's balance): BalanceBook checks that with the rows.
 */
const use = (t: Pick<Target, "customerId" | "meterId" | "creditsOnly" | "ifCustomerGone">, unrated: boolean, change: Partial<BalanceAdjustment>): BalanceAdjustment =>
  adjustment({ customerId: t.customerId, meterId: t.meterId, creditsOnly: t.creditsOnly, ifCustomerGone: t.ifCustomerGone, unrated, ...change });

/**
 * Hold `units` for `ttlSeconds`: the balance does not move, but what is available for other authorizations
 * shrinks until the hold is committed, released or expires. Credits-only: refused if it does not fit.
 *
 * On a rated meter the hold is of credits on its pool, priced at the rate in force now
 * (units × creditsPerUnit, rounded as every draw is); its commit draws at that same rate, so a rate change
 * while the hold lives cannot make the held units cost more than was held.
 */
export async function reserveUsage(db: Db, notify: Notify, organizationId: string, input: ReserveRequest, now = new Date()): Promise<ReserveResult> {
  const ttl = input.ttlSeconds ?? DEFAULT_HOLD_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_HOLD_SECONDS) throw new InvalidInputError(`must be an integer from 1 to ${MAX_HOLD_SECONDS}`, "input.ttlSeconds");
  const t = await target(db, organizationId, input, now);
  const answer = async (r: Reservation) => ({ allowed: true, balance: await currentBalance(db, t.customerId, answeredMeter(t)), code: "OK" as const, reservation: r });
  const existing = await existingForKey(db, organizationId, input.idempotencyKey, t, input.units, "reservation");
  if (existing) return answer(existing);
  const early = refusedBySnapshot(t, input.units);
  if (early) return { ...early, reservation: null };
  let rated: RatedHold | null = null;
  if (t.poolMeterId !== null) {
    const rates = (await ratedMeters(sqlOf(db), [t.meterId])).get(t.meterId);
    // The meter stopped feeding its pool since the lookup (it cannot today): the ordinary path would be wrong.
    if (!rates || rates.poolMeterId !== t.poolMeterId) throw new ConflictError("The meter's credit system changed; try again", "input.meterId");
    const perUnit = rateAt(rates.rates, now).perUnit;
    rated = { poolMeterId: t.poolMeterId, perUnit, credits: drawOf(input.units, perUnit) };
    // the hold stores its credits in a 64-bit column: past it no pool could hold them anyway
    if (rated.credits > MAX_STORED_UNITS) throw new InvalidInputError("at the meter's rate these units cost more credits than any balance can hold", "input.units");
  }
  const job: ReserveJob = { type: "reserve", organizationId, notify, now, events: 0, target: t, units: input.units, key: input.idempotencyKey ?? null, ttl, rated };
  const result = await submit<UsageJob, ReserveResult | "existing">(db, usageKind, job);
  if (result !== "existing") return result;
  // A concurrent call with the same key holds first: answer with its hold (or a conflict if it differs).
  return answer((await existingForKey(db, organizationId, input.idempotencyKey, t, input.units, "reservation"))!);
}

/** A hold of a customer deleted meanwhile is gone with it: what finishing it answers, before and in the writer. */
const RESERVATION_GONE = { message: "No such reservation", field: "id" };

/**
 * The organization's reservation `id`, by one statement on the hot path (a prepared one on PostgreSQL: Prisma's
 * query took about a fifth of a commit's CPU under 64 concurrent clients). A deleted customer's holds are gone
 * with it: committing one would still charge its balance.
 */
async function requireReservation(db: Db, organizationId: string, id: string): Promise<Reservation> {
  const sql = sqlOf(db);
  const row = await sql.first<Record<string, unknown>>(
    `SELECT ${RESERVATION_SELECT} FROM "Reservation" r JOIN "Customer" c ON c."id" = r."customerId"
      WHERE r."id" = ${sql.param(1)} AND r."organizationId" = ${sql.param(2)} AND c."deletedAt" IS NULL`,
    [id, organizationId],
  );
  if (!row) throw new NotFoundError(RESERVATION_GONE.message, RESERVATION_GONE.field);
  return reservationOf(row);
}

/** A Reservation row as either engine's raw statements return it (SQLite: dates as text), in Prisma's shape. */
function reservationOf(r: Record<string, unknown>): Reservation {
  const big = (v: unknown) => (v === null || v === undefined ? null : BigInt(v as bigint | number | string));
  const date = (v: unknown) => (v === null || v === undefined ? null : asDate(v as Date | string));
  const text = (v: unknown) => (v === null || v === undefined ? null : String(v));
  return {
    id: String(r.id),
    organizationId: String(r.organizationId),
    customerId: String(r.customerId),
    meterId: String(r.meterId),
    units: big(r.units)!,
    status: String(r.status),
    committedUnits: big(r.committedUnits),
    idempotencyKey: text(r.idempotencyKey),
    expiresAt: date(r.expiresAt),
    createdAt: date(r.createdAt)!,
    updatedAt: date(r.updatedAt)!,
    ratedMeterId: text(r.ratedMeterId),
    ratedUnits: big(r.ratedUnits),
    creditsPerUnit: big(r.creditsPerUnit),
  };
}

/** Why a reservation that is no longer live cannot be committed or released as asked. */
function notLive(r: Reservation, now: Date): ConflictError {
  return new ConflictError(`The reservation is ${holdStatus(r, now).toLowerCase()}`, "id");
}

/**
 * Use `units` of a hold (0 to anything): they leave the balance and the hold ends. Beyond what was held, the
 * extra must be available (credits-only) or the commit is refused and the hold stays. Committing again with
 * the same units answers the committed reservation.
 */
export async function commitReservation(db: Db, notify: Notify, organizationId: string, id: string, units: bigint, now = new Date()): Promise<Reservation> {
  if (units < 0n) throw new InvalidInputError("must be 0 or more", "units");
  const r = await requireReservation(db, organizationId, id);
  const done = async () => {
    const fresh = await requireReservation(db, organizationId, id);
    if (fresh.status === "COMMITTED" && fresh.committedUnits === units) return fresh;
    throw notLive(fresh, now);
  };
  if (holdStatus(r, now) !== "HELD") return done();
  // Up to the held units the commit cannot be refused: the hold guaranteed them, even if other usage has
  // drained the balance since. Only units beyond the hold must still be available, so only then does the
  // overage policy matter.
  // (A hold on a rated meter held credits on the pool: what the commit draws there is what it is compared with.)
  const used = r.creditsPerUnit === null ? units : drawOf(units, r.creditsPerUnit);
  const creditsOnly = used > r.units && !(await overagePairs(db, [r])).has(balanceKey(r.customerId, r.meterId));
  const job: FinishJob = { type: "finish", organizationId, notify, now, events: 0, reservation: r, committed: units, creditsOnly };
  return (await submit<UsageJob, Reservation | null>(db, usageKind, job)) ?? done();
}

/** Give a hold's units back now. Releasing twice, or an expired hold, answers the reservation as it is. */
export async function releaseReservation(db: Db, notify: Notify, organizationId: string, id: string, now = new Date()): Promise<Reservation> {
  const r = await requireReservation(db, organizationId, id);
  const status = holdStatus(r, now);
  if (status === "COMMITTED") throw notLive(r, now);
  if (status === "HELD") {
    const job: FinishJob = { type: "finish", organizationId, notify, now, events: 0, reservation: r, committed: null, creditsOnly: false };
    const released = await submit<UsageJob, Reservation | null>(db, usageKind, job);
    if (released) return released;
  }
  const fresh = await requireReservation(db, organizationId, id);
  if (fresh.status === "COMMITTED") throw notLive(fresh, now);
  return fresh;
}

// ---- the writer's jobs ------------------------------------------------------------------------------------

interface AuthorizeJob extends WriteJob {
  type: "authorize";
  target: Target;
  units: bigint;
  key: string | null;
}

/** A hold on a rated meter: credits held on its pool at the rate in force when it was taken. */
interface RatedHold {
  poolMeterId: string;
  /** micro-credits per unit */
  perUnit: bigint;
  /** micro-credits held */
  credits: bigint;
}

interface ReserveJob extends WriteJob {
  type: "reserve";
  target: Target;
  units: bigint;
  key: string | null;
  ttl: number;
  rated: RatedHold | null;
}

/** A live hold (as read before queuing) to commit (`committed` units) or release (`committed` null). */
interface FinishJob extends WriteJob {
  type: "finish";
  reservation: Reservation;
  committed: bigint | null;
  /** credits-only, and committing beyond the hold: the extra must be available */
  creditsOnly: boolean;
}

type UsageJob = AuthorizeJob | ReserveJob | FinishJob;

/**
 * What finishing a live hold does to the balances: its held units stop counting, and a commit uses
 * `committed` units, never refused up to what was held. A hold on a rated meter held credits on the pool: the
 * commit draws committed × the hold's rate there (the ledger names the rated meter and rate) and counts the
 * committed units on the rated meter's own balance.
 */
function finishPlan(job: FinishJob): BalanceAdjustment[] {
  const r = job.reservation;
  const held = { customerId: r.customerId, meterId: r.meterId, creditsOnly: job.creditsOnly, ifCustomerGone: RESERVATION_GONE };
  const description = `reservation ${r.id}`;
  if (r.ratedMeterId === null || r.creditsPerUnit === null) {
    const change = job.committed === null ? {} : { direct: { units: job.committed, description }, covered: r.units, field: "units" };
    return [use(held, true, { ...change, released: r.units })];
  }
  if (job.committed === null) return [use(held, true, { released: r.units })];
  const draw = { units: drawOf(job.committed, r.creditsPerUnit), ratedMeterId: r.ratedMeterId, creditsPerUnit: r.creditsPerUnit, eventId: null, eventCount: 0, description };
  return [
    use(held, true, { draws: [draw], covered: r.units, released: r.units, field: "units" }),
    use({ customerId: r.customerId, meterId: r.ratedMeterId, creditsOnly: false, ifCustomerGone: RESERVATION_GONE }, false, { direct: { units: job.committed, description }, drawn: true }),
  ];
}

const RESERVATION_COLUMNS = ["id", "organizationId", "customerId", "meterId", "units", "status", "committedUnits", "idempotencyKey", "expiresAt", "createdAt", "updatedAt", "ratedMeterId", "ratedUnits", "creditsPerUnit"];
/** A Reservation row's columns as requireReservation selects them (built once). */
const RESERVATION_SELECT = RESERVATION_COLUMNS.map((c) => `r."${c}"`).join(", ");

/**
 * The jobs of this module in a group. Before the balances are read: the rows that claim idempotency keys
 * (an authorization's record, every new hold) are inserted in one statement, so a concurrent retry with the
 * same key stops at the key (its insert waits for ours to commit, then finds the key taken) rather than
 * deducting twice; and the holds being finished are read as they stand now, locked. Then each job is
 * decided; a refused one's rows are deleted again and finished holds are updated, each in one statement.
 *
 * Answers: an authorization or "replay" (its key was taken), a reservation result or "existing", a finished
 * reservation or null (the hold was no longer live). A refused commit throws InsufficientCreditsError.
 */
const usageKind: JobKind<UsageJob> = {
  order: 2,
  async prepare(sql, jobs, now) {
    const at = sql.date(now);
    const rowOf = new Map<UsageJob, { id: string; expiresAt: Date | null }>();
    const rows: unknown[][] = [];
    for (const job of jobs) {
      if (job.type === "finish" || (job.type === "authorize" && !job.key)) continue;
      const id = orderedId();
      const t = job.target;
      if (job.type === "authorize") {
        rows.push([id, job.organizationId, t.customerId, t.meterId, job.units, "COMMITTED", job.units, job.key, null, at, at, null, null, null]);
        rowOf.set(job, { id, expiresAt: null });
        continue;
      }
      const expiresAt = new Date(now.getTime() + job.ttl * 1000);
      const r = job.rated;
      rows.push(
        r
          ? [id, job.organizationId, t.customerId, r.poolMeterId, r.credits, "HELD", null, job.key, sql.date(expiresAt), at, at, t.meterId, job.units, r.perUnit]
          : [id, job.organizationId, t.customerId, t.meterId, job.units, "HELD", null, job.key, sql.date(expiresAt), at, at, null, null, null],
      );
      rowOf.set(job, { id, expiresAt });
    }
    // The new rows' insert and the finished holds' locking read go out together (one round trip on PostgreSQL's
    // pipelined connection): neither needs the other's answer.
    const inserting = rows.length ? sql.insertNew("Reservation", RESERVATION_COLUMNS, rows, `("organizationId", "idempotencyKey")`) : Promise.resolve(new Set<unknown>());
    inserting.catch(() => {}); // awaited below, unless the read failed first
    const finishing = [...new Set(jobs.flatMap((j) => (j.type === "finish" ? [j.reservation.id] : [])))];
    const live = new Set<string>();
    if (finishing.length) {
      const list = sql.textIn("id", finishing);
      const found = await sql.query<{ id: string; status: string; expiresAt: Date | string | null }>(
        `SELECT "id", "status", "expiresAt" FROM "Reservation" WHERE ${list.clause} ORDER BY "id"${sql.forUpdate}`,
        list.values,
      );
      for (const r of found) {
        const expiresAt = r.expiresAt === null ? null : r.expiresAt instanceof Date ? r.expiresAt : new Date(r.expiresAt);
        if (holdLive.test({ status: r.status, expiresAt }, now)) live.add(r.id);
      }
    }
    const inserted = await inserting;

    const plans = new Map<UsageJob, BalanceAdjustment[]>();
    for (const job of jobs) {
      if (job.type === "finish") {
        const r = job.reservation;
        if (!live.has(r.id)) continue;
        plans.set(job, finishPlan(job));
        continue;
      }
      const row = rowOf.get(job);
      if (row && !inserted.has(row.id)) continue; // the key was taken
      if (job.type === "authorize") {
        const description = job.key ? `${AUTHORIZED} ${job.key}` : AUTHORIZED;
        const pool = job.target.poolMeterId ?? undefined; // read with the rates, which confirm it (BalanceBook.open)
        plans.set(job, [use(job.target, pool === undefined, { direct: { units: job.units, description }, field: "input.units", pool })]);
      } else if (job.rated) {
        // The hold is of credits on the pool, where its row counts; the rated meter's own balance does not move.
        const pool = { customerId: job.target.customerId, meterId: job.rated.poolMeterId, creditsOnly: job.target.creditsOnly, ifCustomerGone: job.target.ifCustomerGone };
        plans.set(job, [use(pool, true, { hold: job.rated.credits, holdStored: true, field: "input.units" })]);
      } else {
        plans.set(job, [use(job.target, true, { hold: job.units, holdStored: true, field: "input.units" })]);
      }
    }

    const refused: UsageJob[] = [];
    const finished = new Map<string, unknown[]>();
    return {
      adjustments: (job) => plans.get(job) ?? [],
      decide(book, job) {
        const plan = plans.get(job);
        if (job.type === "finish") {
          const r = job.reservation;
          if (!plan || finished.has(r.id)) return null;
          book.apply(plan); // a refused commit throws: the hold stays
          const committedUnits = job.committed ?? r.committedUnits;
          const status = job.committed === null ? "RELEASED" : "COMMITTED";
          finished.set(r.id, [r.id, status, committedUnits, at]);
          return { ...r, status, committedUnits, updatedAt: now } satisfies Reservation;
        }
        if (!plan) return job.type === "authorize" ? "replay" : "existing";
        let change: BalanceChange;
        try {
          [change] = book.apply(plan);
        } catch (err) {
          refused.push(job);
          if (!(err instanceof InsufficientCreditsError)) throw err;
          return job.type === "authorize" ? { ...refusal(err), replayed: false } : { ...refusal(err), reservation: null };
        }
        if (job.type === "authorize") return { allowed: true, balance: change.balance, code: "OK", replayed: false } satisfies Authorization;
        const t = job.target;
        const rated = job.rated;
        const reservation: Reservation = {
          id: rowOf.get(job)!.id,
          organizationId: job.organizationId,
          customerId: t.customerId,
          meterId: rated ? rated.poolMeterId : t.meterId,
          units: rated ? rated.credits : job.units,
          ratedMeterId: rated ? t.meterId : null,
          ratedUnits: rated ? job.units : null,
          creditsPerUnit: rated ? rated.perUnit : null,
          committedUnits: null,
          status: "HELD",
          idempotencyKey: job.key,
          expiresAt: rowOf.get(job)!.expiresAt,
          createdAt: now,
          updatedAt: now,
        };
        return { allowed: true, balance: change.balance, code: "OK", reservation } satisfies ReserveResult;
      },
      shadowing() {
        // A key a refused call recorded that a neighbour in the group also sent (and was told is taken).
        const keyOf = (job: UsageJob) => (job.type !== "finish" && job.key ? `${job.organizationId}\u0000${job.key}` : null);
        const claimed = new Map<string, UsageJob>();
        for (const job of refused) {
          const key = keyOf(job);
          if (key && inserted.has(rowOf.get(job)?.id)) claimed.set(key, job);
        }
        if (!claimed.size) return [];
        const out = new Set<UsageJob>();
        for (const job of jobs) {
          const key = keyOf(job);
          const owner = key ? claimed.get(key) : undefined;
          if (owner && owner !== job) out.add(owner);
        }
        return [...out];
      },
      async write(sql) {
        const undo = refused.flatMap((job) => {
          const row = rowOf.get(job);
          return row && inserted.has(row.id) ? [row.id] : [];
        });
        if (undo.length) await sql.deleteIds("Reservation", undo);
        if (finished.size) await sql.updateById("Reservation", ["id", "status", "committedUnits", "updatedAt"], [...finished.values()], { send: true });
      },
    };
  },
};

/**
 * The scheduler's pass over holds past their expiresAt: marked EXPIRED, and their balances' subscribers told
 * (what is available grew). Holds stop counting at expiresAt whether or not this has run. Returns how many.
 */
export async function expireDueReservations(db: Db, notify: Notify, now: Date, limit = 1000): Promise<number> {
  const due = await db.reservation.findMany({
    where: holdLive.lapsedWhere(now),
    select: { id: true, organizationId: true, customerId: true, meterId: true },
    take: limit,
  });
  const byOrg = new Map<string, typeof due>();
  for (const r of due) byOrg.set(r.organizationId, [...(byOrg.get(r.organizationId) ?? []), r]);
  let expired = 0;
  for (const [organizationId, list] of byOrg) {
    expired += await inTransaction(db, notify, organizationId, async (sql, tx) => {
      const { count } = await tx.reservation.updateMany({ where: { id: { in: list.map((r) => r.id) }, status: "HELD" }, data: { status: "EXPIRED" } });
      if (count === 0) return { value: 0, changes: [] as BalanceChange[] };
      const pairs = new Map(list.map((r) => [balanceKey(r.customerId, r.meterId), { customerId: r.customerId, meterId: r.meterId }]));
      return { value: count, changes: await adjustBalances(sql, organizationId, [...pairs.values()], now) };
    });
  }
  return expired;
}
