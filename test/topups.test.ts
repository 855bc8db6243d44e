// Auto top-up: one topup.requested per crossing (webhook and balanceAlerts), completed by createOrder with its
// key, within a monthly cap, exactly once under concurrent usage and on two nodes.
import { print } from "graphql";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { createLogger } from "../src/log.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp } from "../src/server.ts";
import { ArchiveProduct, CommitReservation, CreateCreditSystem, CreateOrder, DeleteCustomer, IngestEvents, RemoveAutoTopUp, ReserveUsage, SetAutoTopUp, TopUpAlerts } from "./documents.ts";
import type { SetAutoTopUpInput } from "./gql/graphql.ts";
import { startTestApp, subscription, TEST_WEBHOOK_KEY, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { subscribedReceiver, tickUntil } from "./support/receiver.ts";

const SETTINGS = { allowPrivateNetworks: true, retryBaseMs: 20, timeoutMs: 2000 };
const T0 = new Date("2026-07-10T00:00:00.000Z");
let t: TestApp;
let receiver: Awaited<ReturnType<typeof subscribedReceiver>>;

beforeAll(async () => {
  t = await startTestApp({ webhooks: SETTINGS, limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } });
  t.setNow(T0);
  receiver = await subscribedReceiver(t, ["topup.requested"]);
});
afterAll(async () => {
  await t.close();
  await receiver.close();
});
afterEach(() => void receiver.received.splice(0));

async function setTopUp(input: SetAutoTopUpInput) {
  const { setAutoTopUp } = await t.ok(SetAutoTopUp, { input });
  if (setAutoTopUp.__typename !== "AutoTopUp") throw new Error(JSON.stringify(setAutoTopUp));
  return setAutoTopUp;
}

/** The topup.requested rows the outbox holds for a customer. */
async function requested(customerId: string) {
  const rows = await t.db.outboxMessage.findMany({ where: { type: "topup.requested" }, orderBy: { id: "asc" } });
  return rows.map((r) => JSON.parse(r.payload) as Record<string, string>).filter((d) => d.customerId === customerId);
}

const calls = (name: string, customerId: string, n: number) => Array.from({ length: n }, () => ({ name, customerId }));

/** A customer with 100 credits on a COUNT meter, a 50-credit pack, and an auto top-up below 20. */
async function setup(maxPerMonth?: number) {
  const name = `topup-${Math.random().toString(36).slice(2, 8)}`;
  const meterId = await meter(t, "COUNT", { filter: named(name) });
  const customerId = await customer(t);
  await grant(t, customerId, meterId, "100");
  const productId = await product(t, [await benefit(t, meterId, "50")]);
  const rule = await setTopUp({ customerId, meterId, belowUnits: "20", productId, maxPerMonth });
  expect(rule).toMatchObject({ belowUnits: "20", productId, maxPerMonth: maxPerMonth ?? null, armed: true, customer: { id: customerId }, meter: { id: meterId } });
  return { name, meterId, customerId, productId };
}

