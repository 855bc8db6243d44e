// Typed pub/sub topics. Messages carry ids and versions only (small JSON, Redis-ready); subscribers read the
// stored row after receiving one, so what they are sent is never staler than the database.
import { createPubSub } from "graphql-yoga";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { Redis } from "ioredis";

export type Topics = {
  /** A customer's fields or any of its balances changed (once per transaction). Keyed by customer id. */
  "customer:changed": [customerId: string, payload: { customerId: string }];
  /** A (customer, meter) balance changed. Keyed by customer id. */
  "customer-meter:changed": [customerId: string, payload: { customerId: string; meterId: string; version: number }];
};

export type PubSub = ReturnType<typeof createPubSub<Topics>>;

/** In-process pub/sub by default; Redis-backed (across server processes) when a Redis URL is given. */
export function createAppPubSub(redisUrl?: string): { pubsub: PubSub; close(): Promise<void> } {
  if (!redisUrl) return { pubsub: createPubSub<Topics>(), close: async () => {} };
  const publishClient = new Redis(redisUrl);
  const subscribeClient = new Redis(redisUrl);
  const pubsub = createPubSub<Topics>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) });
  return {
    pubsub,
    close: async () => {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
    },
  };
}
