// Credit grants: credits given to a customer on one meter, each a ledger entry. Idempotent by key.
import { orderedId } from "./ids.ts";
import type { Db } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import type { CreditGrant } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances, balanceKey, type BalanceAdjustment, type Removal } from "./balances.ts";
import { resolveCustomerRef, type CustomerRef, lockLiveCustomer } from "./customers.ts";
import { ConflictError, InvalidInputError, MAX_STORED_UNITS, NotFoundError } from "./errors.ts";
import { checkNotRated, meterRatingLock, requireMeter } from "./meters.ts";
import type { Notify } from "./notify.ts";
import { checkIdempotencyKey } from "./idempotency.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { inTransaction } from "./transactions.ts";
import { grantDue, grantOpen } from "./rules.ts";

export interface GrantInput extends CustomerRef {
  meterId: string;
  /** micro-units, > 0 */
  units: bigint;
  idempotencyKey?: string | null;
  description?: string | null;
  /** lower burns first; default 10 */
  priority?: number | null;
  /** the units enter the balance at this instant; default now */
  effectiveAt?: Date | null;
  /** the unused remainder leaves the balance at this instant */
  expiresAt?: Date | null;
}

export const DEFAULT_PRIORITY = 10;
/** How far in the past an effectiveAt may be and still mean "now" (clock skew); the ledger is never backdated. */
export const EFFECTIVE_SKEW_MS = 60_000;

/**
 * Same key, same grant: a retried call returns the grant it made the first time and changes nothing, also
 * once its instants have passed (a retry is judged against the grant, not against the clock). A key given with
 * anything else (customer, meter, units, priority, expiresAt, description, or an effectiveAt after the
 * grant's) is a CONFLICT, never the first grant answered in its place. An effectiveAt at or before the grant's
 * is the same request: one that meant "now" was stored as the instant it was made.
 */
async function existingForKey(db: Db, organizationId: string, input: GrantInput, customerId: string): Promise<CreditGrant | null> {
  if (!input.idempotencyKey) return null;
  const grant = await db.creditGrant.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey: input.idempotencyKey } } });
  if (!grant) return null;
  const differs =
    grant.customerId !== customerId ||
    grant.meterId !== input.meterId ||
    grant.units !== input.units ||
    grant.priority !== (input.priority ?? DEFAULT_PRIORITY) ||
    (grant.expiresAt?.getTime() ?? null) !== (input.expiresAt?.getTime() ?? null) ||
    grant.description !== (input.description ?? null) ||
    (input.effectiveAt != null && input.effectiveAt > grant.effectiveAt);
  if (differs) throw new ConflictError("This idempotencyKey was used for a different grant", "input.idempotencyKey");
  return grant;
}

/**
 * When something given an `effectiveAt` starts: now (`now` itself), or a later instant. Never in the past: an
 * instant earlier than EFFECTIVE_SKEW_MS of clock skew allows is refused, saying `why`; one within it means now.
 * Grants (the ledger is append-only) and credit rates (usage already drawn keeps its rate) both start this way.
 */
export function startInstant(at: Date | null | undefined, now: Date, why: string, field = "input.effectiveAt"): Date {
  if (!at || at <= now) {
    if (at && at.getTime() < now.getTime() - EFFECTIVE_SKEW_MS) throw new InvalidInputError(`must not be in the past: ${why}`, field);
    return now;
  }
  return at;
}

