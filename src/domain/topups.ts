// Auto top-up: per customer and meter (a credit system's pool included), "below N available, top up with
// product P, at most K times a calendar month (UTC)". Like balance alerts (src/domain/alerts.ts) it is state:
// a rule is armed while available credits are at or above N; the balance write (BalanceBook.write) that takes
// them below N disarms it with a conditional update and, in the same transaction, records one TopUpRequest
// and its `topup.requested` outbox event (webhook and `balanceAlerts`) carrying an idempotency key. The
// balance row is locked by that write (PostgreSQL; SQLite has one writer), so concurrent usage on any node
// records one request per crossing. `createOrder` with the key completes the request; the credits it grants
// re-arm the rule once available is back at or above N. A month's cap reached leaves the rule armed, so the
// first write below N in the next month asks again.
import { LRUCache } from "lru-cache";
import type { Db } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import type { AutoTopUp } from "../generated/prisma-postgresql/client.ts";
import { currentBenefits, requireProduct } from "./catalog.ts";
import { resolveCustomerRef, type CustomerRef } from "./customers.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "./errors.ts";
import { orderedId } from "./ids.ts";
import { checkNotRated, requireMeter } from "./meters.ts";
import type { OutboxEvent } from "./outbox.ts";
import { formatUnits } from "./units.ts";

export interface AutoTopUpInput extends CustomerRef {
  meterId: string;
  /** micro-units, ≥ 0 */
  belowUnits: bigint;
  productId: string;
  maxPerMonth?: number | null;
}

/** How long a node trusts "this organization has no auto top-up" (a rule set on another node counts within this). */
export const TOPUP_CACHE_MS = 5_000;
/** organizationId → whether it has any auto top-up, for TOPUP_CACHE_MS. */
const known = new LRUCache<string, boolean>({ max: 10_000, ttl: TOPUP_CACHE_MS });

/** The calendar month (UTC) a request counts against. */
export const monthOf = (at: Date) => at.toISOString().slice(0, 7);

/**
 * Set (or change) the rule of a customer and meter. The product must be able to complete a request: on sale,
 * and granting credits on the meter; a rated meter's usage is paid by its pool, so the rule goes on the pool.
 * A new rule starts armed; changing one keeps its state, so a request still open is not asked again.
 */
export async function setAutoTopUp(db: Db, organizationId: string, input: AutoTopUpInput): Promise<AutoTopUp> {
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  const meter = await requireMeter(db, organizationId, input.meterId, "input.meterId");
  checkNotRated(meter, "input.meterId", "set the auto top-up");
  const product = await requireProduct(db, organizationId, input.productId, "input.productId");
  if (product.archivedAt) throw new InvalidInputError("the product is archived and can no longer be bought", "input.productId");
  // a subscription is bought once: the second request's order would be refused (an active subscription)
  if (product.recurringInterval) throw new InvalidInputError("a top-up buys a one-time product; this one is a subscription", "input.productId");
  if (!(await currentBenefits(db, product.id)).some((b) => b.meterId === meter.id)) {
    throw new InvalidInputError("the product grants no credits on this meter, so its orders would not top it up", "input.productId");
  }
  if (input.belowUnits < 0n) throw new InvalidInputError("must be 0 or more", "input.belowUnits");
  const max = input.maxPerMonth ?? null;
  if (max !== null && (!Number.isInteger(max) || max < 1)) throw new InvalidInputError("must be an integer of at least 1", "input.maxPerMonth");
  const data = { belowUnits: input.belowUnits, productId: input.productId, maxPerMonth: max };
  const rule = await db.autoTopUp.upsert({
    where: { customerId_meterId: { customerId: customer.id, meterId: input.meterId } },
    create: { organizationId, customerId: customer.id, meterId: input.meterId, ...data, armed: true },
    update: data,
  });
  known.delete(organizationId);
  return rule;
}

