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

/**
 * In-process pub/sub by default; Redis-backed (across server processes) when a Redis URL is given. Redis
 * connection errors go to `onError` (ioredis keeps reconnecting); meanwhile pushes to other nodes are lost,
 * but every subscriber still reads the stored row on its next message.
 */
export function createAppPubSub(redisUrl?: string, onError?: (err: Error) => void): { pubsub: PubSub; close(): Promise<void> } {
  if (!redisUrl) return { pubsub: createPubSub<Topics>(), close: async () => {} };
  // Auto-pipelining: the publishes of one transaction (one per changed balance) leave in one socket write.
  const publishClient = new Redis(redisUrl, { enableAutoPipelining: true });
  const subscribeClient = new Redis(redisUrl);
  let lastReport = 0;
  for (const client of [publishClient, subscribeClient]) {
    client.on("error", (err: Error) => {
      // at most one report a second while Redis is unreachable
      if (Date.now() - lastReport < 1000) return;
      lastReport = Date.now();
      onError?.(err);
    });
  }
  const pubsub = createPubSub<Topics>({ eventTarget: createRedisEventTarget({ publishClient, subscribeClient }) });
  return {
    pubsub,
    close: async () => {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
    },
  };
}
