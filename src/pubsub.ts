// Typed pub/sub topics. Messages carry ids and versions only (small JSON, Redis-ready); subscribers read the
// stored row after receiving one, so what they are sent is never staler than the database.
import { Repeater, type RepeaterBuffer } from "@repeaterjs/repeater";
import { createPubSub } from "graphql-yoga";
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./log.ts";
import { createResilientRedisEventTarget } from "./redis-event-target.ts";

/** One balance of the customer that changed, and its version after the change. */
export type ChangedBalance = { meterId: string; version: number };

export type Topics = {
  /**
   * A customer's fields or balances changed: one message per customer per transaction, naming every balance
   * that moved (none for a change to the customer's own fields). Keyed by customer id. With Redis, a
   * transaction's messages leave as one PUBLISH on CUSTOMER_BATCHES (src/redis-event-target.ts, `batched`).
   */
  "customer:changed": [customerId: string, payload: { customerId: string; balances: ChangedBalance[] }];
  /**
   * Access ended: these token ids were revoked, or this customer was deleted (its sessions end). Every node
   * forgets the tokens and closes the WebSockets they opened (src/socket-authority.ts). Not keyed: every node
   * listens to all of them.
   */
  "auth:revoked": [payload: { organizationId: string; tokenIds: string[]; customerId: string | null }];
  /**
   * A balance alert left the outbox (src/webhooks/delivery.ts publishes each once, whichever node dispatched
   * it): the outbox row's id, for `balanceAlerts` subscribers to read. Keyed by organization id.
   */
  "balance:alert": [organizationId: string, payload: { id: string; customerId: string; meterId: string }];
};

export type PubSub = ReturnType<typeof createPubSub<Topics>>;

/** A Redis link's view for health checks and catching up after an outage (null without Redis). */
export interface RedisLink {
  /** Both Redis connections are ready. */
  up(): boolean;
  /**
   * `listener` gets the customer ids this node has subscribers for whenever the subscribing connection is
   * back after an outage: messages published meanwhile never arrived, so they should re-read.
   */
  onResubscribed(listener: (customerIds: string[]) => void): void;
  /** Deliver a message to this node's subscribers only. */
  deliverLocally(customerId: string, payload: Topics["customer:changed"][1]): void;
}

const CUSTOMER_TOPIC = "customer:changed:";
/** The Redis channel every node subscribes to for the `customer:changed` messages of all customers, in batches. */
const CUSTOMER_BATCHES = "customers:changed";

/** Two undelivered messages of one customer as one: every balance named by either, at its higher version. */
function mergeCustomerChanged(older: unknown, newer: unknown): unknown {
  const a = older as Topics["customer:changed"][1] | null;
  const b = newer as Topics["customer:changed"][1] | null;
  if (!a?.balances || !b?.balances) return newer;
  const versions = new Map<string, number>();
  for (const x of [...a.balances, ...b.balances]) versions.set(x.meterId, Math.max(x.version, versions.get(x.meterId) ?? x.version));
  return { customerId: b.customerId, balances: [...versions].map(([meterId, version]) => ({ meterId, version })) };
}

/**
 * In-process pub/sub by default; Redis-backed (across server processes) when a Redis URL is given. A Redis
 * outage never stops the node (src/redis-event-target.ts): ioredis reconnects forever, nothing queues in
 * memory but one merged message per customer whose publish failed (sent when Redis is back), and failures
 * are logged at most every 10 s. Subscribers on this node re-read their rows when Redis returns (see
 * `RedisLink.onResubscribed`, wired in src/realtime.ts).
 */
