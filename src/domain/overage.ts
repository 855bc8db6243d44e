// Billable overage: usage beyond credits, priced by the customer's metered price on that meter.
import type { Db } from "../db/client.ts";
import { balanceKey } from "./balances.ts";
import { UNIT_SCALE } from "./units.ts";
import { overageAllowed } from "./rules.ts";

export interface MeteredPrice {
  unitAmount: bigint;
  capAmount: bigint | null;
  currency: string;
}

/** Units used beyond credits: the negative part of the balance. */
export function overageUnits(balance: bigint): bigint {
  return balance < 0n ? -balance : 0n;
}

/**
 * units × unit amount, capped; micro minor units. The exact product has 12 decimals; it is rounded half up
 * to 6 (a millionth of a cent), the precision every amount in the service has.
 */
export function overageAmount(units: bigint, price: MeteredPrice): bigint {
  const product = units * price.unitAmount;
  let amount = (product + UNIT_SCALE / 2n) / UNIT_SCALE;
  if (price.capAmount !== null && amount > price.capAmount) amount = price.capAmount;
  return amount;
}

/**
 * METERED_UNIT prices of the customer's active subscriptions, by meter. A meter with such a price allows
 * billable overage for this customer; without one it is credits-only.
 */
export async function meteredPrices(db: Pick<Db, "price">, customerId: string): Promise<Map<string, MeteredPrice>> {
  const prices = await db.price.findMany({
    where: { ...overageAllowed.pricesWhere, product: { subscriptions: { some: overageAllowed.subscriptionsWhere([customerId]) } } },
    select: { meterId: true, unitAmount: true, capAmount: true, currency: true },
    orderBy: { createdAt: "asc" },
  });
  const byMeter = new Map<string, MeteredPrice>();
  for (const p of prices) {
    if (p.meterId && p.unitAmount !== null && !byMeter.has(p.meterId)) byMeter.set(p.meterId, { unitAmount: p.unitAmount, capAmount: p.capAmount, currency: p.currency });
  }
  return byMeter;
}

/**
 * Which of these (customer, meter) pairs may go into billable overage: those where the customer's active
 * subscription has a metered price on the meter. The rest are credits-only.
 */
export async function overagePairs(db: Db, pairs: { customerId: string; meterId: string }[]): Promise<Set<string>> {
  const customers = [...new Set(pairs.map((p) => p.customerId))];
  const out = new Set<string>();
  if (!customers.length) return out;
  const subs = await db.subscription.findMany({
    where: overageAllowed.subscriptionsWhere(customers),
    select: { customerId: true, product: { select: { prices: { where: overageAllowed.pricesWhere, select: { meterId: true } } } } },
  });
  for (const s of subs) for (const p of s.product.prices) if (p.meterId) out.add(balanceKey(s.customerId, p.meterId));
  return out;
}
