// Purchases: a paid order grants a one-time product's credits (packs stack) or starts a subscription.
import type { Db } from "../db/client.ts";
import type { Order } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances } from "./balances.ts";
import { addInterval, currentBenefits, fixedPrice, requireProduct, type Interval } from "./catalog.ts";
import { resolveCustomerRef, type CustomerRef, lockLiveCustomer } from "./customers.ts";
import { ConflictError, NotFoundError } from "./errors.ts";
import { endGrants, grantBenefits } from "./grants.ts";
import type { Notify } from "./notify.ts";
import { checkIdempotencyKey } from "./idempotency.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { endSubscriptionNow } from "./subscriptions.ts";
import { inTransaction } from "./transactions.ts";
import { orderEvent, subscriptionEvent, writeOutbox } from "./outbox.ts";
import { checkTopUpKey, completeTopUp } from "./topups.ts";

export const ORDER_STATUSES = ["PAID", "REFUNDED"] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export interface OrderInput extends CustomerRef {
  productId: string;
  idempotencyKey?: string | null;
}

async function existingForKey(db: Db, organizationId: string, key: string | null | undefined, customerId: string, productId: string): Promise<Order | null> {
  if (!key) return null;
  const order = await db.order.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey: key } } });
  if (order && (order.customerId !== customerId || order.productId !== productId)) {
    throw new ConflictError("This idempotencyKey was used for a different order", "input.idempotencyKey");
  }
  return order;
}

export async function createOrder(db: Db, notify: Notify, organizationId: string, input: OrderInput, now = new Date()): Promise<Order> {
  checkIdempotencyKey(input.idempotencyKey, "input.idempotencyKey");
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  const product = await requireProduct(db, organizationId, input.productId, "input.productId");
  const existing = await existingForKey(db, organizationId, input.idempotencyKey, customer.id, product.id);
  if (existing) return existing;
  if (product.archivedAt) throw new ConflictError("The product is archived and can no longer be bought", "input.productId");
  try {
    return await inTransaction(db, notify, organizationId, async (sql, tx) => {
      await lockLiveCustomer(sql, customer.id, input.customerId ? "input.customerId" : "input.externalCustomerId");
      if (product.recurringInterval) {
        // One active subscription per customer and product. Checked under a lock on that pair (PostgreSQL: an
        // advisory lock; SQLite has one writer), so of two concurrent orders the second sees the first's
        // subscription: a retry of the same order (its idempotencyKey) gets that order back, any other a CONFLICT.
        await sql.lockKeys([`subscription:${customer.id}:${product.id}`]);
        const replay = await existingForKey(tx, organizationId, input.idempotencyKey, customer.id, product.id);
        if (replay) return { value: replay, changes: [] };
        const active = await tx.subscription.findFirst({ where: { customerId: customer.id, productId: product.id, status: "ACTIVE" }, select: { id: true } });
        if (active) throw new ConflictError(`The customer already has an active subscription to this product (${active.id})`, "input.productId");
      }
      if (input.idempotencyKey) await checkTopUpKey(sql, organizationId, input.idempotencyKey, customer.id, product.id);
      const benefits = await currentBenefits(tx, product.id);
      const price = await fixedPrice(tx, product.id);
      let subscription: { id: string; currentPeriodEnd: Date } | null = null;
      if (product.recurringInterval) {
        subscription = await tx.subscription.create({
          data: {
            organizationId,
            customerId: customer.id,
            productId: product.id,
            currentPeriodStart: now,
            currentPeriodEnd: addInterval(now, product.recurringInterval as Interval, product.recurringIntervalCount),
            anchorDay: now.getUTCDate(),
          },
          select: { id: true, currentPeriodEnd: true },
        });
      }
      const order = await tx.order.create({
        data: {
          organizationId,
          customerId: customer.id,
          productId: product.id,
          subscriptionId: subscription?.id ?? null,
          idempotencyKey: input.idempotencyKey ?? null,
          ...price,
        },
      });
      await writeOutbox(sql, [orderEvent("order.created", order)], now);
      if (input.idempotencyKey) await completeTopUp(sql, organizationId, input.idempotencyKey, order.id, now);
      const adjustments = await grantBenefits(tx, organizationId, customer.id, benefits, { orderId: order.id, subscriptionId: subscription?.id, periodEnd: subscription?.currentPeriodEnd }, now);
      return { value: order, changes: await adjustBalances(sql, organizationId, adjustments, now) };
    });
  } catch (err) {
    // The same key committed by a concurrent call first: answer with that order.
    if (isUniqueViolation(err, "idempotencyKey")) return (await existingForKey(db, organizationId, input.idempotencyKey, customer.id, product.id))!;
    throw err;
  }
}

/**
 * Refund: what remains of this order's credits leaves the balance. Refunding a subscription's latest order
 * (the one that paid for the current cycle) also ends the subscription now: the cycle it paid for is taken
 * back, so nothing is left to renew. An older order of the subscription only loses what is left of its own
 * credits. Refunding twice changes nothing more.
 */
export async function refundOrder(db: Db, notify: Notify, organizationId: string, id: string, now = new Date()): Promise<Order> {
  const order = await db.order.findFirst({ where: { id, organizationId } });
  if (!order) throw new NotFoundError("No such order", "id");
  if (order.status === "REFUNDED") return order;
  return inTransaction(db, notify, organizationId, async (sql, tx) => {
    // The subscription's row first (PostgreSQL: locked), so a renewal cannot add a newer order between reading
    // which order is the latest and ending the subscription.
    if (order.subscriptionId) await sql.query(`SELECT "id" FROM "Subscription" WHERE "id" = ${sql.param(1)}${sql.forUpdate}`, [order.subscriptionId]);
    // Conditional update: of two concurrent refunds only one proceeds.
    const { count } = await tx.order.updateMany({ where: { id, status: "PAID" }, data: { status: "REFUNDED", refundedAt: now } });
    const refunded = await tx.order.findUniqueOrThrow({ where: { id } });
    if (count === 0) return { value: refunded, changes: [] };
    const events = [orderEvent("order.refunded", refunded)];
    if (order.subscriptionId) {
      const latest = await tx.order.findFirst({ where: { subscriptionId: order.subscriptionId }, orderBy: [{ createdAt: "desc" }, { id: "desc" }], select: { id: true } });
      if (latest?.id === id && (await endSubscriptionNow(tx, order.subscriptionId, now))) {
        events.push(subscriptionEvent("subscription.canceled", await tx.subscription.findUniqueOrThrow({ where: { id: order.subscriptionId } })));
      }
    }
    await writeOutbox(sql, events, now);
    const adjustments = await endGrants(sql, tx, organizationId, { orderId: id }, "REFUND", now);
    return { value: refunded, changes: await adjustBalances(sql, organizationId, adjustments, now) };
  });
}
