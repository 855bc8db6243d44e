// SQLite plans its statements without statistics (no ANALYZE runs), so an index it prefers by its rules of thumb
// can read far more than a statement asks for: a lookup of a few customers that reads every customer of the
// organization, a lookup of a few balances' grants that reads every open grant of every customer. Such a plan
// costs nothing in a small test database and grows with the data on every call. Here the hot paths run once
// over a few customers and every statement they sent is planned again (EXPLAIN QUERY PLAN): none may scan a
// table that grows with use, or search one through an index that does not narrow it to the rows asked for.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "libsql";
import {
  AuthorizeUsage,
  BalanceAt,
  CommitReservation,
  CreateCreditSystem,
  CreateSession,
  CreateWebhookEndpoint,
  CreditGrantsOf,
  CustomerPurchases,
  GetCustomerMeter,
  CustomerSubscriptionsOf,
  DeleteCustomer,
  ExpiringCredits,
  FullCustomerState,
  GrantWithOptions,
  LedgerOf,
  ListCustomers,
  ListEvents,
  OrdersOf,
  ReleaseReservation,
  ReservationsOf,
  ReserveUsage,
  SetAutoTopUp,
  SessionBalances,
  SetBalanceAlert,
  WebhookDeliveries,
} from "./documents.ts";
import { sqlOf } from "../src/db/client.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ webhooks: { allowPrivateNetworks: true, retryBaseMs: 20, timeoutMs: 500 } });
});
afterAll(() => t?.close());

/** Tables that grow with customers, usage or time. */
const GROWING = [
  "AccessToken",
  "Customer",
  "CustomerMeter",
  "CustomerMeterValue",
  "CreditGrant",
  "Event",
  "LedgerEntry",
  "Reservation",
  "OutboxMessage",
  "WebhookDelivery",
  "Order",
  "Subscription",
  "BalanceAlertState",
  "CreditExpiryNotice",
  "AutoTopUp",
  "TopUpRequest",
];

/**
 * What a statement's plan may not do: scan a growing table, or search one by an index on the organization alone
 * unless the statement stops early (`LIMIT`, `EXISTS`: a page of a list, whether there is any). A statement about
 * some customers' grants may not go through the grants' time indexes either (the scheduler's statements, which
 * look for what is due across customers, are what those are for). Prisma's plans name tables `main.<table>`.
 */
function wideReads(plan: string[], text: string): string[] {
  const ofCustomers = /"customerId"\s*(=|IN)|\("customerId", "meterId"\) IN/.test(text);
  const stopsEarly = /\bLIMIT\b|\bEXISTS\b/i.test(text);
  return plan.filter((line) => {
    const found = /^(?:SCAN|SEARCH) (?:main\.)?(\w+)(.*)$/.exec(line);
    if (!found || !GROWING.includes(found[1]!)) return false;
    const how = found[2]!;
    if (line.startsWith("SCAN")) return true;
    if (/^ USING (?:COVERING )?INDEX \w+ \(organizationId=\?\)$/.test(how)) return !stopsEarly;
    return ofCustomers && found[1] === "CreditGrant" && /INDEX CreditGrant_(expiredAt_expiresAt|creditedAt_effectiveAt)_idx/.test(how);
  });
}

/**
 * The statements among `statements` whose plan reads wide (wideReads), each with what its plan does. Each distinct
 * text (ours and Prisma's) is planned with its parameters unbound: SQLite plans before it binds and has no
 * statistics to look at the values with, so the plan is the one the call ran. INSERTs are left out: their
 * plans list the scans of child tables that a new parent row would need only while a foreign key is violated
 * (SQLite skips them otherwise). Planned on a connection of the test's own: on the `libsql` driver, a statement
 * run after its own `EXPLAIN QUERY PLAN` on one connection left that connection's read snapshot open, so the
 * service's read connection went on answering from before (the service never explains a statement).
 */
async function wideStatements(statements: string[]): Promise<string[]> {
  const texts = [...new Set(statements.filter((s) => /^\s*(SELECT|UPDATE|DELETE|WITH)/i.test(s)))];
  expect(texts.length).toBeGreaterThan(10);
  const db = new Database(t.databaseUrl.replace(/^file:/, ""), { readonly: false });
  try {
    const wide: string[] = [];
    for (const text of texts) {
      const parameters = (text.match(/\?/g) ?? []).length;
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(Array.from({ length: parameters }, () => null)) as { detail: string }[]).map((r) => r.detail);
      const bad = wideReads(plan, text);
      if (bad.length) wide.push(`${bad.join("; ")}\n  in ${text.replace(/\s+/g, " ").slice(0, 240)}`);
    }
    return wide;
  } finally {
    db.close();
  }
}

