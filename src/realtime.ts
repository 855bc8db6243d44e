// Notify → pub/sub: what subscriptions listen to. Messages are pointers (ids and a version); subscribers read
// the stored row, so the last message a client receives always shows what the database holds.
import type { Notify } from "./domain/notify.ts";
import type { ChangedBalance, PubSub } from "./pubsub.ts";

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
