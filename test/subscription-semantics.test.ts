// Subscription semantics a merchant expects (README "Subscription semantics"): what cancel does by default,
// one active subscription per customer and product, and what refunding a subscription's order does.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { parse } from "graphql";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BalanceAt, CancelSubscription, CancelSubscriptionLoose, CommitReservation, CreateOrder, DeleteCustomer, GetCustomerSubscription, RefundOrder, RenewSubscription, ReserveUsage } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, ingest, meter, named, order, product } from "./support/fixtures.ts";

let t: TestApp;
const DAY = 86_400_000;
const START = new Date("2026-05-20T08:00:00.000Z");
let serial = 0;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());
beforeEach(() => t.setNow(START));

/** A customer on a fresh monthly plan granting 80 credits that expire with the cycle and 60 that roll over. */
async function subscribed() {
  const name = `sem_${++serial}`;
  const m = await meter(t, "SUM", { property: "n", filter: named(name) });
  const plan = await product(t, [await benefit(t, m, "80"), await benefit(t, m, "60", { rollover: true })], { recurring: true });
  const c = await customer(t, name);
  const first = await order(t, c, plan);
  const use = (n: number) => ingest(t, [{ name, customerId: c, metadata: { n } }]);
  return { m, plan, c, first, sub: first.subscription!.id, use };
}

const subscriptionOf = async (id: string) => (await t.ok(GetCustomerSubscription, { id })).customerSubscription!;
const balance = async (c: string, m: string) => (await balanceOf(t, c, m))?.balance;

describe("cancelSubscription", () => {
  it("by default cancels at period end: the customer keeps the cycle, it does not renew", async () => {
    const { m, c, sub, use } = await subscribed();
    await use(20);
    const { cancelSubscription } = await t.ok(CancelSubscription, { input: { id: sub } });
    expect(cancelSubscription).toMatchObject({ status: "ACTIVE", cancelAtPeriodEnd: true, canceledAt: START.toISOString(), endedAt: null });
    expect(await balance(c, m)).toBe("120");
    t.setNow(new Date(START.getTime() + 35 * DAY));
    await t.app.scheduler.tick();
    expect(await subscriptionOf(sub)).toMatchObject({ status: "CANCELED", endedAt: "2026-06-20T08:00:00.000Z" });
    expect(await balance(c, m)).toBe("60"); // the cycle's 80 ended with it (20 of them used); the rollover 60 stay
  });

  it("atPeriodEnd: false ends it now and leaves its credits alone; they run out as they would have", async () => {
    const { m, c, sub, use } = await subscribed();
    await use(20);
    const { cancelSubscription } = await t.ok(CancelSubscription, { input: { id: sub, atPeriodEnd: false } });
    expect(cancelSubscription).toMatchObject({ status: "CANCELED", endedAt: START.toISOString() });
    expect(await balance(c, m)).toBe("120");
    t.setNow(new Date(START.getTime() + 35 * DAY));
    await t.app.scheduler.tick();
    expect(await balance(c, m)).toBe("60"); // no renewal; the cycle's credits expired at its end
  });

  it("revokeCredits: true with a cancellation now removes what the subscription granted, rollover included", async () => {
    const { m, c, sub, use } = await subscribed();
    await use(20);
    await t.ok(CancelSubscription, { input: { id: sub, atPeriodEnd: false, revokeCredits: true } });
    expect(await balance(c, m)).toBe("0");
  });

  it("refuses revokeCredits with a cancellation at period end (there is nothing to revoke then)", async () => {
    const { m, c, sub } = await subscribed();
    const { cancelSubscription } = await t.ok(CancelSubscription, { input: { id: sub, revokeCredits: true } });
    expect(cancelSubscription).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "input.revokeCredits" });
    expect(await subscriptionOf(sub)).toMatchObject({ status: "ACTIVE", cancelAtPeriodEnd: false });
    expect(await balance(c, m)).toBe("140");
  });

  it("the deprecated loose form also cancels at period end by default; its explicit atPeriodEnd: false still ends now and revokes", async () => {
    const later = await subscribed();
    expect((await t.ok(CancelSubscriptionLoose, { id: later.sub })).cancelSubscription).toMatchObject({ status: "ACTIVE", cancelAtPeriodEnd: true });
    expect(await balance(later.c, later.m)).toBe("140");
    const now = await subscribed();
    expect((await t.ok(CancelSubscriptionLoose, { id: now.sub, atPeriodEnd: false })).cancelSubscription).toMatchObject({ status: "CANCELED" });
    expect(await balance(now.c, now.m)).toBe("0");
  });

  it("marks the loose arguments deprecated in the schema, input not", async () => {
    const introspect = parse(`{ __type(name: "Mutation") { fields { name args(includeDeprecated: true) { name isDeprecated } } } }`);
    type Answer = { __type: { fields: { name: string; args: { name: string; isDeprecated: boolean }[] }[] } };
    const { __type } = await t.ok(introspect as TypedDocumentNode<Answer, Record<string, never>>, {});
    const args = __type.fields.find((f) => f.name === "cancelSubscription")!.args;
    expect(Object.fromEntries(args.map((a) => [a.name, a.isDeprecated]))).toEqual({ input: false, id: true, atPeriodEnd: true });
  });

  it("names the subscription once: neither form is BAD_USER_INPUT on input, both at once on id", async () => {
    const { sub } = await subscribed();
    expect((await t.ok(CancelSubscriptionLoose, {})).cancelSubscription).toMatchObject({ code: "BAD_USER_INPUT", field: "input" });
    const both = parse(`mutation($id: ID!) { cancelSubscription(id: $id, input: { id: $id }) { __typename ... on InvalidInputError { field } } }`);
    const { cancelSubscription } = await t.ok(both as TypedDocumentNode<{ cancelSubscription: unknown }, { id: string }>, { id: sub });
    expect(cancelSubscription).toEqual({ __typename: "InvalidInputError", field: "id" });
    expect(await subscriptionOf(sub)).toMatchObject({ status: "ACTIVE", cancelAtPeriodEnd: false });
  });
});

