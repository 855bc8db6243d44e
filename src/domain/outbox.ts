// The outbox: what the outside world must hear about (webhooks, balance alerts) is a row written in the same
// transaction as the change that caused it, so a crash can neither lose one nor invent one. The delivery
// worker (src/webhooks/delivery.ts) fans the rows out to endpoints after they commit.
import type { Sql } from "../db/sql.ts";
import { orderedId } from "./ids.ts";
import { formatUnits } from "./units.ts";

/** Every event type a webhook endpoint can ask for. */
export const WEBHOOK_EVENT_TYPES = [
  "balance.low",
  "balance.depleted",
  "balance.recovered",
  "credits.expiring",
  "credit_grant.created",
  "credit_grant.expired",
  "order.created",
  "order.refunded",
  "subscription.renewed",
  "subscription.canceled",
  "topup.requested",
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The alert types among them: also pushed to `balanceAlerts` subscribers (topup.requested: src/domain/topups.ts). */
export const ALERT_TYPES = ["balance.low", "balance.depleted", "balance.recovered", "topup.requested"] as const satisfies readonly WebhookEventType[];
export type AlertType = (typeof ALERT_TYPES)[number];
export const isAlertType = (type: string): type is AlertType => (ALERT_TYPES as readonly string[]).includes(type);

/** One event for the outbox: its `data` is the webhook body's `data` (JSON: units as decimal strings). */
export interface OutboxEvent {
  organizationId: string;
  type: WebhookEventType;
  data: Record<string, unknown>;
}

/** Write `events` in the caller's transaction (one statement; none when there are none). */
export async function writeOutbox(sql: Sql, events: OutboxEvent[], now: Date): Promise<void> {
  if (!events.length) return;
  const at = sql.date(now);
  await sql.insertMany(
    "OutboxMessage",
    ["id", "organizationId", "type", "payload", "createdAt"],
    events.map((e) => [orderedId(), e.organizationId, e.type, JSON.stringify(e.data), at]),
  );
}

/** Orders and subscriptions as their events carry them. */
export function orderEvent(type: "order.created" | "order.refunded", order: { id: string; organizationId: string; customerId: string; productId: string; subscriptionId: string | null; amount?: bigint | null; currency?: string | null }): OutboxEvent {
  const { id, organizationId, customerId, productId, subscriptionId } = order;
  return { organizationId, type, data: { orderId: id, customerId, productId, subscriptionId, amount: order.amount == null ? null : formatUnits(order.amount), currency: order.currency ?? null } };
}

export function subscriptionEvent(
  type: "subscription.renewed" | "subscription.canceled",
  s: { id: string; organizationId: string; customerId: string; productId: string; currentPeriodStart: Date; currentPeriodEnd: Date; cancelAtPeriodEnd?: boolean; endedAt?: Date | null },
): OutboxEvent {
  return {
    organizationId: s.organizationId,
    type,
    data: {
      subscriptionId: s.id,
      customerId: s.customerId,
      productId: s.productId,
      currentPeriodStart: s.currentPeriodStart.toISOString(),
      currentPeriodEnd: s.currentPeriodEnd.toISOString(),
      cancelAtPeriodEnd: s.cancelAtPeriodEnd ?? false,
      endedAt: s.endedAt?.toISOString() ?? null,
    },
  };
}
