// SQLite plans its statements without statistics (no ANALYZE runs), so an index it prefers by its rules of thumb
// can read far more than a statement asks for: a lookup of a few customers that reads every customer of the
// organization, a lookup of a few balances' grants that reads every open grant of every customer. Such a plan
// costs nothing in a small test database and grows with the data on every call. Here the hot paths run once
// over a few customers and every statement they sent is planned again (EXPLAIN QUERY PLAN): none may scan a
// table that grows with use, or search one through an index that does not narrow it to the rows asked for.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeUsage, BalanceAt, CommitReservation, ExpiringCredits, FullCustomerState, LedgerOf, ReserveUsage } from "./documents.ts";
import { sqlOf } from "../src/db/client.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, customer, grant, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

/** Tables that grow with customers, usage or time. */
const GROWING = ["Customer", "CustomerMeter", "CustomerMeterValue", "CreditGrant", "Event", "LedgerEntry", "Reservation", "OutboxMessage"];

/** What a statement's plan may not do: scan a growing table, or search it by an index that is only the organization or a grant's time. */
function wideReads(plan: string[]): string[] {
  return plan.filter((line) => {
    const scan = /^SCAN (\w+)/.exec(line);
    if (scan && GROWING.includes(scan[1]!)) return true;
    if (/^SEARCH (\w+) USING (?:COVERING )?INDEX \w+ \(organizationId=\?\)$/.test(line) && GROWING.includes(/^SEARCH (\w+)/.exec(line)![1]!)) return true;
    return /^SEARCH CreditGrant USING INDEX CreditGrant_(expiredAt_expiresAt|creditedAt_effectiveAt)_idx/.test(line);
  });
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
    // Each distinct text (ours and Prisma's), planned with its parameters unbound: SQLite plans before it binds
    // and has no statistics to look at the values with, so the plan is the one the call ran.
    const texts = [...new Set(statements.filter((s) => /^\s*(SELECT|UPDATE|DELETE|WITH|INSERT)/i.test(s)))];
    expect(texts.length).toBeGreaterThan(10);
    const wide: string[] = [];
    for (const text of texts) {
      const parameters = (text.match(/\?/g) ?? []).length;
      const plan = (await sql.query<{ detail: string }>(`EXPLAIN QUERY PLAN ${text}`, Array.from({ length: parameters }, () => null))).map((r) => r.detail);
      const bad = wideReads(plan);
      if (bad.length) wide.push(`${bad.join("; ")}\n  in ${text.replace(/\s+/g, " ").slice(0, 240)}`);
    }
    expect(wide).toEqual([]);
  });
});
