// Credit grants: credits given to a customer on one meter, each a ledger entry. Idempotent by key.
import { orderedId } from "./ids.ts";
import type { Db } from "../db/client.ts";
import type { CreditGrant } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances, type BalanceAdjustment, type Removal } from "./balances.ts";
import { resolveCustomerRef, type CustomerRef } from "./customers.ts";
import { ConflictError, InvalidInputError } from "./errors.ts";
import { requireMeter } from "./meters.ts";
import type { Notify } from "./notify.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { inTransaction } from "./transactions.ts";

export interface GrantInput extends CustomerRef {
  meterId: string;
  /** micro-units, > 0 */
  units: bigint;
  idempotencyKey?: string | null;
  description?: string | null;
}

/** Same key, same grant: a retried call returns the grant it made the first time and changes nothing. */
async function existingForKey(db: Db, organizationId: string, input: GrantInput, customerId: string): Promise<CreditGrant | null> {
  if (!input.idempotencyKey) return null;
  const grant = await db.creditGrant.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey: input.idempotencyKey } } });
  if (grant && (grant.customerId !== customerId || grant.meterId !== input.meterId || grant.units !== input.units)) {
    throw new ConflictError("This idempotencyKey was used for a different grant", "input.idempotencyKey");
  }
  return grant;
}

export async function grantCredits(db: Db, notify: Notify, organizationId: string, input: GrantInput, now = new Date()): Promise<CreditGrant> {
  if (input.units <= 0n) throw new InvalidInputError("must be greater than 0", "input.units");
  if (input.idempotencyKey != null && (!input.idempotencyKey.trim() || input.idempotencyKey.length > 255)) {
    throw new InvalidInputError("must be 1 to 255 characters", "input.idempotencyKey");
  }
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  await requireMeter(db, organizationId, input.meterId, "input.meterId");
  const existing = await existingForKey(db, organizationId, input, customer.id);
  if (existing) return existing;
  try {
    return await inTransaction(db, notify, organizationId, async (sql, tx) => {
      const grant = await tx.creditGrant.create({
        data: {
          id: orderedId(),
          organizationId,
          customerId: customer.id,
          meterId: input.meterId,
          units: input.units,
          remainingUnits: input.units,
          effectiveAt: now,
          source: "ADMIN",
          idempotencyKey: input.idempotencyKey ?? null,
          description: input.description ?? null,
        },
      });
      const changes = await adjustBalances(sql, organizationId, [
        { customerId: customer.id, meterId: input.meterId, credits: [{ units: input.units, grantId: grant.id, description: input.description }] },
      ], now);
      return { value: grant, changes };
    });
  } catch (err) {
    // A concurrent call with the same key committed first: answer with its grant.
    if (isUniqueViolation(err, "idempotencyKey")) return (await existingForKey(db, organizationId, input, customer.id))!;
    throw err;
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
 */
export async function grantBenefits(
  tx: Db,
  organizationId: string,
  customerId: string,
  benefits: GrantableBenefit[],
  source: { orderId: string; subscriptionId?: string | null; periodEnd?: Date | null },
  now: Date,
): Promise<BalanceAdjustment[]> {
  const adjustments = new Map<string, BalanceAdjustment>();
  for (const b of benefits) {
    const byDays = b.expiresAfterDays ? new Date(now.getTime() + b.expiresAfterDays * 86_400_000) : null;
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
        effectiveAt: now,
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
    adj.credits!.push({ units: b.units, grantId: grant.id });
    adjustments.set(b.meterId, adj);
  }
  return [...adjustments.values()];
}

/**
 * End grants: what remains of each leaves the balance (one ledger entry per grant) and the grant can no
 * longer be used or refilled. Returns the balance adjustments.
 */
export async function endGrants(
  tx: Db,
  where: { orderId?: string; subscriptionId?: string; rollover?: boolean; ids?: string[] },
  kind: Removal["kind"],
  now: Date,
): Promise<BalanceAdjustment[]> {
  const grants = await tx.creditGrant.findMany({
    where: {
      ...(where.orderId ? { orderId: where.orderId } : {}),
      ...(where.subscriptionId ? { subscriptionId: where.subscriptionId } : {}),
      ...(where.rollover !== undefined ? { rollover: where.rollover } : {}),
      ...(where.ids ? { id: { in: where.ids } } : {}),
      voidedAt: null,
      expiredAt: null,
    },
    select: { id: true, customerId: true, meterId: true, remainingUnits: true },
    orderBy: { id: "asc" },
  });
  if (!grants.length) return [];
  await tx.creditGrant.updateMany({
    where: { id: { in: grants.map((g) => g.id) } },
    data: kind === "VOID" ? { remainingUnits: 0n, voidedAt: now } : { remainingUnits: 0n, expiredAt: now },
  });
  const adjustments = new Map<string, BalanceAdjustment>();
  for (const g of grants) {
    const k = `${g.customerId}\u0000${g.meterId}`;
    const adj = adjustments.get(k) ?? { customerId: g.customerId, meterId: g.meterId, removals: [] };
    adj.removals!.push({ grantId: g.id, units: g.remainingUnits, kind });
    adjustments.set(k, adj);
  }
  return [...adjustments.values()];
}

/** Adjustments for one transaction, merged so each (customer, meter) appears once. */
export function mergeAdjustments(...lists: BalanceAdjustment[][]): BalanceAdjustment[] {
  const merged = new Map<string, BalanceAdjustment>();
  for (const a of lists.flat()) {
    const k = `${a.customerId}\u0000${a.meterId}`;
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
