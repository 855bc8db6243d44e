// Notify → pub/sub: what subscriptions listen to. Messages are pointers (ids and a version); subscribers read
// the stored row, so the last message a client receives always shows what the database holds.
import type { Notify } from "./domain/notify.ts";
import type { PubSub } from "./pubsub.ts";

export function pubSubNotify(pubsub: PubSub): Notify {
  return {
    balancesChanged(_organizationId, changes) {
      const customers = new Set<string>();
      for (const c of changes) {
        pubsub.publish("customer-meter:changed", c.customerId, { customerId: c.customerId, meterId: c.meterId, version: c.version });
        customers.add(c.customerId);
      }
      // customerStateChanged: one message per customer per transaction, however many meters moved.
      for (const customerId of customers) pubsub.publish("customer:changed", customerId, { customerId });
    },
    customerChanged(_organizationId, customerId) {
      pubsub.publish("customer:changed", customerId, { customerId });
    },
  };
}
