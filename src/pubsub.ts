// Typed pub/sub topics. Messages carry ids and versions only (small JSON, Redis-ready); subscribers read the
// stored row after receiving one, so what they are sent is never staler than the database.
import { createPubSub } from "graphql-yoga";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { Redis } from "ioredis";

/** One balance of the customer that changed, and its version after the change. */
export type ChangedBalance = { meterId: string; version: number };

export type Topics = {
  /**
   * A customer's fields or balances changed: one message per customer per transaction, naming every balance
   * that moved (none for a change to the customer's own fields). Keyed by customer id. One message rather
   * than one per balance: with Redis, each is a PUBLISH.
   */
  "customer:changed": [customerId: string, payload: { customerId: string; balances: ChangedBalance[] }];
  /**
   * Access ended: these token ids were revoked, or this customer was deleted (its sessions end). Every node
   * forgets the tokens and closes the WebSockets they opened (src/socket-authority.ts). Not keyed: every node
   * listens to all of them.
   */
  "auth:revoked": [payload: { organizationId: string; tokenIds: string[]; customerId: string | null }];
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

/**
 * Announce a revocation from a short-lived process (the CLI) and wait until Redis has taken it. The channel is
 * the topic's name, as createPubSub names unkeyed topics, so the nodes' `auth:revoked` listeners receive it.
 */
export async function announceRevocation(redisUrl: string, payload: Topics["auth:revoked"][0]): Promise<void> {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  client.on("error", () => {}); // the publish below reports the failure
  try {
    await client.publish("auth:revoked" satisfies keyof Topics, JSON.stringify(payload));
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}