export async function grantCredits(db: Db, notify: Notify, organizationId: string, input: GrantInput, now = new Date()): Promise<CreditGrant> {
  if (input.units <= 0n) throw new InvalidInputError("must be greater than 0", "input.units");
  checkIdempotencyKey(input.idempotencyKey, "input.idempotencyKey");
  const priority = input.priority ?? DEFAULT_PRIORITY;
  if (!Number.isInteger(priority) || priority < 0 || priority > 1000) throw new InvalidInputError("must be an integer from 0 to 1000", "input.priority");
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  const meter = await requireMeter(db, organizationId, input.meterId, "input.meterId");
  // A retry first: its instants are judged as they were when the grant was made.
  const existing = await existingForKey(db, organizationId, input, customer.id);
  if (existing) return existing;
  checkNotRated(meter, "input.meterId");
  // now, or a later instant (then the units arrive when it comes)
  const effectiveAt = startInstant(input.effectiveAt, now, "the ledger is append-only, grants cannot be backdated");
  if (input.expiresAt && input.expiresAt <= effectiveAt) {
    throw new InvalidInputError(effectiveAt === now ? "must be in the future" : "must be after effectiveAt", "input.expiresAt");
  }
  const scheduled = effectiveAt > now;
  try {
    return await inTransaction(db, notify, organizationId, async (sql, tx) => {
      await lockLiveCustomer(sql, customer.id, input.customerId ? "input.customerId" : "input.externalCustomerId");
      // Again under the meter's rating lock: a meter joining a credit system meanwhile takes no credits.
      await sql.lockKeys([meterRatingLock(input.meterId)]);
      checkNotRated(await tx.meter.findUniqueOrThrow({ where: { id: input.meterId }, select: { creditPoolId: true } }), "input.meterId");
      const grant = await tx.creditGrant.create({
        data: {
          id: orderedId(),
          organizationId,
          customerId: customer.id,
          meterId: input.meterId,
          units: input.units,
          remainingUnits: input.units,
          effectiveAt,
          creditedAt: scheduled ? null : now,
          expiresAt: input.expiresAt ?? null,
          priority,
          source: "ADMIN",
          idempotencyKey: input.idempotencyKey ?? null,
          description: input.description ?? null,
        },
      });
      // A scheduled grant reaches the balance at effectiveAt (the scheduler, or the first write after it);
      // until then its balance row exists, unchanged.
      const credits = scheduled ? [] : [{ units: input.units, grantId: grant.id, description: input.description }];
      const changes = await adjustBalances(sql, organizationId, [{ customerId: customer.id, meterId: input.meterId, credits }], now);
      await checkCreditRoom(tx, customer.id, input.meterId);
      return { value: grant, changes };
    });
  } catch (err) {
    // A concurrent call with the same key committed first: answer with its grant.
    if (isUniqueViolation(err, "idempotencyKey")) return (await existingForKey(db, organizationId, input, customer.id))!;
    throw err;
  }
}

/**
 * With its balance row locked (by the write of the grant just made): the credits on the balance and those of
 * its grants still to take effect must fit the 64-bit column together. A scheduled grant is added to the
 * balance only at effectiveAt, when nothing can refuse it any more: past the range, that activation would fail
 * and every later write of the balance with it. So it is refused now, as an immediate grant would be.
 */
async function checkCreditRoom(tx: Db, customerId: string, meterId: string): Promise<void> {
  const row = await tx.customerMeter.findUnique({ where: { customerId_meterId: { customerId, meterId } }, select: { creditedUnits: true } });
  const pending = await tx.creditGrant.aggregate({ where: { customerId, meterId, creditedAt: null, voidedAt: null, expiredAt: null }, _sum: { remainingUnits: true } });
  if ((row?.creditedUnits ?? 0n) + (pending._sum.remainingUnits ?? 0n) > MAX_STORED_UNITS) {
    throw new InvalidInputError("would take the balance past the largest value stored (about 9.2 trillion units), with the grants still to take effect", "input.units");
  }
}

/** A benefit as granted: its definition is copied onto the grant, so later edits never touch balances. */
export interface GrantableBenefit {
  id: string;
  meterId: string;
  units: bigint;
  rollover: boolean;
  expiresAfterDays: number | null;
}

