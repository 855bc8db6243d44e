// Subscription cycles: renewal (credits that do not roll over end, the new cycle's credits arrive),
// cancellation at period end (the default) or now, with or without revoking what the subscription granted.
import type { Db } from "../db/client.ts";
import type { Subscription } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances, type BalanceChange } from "./balances.ts";
import { addInterval, currentBenefits, fixedPrice, type Interval } from "./catalog.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "./errors.ts";
import { endGrants, grantBenefits, mergeAdjustments } from "./grants.ts";
import { checkIdempotencyKey } from "./idempotency.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import type { Notify } from "./notify.ts";
import { inTransaction } from "./transactions.ts";
import { orderEvent, subscriptionEvent, writeOutbox } from "./outbox.ts";

export const SUBSCRIPTION_STATUSES = ["ACTIVE", "CANCELED"] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** `auto`: the server renews due subscriptions itself. `manual`: only renewSubscription (payment confirmed) does. */
export type RenewalMode = "auto" | "manual";

/** How many missed cycles one scheduler pass catches up per subscription (e.g. after downtime). */
const MAX_CATCH_UP = 24;

async function requireSubscription(db: Db, organizationId: string, id: string): Promise<Subscription> {
  const sub = await db.subscription.findFirst({ where: { id, organizationId } });
  if (!sub) throw new NotFoundError("No such subscription", "id");
  return sub;
}

/**
 * Move a subscription to its next cycle: the unused remainder of this cycle's credits that do not roll over
 * leaves the balance (RESET), rollover credits stay, and the product's current benefits are granted for the
 * new cycle under a renewal order. The period advances from the old end. Guarded by the period end it read,
 * so two nodes renewing at once renew once.
 */
async function renewOnce(db: Db, notify: Notify, sub: Subscription, now: Date, idempotencyKey: string | null = null): Promise<Subscription | null> {
  const product = await db.product.findUniqueOrThrow({ where: { id: sub.productId } });
  const start = sub.currentPeriodEnd;
  const end = addInterval(start, product.recurringInterval as Interval, product.recurringIntervalCount, sub.anchorDay);
  // The new cycle starts at the old period end, also when this runs later than that; renewSubscription called
  // before the period end starts it now.
  const at = start < now ? start : now;
  return inTransaction(db, notify, sub.organizationId, async (sql, tx) => {
    // Still as read: active, at this period, and not cancelled at period end since (a cancellation committed
    // after the scheduler read its due list must end the subscription, not see it renewed).
    const { count } = await tx.subscription.updateMany({
      where: { id: sub.id, status: "ACTIVE", currentPeriodEnd: sub.currentPeriodEnd, cancelAtPeriodEnd: false },
      data: { currentPeriodStart: start, currentPeriodEnd: end },
    });
    if (count === 0) return { value: null, changes: [] as BalanceChange[] };
    // A late renewal (caught up after downtime) settles the balance as of the period end it renews, as one on
    // time would have: settled up to now, its entries of later instants would come before the next cycle's
    // grant, which the ledger (in order) would then date after them.
    const reset = await endGrants(sql, tx, sub.organizationId, { subscriptionId: sub.id, rollover: false }, "RESET", at);
    const price = await fixedPrice(tx, sub.productId);
    const order = await tx.order.create({
      data: { organizationId: sub.organizationId, customerId: sub.customerId, productId: sub.productId, subscriptionId: sub.id, idempotencyKey, ...price },
    });
    await writeOutbox(sql, [orderEvent("order.created", order), subscriptionEvent("subscription.renewed", { ...sub, currentPeriodStart: start, currentPeriodEnd: end })], now);
    const benefits = await currentBenefits(tx, sub.productId);
    const granted = await grantBenefits(tx, sub.organizationId, sub.customerId, benefits, { orderId: order.id, subscriptionId: sub.id, periodEnd: end }, now, at);
    const changes = await adjustBalances(sql, sub.organizationId, mergeAdjustments(reset, granted), at);
    return { value: await tx.subscription.findUniqueOrThrow({ where: { id: sub.id } }), changes };
  });
}

/**
 * renewSubscription(id): the merchant's payment system confirmed the next cycle. With an idempotency key (the
 * payment's id, say) a retry of the same call renews nothing more: the key is the renewal order's, so a
 * repeat answers the subscription as it is, and the key used for another order is a CONFLICT.
 */
export async function renewSubscription(db: Db, notify: Notify, organizationId: string, id: string, now = new Date(), idempotencyKey: string | null = null): Promise<Subscription> {
  checkIdempotencyKey(idempotencyKey, "idempotencyKey");
  const replay = async () => {
    if (!idempotencyKey) return null;
    const order = await db.order.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey } } });
    if (!order) return null;
    // a renewal order of this subscription: not its first order (the purchase), which renewed nothing
    const first = await db.order.findFirst({ where: { subscriptionId: id }, orderBy: { createdAt: "asc" }, select: { id: true } });
    if (order.subscriptionId !== id || order.id === first?.id) throw new ConflictError("This idempotencyKey was used for a different order", "idempotencyKey");
    return requireSubscription(db, organizationId, id);
  };
  // Each call renews once: when another call (or the scheduler) moved the period meanwhile, renewOnce renews
  // nothing, and the call tries again from the period as it now is.
  for (let attempt = 0; attempt < RENEW_ATTEMPTS; attempt++) {
    const sub = await requireSubscription(db, organizationId, id);
    const repeated = await replay();
    if (repeated) return repeated;
    if (sub.status !== "ACTIVE") throw new InvalidInputError("The subscription is not active", "id");
    if (sub.cancelAtPeriodEnd) throw new ConflictError("The subscription is cancelled at its period end and does not renew", "id");
    try {
      const renewed = await renewOnce(db, notify, sub, now, idempotencyKey);
      if (renewed) return renewed;
    } catch (err) {
      // the same key committed by a concurrent call first
      if (isUniqueViolation(err, "idempotencyKey")) return (await replay())!;
      throw err;
    }
  }
  throw new ConflictError("The subscription kept changing while it was renewed; try again", "id");
}

