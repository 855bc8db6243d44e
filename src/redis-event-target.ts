// The EventTarget behind pub/sub with Redis, built to survive Redis outages (in place of
// @graphql-yoga/redis-event-target, whose PUBLISH/SUBSCRIBE promises nobody handled: with Redis gone they
// rejected after ioredis's retries and the unhandled rejection ended the process).
//
// - Connections never queue commands while Redis is unreachable (enableOfflineQueue: false): a PUBLISH then
//   fails at once instead of piling up in memory. The failed message is kept, merged per topic (one entry
//   per customer, at most `maxPending` topics), and sent when the publishing connection is back; this node's
//   own subscribers get it at once.
// - ioredis reconnects forever. The subscribing connection resubscribes this node's topics itself each time
//   it is ready, then tells `onResubscribed` listeners which topics may have missed messages meanwhile.
// - Failures are reported at most once per `reportIntervalMs`, with counts.
// - Topics under `batched.prefix` (one per customer) are never subscribed one by one: what is published to
//   them within one turn of the event loop leaves as one PUBLISH on `batched.channel`, which every node
//   subscribes to and fans out to its own listeners. An ingest group that moved 600 customers' balances was
//   600 PUBLISHes (Redis commands, replies and promises: about 10 µs of the node's CPU per ingested event in
//   `npm run bench -- --engine postgresql --only ingest`); it is one. The publishing node's own listeners
//   hear at once, and it skips its own batches when Redis echoes them.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";

export interface RedisTargetReport {
  /** What failed since the last report. */
  event: "publish failed" | "subscribe failed";
  count: number;
  /** Topics whose messages wait for Redis, and messages given up on because that list was full. */
  pending: number;
  dropped: number;
  err: string;
}

export interface ResilientRedisTargetOptions {
  publishClient: Redis;
  subscribeClient: Redis;
  /** One message standing for two undelivered messages of one topic (older first). */
  merge(older: unknown, newer: unknown): unknown;
  /** Topics kept for redelivery at most; beyond it messages are dropped (and counted). */
  maxPending?: number;
  report?(report: RedisTargetReport): void;
  reportIntervalMs?: number;
  /** Topics starting with `prefix` travel in batches on `channel` (see above). */
  batched?: { prefix: string; channel: string };
  /** A refused SUBSCRIBE of the batch channel is tried again this long after, while the connection is up. */
  retryMs?: number;
  /**
   * A subscriber's listener threw: told here, and the message still reaches every other listener (it arrived
   * on ioredis's reply handler, or within a transaction's publishing, neither of which a listener may break).
   */
  listenerFailed?(err: unknown, topic: string): void;
}

/**
 * A batch on the wire: the sending node's id, a space, then its messages as JSON, `[[suffix, detail], …]` (each
 * topic's suffix after the prefix): a node skips its own batches without parsing them.
 */
type Batch = [suffix: string, detail: unknown][];

/** Messages per batch at most (a 10,000-event group can move as many customers): 100–200 bytes each. */
const BATCH_MESSAGES = 2_000;

type Listener = EventListenerOrEventListenerObject;

const SUBSCRIBE_CHUNK = 1000;

