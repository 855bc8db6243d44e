// What merchants sell: benefits (credits on a meter) and products (one-time or recurring) with prices.
import { providerOfDb, type Db } from "../db/client.ts";
import { Sql } from "../db/sql.ts";
import type { Benefit, Product } from "../generated/prisma-postgresql/client.ts";
import { InvalidInputError, NotFoundError } from "./errors.ts";
import { checkNotRated, meterRatingLock, requireMeter } from "./meters.ts";

export const INTERVALS = ["MONTH", "YEAR"] as const;
export type Interval = (typeof INTERVALS)[number];

export interface BenefitInput {
  type: "METER_CREDITS";
  description: string;
  meterId: string;
  /** micro-units granted each time */
  units: bigint;
  rollover?: boolean | null;
  expiresAfterDays?: number | null;
}

export interface PriceInput {
  type: "FIXED" | "METERED_UNIT";
  currency?: string | null;
  /** FIXED: micro minor units */
  amount?: bigint | null;
  meterId?: string | null;
  /** METERED_UNIT: micro minor units per unit */
  unitAmount?: bigint | null;
  capAmount?: bigint | null;
}

export interface ProductInput {
  name: string;
  description?: string | null;
  recurringInterval?: Interval | null;
  recurringIntervalCount?: number | null;
  prices?: PriceInput[] | null;
  benefitIds?: string[] | null;
}

function text(value: string, field: string, max = 200): string {
  const trimmed = value.trim();
  if (!trimmed || trimmed.length > max) throw new InvalidInputError(`must be 1 to ${max} characters`, field);
  return trimmed;
}

export async function createBenefit(db: Db, organizationId: string, input: BenefitInput): Promise<Benefit> {
  if (input.type !== "METER_CREDITS") throw new InvalidInputError("must be METER_CREDITS", "input.type");
  const description = text(input.description, "input.description", 500);
  checkNotRated(await requireMeter(db, organizationId, input.meterId, "input.meterId"), "input.meterId");
  if (input.units <= 0n) throw new InvalidInputError("must be greater than 0", "input.units");
  const days = input.expiresAfterDays;
  if (days != null && (!Number.isInteger(days) || days < 1 || days > 3650)) throw new InvalidInputError("must be 1 to 3650 days", "input.expiresAfterDays");
  return db.benefit.create({
    data: { organizationId, type: "METER_CREDITS", description, meterId: input.meterId, units: input.units, rollover: input.rollover ?? false, expiresAfterDays: days ?? null },
  });
}

/** Most prices one product carries (a product per tier, not a price list per product). */
export const MAX_PRODUCT_PRICES = 20;
/** Most benefits one product grants. */
export const MAX_PRODUCT_BENEFITS = 50;

async function checkBenefits(db: Db, organizationId: string, ids: string[], field: string): Promise<string[]> {
  if (ids.length > MAX_PRODUCT_BENEFITS) throw new InvalidInputError(`at most ${MAX_PRODUCT_BENEFITS} benefits per product`, field);
  const unique = [...new Set(ids)];
  const found = await db.benefit.findMany({ where: { organizationId, id: { in: unique }, archivedAt: null }, select: { id: true } });
  const known = new Set(found.map((b) => b.id));
  unique.forEach((id) => {
    if (!known.has(id)) throw new NotFoundError("No such benefit", `${field}.${ids.indexOf(id)}`);
  });
  return unique;
}

/**
 * In the transaction that puts benefits into a product: refuses one whose meter feeds a credit system (made
 * before the meter was rated), since its credits would sit on a meter whose usage the pool pays. Checked under
 * the meters' rating locks, which a meter's join takes too (checkNoCreditsOn, src/domain/credit-systems.ts): a
 * product racing the join either committed first, and the join finds it, or finds the meter rated here.
 */
async function checkBenefitMetersUnrated(tx: Db, provider: ReturnType<typeof providerOfDb>, ids: string[], input: string[], field: string): Promise<void> {
  if (!ids.length) return;
  const benefits = await tx.benefit.findMany({ where: { id: { in: ids } }, select: { id: true, meterId: true } });
  await new Sql(tx, provider).lockKeys(benefits.map((b) => meterRatingLock(b.meterId)));
  const rated = await tx.meter.findMany({ where: { id: { in: benefits.map((b) => b.meterId) }, creditPoolId: { not: null } }, select: { id: true, creditPoolId: true } });
  const poolOf = new Map(rated.map((m) => [m.id, m.creditPoolId]));
  const meterOf = new Map(benefits.map((b) => [b.id, b.meterId]));
  const refused = input.findIndex((id) => poolOf.has(meterOf.get(id) ?? ""));
  if (refused >= 0) {
    const pool = poolOf.get(meterOf.get(input[refused])!);
    throw new InvalidInputError(`this benefit gives credits on a meter that has since joined a credit system, whose pool pays its usage: give a benefit on the pool (${pool}) instead`, `${field}.${refused}`);
  }
}