/**
 * Create the grants of a purchase or a cycle and return the balance adjustments that credit them. Credits
 * of a subscription that do not roll over end with the cycle, so they expire at `periodEnd` (and therefore
 * burn before rollover credits of the same priority).
 *
 * `at` is when they take effect. A cycle processed late (`at` before `now`: the scheduler was down, or several
 * cycles are caught up at once) takes effect at its period start: its grants are written as due activations,
 * and the balance write that follows records, in time order, their GRANT at `at` and any expiry that has
 * passed since — the same entries, dated the same, as a renewal on time.
 */
export async function grantBenefits(
  tx: Db,
  organizationId: string,
  customerId: string,
  benefits: GrantableBenefit[],
  source: { orderId: string; subscriptionId?: string | null; periodEnd?: Date | null },
  now: Date,
  at: Date = now,
): Promise<BalanceAdjustment[]> {
  const adjustments = new Map<string, BalanceAdjustment>();
  const late = at < now;
  for (const b of benefits) {
    const byDays = b.expiresAfterDays ? new Date(at.getTime() + b.expiresAfterDays * 86_400_000) : null;
    const cycleEnd = source.subscriptionId && !b.rollover ? (source.periodEnd ?? null) : null;
    const expiresAt = byDays && cycleEnd ? (byDays < cycleEnd ? byDays : cycleEnd) : (byDays ?? cycleEnd);
    const grant = await tx.creditGrant.create({
      data: {
        id: orderedId(),
        organizationId,
        customerId,
        meterId: b.meterId,
        units: b.units,
        remainingUnits: b.units,
        effectiveAt: at,
        creditedAt: late ? null : at,
        expiresAt,
        rollover: b.rollover,
        source: "BENEFIT",
        benefitId: b.id,
        orderId: source.orderId,
        subscriptionId: source.subscriptionId ?? null,
      },
      select: { id: true },
    });
    const adj = adjustments.get(b.meterId) ?? { customerId, meterId: b.meterId, credits: [] };
    if (!late) adj.credits!.push({ units: b.units, grantId: grant.id });
    adjustments.set(b.meterId, adj);
  }
  return [...adjustments.values()];
}

/**
 * End grants: what remains of each leaves the balance (one ledger entry per grant) and the grant can no
 * longer be used or refilled. Their balance rows are brought up to now first (recording expiries and
 * activations that are due), which also takes the row locks before the grant locks, the order every writer
 * follows, so two nodes ending the same grant at once end it, and remove its remainder, exactly once. A grant
 * whose effectiveAt is still ahead never reached the balance: it ends with nothing to remove.
 */
export async function endGrants(
  sql: Sql,
  tx: Db,
  organizationId: string,
  where: { orderId?: string; subscriptionId?: string; rollover?: boolean; ids?: string[] },
  kind: Removal["kind"],
  now: Date,
): Promise<BalanceAdjustment[]> {
  const conditions: string[] = [grantOpen.sql(), `"organizationId" = ${sql.param(1)}`];
  const values: unknown[] = [organizationId];
  const add = (clause: (p: string) => string, value: unknown) => {
    values.push(value);
    conditions.push(clause(sql.param(values.length)));
  };
  if (where.orderId) add((p) => `"orderId" = ${p}`, where.orderId);
  if (where.subscriptionId) add((p) => `"subscriptionId" = ${p}`, where.subscriptionId);
  if (where.rollover !== undefined) add((p) => `"rollover" = ${p}`, where.rollover);
  if (where.ids) {
    if (!where.ids.length) return [];
    const ids = sql.padded(where.ids);
    conditions.push(sql.inList("id", ids.length, values.length + 1));
    values.push(...ids);
  }
  const matching = `FROM "CreditGrant" WHERE ${conditions.join(" AND ")}`;
  const pairs = await sql.query<{ customerId: string; meterId: string }>(`SELECT DISTINCT "customerId", "meterId" ${matching}`, values);
  if (!pairs.length) return [];
  await adjustBalances(sql, organizationId, pairs.map((p) => ({ customerId: p.customerId, meterId: p.meterId, settleOnly: true })), now);
  const grants = await sql.query<{ id: string; customerId: string; meterId: string; remainingUnits: bigint; creditedAt: unknown }>(
    `SELECT "id", "customerId", "meterId", "remainingUnits", "creditedAt" ${matching} ORDER BY "id"${sql.forUpdate}`,
    values,
  );
  if (!grants.length) return [];
  await tx.creditGrant.updateMany({
    where: { id: { in: grants.map((g) => g.id) } },
    data: kind === "VOID" ? { remainingUnits: 0n, voidedAt: now } : { remainingUnits: 0n, expiredAt: now },
  });
  const adjustments = new Map<string, BalanceAdjustment>();
  for (const g of grants) {
    const k = balanceKey(g.customerId, g.meterId);
    const adj = adjustments.get(k) ?? { customerId: g.customerId, meterId: g.meterId, removals: [] };
    adj.removals!.push({ grantId: g.id, units: g.creditedAt === null ? 0n : BigInt(g.remainingUnits), kind });
    adjustments.set(k, adj);
  }
  return [...adjustments.values()];
}