export function createResilientRedisEventTarget(options: ResilientRedisTargetOptions) {
  const { publishClient, subscribeClient, merge } = options;
  const maxPending = options.maxPending ?? 100_000;
  const reportIntervalMs = options.reportIntervalMs ?? 10_000;
  const retryMs = options.retryMs ?? 1_000;
  const listeners = new Map<string, Set<Listener>>();
  const pending = new Map<string, unknown>();
  const resubscribed: ((topics: string[]) => void)[] = [];
  let dropped = 0;
  const batched = options.batched;
  const isBatched = (topic: string) => batched !== undefined && topic.startsWith(batched.prefix);
  const node = randomUUID();
  /** Batched messages of this turn, sent together in a microtask. */
  let outgoing: [string, unknown][] = [];
  /** Batched topics with listeners here: with none, a batch from another node is not even parsed. */
  let batchedTopics = 0;
  const failures = { "publish failed": 0, "subscribe failed": 0 };
  let lastReport = 0;

  function failed(event: RedisTargetReport["event"], err: unknown) {
    failures[event]++;
    const now = Date.now();
    if (now - lastReport < reportIntervalMs) return;
    lastReport = now;
    options.report?.({ event, count: failures[event], pending: pending.size, dropped, err: err instanceof Error ? err.message : String(err) });
    failures[event] = 0;
  }

  function deliverLocally(topic: string, detail: unknown) {
    const callbacks = listeners.get(topic);
    if (!callbacks) return;
    const event = new CustomEvent(topic, { detail });
    for (const callback of callbacks) {
      try {
        if (typeof callback === "function") callback(event);
        else callback.handleEvent(event);
      } catch (err) {
        options.listenerFailed?.(err, topic);
      }
    }
  }

  function keep(topic: string, detail: unknown) {
    if (pending.has(topic)) pending.set(topic, merge(pending.get(topic), detail));
    else if (pending.size < maxPending) pending.set(topic, detail);
    else dropped++;
  }

  /** One PUBLISH on the batch channel for these messages (their listeners on this node have heard them). */
  function sendBatch(messages: [topic: string, detail: unknown][]) {
    for (let i = 0; i < messages.length; i += BATCH_MESSAGES) {
      const slice = messages.slice(i, i + BATCH_MESSAGES);
      const batch: Batch = slice.map(([topic, detail]) => [topic.slice(batched!.prefix.length), detail]);
      publishClient.publish(batched!.channel, `${node} ${JSON.stringify(batch)}`).catch((err: unknown) => {
        for (const [topic, detail] of slice) keep(topic, detail);
        failed("publish failed", err);
      });
    }
  }

  function flush() {
    const messages = outgoing;
    outgoing = [];
    sendBatch(messages);
  }

  /** To the other nodes in this turn's batch; heard here at once. */
  function publishBatched(topic: string, detail: unknown) {
    if (!outgoing.length) queueMicrotask(flush);
    outgoing.push([topic, detail]);
    deliverLocally(topic, detail);
  }

  function publish(topic: string, detail: unknown) {
    if (isBatched(topic)) return publishBatched(topic, detail);
    publishClient.publish(topic, detail === undefined ? "" : JSON.stringify(detail)).catch((err: unknown) => {
      // this node's own subscribers need not wait for Redis (they hear it again, harmlessly, when it is sent)
      deliverLocally(topic, detail);
      keep(topic, detail);
      failed("publish failed", err);
    });
  }

  function subscribe(topics: string[]): Promise<unknown> {
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < topics.length; i += SUBSCRIBE_CHUNK) {
      done.push(subscribeClient.subscribe(...topics.slice(i, i + SUBSCRIBE_CHUNK)).catch((err: unknown) => failed("subscribe failed", err)));
    }
    return Promise.all(done);
  }

  subscribeClient.on("message", (channel: string, message: string) => {
    if (batched && channel === batched.channel) return receiveBatch(message);
    let detail: unknown = null;
    try {
      if (message !== "") detail = JSON.parse(message);
    } catch {
      return; // not one of ours
    }
    deliverLocally(channel, detail);
  });

  /** Listeners of these topics may have missed messages: `onResubscribed` listeners are told (none: nothing to tell). */
  function catchUp(topics: string[]) {
    if (topics.length) for (const listener of resubscribed) listener(topics);
  }

  /**
   * The batch channel carries every customer's messages from the other nodes: a refused SUBSCRIBE (say, an ACL
   * without the channel) is reported and tried again while the connection stays up, never left for good; once
   * a retry takes, this node's listeners of batched topics catch up (`onResubscribed`) on what they missed.
   */
  function subscribeBatches(): Promise<boolean> {
    return subscribeClient.subscribe(batched!.channel).then(
      () => true,
      (err: unknown) => {
        failed("subscribe failed", err);
        const retry = setTimeout(() => {
          if (subscribeClient.status !== "ready") return; // the next "ready" subscribes
          void subscribeBatches().then((subscribed) => {
            if (subscribed) catchUp([...listeners.keys()].filter(isBatched));
          });
        }, retryMs);
        retry.unref();
        return false;
      },
    );
  }

  /** Every listener of the batch hears its message, whichever of them throws; the first error is thrown after. */
  function receiveBatch(message: string) {
    const space = message.indexOf(" ");
    if (space < 0 || batchedTopics === 0 || (space === node.length && message.startsWith(node))) return;
    let batch: unknown;
    try {
      batch = JSON.parse(message.slice(space + 1));
    } catch {
      return; // not one of ours
    }
    if (!Array.isArray(batch)) return;
    // (a listener's failure is told to listenerFailed by deliverLocally: nothing is thrown into ioredis)
    for (const entry of batch as Batch) {
      const topic = batched!.prefix + String(entry?.[0]);
      if (listeners.has(topic)) deliverLocally(topic, entry[1]);
    }
  }

  // Each (re)connection starts without subscriptions (autoResubscribe is off): take this node's topics there
  // again, then let listeners catch up on whatever was published while the connection was down.
  subscribeClient.on("ready", () => {
    const topics = [...listeners.keys()];
    const own = topics.filter((t) => !isBatched(t));
    if (!own.length && !batched) return;
    // listeners re-read once subscribed, so nothing published after their read can pass unheard
    void Promise.all([subscribe(own), batched ? subscribeBatches() : null]).then(() => catchUp(topics));
  });

  publishClient.on("ready", () => {
    const undelivered = [...pending];
    pending.clear();
    sendBatch(undelivered.filter(([topic]) => isBatched(topic)));
    for (const [topic, detail] of undelivered) if (!isBatched(topic)) publish(topic, detail);
  });

  const eventTarget = {
    addEventListener(topic: string, callback: Listener | null) {
      if (callback == null) return;
      let callbacks = listeners.get(topic);
      if (!callbacks) {
        listeners.set(topic, (callbacks = new Set()));
        // while the connection is down, the next "ready" subscribes (batched topics: the channel already is)
        if (isBatched(topic)) batchedTopics++;
        else if (subscribeClient.status === "ready") void subscribe([topic]);
      }
      callbacks.add(callback);
    },
    removeEventListener(topic: string, callback: Listener | null) {
      const callbacks = listeners.get(topic);
      if (callback == null || !callbacks?.delete(callback) || callbacks.size) return;
      listeners.delete(topic);
      if (isBatched(topic)) batchedTopics--;
      else if (subscribeClient.status === "ready") subscribeClient.unsubscribe(topic).catch(() => {});
    },
    dispatchEvent(event: Event) {
      publish(event.type, (event as CustomEvent<unknown>).detail);
      return true;
    },
  };

  return {
    eventTarget: eventTarget as unknown as EventTarget,
    /** Hand a message to this node's listeners only (not through Redis). */
    deliverLocally,
    /** Called with this node's topics each time the subscribing connection is back (and on first connect with topics). */
    onResubscribed(listener: (topics: string[]) => void) {
      resubscribed.push(listener);
    },
    /** Both connections are ready. */
    up: () => publishClient.status === "ready" && subscribeClient.status === "ready",
    pendingTopics: () => pending.size,
  };
}