async function checkPrice(db: Db, organizationId: string, p: PriceInput, field: string) {
  const currency = (p.currency ?? "usd").trim().toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) throw new InvalidInputError("must be a 3-letter ISO currency code", `${field}.currency`);
  if (p.type === "FIXED") {
    if (p.amount == null || p.amount < 0n) throw new InvalidInputError("FIXED prices need an amount ≥ 0", `${field}.amount`);
    return { type: "FIXED", currency, amount: p.amount };
  }
  if (p.type !== "METERED_UNIT") throw new InvalidInputError("must be FIXED or METERED_UNIT", `${field}.type`);
  if (!p.meterId) throw new InvalidInputError("METERED_UNIT prices need a meterId", `${field}.meterId`);
  await requireMeter(db, organizationId, p.meterId, `${field}.meterId`);
  if (p.unitAmount == null || p.unitAmount < 0n) throw new InvalidInputError("METERED_UNIT prices need a unitAmount ≥ 0", `${field}.unitAmount`);
  if (p.capAmount != null && p.capAmount < 0n) throw new InvalidInputError("must be ≥ 0", `${field}.capAmount`);
  return { type: "METERED_UNIT", currency, meterId: p.meterId, unitAmount: p.unitAmount, capAmount: p.capAmount ?? null };
}

export async function createProduct(db: Db, organizationId: string, input: ProductInput): Promise<Product> {
  const name = text(input.name, "input.name");
  const interval = input.recurringInterval ?? null;
  if (interval !== null && !INTERVALS.includes(interval)) throw new InvalidInputError("must be MONTH or YEAR", "input.recurringInterval");
  const count = input.recurringIntervalCount ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > 36) throw new InvalidInputError("must be 1 to 36", "input.recurringIntervalCount");
  if ((input.prices?.length ?? 0) > MAX_PRODUCT_PRICES) throw new InvalidInputError(`at most ${MAX_PRODUCT_PRICES} prices per product`, "input.prices");
  const prices: Awaited<ReturnType<typeof checkPrice>>[] = [];
  for (const [i, p] of (input.prices ?? []).entries()) prices.push(await checkPrice(db, organizationId, p, `input.prices.${i}`));
  const benefitIds = await checkBenefits(db, organizationId, input.benefitIds ?? [], "input.benefitIds");
  const provider = providerOfDb(db);
  return db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    await checkBenefitMetersUnrated(tx, provider, benefitIds, input.benefitIds ?? [], "input.benefitIds");
    return tx.product.create({
      data: {
        organizationId,
        name,
        description: input.description?.trim() || null,
        recurringInterval: interval,
        recurringIntervalCount: count,
        prices: { create: prices.map((p) => ({ ...p, organizationId })) },
        benefits: { create: benefitIds.map((benefitId, position) => ({ benefitId, position })) },
      },
    });
  });
}

export async function requireProduct(db: Db, organizationId: string, id: string, field: string): Promise<Product> {
  const product = await db.product.findFirst({ where: { id, organizationId } });
  if (!product) throw new NotFoundError("No such product", field);
  return product;
}

/**
 * Rename or change a product's benefits. Balances already granted stay exactly as they are: the new set of
 * benefits applies from the next grant (next order or next cycle), never retroactively.
 */
export async function updateProduct(db: Db, organizationId: string, id: string, input: { name?: string | null; description?: string | null; benefitIds?: string[] | null }): Promise<Product> {
  await requireProduct(db, organizationId, id, "id");
  const benefitIds = input.benefitIds ? await checkBenefits(db, organizationId, input.benefitIds, "input.benefitIds") : null;
  const provider = providerOfDb(db);
  return db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    if (benefitIds) {
      await checkBenefitMetersUnrated(tx, provider, benefitIds, input.benefitIds!, "input.benefitIds");
      await tx.productBenefit.deleteMany({ where: { productId: id } });
      await tx.productBenefit.createMany({ data: benefitIds.map((benefitId, position) => ({ productId: id, benefitId, position })) });
    }
    return tx.product.update({
      where: { id },
      data: {
        ...(input.name != null ? { name: text(input.name, "input.name") } : {}),
        ...(input.description !== undefined ? { description: input.description?.trim() || null } : {}),
      },
    });
  });
}

export async function archiveProduct(db: Db, organizationId: string, id: string): Promise<Product> {
  const product = await requireProduct(db, organizationId, id, "id");
  return product.archivedAt ? product : db.product.update({ where: { id }, data: { archivedAt: new Date() } });
}

/**
 * The end of a billing period that starts at `start`: calendar months or years later, on `anchorDay` (default:
 * the start's day), clamped to the month's last day. A subscription keeps its first day as the anchor, so a
 * period that a short month clamped (Jan 31 → Feb 28) is followed by one ending on the anchor again (Mar 31).
 */
export function addInterval(start: Date, interval: Interval, count: number, anchorDay?: number | null): Date {
  const months = interval === "YEAR" ? 12 * count : count;
  const d = new Date(start.getTime());
  const day = anchorDay ?? d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + months);
  const lastDay = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, lastDay));
  return d;
}

/**
 * What one order of the product costs: its FIXED price (the oldest, if it has several) in micro minor units
 * and its currency; nulls when it has none (credits given away, or billed only by metered prices).
 */
export async function fixedPrice(db: Pick<Db, "price">, productId: string): Promise<{ amount: bigint | null; currency: string | null }> {
  const price = await db.price.findFirst({
    where: { productId, type: "FIXED" },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    select: { amount: true, currency: true },
  });
  return { amount: price?.amount ?? null, currency: price?.currency ?? null };
}

/** The product's benefits as they are now (archived benefits are no longer granted). */
export async function currentBenefits(db: Pick<Db, "productBenefit">, productId: string) {
  const rows = await db.productBenefit.findMany({
    where: { productId, benefit: { archivedAt: null } },
    orderBy: { position: "asc" },
    select: { benefit: { select: { id: true, meterId: true, units: true, rollover: true, expiresAfterDays: true } } },
  });
  return rows.map((r) => r.benefit);
}