describe("one active subscription per customer and product", () => {
  it("a second order of the same plan while one is active is a CONFLICT; after it ends, a new one starts", async () => {
    const { c, plan, sub } = await subscribed();
    const { createOrder } = await t.ok(CreateOrder, { input: { customerId: c, productId: plan } });
    expect(createOrder).toMatchObject({ __typename: "ConflictError", code: "CONFLICT", field: "input.productId" });
    await t.ok(CancelSubscription, { input: { id: sub } }); // at period end: still active until then
    expect((await t.ok(CreateOrder, { input: { customerId: c, productId: plan } })).createOrder).toMatchObject({ code: "CONFLICT" });
    t.setNow(new Date(START.getTime() + 35 * DAY));
    await t.app.scheduler.tick();
    const again = await order(t, c, plan);
    expect(again.subscription!.id).not.toBe(sub);
  });

  it("the same order retried with its idempotencyKey answers the first order, not a CONFLICT", async () => {
    const { m, c } = await subscribed();
    const plan = await product(t, [await benefit(t, m, "5")], { recurring: true });
    const first = await order(t, c, plan, `key_${serial}`);
    expect((await order(t, c, plan, `key_${serial}`)).id).toBe(first.id);
  });

  it("concurrent orders of one plan for one customer start exactly one subscription", async () => {
    const { m, c } = await subscribed();
    const plan = await product(t, [await benefit(t, m, "5")], { recurring: true });
    const results = await Promise.all(Array.from({ length: 8 }, () => t.ok(CreateOrder, { input: { customerId: c, productId: plan } })));
    const kinds = results.map((r) => r.createOrder.__typename).sort();
    expect(kinds).toEqual(["ConflictError", "ConflictError", "ConflictError", "ConflictError", "ConflictError", "ConflictError", "ConflictError", "Order"]);
    expect(await t.db.subscription.count({ where: { customerId: c, productId: plan } })).toBe(1);
  });

  it("concurrent retries of one order (one idempotencyKey) all answer that order", async () => {
    const { m, c } = await subscribed();
    const plan = await product(t, [await benefit(t, m, "5")], { recurring: true });
    const key = `race_${serial}`;
    const results = await Promise.all(Array.from({ length: 6 }, () => t.ok(CreateOrder, { input: { customerId: c, productId: plan, idempotencyKey: key } })));
    const ids = new Set(results.map((r) => (r.createOrder.__typename === "Order" ? r.createOrder.id : r.createOrder.__typename)));
    expect(ids.size).toBe(1);
    expect([...ids][0]).not.toMatch(/Error/);
  });
});

