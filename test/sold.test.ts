// Reading what was sold: orders and subscriptions by id and as connections, for admins and customer sessions.
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  CancelSubscription,
  CreateSession,
  CustomerPurchases,
  CustomerSubscriptionsOf,
  GetCustomerMeter,
  GetCustomerSubscription,
  GetOrder,
  OrdersOf,
  RefundOrder,
  RenewSubscription,
} from "./documents.ts";
import type { CustomerSubscriptionStatus, CustomerSubscriptionsOfQueryVariables, OrdersOfQueryVariables } from "./gql/graphql.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { benefit, customer, meter, named, order, product } from "./support/fixtures.ts";

let t: TestApp;
let m: string;
const START = new Date("2026-03-10T09:00:00.000Z");
const DAY = 86_400_000;

beforeAll(async () => {
  t = await startTestApp();
  t.setNow(START);
  m = await meter(t, "SUM", { property: "n", filter: named("sold") });
});
afterAll(() => t?.close());
beforeEach(() => t.setNow(START));

let serial = 0;
/** A one-time pack priced 19.99 usd (in cents), a monthly plan priced 9.99 eur, and one with no fixed price. */
async function catalog() {
  const b = await benefit(t, m, "10");
  return {
    pack: await product(t, [b], { prices: [{ type: "FIXED", amount: "1999", currency: "usd" }] }),
    plan: await product(t, [b], { recurring: true, prices: [{ type: "FIXED", amount: "999", currency: "EUR" }] }),
    free: await product(t, [b]),
  };
}
const newCustomer = () => customer(t, `sold_${++serial}`);

async function session(customerId: string): Promise<string> {
  const { createCustomerSession } = await t.ok(CreateSession, { customerId });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  return createCustomerSession.token;
}

const orderIds = async (vars: OrdersOfQueryVariables = {}, token?: string) =>
  (await t.ok(OrdersOf, vars, token)).orders.edges.map((e) => e.node.id);
const subscriptionIds = async (vars: CustomerSubscriptionsOfQueryVariables = {}, token?: string) =>
  (await t.ok(CustomerSubscriptionsOf, vars, token)).customerSubscriptions.edges.map((e) => e.node.id);

describe("orders", () => {
  it("read back by id with what was paid, its customer, product and subscription", async () => {
    const { pack, plan, free } = await catalog();
    const c = await newCustomer();
    const bought = await order(t, c, pack);
    expect((await t.ok(GetOrder, { id: bought.id })).order).toMatchObject({
      id: bought.id,
      status: "PAID",
      amount: "1999",
      currency: "usd",
      refundedAt: null,
      customer: { id: c },
      product: { id: pack },
      subscription: null,
    });
    const subscribed = await order(t, c, plan);
    expect((await t.ok(GetOrder, { id: subscribed.id })).order).toMatchObject({
      amount: "999",
      currency: "eur",
      subscription: { id: subscribed.subscription!.id, status: "ACTIVE", currentPeriodEnd: "2026-04-10T09:00:00.000Z" },
    });
    const given = await order(t, c, free);
    expect((await t.ok(GetOrder, { id: given.id })).order).toMatchObject({ status: "PAID", amount: null, currency: null });
  });

  it("an unknown id, or another organization's, reads as null", async () => {
    const { pack } = await catalog();
    const o = await order(t, await newCustomer(), pack);
    expect((await t.ok(GetOrder, { id: "nope" })).order).toBeNull();
    const other = await t.newOrganization();
    expect((await t.ok(GetOrder, { id: o.id }, other.token)).order).toBeNull();
    expect(await orderIds({}, other.token)).toEqual([]);
  });

  it("filter by customer, externalCustomerId and product, newest first", async () => {
    const { pack, plan } = await catalog();
    const adaExternalId = `ada_${++serial}`;
    const ada = await customer(t, adaExternalId);
    const bob = await newCustomer();
    const adaPack = (await order(t, ada, pack)).id;
    const adaPlan = (await order(t, ada, plan)).id;
    const bobPack = (await order(t, bob, pack)).id;
    expect(await orderIds({ customerId: ada })).toEqual([adaPlan, adaPack]);
    expect(await orderIds({ externalCustomerId: adaExternalId })).toEqual([adaPlan, adaPack]);
    expect(await orderIds({ productId: pack })).toEqual([bobPack, adaPack]);
    expect(await orderIds({ customerId: ada, productId: pack })).toEqual([adaPack]);
    expect(await orderIds({ customerId: bob, productId: plan })).toEqual([]);
    // An admin naming no customer lists the whole organization.
    expect(await orderIds({ first: 3 })).toEqual([bobPack, adaPlan, adaPack]);
  });

  it("renewal orders belong to the subscription and record the price too", async () => {
    const { plan } = await catalog();
    const c = await newCustomer();
    const first = await order(t, c, plan);
    const sub = first.subscription!.id;
    t.setNow(new Date(START.getTime() + 5 * DAY));
    await t.ok(RenewSubscription, { id: sub });
    const { orders } = await t.ok(OrdersOf, { customerId: c });
    expect(orders.edges.map((e) => e.node)).toMatchObject([
      { status: "PAID", amount: "999", currency: "eur", subscription: { id: sub, currentPeriodEnd: "2026-05-10T09:00:00.000Z" } },
      { id: first.id, subscription: { id: sub } },
    ]);
  });

  it("a refunded order reads REFUNDED, by id and in lists", async () => {
    const { pack } = await catalog();
    const c = await newCustomer();
    const kept = (await order(t, c, pack)).id;
    const refunded = (await order(t, c, pack)).id;
    t.setNow(new Date(START.getTime() + DAY));
    await t.ok(RefundOrder, { id: refunded });
    expect((await t.ok(GetOrder, { id: refunded })).order).toMatchObject({ status: "REFUNDED", refundedAt: "2026-03-11T09:00:00.000Z", amount: "1999" });
    const { orders } = await t.ok(OrdersOf, { customerId: c });
    expect(orders.edges.map((e) => [e.node.id, e.node.status])).toEqual([
      [refunded, "REFUNDED"],
      [kept, "PAID"],
    ]);
  });
});