/** Remove the rule; answers it as it was. */
export async function removeAutoTopUp(db: Db, organizationId: string, input: CustomerRef & { meterId: string }): Promise<AutoTopUp> {
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  const rule = await db.autoTopUp.findUnique({ where: { customerId_meterId: { customerId: customer.id, meterId: input.meterId } } });
  if (!rule || rule.organizationId !== organizationId) throw new NotFoundError("No auto top-up for this customer and meter", "input.meterId");
  await db.autoTopUp.deleteMany({ where: { id: rule.id } });
  return rule;
}

export function autoTopUpsOf(db: Db, organizationId: string, customerId: string) {
  return db.autoTopUp.findMany({ where: { organizationId, customerId }, orderBy: { id: "asc" } });
}

export async function anyRules(sql: Sql, organizationId: string): Promise<boolean> {
  const cached = known.get(organizationId);
  if (cached !== undefined) return cached;
  // Whether there is one, found on the organization's index (not how many: a count read every rule of it).
  const [row] = await sql.query<{ n: unknown }>(`SELECT COUNT(*) AS "n" FROM (SELECT 1 FROM "AutoTopUp" WHERE "organizationId" = ${sql.param(1)} LIMIT 1) AS "one"`, [organizationId]);
  const any = Number(row?.n ?? 0) > 0;
  known.set(organizationId, any);
  return any;
}

export interface TopUpRule {
  id: string;
  organizationId: string;
  customerId: string;
  meterId: string;
  belowUnits: bigint;
  productId: string;
  maxPerMonth: number | null;
  armed: boolean;
  /** requests already recorded this month for the customer and meter (under this rule or an earlier one) */
  used: number;
  /**
   * Whether createOrder could complete a request now: the product not archived (nor a subscription, as rules
   * set before those were refused may name), the customer not deleted. A rule that cannot raises none.
   */
  usable: boolean;
}

/** The written balances with an auto top-up rule, with it (no statement for organizations without rules). */
export async function topUpRules<B extends { organizationId: string; customerId: string; meterId: string }>(sql: Sql, balances: B[], now: Date): Promise<{ balance: B; rule: TopUpRule }[]> {
  const ruled = new Map<string, boolean>();
  for (const b of balances) if (!ruled.has(b.organizationId)) ruled.set(b.organizationId, await anyRules(sql, b.organizationId));
  const wanted = balances.filter((b) => ruled.get(b.organizationId));
  if (!wanted.length) return [];

  // parameters in the order they appear (SQLite numbers `?` by position)
  const inPairs = sql.pairsIn("customerId", "meterId", wanted, 2);
  const rows = await sql.query<{ id: string; organizationId: string; customerId: string; meterId: string; belowUnits: unknown; productId: string; maxPerMonth: unknown; armed: unknown; used: unknown; usable: unknown }>(
    `SELECT a."id", a."organizationId", a."customerId", a."meterId", a."belowUnits", a."productId", a."maxPerMonth", a."armed",
            (SELECT COUNT(*) FROM "TopUpRequest" r WHERE r."customerId" = a."customerId" AND r."meterId" = a."meterId" AND r."month" = ${sql.param(1)}) AS "used",
            (SELECT COUNT(*) FROM "Product" p JOIN "Customer" c ON c."id" = a."customerId"
              WHERE p."id" = a."productId" AND p."archivedAt" IS NULL AND p."recurringInterval" IS NULL AND c."deletedAt" IS NULL) AS "usable"
       FROM "AutoTopUp" a WHERE ${inPairs.clause}`,
    [monthOf(now), ...inPairs.values],
  );
  const byPair = new Map(wanted.map((b) => [`${b.customerId} ${b.meterId}`, b]));
  return rows.map((r) => ({
    balance: byPair.get(`${r.customerId} ${r.meterId}`)!,
    rule: {
      id: r.id,
      organizationId: r.organizationId,
      customerId: r.customerId,
      meterId: r.meterId,
      belowUnits: BigInt(r.belowUnits as string),
      productId: r.productId,
      maxPerMonth: r.maxPerMonth === null ? null : Number(r.maxPerMonth),
      armed: r.armed === true || Number(r.armed) === 1,
      used: Number(r.used),
      usable: Number(r.usable) > 0,
    },
  }));
}