describe("SQLite's plans of the hot paths", () => {
  it("read only the rows asked for: no scan or organization-wide search of a growing table", async ({ skip }) => {
    const sql = sqlOf(t.db);
    if (sql.provider !== "sqlite") skip("SQLite's query planner");
    const count = await meter(t, "COUNT", { filter: named("plan-use") });
    const sum = await meter(t, "SUM", { property: "n", filter: named("plan-use") });
    const customers: { id: string; externalId: string }[] = [];
    for (let i = 0; i < 12; i++) {
      const externalId = `plan_${i}`;
      customers.push({ id: await customer(t, externalId), externalId });
    }
    // Other customers' grants, open and expiring, that a wide read of grants would pass through.
    for (const c of customers) await grant(t, c.id, count, "100");
    const statements = await t.queriesDuring(async () => {
      await ingest(t, [
        ...customers.slice(0, 10).map((c, i) => ({ name: "plan-use", customerId: c.id, metadata: { n: i } })),
        ...customers.slice(10).map((c) => ({ name: "plan-use", externalCustomerId: c.externalId, metadata: { n: 1 } })),
      ]);
      const [a, b, c] = customers;
      await Promise.all([a, b, c].map((x) => t.ok(AuthorizeUsage, { input: { customerId: x!.id, meterId: count, units: "1" } })));
      const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: a!.id, meterId: count, units: "2" } });
      if (reserveUsage.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserveUsage));
      await t.ok(CommitReservation, { id: reserveUsage.id!, units: "1" });
      await balanceOf(t, b!.id, sum);
      await t.ok(FullCustomerState, { customerId: c!.id });
      await t.ok(LedgerOf, { customerId: a!.id, meterId: count, first: 10 });
      await t.ok(BalanceAt, { customerId: a!.id, meterId: count, at: new Date().toISOString() });
      await t.ok(ExpiringCredits, { customerId: a!.id, meterId: count, within: 30 });
    });
    expect(await wideStatements(statements)).toEqual([]);
  });

  it("the other paths read only the rows asked for too: alerts, top-ups, orders and subscriptions, pools, lists, the scheduler, deletion", async ({ skip }) => {
    if (sqlOf(t.db).provider !== "sqlite") skip("SQLite's query planner");
    const usage = await meter(t, "COUNT", { filter: named("plan-other") });
    const rated = await meter(t, "COUNT", { filter: named("plan-rated") });
    const customers: string[] = [];
    for (let i = 0; i < 8; i++) customers.push(await customer(t, `plan_other_${i}`));
    const [a, b, c] = customers as [string, string, string];
    const statements = await t.queriesDuring(async () => {
      const receiver = await t.ok(CreateWebhookEndpoint, { input: { url: "http://127.0.0.1:9/hook", eventTypes: ["balance.low", "topup.requested"] } });
      if (receiver.createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(receiver));
      const alert = await t.ok(SetBalanceAlert, { input: { meterId: usage, lowBalanceUnits: "5" } });
      if (alert.setBalanceAlert.__typename !== "SetBalanceAlertPayload") throw new Error(JSON.stringify(alert));
      const monthly = await product(t, [await benefit(t, usage, "10", { expiresAfterDays: 30 })], { recurring: true });
      const pack = await product(t, [await benefit(t, usage, "20")]);
      for (const x of customers) await order(t, x, monthly);
      const topUp = await t.ok(SetAutoTopUp, { input: { customerId: a, meterId: usage, belowUnits: "3", productId: pack } });
      if (topUp.setAutoTopUp.__typename !== "AutoTopUp") throw new Error(JSON.stringify(topUp));
      await t.ok(GrantWithOptions, { input: { customerId: b, meterId: usage, units: "4", expiresAt: new Date(Date.now() + 86_400_000).toISOString() } });
      const pool = await t.ok(CreateCreditSystem, { input: { name: "plan pool", rates: [{ meterId: rated, creditsPerUnit: "2" }] } });
      if (pool.createCreditSystem.__typename !== "Meter") throw new Error(JSON.stringify(pool));
      await ingest(t, [
        ...customers.map((x) => ({ name: "plan-other", customerId: x })),
        ...Array.from({ length: 8 }, () => ({ name: "plan-other", customerId: a })),
        { name: "plan-rated", customerId: b },
        { name: "plan-rated", customerId: c },
      ]);
      const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: c, meterId: usage, units: "1" } });
      if (reserveUsage.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserveUsage));
      await t.ok(ReleaseReservation, { id: reserveUsage.id! });
      await t.ok(ListCustomers, { first: 5 });
      await t.ok(ListEvents, { customerId: a, meterId: usage, first: 5 });
      await t.ok(OrdersOf, { customerId: a, first: 5 });
      await t.ok(CustomerSubscriptionsOf, { customerId: a, first: 5 });
      await t.ok(ReservationsOf, { customerId: c });
      // by external id, the second page of lists, what a customer's session reads
      await t.ok(AuthorizeUsage, { input: { externalCustomerId: "plan_other_1", meterId: usage, units: "1" } });
      await t.ok(GetCustomerMeter, { externalCustomerId: "plan_other_2", meterId: usage });
      const ledger = await t.ok(LedgerOf, { customerId: a, meterId: usage, first: 2 });
      await t.ok(LedgerOf, { customerId: a, meterId: usage, first: 2, after: ledger.ledger.pageInfo.endCursor });
      const events = await t.ok(ListEvents, { customerId: a, first: 2 });
      await t.ok(ListEvents, { customerId: a, first: 2, after: events.events.pageInfo.endCursor });
      await t.ok(CreditGrantsOf, { customerId: b, meterId: usage, first: 5 });
      await t.ok(CustomerPurchases, { id: a, first: 5 });
      await t.ok(WebhookDeliveries, { first: 5 });
      const session = await t.ok(CreateSession, { customerId: a });
      if (session.createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(session));
      await t.ok(SessionBalances, {}, session.createCustomerSession.token);
      t.advance(2 * 86_400_000);
      await t.app.scheduler.tick();
      await t.app.webhooks.tick();
      const deleted = await t.ok(DeleteCustomer, { id: customers[7]! });
      if (deleted.deleteCustomer.__typename !== "Customer") throw new Error(JSON.stringify(deleted));
    });
    expect(await wideStatements(statements)).toEqual([]);
  });
});

