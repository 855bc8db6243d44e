import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  CancelSubscription,
  CreateCreditSystem,
  CreateOrder,
  CreateProduct,
  CustomerMeterUpdated,
  EntitlementState,
  RefundOrder,
  RenewSubscription,
  UpdateProduct,
} from "./documents.ts";
import type { PriceInput } from "./gql/graphql.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { processDueSubscriptions } from "../src/domain/subscriptions.ts";

let t: TestApp;
const DAY = 86_400_000;
const START = new Date("2026-01-15T12:00:00.000Z");

beforeAll(async () => {
  t = await startTestApp();
  t.setNow(START);
});
afterAll(() => t?.close());

/** Usage on a SUM meter: one event of `n` units. */
const use = (customerId: string, name: string, n: number) => ingest(t, [{ name, customerId, metadata: { n } }]);

async function remainingOf(grantFilter: { customerId: string; rollover?: boolean; subscriptionId?: string }) {
  const grants = await t.db.creditGrant.findMany({ where: grantFilter, orderBy: { createdAt: "asc" } });
  return grants.map((g) => g.remainingUnits / 1_000_000n);
}

describe("one-time products (credit packs)", () => {
  it("a pack bought twice gives twice the units", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("pack") });
    const pack = await product(t, [await benefit(t, m, "500")]);
    const c = await customer(t);
    await order(t, c, pack);
    await order(t, c, pack);
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "1000", balance: "1000" });
  });

  it("the same idempotency key twice makes one order, also concurrently", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("idem") });
    const pack = await product(t, [await benefit(t, m, "10")]);
    const c = await customer(t);
    const orders = await Promise.all([order(t, c, pack, "checkout_1"), order(t, c, pack, "checkout_1"), order(t, c, pack, "checkout_1")]);
    expect(new Set(orders.map((o) => o.id)).size).toBe(1);
    expect((await balanceOf(t, c, m))?.creditedUnits).toBe("10");
  });

  it("an archived product can no longer be ordered", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("archived") });
    const pack = await product(t, [await benefit(t, m, "5")]);
    await t.db.product.update({ where: { id: pack }, data: { archivedAt: START } });
    const { createOrder } = await t.ok(CreateOrder, { input: { customerId: await customer(t), productId: pack } });
    expect(createOrder).toMatchObject({ __typename: "ConflictError", code: "CONFLICT", field: "input.productId" });
  });

  it("refund revokes what remains of the order's credits", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("refund") });
    const pack = await product(t, [await benefit(t, m, "100")]);
    const c = await customer(t);
    const o = await order(t, c, pack);
    await use(c, "refund", 30);
    expect((await t.ok(RefundOrder, { id: o.id })).refundOrder).toMatchObject({ status: "REFUNDED" });
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "30", consumedUnits: "30", balance: "0" });
    await t.ok(RefundOrder, { id: o.id }); // twice changes nothing more
    expect((await balanceOf(t, c, m))?.balance).toBe("0");
    const refund = await t.db.ledgerEntry.findFirstOrThrow({ where: { customerId: c, kind: "REFUND" } });
    expect(refund.units).toBe(-70_000_000n);
  });
});

describe("catalog inputs have bounded lengths", () => {
  it("a product takes at most 20 prices and 50 benefits, a credit system is created with at most 100 meters", async () => {
    const m = await meter(t, "COUNT", { filter: named(`bounded-${Math.random()}`) });
    const b = await benefit(t, m, "1");
    const fixed = (n: number) => Array.from({ length: n }, (_, i) => ({ type: "FIXED" as const, amount: String(i), currency: "usd" }));
    const create = async (prices: PriceInput[], benefitIds: string[]) => (await t.ok(CreateProduct, { input: { name: "tiers", prices, benefitIds } })).createProduct;
    expect(await create(fixed(21), [])).toMatchObject({ __typename: "InvalidInputError", field: "input.prices" });
    expect(await create([], Array.from({ length: 51 }, () => b))).toMatchObject({ __typename: "InvalidInputError", field: "input.benefitIds" });
    const most = await create(fixed(20), Array.from({ length: 50 }, () => b));
    expect(most).toMatchObject({ __typename: "Product", prices: expect.any(Array), benefits: [{ id: b }] });
    expect((most as { prices: unknown[] }).prices).toHaveLength(20);
    const updated = (await t.ok(UpdateProduct, { id: (most as { id: string }).id, input: { benefitIds: Array.from({ length: 51 }, () => b) } })).updateProduct;
    expect(updated).toMatchObject({ __typename: "InvalidInputError" });
    const rates = Array.from({ length: 101 }, () => ({ meterId: m, creditsPerUnit: "1" }));
    expect((await t.ok(CreateCreditSystem, { input: { name: "pool", rates } })).createCreditSystem).toMatchObject({ __typename: "InvalidInputError", field: "input.rates" });
  });
});