/** Adjustments for one transaction, merged so each (customer, meter) appears once. */
export function mergeAdjustments(...lists: BalanceAdjustment[][]): BalanceAdjustment[] {
  const merged = new Map<string, BalanceAdjustment>();
  for (const a of lists.flat()) {
    const k = balanceKey(a.customerId, a.meterId);
    const m = merged.get(k) ?? { customerId: a.customerId, meterId: a.meterId };
    if (a.removals) m.removals = [...(m.removals ?? []), ...a.removals];
    if (a.credits) m.credits = [...(m.credits ?? []), ...a.credits];
    if (a.usage) {
      if (m.usage) throw new Error("one usage delta per balance row and transaction");
      m.usage = a.usage;
    }
    merged.set(k, m);
  }
  return [...merged.values()];
}

/** Void a grant: what remains of it leaves the balance now; its history stays. Voiding twice changes nothing. */
export async function voidCreditGrant(db: Db, notify: Notify, organizationId: string, id: string, now = new Date()): Promise<CreditGrant> {
  const grant = await db.creditGrant.findFirst({ where: { id, organizationId } });
  if (!grant) throw new NotFoundError("No such credit grant", "id");
  return inTransaction(db, notify, organizationId, async (sql, tx) => {
    const ended = await endGrants(sql, tx, organizationId, { ids: [id] }, "VOID", now);
    return { value: await tx.creditGrant.findUniqueOrThrow({ where: { id } }), changes: await adjustBalances(sql, organizationId, ended, now) };
  });
}

/**
 * The scheduler's pass over time-driven grant changes: every balance with a grant whose expiresAt has passed
 * (its unused remainder leaves, dated expiresAt) or whose effectiveAt has come (its units arrive, dated
 * effectiveAt) is brought up to now, and subscribers hear of it. Writes do the same for the rows they touch,
 * so this pass only makes sure quiet balances change on time. Returns how many balances changed.
 */
export async function settleDueGrants(db: Db, notify: Notify, now: Date, limit = 1000): Promise<number> {
  const due = await db.creditGrant.findMany({
    where: grantDue.where(now),
    select: { organizationId: true, customerId: true, meterId: true },
    distinct: ["customerId", "meterId"],
    take: limit,
  });
  const byOrg = new Map<string, BalanceAdjustment[]>();
  for (const g of due) byOrg.set(g.organizationId, [...(byOrg.get(g.organizationId) ?? []), { customerId: g.customerId, meterId: g.meterId, settleOnly: true }]);
  let settled = 0;
  for (const [organizationId, adjustments] of byOrg) {
    settled += await inTransaction(db, notify, organizationId, async (sql) => {
      const changes = await adjustBalances(sql, organizationId, adjustments, now);
      return { value: changes.length, changes };
    });
  }
  return settled;
}