/** Tries of one renewSubscription call against renewals racing it. */
const RENEW_ATTEMPTS = 5;

/** End a subscription at the close of its period: the cycle's non-rollover remainder ends, rollover credits stay. */
async function endAtPeriodEnd(db: Db, notify: Notify, sub: Subscription, now: Date): Promise<void> {
  await inTransaction(db, notify, sub.organizationId, async (sql, tx) => {
    const { count } = await tx.subscription.updateMany({
      where: { id: sub.id, status: "ACTIVE", currentPeriodEnd: sub.currentPeriodEnd },
      data: { status: "CANCELED", endedAt: sub.currentPeriodEnd },
    });
    if (count === 0) return { value: undefined, changes: [] };
    await writeOutbox(sql, [subscriptionEvent("subscription.canceled", { ...sub, endedAt: sub.currentPeriodEnd })], now);
    const reset = await endGrants(sql, tx, sub.organizationId, { subscriptionId: sub.id, rollover: false }, "RESET", now);
    return { value: undefined, changes: await adjustBalances(sql, sub.organizationId, reset, now) };
  });
}

/**
 * The scheduler's pass: every active subscription whose period has ended is renewed (auto mode, catching up
 * missed cycles) or, when cancelled at period end, ended. Returns how many cycles were processed.
 */
export async function processDueSubscriptions(db: Db, notify: Notify, now: Date, mode: RenewalMode): Promise<number> {
  // In manual mode only cancellations at period end are acted on: the lapsed unpaid subscriptions (which wait for
  // renewSubscription) are not even read, so however many there are they never crowd those out of the page.
  const due = await db.subscription.findMany({
    where: { status: "ACTIVE", currentPeriodEnd: { lte: now }, ...(mode === "manual" ? { cancelAtPeriodEnd: true } : {}) },
    orderBy: { currentPeriodEnd: "asc" },
    take: 500,
  });
  let processed = 0;
  for (let sub of due) {
    for (let i = 0; i < MAX_CATCH_UP && sub.currentPeriodEnd <= now; i++) {
      if (sub.cancelAtPeriodEnd) {
        await endAtPeriodEnd(db, notify, sub, now);
        processed++;
        break;
      }
      if (mode === "manual") break;
      const next = await renewOnce(db, notify, sub, now);
      if (!next) {
        // another node got there first, or it was cancelled at period end after this pass read it: then it ends
        const fresh = await db.subscription.findUnique({ where: { id: sub.id } });
        if (fresh?.status === "ACTIVE" && fresh.cancelAtPeriodEnd && fresh.currentPeriodEnd <= now) {
          await endAtPeriodEnd(db, notify, fresh, now);
          processed++;
        }
        break;
      }
      processed++;
      sub = next;
    }
  }
  return processed;
}

/**
 * How to cancel. `atPeriodEnd` (the default): the customer keeps the cycle paid for, and it does not renew.
 * Otherwise it ends now; `revokeCredits` then also removes every credit the subscription granted that remains,
 * rollover included (REVOKE). Without it they stay and run out as they would have: the cycle's at its end.
 */
export interface CancelOptions {
  atPeriodEnd: boolean;
  revokeCredits: boolean;
}

/** End an active subscription now (conditionally: of two concurrent enders one does it). True when this call ended it. */
export async function endSubscriptionNow(tx: Db, id: string, now: Date): Promise<boolean> {
  const { count } = await tx.subscription.updateMany({ where: { id, status: "ACTIVE" }, data: { status: "CANCELED", canceledAt: now, endedAt: now } });
  return count > 0;
}

export async function cancelSubscription(db: Db, notify: Notify, organizationId: string, id: string, options: CancelOptions, now = new Date()): Promise<Subscription> {
  if (options.atPeriodEnd && options.revokeCredits) {
    throw new InvalidInputError("revokeCredits applies to a cancellation now: set atPeriodEnd to false", "input.revokeCredits");
  }
  const sub = await requireSubscription(db, organizationId, id);
  if (sub.status !== "ACTIVE") return sub;
  if (options.atPeriodEnd) return db.subscription.update({ where: { id }, data: { cancelAtPeriodEnd: true, canceledAt: now } });
  return inTransaction(db, notify, organizationId, async (sql, tx) => {
    const endedNow = await endSubscriptionNow(tx, id, now);
    const ended = await tx.subscription.findUniqueOrThrow({ where: { id } });
    if (!endedNow) return { value: ended, changes: [] };
    await writeOutbox(sql, [subscriptionEvent("subscription.canceled", ended)], now);
    if (!options.revokeCredits) return { value: ended, changes: [] };
    const revoked = await endGrants(sql, tx, organizationId, { subscriptionId: id }, "REVOKE", now);
    return { value: ended, changes: await adjustBalances(sql, organizationId, revoked, now) };
  });
}
