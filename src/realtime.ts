// Notify → pub/sub: what subscriptions listen to. Messages are pointers (ids and a version); subscribers read
// the stored row, so the last message a client receives always shows what the database holds.
import type { Notify } from "./domain/notify.ts";
import type { Db } from "./db/client.ts";
import type { Logger } from "./log.ts";
import type { ChangedBalance, PubSub, RedisLink } from "./pubsub.ts";

export function pubSubNotify(pubsub: PubSub): Notify {
  return {
    balancesChanged(_organizationId, changes) {
      const byCustomer = new Map<string, ChangedBalance[]>();
      for (const c of changes) {
        let balances = byCustomer.get(c.customerId);
        if (!balances) byCustomer.set(c.customerId, (balances = []));
        balances.push({ meterId: c.meterId, version: c.version });
      }
      for (const [customerId, balances] of byCustomer) pubsub.publish("customer:changed", customerId, { customerId, balances });
    },
    customerChanged(_organizationId, customerId) {
      pubsub.publish("customer:changed", customerId, { customerId, balances: [] });
    },
    accessRevoked(organizationId, { tokenIds, customerId }) {
      pubsub.publish("auth:revoked", { organizationId, tokenIds, customerId });
    },
  };
}

/**
 * After a Redis outage (the subscribing connection is back), every subscriber on this node re-reads: each
 * customer with subscribers here gets a local message naming all its balances, so each subscription pushes
 * the stored rows, including changes other nodes made while their messages could not arrive.
 */
/** How long the re-read after a Redis outage keeps trying while the database does not answer, and how often. */
export const CATCH_UP_RETRY_MS = { total: 120_000, every: 1_000 };

/**
 * `read`, again every `retryMs.every` while it fails (the database may be coming back with Redis), for up to
 * `retryMs.total`: a subscriber left with the balance it had before the outage would not be told until its
 * balance next changes.
 */
async function retriedRead<T>(read: () => Promise<T>, retryMs: { total: number; every: number }, log: Logger): Promise<T> {
  const deadline = Date.now() + retryMs.total;
  for (;;) {
    try {
      return await read();
    } catch (err) {
      if (Date.now() + retryMs.every > deadline) throw err;
      log.warn({ err: (err as Error).message }, "re-reading balances after a redis outage: the database did not answer, trying again");
      await new Promise((resolve) => setTimeout(resolve, retryMs.every));
    }
  }
}

export function catchUpAfterRedisOutage(db: Db, redis: RedisLink, log: Logger, retryMs = CATCH_UP_RETRY_MS): void {
  redis.onResubscribed((customerIds) => {
    void (async () => {
      for (let i = 0; i < customerIds.length; i += 500) {
        const ids = customerIds.slice(i, i + 500);
        const rows = await retriedRead(() => db.customerMeter.findMany({ where: { customerId: { in: ids } }, select: { customerId: true, meterId: true, version: true } }), retryMs, log);
        const balances = new Map<string, ChangedBalance[]>(ids.map((id) => [id, []]));
        for (const r of rows) balances.get(r.customerId)!.push({ meterId: r.meterId, version: r.version });
        for (const [customerId, changed] of balances) redis.deliverLocally(customerId, { customerId, balances: changed });
      }
      log.info({ customers: customerIds.length }, "redis reconnected: subscribers re-read their balances");
    })().catch((err: unknown) => log.error({ err }, "re-reading balances for subscribers after a redis outage failed"));
  });
}
