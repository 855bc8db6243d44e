// The Redis transport of pub/sub (src/redis-event-target.ts) against stand-in connections whose failures the
// test decides: batched customer messages that could not be published wait, merged per customer, and leave as
// one batch when the publishing connection is back; a refused SUBSCRIBE of the batch channel is tried again and
// its listeners then catch up; one throwing listener does not keep a batch's message from the others.
import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { createResilientRedisEventTarget } from "../src/redis-event-target.ts";

/** A stand-in for an ioredis connection: what it was asked, and failures on demand. */
class FakeRedis extends EventEmitter {
  status = "ready";
  down = false;
  refuseSubscribe = 0;
  published: { channel: string; message: string }[] = [];
  subscribed: string[] = [];
  publish(channel: string, message: string): Promise<number> {
    if (this.down) return Promise.reject(new Error("Connection is closed."));
    this.published.push({ channel, message });
    return Promise.resolve(1);
  }
  subscribe(...channels: string[]): Promise<number> {
    if (this.refuseSubscribe > 0) {
      this.refuseSubscribe--;
      return Promise.reject(new Error("NOPERM this user has no permissions to access one of the channels"));
    }
    this.subscribed.push(...channels);
    return Promise.resolve(channels.length);
  }
  unsubscribe(): Promise<number> {
    return Promise.resolve(0);
  }
}

const PREFIX = "customer:changed:";
const CHANNEL = "customers:changed";
const tick = () => new Promise((r) => setTimeout(r, 5));

function target(options: { retryMs?: number; listenerFailed?: (err: unknown, topic: string) => void } = {}) {
  const publishClient = new FakeRedis();
  const subscribeClient = new FakeRedis();
  const merged: unknown[] = [];
  const t = createResilientRedisEventTarget({
    publishClient: publishClient as unknown as Redis,
    subscribeClient: subscribeClient as unknown as Redis,
    merge: (older, newer) => (merged.push([older, newer]), { merged: [older, newer] }),
    batched: { prefix: PREFIX, channel: CHANNEL },
    report: () => {},
    ...options,
  });
  const heard: Record<string, unknown[]> = {};
  const listen = (customerId: string) => {
    heard[customerId] = [];
    t.eventTarget.addEventListener(PREFIX + customerId, (e) => heard[customerId].push((e as CustomEvent).detail));
  };
  const publish = (customerId: string, detail: unknown) => t.eventTarget.dispatchEvent(new CustomEvent(PREFIX + customerId, { detail }));
  return { t, publishClient, subscribeClient, heard, listen, publish, merged };
}

/** The messages of a batch as sent: `<node> [[suffix, detail], …]`. */
const messagesOf = (message: string) => JSON.parse(message.slice(message.indexOf(" ") + 1)) as [string, unknown][];

describe("Redis event target, batched topics", () => {
  it("messages Redis refused wait merged per customer and leave as one batch when the publishing connection is back", async () => {
    const { publishClient, heard, listen, publish } = target();
    listen("a");
    publishClient.down = true;
    publish("a", { v: 1 });
    await tick();
    publish("a", { v: 2 });
    publish("b", { v: 1 });
    await tick();
    expect(publishClient.published).toEqual([]);
    // this node's listener heard each message once, at once
    expect(heard.a).toEqual([{ v: 1 }, { v: 2 }]);

    publishClient.down = false;
    publishClient.emit("ready");
    await tick();
    expect(publishClient.published.map((p) => p.channel)).toEqual([CHANNEL]);
    expect(messagesOf(publishClient.published[0].message)).toEqual([
      ["a", { merged: [{ v: 1 }, { v: 2 }] }],
      ["b", { v: 1 }],
    ]);
    // nothing is delivered here again
    expect(heard.a).toHaveLength(2);
  });

  it("a refused SUBSCRIBE of the batch channel is tried again, and this node's listeners then catch up", async () => {
    const { t, subscribeClient, listen } = target({ retryMs: 20 });
    const caughtUp: string[][] = [];
    t.onResubscribed((topics) => caughtUp.push(topics));
    listen("a");
    subscribeClient.refuseSubscribe = 2;
    subscribeClient.emit("ready");
    await tick();
    expect(subscribeClient.subscribed).toEqual([]);
    // the first "ready" tells listeners to re-read as before; the refused channel is tried again, twice here
    for (let i = 0; i < 50 && !subscribeClient.subscribed.length; i++) await tick();
    expect(subscribeClient.subscribed).toEqual([CHANNEL]);
    await tick();
    expect(caughtUp).toEqual([[PREFIX + "a"], [PREFIX + "a"]]);
  });

  it("a batch from another node reaches every listener named in it even if one of them throws, which is told and thrown into nothing; its own batches are skipped", async () => {
    const failed: [string, string][] = [];
    const { subscribeClient, publishClient, heard, listen, publish, t } = target({ listenerFailed: (err, topic) => failed.push([(err as Error).message, topic]) });
    listen("a");
    listen("c");
    t.eventTarget.addEventListener(PREFIX + "b", () => {
      throw new Error("a listener's bug");
    });
    const batch = `other-node ${JSON.stringify([
      ["a", { v: 1 }],
      ["b", { v: 1 }],
      ["c", { v: 1 }],
      ["nobody", { v: 1 }],
    ])}`;
    // ioredis's reply handler, which emits this, must never see a listener's error: it would end the process
    expect(() => subscribeClient.emit("message", CHANNEL, batch)).not.toThrow();
    expect(heard).toEqual({ a: [{ v: 1 }], c: [{ v: 1 }] });
    expect(failed).toEqual([["a listener's bug", PREFIX + "b"]]);

    publish("a", { v: 2 });
    await tick();
    expect(publishClient.published).toHaveLength(1);
    subscribeClient.emit("message", CHANNEL, publishClient.published[0].message);
    expect(heard.a).toEqual([{ v: 1 }, { v: 2 }]);
  });
});