export function createAppPubSub(redisUrl?: string, log?: Pick<Logger, "warn" | "info" | "error">): { pubsub: PubSub; redis: RedisLink | null; close(): Promise<void> } {
  if (!redisUrl) return { pubsub: boundedPubSub(new EventTarget()), redis: null, close: async () => {} };
  const connection: RedisOptions = {
    // reconnect forever, at most 2 s apart
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    // no command waits for a connection: while Redis is down they fail at once (and are handled)
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
  };
  // Auto-pipelining: what one turn publishes leaves in one socket write.
  const publishClient = new Redis(redisUrl, { ...connection, enableAutoPipelining: true });
  // The event target resubscribes on every ready itself (and knows then that messages were missed).
  const subscribeClient = new Redis(redisUrl, { ...connection, autoResubscribe: false });
  let lastError = 0;
  let down = false;
  for (const client of [publishClient, subscribeClient]) {
    client.on("error", (err: Error) => {
      down = true;
      // at most one report every 10 s while Redis is unreachable
      if (Date.now() - lastError < 10_000) return;
      lastError = Date.now();
      log?.warn({ err: err.message }, "redis unavailable; serving without cross-node pushes");
    });
    client.on("ready", () => {
      if (!down || !(publishClient.status === "ready" && subscribeClient.status === "ready")) return;
      down = false;
      log?.info({}, "redis connection restored");
    });
  }
  const target = createResilientRedisEventTarget({
    publishClient,
    subscribeClient,
    merge: mergeCustomerChanged,
    batched: { prefix: CUSTOMER_TOPIC, channel: CUSTOMER_BATCHES },
    report: (r) => log?.warn(r, "redis unavailable: messages to other nodes wait for it"),
    listenerFailed: (err, topic) => log?.error({ err, topic }, "a subscriber's listener failed; the message went on to the others"),
  });
  const pubsub = boundedPubSub(target.eventTarget);
  return {
    pubsub,
    redis: {
      up: target.up,
      onResubscribed(listener) {
        target.onResubscribed((topics) => {
          const ids = topics.filter((t) => t.startsWith(CUSTOMER_TOPIC)).map((t) => t.slice(CUSTOMER_TOPIC.length));
          if (ids.length) listener(ids);
        });
      },
      deliverLocally: (customerId, payload) => target.deliverLocally(CUSTOMER_TOPIC + customerId, payload),
    },
    close: async () => {
      await Promise.allSettled([publishClient.quit(), subscribeClient.quit()]);
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}

/** Most messages a subscription holds that its client has not read yet (see BoundedBuffer). */
export const SUBSCRIPTION_BUFFER = 256;

/**
 * A subscription's unread messages, bounded. graphql-ws and SSE read a subscription only as fast as its client
 * reads its socket, and a Repeater without a buffer throws into whoever publishes its 1,025th unread message:
 * one client that stopped reading took the node down, or cut off the rest of a transaction's pushes to every
 * other subscriber. Full, the buffer folds instead: given `merge` (one customer's changes: every balance named,
 * at its highest version, which subscribers re-read anyway), the newest message is merged into the last one
 * held and nothing is lost; otherwise the oldest message is dropped. Never full, so a push never waits or throws.
 */
export class BoundedBuffer<V> implements RepeaterBuffer<PromiseLike<V>> {
  // the repeater hands its buffer each pushed value as a promise of it
  private readonly queue: PromiseLike<V>[] = [];
  constructor(
    private readonly capacity: number,
    private readonly merge?: (older: V, newer: V) => V,
  ) {}
  get empty(): boolean {
    return this.queue.length === 0;
  }
  get full(): boolean {
    return false;
  }
  add(value: PromiseLike<V>): void {
    const merge = this.merge;
    if (this.queue.length < this.capacity) this.queue.push(value);
    else if (merge) {
      const last = this.queue.length - 1;
      this.queue[last] = Promise.all([this.queue[last], value]).then(([older, newer]) => merge(older, newer));
    } else {
      this.queue.shift();
      this.queue.push(value);
    }
  }
  remove(): PromiseLike<V> {
    if (!this.queue.length) throw new Error("BoundedBuffer: remove from an empty buffer");
    return this.queue.shift()!;
  }
}

/**
 * Yoga's pub/sub over `target`, whose subscriptions hold at most SUBSCRIPTION_BUFFER unread messages each (a
 * BoundedBuffer of their own: yoga's `repeaterBuffer` option would share one buffer among all of them). Topics
 * are named as yoga names them, so publishers and the Redis event target see no difference.
 */
function boundedPubSub(target: EventTarget): PubSub {
  const yoga = createPubSub<Topics>({ eventTarget: target });
  const subscribe = (routingKey: string, id?: string) => {
    const topic = id === undefined ? routingKey : `${routingKey}:${id}`;
    const merge = routingKey === "customer:changed" ? mergeCustomerChanged : undefined;
    return new Repeater<unknown>((push, stop) => {
      const listener = (event: Event) => void push((event as CustomEvent).detail);
      target.addEventListener(topic, listener);
      void stop.then(() => target.removeEventListener(topic, listener));
    }, new BoundedBuffer<unknown>(SUBSCRIPTION_BUFFER, merge) as RepeaterBuffer);
  };
  return { publish: yoga.publish, subscribe: subscribe as PubSub["subscribe"] };
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