describe("subscriptions", () => {
  it("a subscription cancelled now stays readable: CANCELED, when it ended, the period it was in", async () => {
    const { plan } = await catalog();
    const c = await newCustomer();
    const sub = (await order(t, c, plan)).subscription!.id;
    t.setNow(new Date(START.getTime() + 3 * DAY));
    await t.ok(CancelSubscription, { input: { id: sub, atPeriodEnd: false } });
    const { customerSubscription } = await t.ok(GetCustomerSubscription, { id: sub });
    expect(customerSubscription).toEqual({
      id: sub,
      status: "CANCELED",
      currentPeriodStart: "2026-03-10T09:00:00.000Z",
      currentPeriodEnd: "2026-04-10T09:00:00.000Z",
      cancelAtPeriodEnd: false,
      canceledAt: "2026-03-13T09:00:00.000Z",
      endedAt: "2026-03-13T09:00:00.000Z",
      customer: { id: c },
      product: { id: plan },
    });
    expect(await subscriptionIds({ customerId: c })).toEqual([sub]);
  });

  it("cancelled at period end: ACTIVE until then (currentPeriodEnd is when it ends), CANCELED after", async () => {
    const { plan } = await catalog();
    const c = await newCustomer();
    const sub = (await order(t, c, plan)).subscription!.id;
    await t.ok(CancelSubscription, { input: { id: sub } });
    expect((await t.ok(GetCustomerSubscription, { id: sub })).customerSubscription).toMatchObject({
      status: "ACTIVE",
      cancelAtPeriodEnd: true,
      currentPeriodEnd: "2026-04-10T09:00:00.000Z",
      endedAt: null,
    });
    t.setNow(new Date("2026-04-11T00:00:00.000Z"));
    await t.app.scheduler.tick();
    expect((await t.ok(GetCustomerSubscription, { id: sub })).customerSubscription).toMatchObject({
      status: "CANCELED",
      currentPeriodEnd: "2026-04-10T09:00:00.000Z",
      endedAt: "2026-04-10T09:00:00.000Z",
    });
  });

  it("currentPeriodEnd moves to the next renewal date when the subscription renews", async () => {
    const { plan } = await catalog();
    const sub = (await order(t, await newCustomer(), plan)).subscription!.id;
    t.setNow(new Date("2026-04-10T10:00:00.000Z"));
    await t.app.scheduler.tick();
    expect((await t.ok(GetCustomerSubscription, { id: sub })).customerSubscription).toMatchObject({
      status: "ACTIVE",
      currentPeriodStart: "2026-04-10T09:00:00.000Z",
      currentPeriodEnd: "2026-05-10T09:00:00.000Z",
    });
  });

  it("filter by status and product; no status lists every one, newest first", async () => {
    const { plan } = await catalog();
    const other = (await catalog()).plan;
    const c = await newCustomer();
    const ended = (await order(t, c, plan)).subscription!.id;
    await t.ok(CancelSubscription, { input: { id: ended, atPeriodEnd: false } }); // one active subscription per product
    const running = (await order(t, c, plan)).subscription!.id;
    const otherRunning = (await order(t, c, other)).subscription!.id;
    const of = (status?: CustomerSubscriptionStatus, productId?: string) => subscriptionIds({ customerId: c, status, productId });
    expect(await of()).toEqual([otherRunning, running, ended]);
    expect(await of("ACTIVE")).toEqual([otherRunning, running]);
    expect(await of("CANCELED")).toEqual([ended]);
    expect(await of(undefined, plan)).toEqual([running, ended]);
    expect(await of("ACTIVE", plan)).toEqual([running]);
    const { customerSubscriptions } = await t.ok(CustomerSubscriptionsOf, { customerId: c, status: "CANCELED" });
    expect(customerSubscriptions.edges.map((e) => e.node.status)).toEqual(["CANCELED"]);
    const wrong = await t.exec(CustomerSubscriptionsOf, { customerId: c, status: "ENDED" as CustomerSubscriptionStatus });
    expect(wrong.errors?.[0]?.message).toMatch(/CustomerSubscriptionStatus/);
  });

  it("an unknown id, or another organization's, reads as null", async () => {
    const { plan } = await catalog();
    const sub = (await order(t, await newCustomer(), plan)).subscription!.id;
    expect((await t.ok(GetCustomerSubscription, { id: "nope" })).customerSubscription).toBeNull();
    const other = await t.newOrganization();
    expect((await t.ok(GetCustomerSubscription, { id: sub }, other.token)).customerSubscription).toBeNull();
    expect(await subscriptionIds({}, other.token)).toEqual([]);
  });
});