/**
 * Disarm the rules whose balance fell below their line (and record a request for each, within the month's
 * cap) and re-arm those back at or above it. Answers the topup.requested events for the outbox.
 */
export async function recordTopUps(sql: Sql, watched: { balance: { balance: bigint; held: bigint }; rule: TopUpRule }[], now: Date): Promise<OutboxEvent[]> {
  const events: OutboxEvent[] = [];
  const at = sql.date(now);
  for (const { balance: b, rule } of watched) {
    const available = b.balance - b.held;
    if (available >= rule.belowUnits) {
      if (!rule.armed) await sql.execute(`UPDATE "AutoTopUp" SET "armed" = TRUE, "updatedAt" = ${sql.param(1)} WHERE "id" = ${sql.param(2)}`, [at, rule.id]);
      continue;
    }
    if (!rule.armed || !rule.usable || (rule.maxPerMonth !== null && rule.used >= rule.maxPerMonth)) continue;
    const disarmed = await sql.execute(
      `UPDATE "AutoTopUp" SET "armed" = FALSE, "updatedAt" = ${sql.param(1)} WHERE "id" = ${sql.param(2)} AND "armed" = TRUE`,
      [at, rule.id],
    );
    if (disarmed !== 1) continue;
    const id = orderedId();
    const idempotencyKey = `topup_${id}`;
    await sql.insertMany(
      "TopUpRequest",
      ["id", "organizationId", "autoTopUpId", "customerId", "meterId", "productId", "idempotencyKey", "month", "status", "createdAt"],
      [[id, rule.organizationId, rule.id, rule.customerId, rule.meterId, rule.productId, idempotencyKey, monthOf(now), "REQUESTED", at]],
    );
    events.push({
      organizationId: rule.organizationId,
      type: "topup.requested",
      data: {
        customerId: rule.customerId,
        meterId: rule.meterId,
        balance: formatUnits(b.balance),
        availableUnits: formatUnits(available),
        threshold: formatUnits(rule.belowUnits),
        productId: rule.productId,
        idempotencyKey,
        topUpRequestId: id,
        autoTopUpId: rule.id,
      },
    });
  }
  return events;
}

/**
 * In createOrder's transaction, before anything is written: a request's idempotency key may only be used by an
 * order of the request's customer and product (CONFLICT otherwise), so the key cannot complete the request
 * with another customer's credits, nor be spent before the customer's own order.
 */
export async function checkTopUpKey(sql: Sql, organizationId: string, idempotencyKey: string, customerId: string, productId: string): Promise<void> {
  const request = await sql.first<{ customerId: string; productId: string }>(
    `SELECT "customerId", "productId" FROM "TopUpRequest" WHERE "organizationId" = ${sql.param(1)} AND "idempotencyKey" = ${sql.param(2)}`,
    [organizationId, idempotencyKey],
  );
  if (request && (request.customerId !== customerId || request.productId !== productId)) {
    throw new ConflictError("This idempotencyKey is a top-up request's, for another customer or product: order the request's product for its customer", "input.idempotencyKey");
  }
}

/** createOrder with a request's idempotency key completes it (in the order's transaction, after checkTopUpKey). */
export async function completeTopUp(sql: Sql, organizationId: string, idempotencyKey: string, orderId: string, now: Date): Promise<void> {
  await sql.execute(
    `UPDATE "TopUpRequest" SET "status" = 'COMPLETED', "orderId" = ${sql.param(1)}, "completedAt" = ${sql.param(2)}
      WHERE "organizationId" = ${sql.param(3)} AND "idempotencyKey" = ${sql.param(4)} AND "status" = 'REQUESTED'`,
    [orderId, sql.date(now), organizationId, idempotencyKey],
  );
}