describe("refunding a subscription's order", () => {
  it("the latest order (the current cycle's) ends the subscription now and removes that order's remaining credits", async () => {
    const { m, c, first, sub, use } = await subscribed();
    await use(30);
    const { refundOrder } = await t.ok(RefundOrder, { id: first.id });
    expect(refundOrder).toMatchObject({ status: "REFUNDED" });
    expect(await subscriptionOf(sub)).toMatchObject({ status: "CANCELED", canceledAt: START.toISOString(), endedAt: START.toISOString() });
    expect(await balance(c, m)).toBe("0");
    t.setNow(new Date(START.getTime() + 35 * DAY));
    await t.app.scheduler.tick();
    expect(await balance(c, m)).toBe("0"); // nothing renewed
  });

  it("an older order only loses what is left of its own credits; the subscription and the current cycle stay", async () => {
    const { m, c, first, sub, use } = await subscribed();
    await use(30); // from the first cycle's 80
    t.setNow(new Date(START.getTime() + 10 * DAY));
    await t.ok(RenewSubscription, { id: sub }); // the first cycle's 80 reset; its rollover 60 stay; 140 new
    expect(await balance(c, m)).toBe("200");
    await t.ok(RefundOrder, { id: first.id });
    expect(await subscriptionOf(sub)).toMatchObject({ status: "ACTIVE", endedAt: null });
    expect(await balance(c, m)).toBe("140"); // the first order's 60 rollover credits left
  });
});

describe("renewals caught up after downtime", () => {
  it("date the ledger as renewals on time would have: balanceAt inside the missed window is the on-time one", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("caught-up") });
    // 80 credits that end with the cycle, and 60 that roll over but expire 45 days after they are granted
    const plan = await product(t, [await benefit(t, m, "80"), await benefit(t, m, "60", { rollover: true, expiresAfterDays: 45 })], { recurring: true });
    const started = new Date("2026-01-15T12:00:00.000Z");
    t.setNow(started);
    const onTime = await customer(t);
    const late = await customer(t);
    const subscription = (await order(t, onTime, plan)).subscription!.id;
    await order(t, late, plan);
    // one renewed at every period end, the other only by the scheduler on April 20 (down meanwhile)
    for (const at of ["2026-02-15T12:00:00.000Z", "2026-03-15T12:00:00.000Z", "2026-04-15T12:00:00.000Z"]) {
      t.setNow(new Date(at));
      await t.ok(RenewSubscription, { id: subscription });
    }
    t.setNow(new Date("2026-04-20T12:00:00.000Z"));
    await t.app.scheduler.tick();
    for (const at of ["2026-02-20T00:00:00.000Z", "2026-03-05T00:00:00.000Z", "2026-03-20T00:00:00.000Z", "2026-04-05T00:00:00.000Z", "2026-04-20T12:00:00.000Z"]) {
      const [a, b] = await Promise.all([onTime, late].map(async (c) => (await t.ok(BalanceAt, { customerId: c, meterId: m, at })).balanceAt));
      expect(b, at).toBe(a);
    }
    const grants = await t.db.ledgerEntry.findMany({ where: { customerId: late, meterId: m, kind: "GRANT" }, orderBy: { sequence: "asc" }, select: { occurredAt: true } });
    expect(grants.map((g) => g.occurredAt.toISOString().slice(0, 10))).toEqual(["2026-01-15", "2026-01-15", "2026-02-15", "2026-02-15", "2026-03-15", "2026-03-15", "2026-04-15", "2026-04-15"]);
  });

  it("usage recorded before a late renewal is paid from the renewed grants in burn order, as on time", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("late-usage") });
    // the product lists its rollover benefit first: the grants' ids follow that order, their burn order does not
    // (the cycle's 100 expire at the period end, sooner than the rollover 50)
    const plan = await product(t, [await benefit(t, m, "50", { rollover: true, expiresAfterDays: 45 }), await benefit(t, m, "100")], { recurring: true });
    const run = async (renewOnTime: boolean) => {
      t.setNow(new Date("2026-03-01T00:00:00.000Z"));
      const c = await customer(t);
      await order(t, c, plan);
      if (renewOnTime) {
        t.setNow(new Date("2026-04-01T00:00:00.000Z"));
        await t.app.scheduler.tick();
      }
      t.setNow(new Date("2026-04-10T00:00:00.000Z"));
      await ingest(t, [{ name: "late-usage", customerId: c, metadata: { n: 120 } }]);
      t.setNow(new Date("2026-05-01T01:00:00.000Z"));
      await t.app.scheduler.tick();
      const grants = await t.db.creditGrant.findMany({ where: { customerId: c, meterId: m }, orderBy: [{ effectiveAt: "asc" }, { units: "asc" }], select: { units: true, remainingUnits: true } });
      return { balance: (await balanceOf(t, c, m))!.balance, remaining: grants.map((g) => `${g.units}: ${g.remainingUnits}`) };
    };
    const onTime = await run(true);
    expect(onTime.balance).toBe("200"); // the third cycle's 150, and the second cycle's rollover 50 untouched
    expect(await run(false)).toEqual(onTime);
  });
});