describe("pages", () => {
  /** Every page of a connection, following endCursor until hasNextPage is false. */
  async function allPages(page: (after: string | undefined) => Promise<{ ids: string[]; hasNextPage: boolean; endCursor?: string | null }>) {
    const ids: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 50; pages++) {
      const p = await page(after);
      ids.push(...p.ids);
      if (!p.hasNextPage) return ids;
      after = p.endCursor ?? undefined;
    }
    throw new Error("never reached the last page");
  }

  it("first/after gives every order and subscription once, in the order of the full list", async () => {
    const { pack } = await catalog();
    const c = await newCustomer();
    const made: string[] = [];
    const subs: string[] = [];
    for (let i = 0; i < 7; i++) {
      // a plan of its own each time: a customer holds one active subscription per product
      const o = await order(t, c, i % 2 ? (await catalog()).plan : pack);
      made.push(o.id);
      if (o.subscription) subs.push(o.subscription.id);
    }
    const newestFirst = [...made].reverse();
    expect(await orderIds({ customerId: c, first: 100 })).toEqual(newestFirst);
    const paged = await allPages(async (after) => {
      const { orders } = await t.ok(OrdersOf, { customerId: c, first: 3, after });
      return { ids: orders.edges.map((e) => e.node.id), ...orders.pageInfo };
    });
    expect(paged).toEqual(newestFirst);

    const nested = await allPages(async (after) => {
      const { customer } = await t.ok(CustomerPurchases, { id: c, first: 2, ordersAfter: after });
      return { ids: customer!.orders.edges.map((e) => e.node.id), ...customer!.orders.pageInfo };
    });
    expect(nested).toEqual(newestFirst);

    const pagedSubs = await allPages(async (after) => {
      const { customerSubscriptions } = await t.ok(CustomerSubscriptionsOf, { customerId: c, first: 2, after });
      return { ids: customerSubscriptions.edges.map((e) => e.node.id), ...customerSubscriptions.pageInfo };
    });
    expect(pagedSubs).toEqual([...subs].reverse());
    const nestedSubs = await allPages(async (after) => {
      const { customer } = await t.ok(CustomerPurchases, { id: c, first: 1, subscriptionsAfter: after });
      return { ids: customer!.subscriptions.edges.map((e) => e.node.id), ...customer!.subscriptions.pageInfo };
    });
    expect(nestedSubs).toEqual([...subs].reverse());
  });

  it("pages of at most 100, 20 by default; a larger first is refused, not trimmed (as on every connection)", async () => {
    const { free } = await catalog();
    const c = await newCustomer();
    await t.db.order.createMany({ data: Array.from({ length: 101 }, () => ({ organizationId: t.organizationId, customerId: c, productId: free })) });
    const full = await t.ok(OrdersOf, { customerId: c, first: 100 });
    expect(full.orders.edges).toHaveLength(100);
    expect(full.orders.pageInfo.hasNextPage).toBe(true);
    const rest = await t.ok(OrdersOf, { customerId: c, first: 100, after: full.orders.pageInfo.endCursor });
    expect(rest.orders.edges).toHaveLength(1);
    expect((await t.ok(OrdersOf, { customerId: c })).orders.edges).toHaveLength(20);
    expect((await t.error(OrdersOf, { customerId: c, first: 101 })).extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
    expect((await t.error(CustomerPurchases, { id: c, first: 101 })).extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
  });
});

describe("customer sessions", () => {
  it("read their own orders and subscriptions, and nothing of another customer's", async () => {
    const { pack, plan } = await catalog();
    const ada = await newCustomer();
    const bob = await newCustomer();
    const adaPack = (await order(t, ada, pack)).id;
    const adaPlan = await order(t, ada, plan);
    const bobPack = (await order(t, bob, pack)).id;
    const bobSub = (await order(t, bob, plan)).subscription!.id;
    const token = await session(ada);

    expect((await t.ok(GetOrder, { id: adaPack }, token)).order).toMatchObject({ id: adaPack, amount: "1999" });
    expect((await t.ok(GetOrder, { id: bobPack }, token)).order).toBeNull();
    expect((await t.ok(GetCustomerSubscription, { id: adaPlan.subscription!.id }, token)).customerSubscription?.id).toBe(adaPlan.subscription!.id);
    expect((await t.ok(GetCustomerSubscription, { id: bobSub }, token)).customerSubscription).toBeNull();

    // Lists naming no customer are the session's own; the product filter cannot reach another customer's.
    expect(await orderIds({}, token)).toEqual([adaPlan.id, adaPack]);
    expect(await orderIds({ productId: pack }, token)).toEqual([adaPack]);
    expect(await subscriptionIds({}, token)).toEqual([adaPlan.subscription!.id]);
    const { customer: own } = await t.ok(CustomerPurchases, {}, token);
    expect(own!.orders.edges.map((e) => e.node.id)).toEqual([adaPlan.id, adaPack]);
    expect(own!.subscriptions.edges.map((e) => e.node.id)).toEqual([adaPlan.subscription!.id]);

    // Naming another customer is FORBIDDEN, as on every other read.
    expect((await t.error(OrdersOf, { customerId: bob }, token)).extensions?.code).toBe("FORBIDDEN");
    expect((await t.error(CustomerSubscriptionsOf, { customerId: bob }, token)).extensions?.code).toBe("FORBIDDEN");
    expect((await t.error(GetCustomerMeter, { customerId: bob, meterId: m }, token)).extensions?.code).toBe("FORBIDDEN");
  });
});

describe("an unknown customer", () => {
  it("is NOT_FOUND on customerId and externalCustomerId, the same code the other reads give", async () => {
    const balance = await t.error(GetCustomerMeter, { customerId: "nope", meterId: m });
    expect(balance.extensions?.code).toBe("NOT_FOUND");
    for (const vars of [{ customerId: "nope" }, { externalCustomerId: "nobody" }]) {
      expect((await t.error(OrdersOf, vars)).extensions).toMatchObject({ code: balance.extensions?.code });
      expect((await t.error(CustomerSubscriptionsOf, vars)).extensions).toMatchObject({ code: balance.extensions?.code });
    }
    // another organization's customer is unknown too
    const c = await newCustomer();
    const other = await t.newOrganization();
    expect((await t.error(OrdersOf, { customerId: c }, other.token)).extensions?.code).toBe("NOT_FOUND");
  });
});

describe("the order_amount migration", () => {
  it("fills in amount and currency of orders made before they were recorded, from the product's FIXED price", async () => {
    const { pack, free } = await catalog();
    const c = await newCustomer();
    const priced = (await order(t, c, pack)).id;
    const unpriced = (await order(t, c, free)).id;
    await t.db.order.updateMany({ where: { id: { in: [priced, unpriced] } }, data: { amount: null, currency: null } });
    const engine = process.env.TEST_DATABASE_URL ? "postgresql" : "sqlite";
    const dir = `prisma/${engine}/migrations`;
    const folder = readdirSync(dir).find((d) => d.endsWith("_order_amount"));
    const sql = readFileSync(`${dir}/${folder}/migration.sql`, "utf8");
    const backfill = sql.slice(sql.indexOf("UPDATE")).trim().replace(/;$/, "");
    await t.db.$executeRawUnsafe(backfill);
    expect((await t.ok(GetOrder, { id: priced })).order).toMatchObject({ amount: "1999", currency: "usd" });
    expect((await t.ok(GetOrder, { id: unpriced })).order).toMatchObject({ amount: null, currency: null });
  });
});
