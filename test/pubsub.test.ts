// A subscription whose client stops reading (graphql-ws and SSE read a subscription only as fast as their
// client reads the socket) holds at most SUBSCRIPTION_BUFFER messages: a customer's changes fold into one
// message naming every balance at its highest version, alerts drop the oldest. Without the bound, the
// 1,025th unread message threw into the publisher: the node crashed (no Redis) or a transaction's other
// pushes were lost. In-process, and across two app pub/subs over Redis when REDIS_URL is set.
import { describe, expect, it } from "vitest";
import { createAppPubSub, SUBSCRIPTION_BUFFER, type PubSub } from "../src/pubsub.ts";

type Changed = { customerId: string; balances: { meterId: string; version: number }[] };

/** Everything a subscription holds now, read without waiting for more. */
async function drain<T>(messages: AsyncIterator<T>): Promise<T[]> {
  const out: T[] = [];
  for (;;) {
    const next = await Promise.race([messages.next(), new Promise<null>((r) => setTimeout(() => r(null), 50))]);
    if (next === null || next.done) return out;
    out.push(next.value);
  }
}

async function unreadCustomer(publisher: PubSub, subscriber: PubSub, settle: () => Promise<void>) {
  const idle = subscriber.subscribe("customer:changed", "c1")[Symbol.asyncIterator]();
  const other = subscriber.subscribe("customer:changed", "c2")[Symbol.asyncIterator]();
  // subscribed (a repeater starts listening at its first read); then nobody reads them while 6,000 messages arrive
  const first = idle.next();
  const firstOther = other.next();
  await settle();
  for (let v = 1; v <= 3_000; v++) {
    publisher.publish("customer:changed", "c1", { customerId: "c1", balances: [{ meterId: `m${v % 7}`, version: v }] });
    publisher.publish("customer:changed", "c2", { customerId: "c2", balances: [{ meterId: "m0", version: v }] });
  }
  await settle();
  const held = [(await first).value as Changed, ...(await drain(idle as AsyncIterator<Changed>))];
  expect(held.length).toBeLessThanOrEqual(SUBSCRIPTION_BUFFER + 1);
  // nothing lost: every meter is named, the last of them at the last version sent
  const latest = new Map<string, number>();
  for (const m of held.flatMap((h) => h.balances)) latest.set(m.meterId, Math.max(m.version, latest.get(m.meterId) ?? 0));
  expect(Object.fromEntries(latest)).toEqual(Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`m${i}`, 3_000 - ((3_000 - i) % 7)])));
  // the other subscription, read late too, ends at the last version
  const others = [(await firstOther).value as Changed, ...(await drain(other as AsyncIterator<Changed>))];
  expect(Math.max(...others.flatMap((o) => o.balances.map((b) => b.version)))).toBe(3_000);
  await idle.return?.();
  await other.return?.();
}

describe("subscriptions nobody reads", () => {
  it("in one process: a customer's changes fold into what the buffer holds, nothing lost, nothing thrown", async () => {
    const { pubsub, close } = createAppPubSub();
    await unreadCustomer(pubsub, pubsub, async () => {});
    await close();
  });

  it("alerts keep the newest SUBSCRIPTION_BUFFER", async () => {
    const { pubsub, close } = createAppPubSub();
    const alerts = pubsub.subscribe("balance:alert", "org")[Symbol.asyncIterator]();
    const first = alerts.next();
    for (let i = 1; i <= 2_000; i++) pubsub.publish("balance:alert", "org", { id: `a${i}`, customerId: "c", meterId: "m" });
    const held = [(await first).value, ...(await drain(alerts))].map((a) => a.id);
    expect(held[0]).toBe("a1"); // the one a reader was already waiting for
    expect(held.slice(1)).toEqual(Array.from({ length: SUBSCRIPTION_BUFFER }, (_, i) => `a${2_000 - SUBSCRIPTION_BUFFER + 1 + i}`));
    await alerts.return?.();
    await close();
  });

  it.skipIf(!process.env.REDIS_URL)("across two nodes over Redis: the same, and the subscribing node's Redis handler never throws", async () => {
    const a = createAppPubSub(process.env.REDIS_URL);
    const b = createAppPubSub(process.env.REDIS_URL);
    const settle = () => new Promise<void>((r) => setTimeout(r, 300));
    await unreadCustomer(a.pubsub, b.pubsub, settle);
    await Promise.all([a.close(), b.close()]);
  });
});