describe("renewSubscription under races, and a deleted customer's subscriptions", () => {
  it("two calls at once renew twice (each call one cycle); one cancelled at period end is not renewed", async () => {
    const { sub } = await subscribed();
    const before = await subscriptionOf(sub);
    const [a, b] = await Promise.all([t.ok(RenewSubscription, { id: sub }), t.ok(RenewSubscription, { id: sub })]);
    expect([a.renewSubscription.__typename, b.renewSubscription.__typename]).toEqual(["CustomerSubscription", "CustomerSubscription"]);
    expect(await t.db.order.count({ where: { subscriptionId: sub } })).toBe(3);
    const after = await subscriptionOf(sub);
    expect(new Date(after.currentPeriodEnd).getUTCMonth()).toBe((new Date(before.currentPeriodEnd).getUTCMonth() + 2) % 12);
    await t.ok(CancelSubscription, { input: { id: sub } });
    expect((await t.ok(RenewSubscription, { id: sub })).renewSubscription).toMatchObject({ __typename: "ConflictError", field: "id" });
    expect(await t.db.order.count({ where: { subscriptionId: sub } })).toBe(3);
  });

  it("deleting the customer ends its subscriptions now: nothing renews or bills it later, and its holds cannot be committed", async () => {
    const { c, m, sub } = await subscribed();
    const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "5" } });
    if (reserveUsage.__typename !== "UsageReservation" || !reserveUsage.id) throw new Error(JSON.stringify(reserveUsage));
    await t.ok(DeleteCustomer, { id: c });
    const ended = await t.db.subscription.findUniqueOrThrow({ where: { id: sub } });
    expect(ended).toMatchObject({ status: "CANCELED", endedAt: expect.any(Date) });
    const canceled = await t.db.outboxMessage.findMany({ where: { type: "subscription.canceled" } });
    expect(canceled.filter((o) => JSON.parse(o.payload).subscriptionId === sub)).toHaveLength(1);
    t.setNow(new Date(START.getTime() + 70 * DAY));
    await t.app.scheduler.tick();
    expect(await t.db.order.count({ where: { subscriptionId: sub } })).toBe(1);
    expect((await t.ok(CommitReservation, { id: reserveUsage.id, units: "5" })).commitReservation).toMatchObject({ __typename: "NotFoundError" });
  });
});