describe("auto top-up", () => {
  it("a burst of concurrent usage across the line raises exactly one topup.requested; ordering with its key restores the balance", async () => {
    const { name, meterId, customerId, productId } = await setup();
    const sub = subscription(t.wsClient(t.adminToken), TopUpAlerts, { customerId });
    await t.subscribed(1);
    await Promise.all(Array.from({ length: 90 }, () => ingest(t, calls(name, customerId, 1))));
    expect(await balanceOf(t, customerId, meterId)).toMatchObject({ balance: "10" });

    const [request, ...more] = await requested(customerId);
    expect(more).toEqual([]);
    // calls written together are one write: the request says what was available after the write that crossed
    expect(request).toMatchObject({ customerId, meterId, productId, threshold: "20" });
    expect(Number(request.availableUnits)).toBeLessThan(20);
    await tickUntil([t.app.webhooks], () => receiver.received.length >= 1);
    await t.app.webhooks.tick();
    expect(receiver.verified()).toEqual([expect.objectContaining({ type: "topup.requested", data: expect.objectContaining({ idempotencyKey: request.idempotencyKey, productId }) })]);
    const pushed = (await sub.next()).data!.balanceAlerts;
    expect(pushed).toMatchObject({ type: "TOPUP_REQUESTED", productId, idempotencyKey: request.idempotencyKey, threshold: "20" });

    const first = await order(t, customerId, productId, request.idempotencyKey);
    expect(await order(t, customerId, productId, request.idempotencyKey)).toMatchObject({ id: first.id });
    expect(await balanceOf(t, customerId, meterId)).toMatchObject({ balance: "60" });
    const stored = await t.db.topUpRequest.findMany({ where: { customerId } });
    expect(stored).toEqual([expect.objectContaining({ status: "COMPLETED", orderId: first.id, idempotencyKey: request.idempotencyKey })]);

    // back above the line: re-armed, so the next fall below asks again
    await ingest(t, calls(name, customerId, 45));
    expect((await requested(customerId)).map((r) => r.availableUnits)).toEqual([request.availableUnits, "15"]);
    await t.app.webhooks.tick();
    await expect(sub.next()).resolves.toMatchObject({ data: { balanceAlerts: { type: "TOPUP_REQUESTED", availableUnits: "15" } } });
    sub.close();
  }, 120_000);

  it("holds the monthly cap, and asks again in the next month", async () => {
    const { name, customerId, productId } = await setup(1);
    await ingest(t, calls(name, customerId, 85)); // 15: below 20
    const [first] = await requested(customerId);
    await order(t, customerId, productId, first.idempotencyKey); // 65
    await ingest(t, calls(name, customerId, 50)); // 15 again: the month's one request is used
    await ingest(t, calls(name, customerId, 1));
    expect(await requested(customerId)).toHaveLength(1);
    t.setNow(new Date("2026-08-01T00:00:01.000Z"));
    try {
      await ingest(t, calls(name, customerId, 1)); // 13, in August
      expect((await requested(customerId)).map((r) => r.availableUnits)).toEqual(["15", "13"]);
    } finally {
      t.setNow(T0);
    }
  });

  it("works on a credit system's pool, and removeAutoTopUp stops it", async () => {
    const name = `pooled-${Math.random().toString(36).slice(2, 8)}`;
    const rated = await meter(t, "COUNT", { filter: named(name) });
    const { createCreditSystem } = await t.ok(CreateCreditSystem, { input: { name: "pool", rates: [{ meterId: rated, creditsPerUnit: "5" }] } });
    if (createCreditSystem.__typename !== "Meter") throw new Error(JSON.stringify(createCreditSystem));
    const pool = createCreditSystem.id;
    const customerId = await customer(t);
    await grant(t, customerId, pool, "100");
    const productId = await product(t, [await benefit(t, pool, "100")]);
    await setTopUp({ customerId, meterId: pool, belowUnits: "50", productId });
    await ingest(t, calls(name, customerId, 11)); // 45 credits left
    expect(await requested(customerId)).toEqual([expect.objectContaining({ meterId: pool, availableUnits: "45", threshold: "50" })]);

    const { removeAutoTopUp } = await t.ok(RemoveAutoTopUp, { input: { customerId, meterId: pool } });
    expect(removeAutoTopUp).toMatchObject({ __typename: "AutoTopUp", belowUnits: "50" });
    expect((await t.ok(RemoveAutoTopUp, { input: { customerId, meterId: pool } })).removeAutoTopUp).toMatchObject({ __typename: "NotFoundError", field: "input.meterId" });
    const [request] = await requested(customerId);
    await order(t, customerId, productId, request.idempotencyKey); // 145
    await ingest(t, calls(name, customerId, 25)); // 20: no rule any more
    expect(await requested(customerId)).toHaveLength(1);
  });

  it("the month's cap counts the customer's requests on the meter: removing and setting the rule again does not reset it", async () => {
    const { name, meterId, customerId, productId } = await setup(1);
    await ingest(t, calls(name, customerId, 85)); // 15: the month's one request
    const [first] = await requested(customerId);
    await order(t, customerId, productId, first.idempotencyKey); // 65
    await t.ok(RemoveAutoTopUp, { input: { customerId, meterId } });
    await setTopUp({ customerId, meterId, belowUnits: "20", productId, maxPerMonth: 1 });
    await ingest(t, calls(name, customerId, 50)); // 15 again, the same month
    expect(await requested(customerId)).toHaveLength(1);
  });

  it("saving the rule again while its request is open asks nothing more until the balance is back above the line", async () => {
    const { name, meterId, customerId, productId } = await setup();
    await ingest(t, calls(name, customerId, 85)); // 15: one request open
    expect(await setTopUp({ customerId, meterId, belowUnits: "20", productId, maxPerMonth: 10 })).toMatchObject({ armed: false, maxPerMonth: 10 });
    await ingest(t, calls(name, customerId, 1)); // 14: the same crossing
    expect(await requested(customerId)).toHaveLength(1);
    const [first] = await requested(customerId);
    await order(t, customerId, productId, first.idempotencyKey); // 64: re-armed
    await ingest(t, calls(name, customerId, 50)); // 14: a new crossing
    expect((await requested(customerId)).map((r) => r.availableUnits)).toEqual(["15", "14"]);
  });

  it("a request's key completes it only by an order of its customer and product; another order with the key is a CONFLICT", async () => {
    const { name, meterId, customerId, productId } = await setup();
    const other = await customer(t);
    const otherProduct = await product(t, [await benefit(t, meterId, "50")]);
    await ingest(t, calls(name, customerId, 85)); // 15
    const [request] = await requested(customerId);
    const conflict = { __typename: "ConflictError", field: "input.idempotencyKey" };
    expect((await t.ok(CreateOrder, { input: { customerId: other, productId, idempotencyKey: request.idempotencyKey } })).createOrder).toMatchObject(conflict);
    expect((await t.ok(CreateOrder, { input: { customerId, productId: otherProduct, idempotencyKey: request.idempotencyKey } })).createOrder).toMatchObject(conflict);
    expect(await t.db.topUpRequest.findFirstOrThrow({ where: { idempotencyKey: request.idempotencyKey } })).toMatchObject({ status: "REQUESTED", orderId: null });
    expect((await balanceOf(t, other, meterId))?.creditedUnits ?? "0").toBe("0"); // nothing granted to the other customer
    await order(t, customerId, productId, request.idempotencyKey);
    expect(await t.db.topUpRequest.findFirstOrThrow({ where: { idempotencyKey: request.idempotencyKey } })).toMatchObject({ status: "COMPLETED" });
    expect(await balanceOf(t, customerId, meterId)).toMatchObject({ balance: "65" });
  });

  it("refuses a product that cannot complete a top-up (archived, or granting nothing on the meter) and a rated meter", async () => {
    const meterId = await meter(t, "COUNT", { filter: named(`unfit-${Math.random().toString(36).slice(2, 8)}`) });
    const customerId = await customer(t);
    const set = async (input: SetAutoTopUpInput) => (await t.ok(SetAutoTopUp, { input })).setAutoTopUp;
    const elsewhere = await product(t, [await benefit(t, await meter(t, "COUNT", { filter: named("elsewhere") }), "5")]);
    expect(await set({ customerId, meterId, belowUnits: "1", productId: elsewhere })).toMatchObject({ __typename: "InvalidInputError", field: "input.productId" });
    const archived = await product(t, [await benefit(t, meterId, "5")]);
    await t.ok(ArchiveProduct, { id: archived });
    expect(await set({ customerId, meterId, belowUnits: "1", productId: archived })).toMatchObject({ __typename: "InvalidInputError", field: "input.productId" });
    const { createCreditSystem } = await t.ok(CreateCreditSystem, { input: { name: "pool", rates: [{ meterId: await meter(t, "COUNT", { filter: named("unfit-rated") }), creditsPerUnit: "1" }] } });
    if (createCreditSystem.__typename !== "Meter") throw new Error(JSON.stringify(createCreditSystem));
    const rated = createCreditSystem.creditRates[0].meter.id;
    const onPool = await product(t, [await benefit(t, createCreditSystem.id, "5")]);
    expect(await set({ customerId, meterId: rated, belowUnits: "1", productId: onPool })).toMatchObject({ __typename: "InvalidInputError", field: "input.meterId", message: expect.stringContaining(createCreditSystem.id) });
    expect(await set({ customerId, meterId: createCreditSystem.id, belowUnits: "1", productId: onPool })).toMatchObject({ __typename: "AutoTopUp" });
  });

  it("refuses a subscription product: only its first request's order could be placed", async () => {
    const meterId = await meter(t, "COUNT", { filter: named(`plan-${Math.random().toString(36).slice(2, 8)}`) });
    const customerId = await customer(t);
    const plan = await product(t, [await benefit(t, meterId, "5")], { recurring: true });
    expect((await t.ok(SetAutoTopUp, { input: { customerId, meterId, belowUnits: "1", productId: plan } })).setAutoTopUp).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.productId",
    });
  });

  it("a rule whose product was archived, or whose customer was deleted, since it was set raises nothing createOrder would refuse", async () => {
    const archived = await setup();
    await t.ok(ArchiveProduct, { id: archived.productId });
    await ingest(t, calls(archived.name, archived.customerId, 85)); // 15 left, below the line of 20
    expect(await requested(archived.customerId)).toEqual([]);

    // a hold the customer took before being deleted, committed after: the balance crosses the line
    const gone = await setup();
    const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: gone.customerId, meterId: gone.meterId, units: "50" } });
    if (reserveUsage.__typename !== "UsageReservation" || !reserveUsage.id) throw new Error(JSON.stringify(reserveUsage));
    await t.ok(DeleteCustomer, { id: gone.customerId });
    await t.ok(CommitReservation, { id: reserveUsage.id, units: "90" });
    expect(await requested(gone.customerId)).toEqual([]);
  });

  it("refuses a negative line and an unknown product, naming the input", async () => {
    const meterId = await meter(t, "COUNT", { filter: named("nothing") });
    const customerId = await customer(t);
    const productId = await product(t, [await benefit(t, meterId, "1")]);
    const set = async (input: SetAutoTopUpInput) => (await t.ok(SetAutoTopUp, { input })).setAutoTopUp;
    expect(await set({ customerId, meterId, belowUnits: "-1", productId })).toMatchObject({ __typename: "InvalidInputError", field: "input.belowUnits" });
    expect(await set({ customerId, meterId, belowUnits: "1", productId, maxPerMonth: 0 })).toMatchObject({ __typename: "InvalidInputError", field: "input.maxPerMonth" });
    expect(await set({ customerId, meterId, belowUnits: "1", productId: "nope" })).toMatchObject({ __typename: "NotFoundError", field: "input.productId" });
  });
});

