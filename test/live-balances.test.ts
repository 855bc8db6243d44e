import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateSession, CustomerMeterUpdated, CustomerStateWithMeters, GetCustomerMeter } from "./documents.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { customer, grant, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
let opened = 0;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

/** Subscribe and wait until the server listens. */
async function watch<R, V>(token: string, doc: Parameters<typeof subscription<R, V>>[1], variables: V) {
  const sub = subscription(t.wsClient(token), doc, variables);
  await t.subscribed(++opened);
  return sub;
}

async function sessionToken(customerId: string) {
  const { createCustomerSession } = await t.ok(CreateSession, { customerId });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
  return createCustomerSession.token;
}

describe("customerMeterUpdated", () => {
  it("one commit waking 600 customers' subscribers pushes every one of them its balance", async () => {
    const m = await meter(t, "COUNT", { filter: named("fan-out") });
    // Made a few at a time, as a well-behaved client would: 600 requests at once would overflow the client's
    // queue of waiting requests (RATE_LIMIT_QUEUE) and be refused.
    const customers: string[] = [];
    for (let i = 0; i < 600; i += 8) customers.push(...(await Promise.all(Array.from({ length: 8 }, (_, j) => customer(t, `fan_out_${i + j}`)))));
    // 100 subscriptions per socket (the default limit), six sockets
    const subs = [];
    for (let i = 0; i < customers.length; i++) {
      if (i % 100 === 0) var client = t.wsClient(t.adminToken);
      subs.push(subscription(client!, CustomerMeterUpdated, { customerId: customers[i], meterId: m }));
    }
    await t.subscribed((opened += customers.length));
    await ingest(t, customers.map((c) => ({ name: "fan-out", customerId: c })));
    const messages = await Promise.all(subs.map((s) => s.next(20_000)));
    expect(messages.filter((msg) => msg.errors?.length)).toEqual([]);
    expect(messages.map((msg) => msg.data?.customerMeterUpdated.consumedUnits)).toEqual(customers.map(() => "1"));
    for (const s of subs) s.close();
  }, 120_000);


  it("pushes the exact new balance after events are ingested over HTTP", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "tokens" });
    await grant(t, c, m, "100");
    const sub = await watch(t.adminToken, CustomerMeterUpdated, { customerId: c, meterId: m });
    await ingest(t, [{ name: "use", customerId: c, metadata: { tokens: 12.5 } }, { name: "use", customerId: c, metadata: { tokens: 0.25 } }]);
    const msg = await sub.next();
    expect(msg.data?.customerMeterUpdated).toMatchObject({ balance: "87.25", consumedUnits: "12.75", creditedUnits: "100", meter: { id: m } });
    sub.close();
  });

  it("sends one message per (customer, meter) per transaction", async () => {
    const c = await customer(t);
    // Own event name, so meters of the other tests do not match.
    const m1 = await meter(t, "COUNT", { filter: named("batch") });
    const m2 = await meter(t, "SUM", { property: "n", filter: named("batch") });
    const sub = await watch(t.adminToken, CustomerMeterUpdated, { customerId: c });
    await ingest(t, Array.from({ length: 5 }, () => ({ name: "batch", customerId: c, metadata: { n: 2 } })));
    const got = [await sub.next(), await sub.next()].map((m) => m.data!.customerMeterUpdated);
    expect(got.map((g) => g.meter.id).sort()).toEqual([m1, m2].sort());
    // A later, separate change arrives next: nothing else was queued for the batch.
    await grant(t, c, m1, "1");
    expect((await sub.next()).data?.customerMeterUpdated).toMatchObject({ meter: { id: m1 }, creditedUnits: "1" });
    expect(sub.pending()).toBe(0);
    sub.close();
  });

  it("the last message a client receives equals the stored balance, under concurrent writes", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "n" });
    const sub = await watch(t.adminToken, CustomerMeterUpdated, { customerId: c, meterId: m });
    await Promise.all(Array.from({ length: 10 }, (_, i) => ingest(t, [{ name: "use", customerId: c, metadata: { n: i + 0.5 } }])));
    const stored = (await t.ok(GetCustomerMeter, { customerId: c, meterId: m })).customerMeter!;
    expect(stored.consumedUnits).toBe("50");
    let last = (await sub.next()).data!.customerMeterUpdated;
    while (last.version < stored.version) last = (await sub.next()).data!.customerMeterUpdated;
    expect(last).toMatchObject({ balance: stored.balance, consumedUnits: stored.consumedUnits, version: stored.version });
    sub.close();
  });

  it("lets a customer session watch its own balance", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT");
    const sub = await watch(await sessionToken(c), CustomerMeterUpdated, { meterId: m });
    await ingest(t, [{ name: "use", customerId: c }]);
    expect((await sub.next()).data?.customerMeterUpdated.balance).toBe("-1");
    sub.close();
  });

  it("refuses a customer session that subscribes to another customer's balance", async () => {
    const mine = await customer(t);
    const theirs = await customer(t);
    const sub = subscription(t.wsClient(await sessionToken(mine)), CustomerMeterUpdated, { customerId: theirs });
    expect((await sub.next()).errors?.[0]).toMatchObject({ extensions: { code: "FORBIDDEN" } });
  });

  it("a customer session cannot tell a meter it has no balance on from a made-up id: both subscriptions are taken and stay silent", async () => {
    const c = await customer(t);
    const someoneElse = await customer(t);
    const hidden = await meter(t, "COUNT", { filter: named("hidden-from-c") });
    const token = await sessionToken(c);
    const madeUp = await watch(token, CustomerMeterUpdated, { meterId: "cm_made_up" });
    const notTheirs = await watch(token, CustomerMeterUpdated, { meterId: hidden });
    await ingest(t, [{ name: "hidden-from-c", customerId: someoneElse }]); // moves a balance on the meter, not c's
    const silent = (sub: typeof madeUp) => sub.next(300).then((r) => JSON.stringify(r), () => "silent");
    expect(await silent(madeUp)).toBe("silent");
    expect(await silent(notTheirs)).toBe("silent");
    // once c has a balance on the meter, the same subscription pushes it
    await ingest(t, [{ name: "hidden-from-c", customerId: c }]);
    expect((await notTheirs.next()).data?.customerMeterUpdated).toMatchObject({ balance: "-1", meter: { id: hidden } });
    madeUp.close();
    notTheirs.close();
  });

  it("answers NOT_FOUND for a meter of another organization", async () => {
    const c = await customer(t);
    const other = await t.newOrganization();
    const theirMeter = await t.db.meter.create({ data: { organizationId: other.id, name: "x", filter: {}, aggregationFunc: "COUNT" } });
    const sub = subscription(t.wsClient(t.adminToken), CustomerMeterUpdated, { customerId: c, meterId: theirMeter.id });
    expect((await sub.next()).errors?.[0]).toMatchObject({ extensions: { code: "NOT_FOUND" } });
  });
});

describe("customerStateChanged", () => {
  it("fires once per transaction with every balance", async () => {
    const c = await customer(t);
    const m1 = await meter(t, "COUNT");
    const m2 = await meter(t, "COUNT");
    const sub = await watch(t.adminToken, CustomerStateWithMeters, { customerId: c });
    await ingest(t, [{ name: "use", customerId: c }]);
    const state = (await sub.next()).data!.customerStateChanged;
    expect(Object.fromEntries(state.meters.map((x) => [x.meter.id, x.balance]))).toMatchObject({ [m1]: "-1", [m2]: "-1" });
    await grant(t, c, m1, "5");
    const next = (await sub.next()).data!.customerStateChanged;
    expect(next.meters.find((x) => x.meter.id === m1)?.balance).toBe("4");
    expect(sub.pending()).toBe(0);
    sub.close();
  });
});