describe("subscriptions", () => {
  beforeEach(() => t.setNow(START));

  it("credit benefits on two meters fill both balances, and the state lists them", async () => {
    const a = await meter(t, "SUM", { property: "n", filter: named("two-a") });
    const b = await meter(t, "SUM", { property: "n", filter: named("two-b") });
    const plan = await product(t, [await benefit(t, a, "100"), await benefit(t, b, "25.5")], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    expect(o.subscription?.currentPeriodEnd).toBe("2026-02-15T12:00:00.000Z");
    expect((await balanceOf(t, c, a))?.balance).toBe("100");
    expect((await balanceOf(t, c, b))?.balance).toBe("25.5");
    const state = (await t.ok(EntitlementState, { customerId: c })).customerState;
    expect(state.activeSubscriptions).toEqual([{ id: o.subscription!.id, status: "ACTIVE", product: { id: plan } }]);
    expect(state.grantedBenefits).toHaveLength(2);
  });

  it.each([
    [80, "60", "200"],
    [100, "40", "180"],
    [150, "0", "130"], // 10 overage: the new cycle's credits pay it off first
  ])("renewal with 80 non-rollover + 60 rollover credits and usage %i carries %s (balance then %s)", async (usage, carried, balanceAfter) => {
    const name = `roll-${usage}`;
    const m = await meter(t, "SUM", { property: "n", filter: named(name) });
    const plan = await product(t, [await benefit(t, m, "80"), await benefit(t, m, "60", { rollover: true })], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    await use(c, name, usage);
    await t.ok(RenewSubscription, { id: o.subscription!.id });
    // the first cycle's rollover grant keeps what usage left of it; the non-rollover one was reset
    const [firstNonRollover] = await remainingOf({ customerId: c, rollover: false });
    const [firstRollover] = await remainingOf({ customerId: c, rollover: true });
    expect(firstNonRollover).toBe(0n);
    expect(String(firstRollover)).toBe(carried);
    expect((await balanceOf(t, c, m))?.balance).toBe(balanceAfter);
  });

  it("a monthly subscription started on the 31st ends each period on the 31st, or the month's last day", async () => {
    t.setNow(new Date("2026-01-31T10:00:00.000Z"));
    const m = await meter(t, "SUM", { property: "n", filter: named("month-ends") });
    const plan = await product(t, [await benefit(t, m, "10")], { recurring: true });
    const o = await order(t, await customer(t), plan);
    const ends = [o.subscription!.currentPeriodEnd];
    for (let i = 0; i < 4; i++) {
      const { renewSubscription } = await t.ok(RenewSubscription, { id: o.subscription!.id });
      if (renewSubscription.__typename !== "CustomerSubscription") throw new Error(JSON.stringify(renewSubscription));
      ends.push(renewSubscription.currentPeriodEnd);
    }
    expect(ends).toEqual(["2026-02-28T10:00:00.000Z", "2026-03-31T10:00:00.000Z", "2026-04-30T10:00:00.000Z", "2026-05-31T10:00:00.000Z", "2026-06-30T10:00:00.000Z"]);
  });

  it("renewSubscription with an idempotency key renews once however often it is retried; the key of another order is a CONFLICT", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("renew-key") });
    const plan = await product(t, [await benefit(t, m, "10")], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    const key = `payment-${Math.random().toString(36).slice(2)}`;
    const renew = async (id: string, idempotencyKey?: string) => (await t.ok(RenewSubscription, { id, idempotencyKey })).renewSubscription;
    const [first, again, concurrent] = await Promise.all([renew(o.subscription!.id, key), renew(o.subscription!.id, key), renew(o.subscription!.id, key)]);
    for (const r of [first, again, concurrent]) expect(r).toMatchObject({ __typename: "CustomerSubscription" });
    const orders = await t.db.order.findMany({ where: { subscriptionId: o.subscription!.id } });
    expect(orders).toHaveLength(2); // the first order and one renewal
    expect(await t.db.creditGrant.count({ where: { customerId: c, meterId: m } })).toBe(2); // one grant per cycle
    const stored = await t.db.subscription.findUniqueOrThrow({ where: { id: o.subscription!.id } });
    expect(stored.currentPeriodStart.toISOString()).toBe(o.subscription!.currentPeriodEnd); // advanced one cycle
    expect(await renew(o.subscription!.id, key)).toMatchObject({ currentPeriodEnd: (first as { currentPeriodEnd: string }).currentPeriodEnd });
    const other = await order(t, await customer(t), plan);
    expect(await renew(other.subscription!.id, key)).toMatchObject({ __typename: "ConflictError", field: "idempotencyKey" });
    expect(await renew(o.subscription!.id, " ")).toMatchObject({ __typename: "InvalidInputError", field: "idempotencyKey" });
    // the purchase's own key renewed nothing: it is another order's key, not a repeat of a renewal
    const keyed = await order(t, await customer(t), plan, `checkout-${key}`);
    expect(await renew(keyed.subscription!.id, `checkout-${key}`)).toMatchObject({ __typename: "ConflictError", field: "idempotencyKey" });
    expect(await t.db.order.count({ where: { subscriptionId: keyed.subscription!.id } })).toBe(1);
  });

  it("cancelSubscription names input.id for an unknown subscription in its input form", async () => {
    expect((await t.ok(CancelSubscription, { input: { id: "no-such-subscription" } })).cancelSubscription).toMatchObject({ __typename: "NotFoundError", field: "input.id" });
  });

  it("manual renewal mode ends a subscription cancelled at period end however many unpaid ones lapsed before it", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("manual-mode") });
    const plan = await product(t, [await benefit(t, m, "10")], { recurring: true });
    const unpaid = await customer(t);
    // 500 subscriptions whose renewal was never paid: manual mode leaves them ACTIVE past their period end
    const lapsedBefore = new Date(START.getTime() - 40 * DAY);
    await t.db.subscription.createMany({
      data: Array.from({ length: 500 }, (_, i) => ({ organizationId: t.organizationId, customerId: unpaid, productId: plan, currentPeriodStart: new Date(lapsedBefore.getTime() - 30 * DAY + i), currentPeriodEnd: new Date(lapsedBefore.getTime() + i), anchorDay: 1 })),
    });
    const leaving = await order(t, await customer(t), plan);
    await t.ok(CancelSubscription, { input: { id: leaving.subscription!.id } }); // at its period end
    const after = new Date(new Date(leaving.subscription!.currentPeriodEnd).getTime() + DAY);
    const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };
    expect(await processDueSubscriptions(t.db, silent, after, "manual")).toBe(1);
    expect(await t.db.subscription.findUniqueOrThrow({ where: { id: leaving.subscription!.id } })).toMatchObject({ status: "CANCELED" });
    expect(await t.db.subscription.count({ where: { customerId: unpaid, status: "ACTIVE" } })).toBe(500); // left for renewSubscription
    await t.db.subscription.updateMany({ where: { customerId: unpaid }, data: { status: "CANCELED" } }); // out of the next tests' scheduler passes
  });

  it("renews automatically at period end and pushes the new balance to subscribers", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("auto") });
    const plan = await product(t, [await benefit(t, m, "50")], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    await use(c, "auto", 20);
    const sub = subscription(t.wsClient(t.adminToken), CustomerMeterUpdated, { customerId: c, meterId: m });
    await t.subscribed(1);
    t.setNow(new Date(START.getTime() + 31 * DAY)); // past 2026-02-15
    await t.app.scheduler.tick();
    // The cycle's unused 30 leave at period end (expiry), then the new cycle's 50 arrive: the last push shows both.
    let pushed = (await sub.next()).data!.customerMeterUpdated;
    while (pushed.creditedUnits !== "70") pushed = (await sub.next()).data!.customerMeterUpdated;
    expect(pushed).toMatchObject({ balance: "50", creditedUnits: "70" });
    const renewed = await t.db.subscription.findUniqueOrThrow({ where: { id: o.subscription!.id } });
    expect(renewed.currentPeriodStart.toISOString()).toBe("2026-02-15T12:00:00.000Z");
    expect(renewed.currentPeriodEnd.toISOString()).toBe("2026-03-15T12:00:00.000Z");
    await t.app.scheduler.tick(); // not due again: nothing changes
    expect((await balanceOf(t, c, m))?.balance).toBe("50");
    sub.close();
  });

  it("cancelled now with revokeCredits, the subscription's remaining credits are revoked, rollover included", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("cancel-now") });
    const plan = await product(t, [await benefit(t, m, "80"), await benefit(t, m, "60", { rollover: true })], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    await use(c, "cancel-now", 50);
    const { cancelSubscription } = await t.ok(CancelSubscription, { input: { id: o.subscription!.id, atPeriodEnd: false, revokeCredits: true } });
    expect(cancelSubscription).toMatchObject({ status: "CANCELED", endedAt: START.toISOString() });
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "0", creditedUnits: "50" });
    expect((await t.ok(EntitlementState, { customerId: c })).customerState.activeSubscriptions).toEqual([]);
  });

  it("cancellation at period end (the default) keeps the cycle, then stops renewing", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("cancel-later") });
    const plan = await product(t, [await benefit(t, m, "80"), await benefit(t, m, "60", { rollover: true })], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    await use(c, "cancel-later", 100);
    const { cancelSubscription } = await t.ok(CancelSubscription, { input: { id: o.subscription!.id } });
    expect(cancelSubscription).toMatchObject({ status: "ACTIVE", cancelAtPeriodEnd: true });
    expect((await balanceOf(t, c, m))?.balance).toBe("40");
    t.setNow(new Date(START.getTime() + 40 * DAY));
    await t.app.scheduler.tick();
    const ended = await t.db.subscription.findUniqueOrThrow({ where: { id: o.subscription!.id } });
    expect(ended.status).toBe("CANCELED");
    expect(ended.endedAt?.toISOString()).toBe("2026-02-15T12:00:00.000Z");
    // no new cycle; the rollover credits left stay with the customer
    expect((await balanceOf(t, c, m))?.balance).toBe("40");
  });
});