describe.skipIf(!/^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? "") || !process.env.REDIS_URL)("two nodes", () => {
  it("concurrent usage on both nodes across the line raises exactly one topup.requested", async () => {
    const db = await createPrisma(t.databaseUrl);
    const { pubsub, close } = createAppPubSub(process.env.REDIS_URL);
    const other = createApp({ db, pubsub, log: createLogger("silent"), webhooks: { ...SETTINGS, key: TEST_WEBHOOK_KEY } });
    try {
      const { name, meterId, customerId } = await setup();
      const url = `http://127.0.0.1:${await other.listen(0)}/graphql`;
      const onB = async () => {
        const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${t.adminToken}` }, body: JSON.stringify({ query: print(IngestEvents), variables: { events: calls(name, customerId, 1) } }) });
        expect((await r.json()).data.ingestEvents.inserted).toBe(1);
      };
      await Promise.all(Array.from({ length: 45 }, () => [ingest(t, calls(name, customerId, 1)), onB()]).flat());
      expect(await balanceOf(t, customerId, meterId)).toMatchObject({ balance: "10" });
      expect(await requested(customerId)).toEqual([expect.objectContaining({ customerId, threshold: "20" })]);
    } finally {
      await other.close();
      await close();
      await db.$disconnect();
    }
  }, 120_000);
});
