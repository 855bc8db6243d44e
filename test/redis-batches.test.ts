// Customer messages over Redis travel in batches: what one node publishes in one turn of its event loop is one
// PUBLISH on the batch channel, every other node hears each message on its own topic, and the publishing node
// hears its own once (at once, not again when Redis echoes the batch). Two app pub/subs stand for two nodes;
// a plain Redis connection counts what crosses the wire. Needs REDIS_URL (skipped without it).
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAppPubSub, type PubSub } from "../src/pubsub.ts";

const url = process.env.REDIS_URL;

type Message = { customerId: string; balances: { meterId: string; version: number }[] };

/** Collects what `pubsub` delivers on a customer's topic. */
function listen(pubsub: PubSub, customerId: string): Message[] {
  const heard: Message[] = [];
  const messages = pubsub.subscribe("customer:changed", customerId);
  void (async () => {
    for await (const m of messages) heard.push(m);
  })();
  return heard;
}

async function until(check: () => boolean, what: string) {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!url)("customer messages over Redis", () => {
  let a: ReturnType<typeof createAppPubSub>;
  let b: ReturnType<typeof createAppPubSub>;
  let wire: Redis;
  const crossed: { channel: string; message: string }[] = [];

  beforeAll(async () => {
    a = createAppPubSub(url);
    b = createAppPubSub(url);
    wire = new Redis(url!);
    await wire.psubscribe("customer*");
    wire.on("pmessage", (_pattern: string, channel: string, message: string) => crossed.push({ channel, message }));
    await until(() => a.redis!.up() && b.redis!.up(), "both nodes' Redis connections");
    // each node hears the other: both have subscribed the batch channel (a probe until one gets through)
    for (const [from, to] of [[a, b], [b, a]]) {
      const probe = `cus_probe_${Math.random().toString(36).slice(2, 10)}`;
      const heard = listen(to.pubsub, probe);
      await until(() => {
        if (!heard.length) from.pubsub.publish("customer:changed", probe, { customerId: probe, balances: [] });
        return heard.length > 0;
      }, "a probe between the nodes");
    }
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), wire?.quit()]);
  });

  // Other test files' servers may share this Redis: only what names this file's customers is counted.
  const run = Math.random().toString(36).slice(2, 10);
  const ours = (tag: string) => crossed.filter((c) => c.message.includes(`${tag}_${run}`));

  it("one turn's messages are one PUBLISH; the other node hears each, the publisher each once", async () => {
    const ids = [1, 2, 3].map((i) => `cus_batch_${run}_${i}`);
    const onA = ids.map((id) => listen(a.pubsub, id));
    const onB = ids.map((id) => listen(b.pubsub, id));
    await new Promise((r) => setTimeout(r, 50));
    ids.forEach((customerId, i) => a.pubsub.publish("customer:changed", customerId, { customerId, balances: [{ meterId: "m", version: i + 1 }] }));

    await until(() => onB.every((h) => h.length === 1), "node B's three messages");
    expect(onB.map((h) => h[0])).toEqual(ids.map((customerId, i) => ({ customerId, balances: [{ meterId: "m", version: i + 1 }] })));
    // wait for the echo of A's batch to have reached A too, then count: heard once each
    await until(() => ours("cus_batch").length >= 1, "the batch on the wire");
    await new Promise((r) => setTimeout(r, 100));
    expect(onA.map((h) => h.length)).toEqual([1, 1, 1]);
    expect(ours("cus_batch").map((c) => c.channel)).toEqual(["customers:changed"]);
  });

  it("a node's messages in separate turns are separate batches, and a message for a customer nobody here watches is not delivered", async () => {
    const watched = `cus_watched_${run}`;
    const unwatched = `cus_unwatched_${run}`;
    const heard = listen(b.pubsub, watched);
    await new Promise((r) => setTimeout(r, 50));
    a.pubsub.publish("customer:changed", watched, { customerId: watched, balances: [] });
    await new Promise((r) => setTimeout(r, 0));
    a.pubsub.publish("customer:changed", unwatched, { customerId: unwatched, balances: [] });
    await until(() => ours("cus_watched").length + ours("cus_unwatched").length === 2, "two batches");
    await new Promise((r) => setTimeout(r, 50));
    expect(heard).toEqual([{ customerId: watched, balances: [] }]);
  });
});