describe("Polar's known bugs do not happen here", () => {
  it("subscribing after buying a one-time pack keeps the pack's credits (polar#8451)", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("p8451") });
    const pack = await product(t, [await benefit(t, m, "1000")]);
    const plan = await product(t, [await benefit(t, m, "100")], { recurring: true });
    const c = await customer(t);
    await order(t, c, pack);
    const o = await order(t, c, plan);
    expect((await balanceOf(t, c, m))?.balance).toBe("1100");
    await t.ok(RenewSubscription, { id: o.subscription!.id });
    expect((await balanceOf(t, c, m))?.balance).toBe("1100"); // cycle's 100 reset, new 100 granted, pack untouched
    await t.ok(CancelSubscription, { input: { id: o.subscription!.id, atPeriodEnd: false, revokeCredits: true } });
    expect((await balanceOf(t, c, m))?.balance).toBe("1000");
  });

  it("changing a product's benefits leaves existing balances alone and applies from the next grant (polar#11427)", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("p11427") });
    const small = await benefit(t, m, "10");
    const big = await benefit(t, m, "500");
    const plan = await product(t, [small], { recurring: true });
    const c = await customer(t);
    const o = await order(t, c, plan);
    await t.ok(UpdateProduct, { id: plan, input: { benefitIds: [big] } });
    expect((await balanceOf(t, c, m))?.balance).toBe("10");
    await t.ok(RenewSubscription, { id: o.subscription!.id });
    expect((await balanceOf(t, c, m))?.balance).toBe("500");
  });
});

describe("overage", () => {
  const metered = (meterId: string, capAmount?: string): PriceInput => ({ type: "METERED_UNIT", currency: "usd", meterId, unitAmount: "2.5", capAmount });

  it("prices units beyond credits at the metered unit amount", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("over") });
    const plan = await product(t, [await benefit(t, m, "100")], { recurring: true, prices: [metered(m)] });
    const c = await customer(t);
    await order(t, c, plan);
    await use(c, "over", 112.5);
    const row = (await t.ok(EntitlementState, { customerId: c })).customerState.meters.find((x) => x.meter.id === m);
    expect(row).toMatchObject({ balance: "-12.5", overageUnits: "12.5", overageAmount: "31.25" });
  });

  it("caps the overage amount", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("over-cap") });
    const plan = await product(t, [await benefit(t, m, "100")], { recurring: true, prices: [metered(m, "20")] });
    const c = await customer(t);
    await order(t, c, plan);
    await use(c, "over-cap", 150);
    const row = (await t.ok(EntitlementState, { customerId: c })).customerState.meters.find((x) => x.meter.id === m);
    expect(row).toMatchObject({ overageUnits: "50", overageAmount: "20" });
  });

  it("has no overage amount on a credits-only meter", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("over-none") });
    const pack = await product(t, [await benefit(t, m, "1")]);
    const c = await customer(t);
    await order(t, c, pack);
    await use(c, "over-none", 3);
    const row = (await t.ok(EntitlementState, { customerId: c })).customerState.meters.find((x) => x.meter.id === m);
    expect(row).toMatchObject({ overageUnits: "2", overageAmount: null });
  });
});
