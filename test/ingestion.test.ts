import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArchiveMeter, CreateMeter, CreateSession, FullCustomerState, GetCustomerMeter, IngestEvents, ListCustomerMeters, ListEvents } from "./documents.ts";
import { sqlOf } from "../src/db/client.ts";
import { customersAndMetersStatement, ingestEvents } from "../src/domain/ingestion.ts";
import { readBalance } from "../src/domain/balance-view.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, customer, grant, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

const use = (customerId: string, metadata: Record<string, unknown> = {}, extra: object = {}) => ({ name: "use", customerId, metadata, ...extra });

describe("aggregations, maintained incrementally across batches", () => {
  it("COUNT counts matching events", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT");
    await ingest(t, [use(c), use(c), { name: "other", customerId: c }]);
    await ingest(t, [use(c)]);
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "3", balance: "-3" });
  });

  it("SUM adds values exactly, and on a CREDIT meter a negative value is credited, not subtracted", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "tokens", negativeValues: "CREDIT" });
    await ingest(t, [use(c, { tokens: 0.1 }), use(c, { tokens: 0.2 })]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("0.3");
    await ingest(t, [use(c, { tokens: 10 }), use(c, { tokens: -2.5 })]);
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "10.3", creditedUnits: "2.5", balance: "-7.8" });
  });

  it("numeric aggregations count numeric strings exactly and ignore missing and non-numeric values, reporting the latter", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "tokens", filter: named("strings") });
    const ev = (metadata: object) => ({ name: "strings", customerId: c, metadata });
    const summary = await ingest(t, [ev({ tokens: "100" }), ev({ tokens: true }), ev({}), ev({ tokens: 4 }), ev({ tokens: "lots" })]);
    expect(summary).toMatchObject({ inserted: 5, ignoredValues: 2, creditedUnits: "0" });
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("104");
  });

  it("MAX and MIN keep the extreme value across batches", async () => {
    const c = await customer(t);
    const max = await meter(t, "MAX", { property: "gb" });
    const min = await meter(t, "MIN", { property: "gb" });
    await ingest(t, [use(c, { gb: 5 }), use(c, { gb: 7.25 })]);
    await ingest(t, [use(c, { gb: 6 }), use(c, { gb: 3 }), use(c, { gb: "1.5" })]);
    expect((await balanceOf(t, c, max))?.consumedUnits).toBe("7.25");
    expect((await balanceOf(t, c, min))?.consumedUnits).toBe("1.5"); // a numeric string counts
  });

  it("AVG keeps sum and count across batches", async () => {
    const c = await customer(t);
    const m = await meter(t, "AVG", { property: "latency" });
    await ingest(t, [use(c, { latency: 1 }), use(c, { latency: 2 })]);
    await ingest(t, [use(c, { latency: 4 }), use(c, { latency: "slow" })]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("2.333333"); // 7 / 3, kept to 6 decimals
  });

  it("UNIQUE counts distinct values across batches, telling 1 and \"1\" apart", async () => {
    const c = await customer(t);
    const m = await meter(t, "UNIQUE", { property: "user" });
    await ingest(t, [use(c, { user: "a" }), use(c, { user: "b" }), use(c, { user: "a" })]);
    await ingest(t, [use(c, { user: "b" }), use(c, { user: 1 }), use(c, { user: "1" }), use(c, {})]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("4");
  });

  it("UNIQUE counts values of up to 2,000 bytes; a longer one is refused, naming it, on both engines (PostgreSQL's index holds no longer key)", async () => {
    const c = await customer(t);
    const m = await meter(t, "UNIQUE", { property: "doc", filter: named("long-unique") });
    const at = (doc: string) => ({ name: "long-unique", customerId: c, metadata: { doc } });
    const fits = "字".repeat(666); // 1,998 bytes, 2,000 with the value's type prefix
    await ingest(t, [at(fits), at(fits)]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("1");
    const { ingestEvents } = await t.ok(IngestEvents, { events: [at("short"), at("字".repeat(1_000))] });
    expect(ingestEvents).toMatchObject({ __typename: "InvalidInputError", field: "events.1.metadata.doc", message: expect.stringContaining("2000 bytes") });
    expect(await t.db.event.count({ where: { customerId: c, name: "long-unique" } })).toBe(2); // nothing of the refused batch
  });

  it("stored events of an unknown customer that add up past the 64-bit range leave it creatable: they stay uncounted", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("too-much-pending") });
    const events = Array.from({ length: 10 }, (_, i) => ({ name: "too-much-pending", externalCustomerId: "pending-huge", externalId: `pending-huge-${i}`, metadata: { n: "1000000000000" } }));
    expect((await t.ok(IngestEvents, { events })).ingestEvents).toMatchObject({ __typename: "IngestSummary", inserted: 10 });
    const c = await customer(t, "pending-huge");
    expect((await balanceOf(t, c, m))?.consumedUnits ?? "0").toBe("0"); // nothing counted, nothing half-counted
    expect(await t.db.event.count({ where: { externalCustomerId: "pending-huge", customerId: null } })).toBe(10);
    await ingest(t, [{ name: "too-much-pending", customerId: c, metadata: { n: 3 } }]); // later usage counts as usual
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("3");
  });

  it("keeps each meter's balance separate when one event matches several meters", async () => {
    const c = await customer(t);
    const count = await meter(t, "COUNT");
    const sum = await meter(t, "SUM", { property: "n" });
    await ingest(t, [use(c, { n: 5 })]);
    expect((await balanceOf(t, c, count))?.consumedUnits).toBe("1");
    expect((await balanceOf(t, c, sum))?.consumedUnits).toBe("5");
  });

  it("an archived meter keeps its balance and counts no new events", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT");
    await ingest(t, [use(c)]);
    await t.db.meter.update({ where: { id: m }, data: { archivedAt: new Date() } });
    await ingest(t, [use(c)]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("1");
  });
});

describe("balances", () => {
  it("0.1 + 0.2 credits is exactly 0.3, and usage draws it down exactly", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "x" });
    await grant(t, c, m, "0.1");
    await grant(t, c, m, "0.2");
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "0.3", balance: "0.3" });
    await ingest(t, [use(c, { x: 0.3 })]);
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "0.3", balance: "0" });
  });

  it("the same grant idempotency key twice makes one grant", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT");
    const [a, b] = await Promise.all([grant(t, c, m, "10", "pay_1"), grant(t, c, m, "10", "pay_1")]);
    const again = await grant(t, c, m, "10", "pay_1");
    expect(new Set([a.id, b.id, again.id]).size).toBe(1);
    expect((await balanceOf(t, c, m))?.creditedUnits).toBe("10");
    expect(await t.db.ledgerEntry.count({ where: { customerId: c, meterId: m, kind: "GRANT" } })).toBe(1);
  });

  it("customerState returns every balance in a fixed number of queries (no N+1)", async () => {
    const few = await customer(t);
    const many = await customer(t);
    const meters = [];
    for (let i = 0; i < 6; i++) meters.push(await meter(t, "COUNT", { filter: named(`n+1-${i}`) }));
    await ingest(t, [{ name: "n+1-0", customerId: few }, ...meters.map((_, i) => ({ name: `n+1-${i}`, customerId: many }))]);
    const read = async (customerId: string) => {
      let count = 0;
      const queries = await t.queriesDuring(async () => {
        count = (await t.ok(FullCustomerState, { customerId })).customerState.meters.length;
      });
      // the admin token's lookup is cached for a few seconds: leave it out so the count does not depend on timing
      return { count, queries: queries.filter((q) => !q.includes("AccessToken")).length };
    };
    const [one, six] = [await read(few), await read(many)];
    expect([one.count, six.count]).toEqual([1, 6]);
    // customer, balances, their meters, and one statement for grants that time changed and live holds: the
    // same few statements however many meters there are
    expect(six.queries).toBe(one.queries);
    expect(six.queries).toBeLessThanOrEqual(4);
  });

  it("balances read together are each their own customer's (one statement per organization and lookup on PostgreSQL)", async () => {
    const external = `read-ext-${Math.random().toString(36).slice(2, 8)}`;
    const a = await customer(t);
    const b = await customer(t, external);
    const idle = await customer(t);
    const m = await meter(t, "COUNT", { filter: named(external) });
    await ingest(t, [{ name: external, customerId: a }, { name: external, customerId: b }, { name: external, customerId: b }]);
    await grant(t, b, m, "5");
    const other = await t.newOrganization();
    const o = await customer(t, `${external}-o`, other.token);
    const now = new Date();
    const reads: [string, { column: "id" | "externalId"; value: string }, string][] = [
      [t.organizationId, { column: "id", value: a }, m],
      [t.organizationId, { column: "externalId", value: external }, m],
      [t.organizationId, { column: "id", value: idle }, m],
      [t.organizationId, { column: "id", value: "nope" }, m],
      [other.id, { column: "id", value: a }, m],
      [other.id, { column: "id", value: o }, m],
    ];
    let found: Awaited<ReturnType<typeof readBalance>>[] = [];
    // Asked in one tick, as requests read from the sockets in one go are.
    const queries = await t.queriesDuring(async () => {
      found = await Promise.all(reads.map(([organizationId, lookup, meterId]) => readBalance(t.db, organizationId, lookup, meterId, now)));
    });
    expect(found.map((f) => f && { customerId: f.customerId, balance: f.row?.balance ?? null })).toEqual([
      { customerId: a, balance: -1_000_000n },
      { customerId: b, balance: 3_000_000n },
      { customerId: idle, balance: null },
      null,
      null,
      { customerId: o, balance: null },
    ]);
    if (t.databaseUrl.startsWith("postgres")) {
      // (this organization, id), (this organization, externalId), (the other one, id)
      expect(queries.filter((q) => q.includes("CROSS JOIN LATERAL") && q.includes(`FROM "Customer" c LEFT JOIN "CustomerMeter" m`))).toHaveLength(3);
    }
  });

  it("customerMeters lists balances by customer and meter; a session sees only its own", async () => {
    const a = await customer(t);
    const b = await customer(t);
    const m = await meter(t, "COUNT", { filter: named("cm-list") });
    await ingest(t, [{ name: "cm-list", customerId: a }, { name: "cm-list", customerId: b }, { name: "cm-list", customerId: b }]);
    const byMeter = await t.ok(ListCustomerMeters, { meterId: m });
    expect(byMeter.customerMeters.edges.map((e) => [e.node.customer.id, e.node.balance]).sort()).toEqual([[a, "-1"], [b, "-2"]].sort());
    const { createCustomerSession } = await t.ok(CreateSession, { customerId: a });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
    const own = await t.ok(ListCustomerMeters, { meterId: m }, createCustomerSession.token);
    expect(own.customerMeters.edges.map((e) => e.node.customer.id)).toEqual([a]);
    expect((await t.error(ListCustomerMeters, { customerId: b }, createCustomerSession.token)).extensions?.code).toBe("FORBIDDEN");
  });

  it("writes a ledger entry for every balance change with the balance after it", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "x" });
    await grant(t, c, m, "10");
    await ingest(t, [use(c, { x: 3 }), use(c, { x: 1 })]);
    await ingest(t, [use(c, { x: 2.5 })]);
    const entries = await t.db.ledgerEntry.findMany({ where: { customerId: c, meterId: m }, orderBy: { createdAt: "asc" } });
    expect(entries.map((e) => [e.kind, e.units, e.balanceAfter, e.eventCount])).toEqual([
      ["GRANT", 10_000_000n, 10_000_000n, 0],
      ["USAGE", -4_000_000n, 6_000_000n, 2],
      ["USAGE", -2_500_000n, 3_500_000n, 1],
    ]);
  });
});

describe("ingestEvents validation (all or nothing)", () => {
  it("rejects the whole batch and names the event index and field", async () => {
    const c = await customer(t);
    const before = await t.db.event.count();
    const cases: [object, string][] = [
      [{ name: "", customerId: c }, "events.1.name"],
      [{ name: "use" }, "events.1.customerId"],
      [{ name: "use", customerId: c, externalCustomerId: "x" }, "events.1.customerId"],
      [{ name: "use", customerId: c, timestamp: new Date(Date.now() + 10 * 60_000).toISOString() }, "events.1.timestamp"],
      [{ name: "use", customerId: c, metadata: { nested: { a: 1 } } }, "events.1.metadata.nested"],
      [{ name: "use", customerId: c, metadata: "text" }, "events.1.metadata"],
    ];
    for (const [bad, field] of cases) {
      const { ingestEvents } = await t.ok(IngestEvents, { events: [use(c), bad as never, use(c)] });
      expect(ingestEvents, field).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field });
    }
    // An unknown customer is NOT_FOUND here as everywhere else, and refuses the batch the same way.
    const { ingestEvents } = await t.ok(IngestEvents, { events: [use(c), { name: "use", customerId: "no-such-customer" }, use(c)] });
    expect(ingestEvents).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "events.1.customerId" });
    expect(await t.db.event.count()).toBe(before);
  });

  it("rejects a number a meter cannot aggregate exactly, naming the property", async () => {
    const c = await customer(t);
    await meter(t, "SUM", { property: "exact" });
    const { ingestEvents } = await t.ok(IngestEvents, { events: [use(c, { exact: 0.1234567 })] });
    expect(ingestEvents).toMatchObject({ __typename: "InvalidInputError", field: "events.0.metadata.exact" });
  });

  it("accepts a timestamp within the clock-skew allowance and defaults it to now", async () => {
    const c = await customer(t);
    const soon = new Date(Date.now() + 30_000).toISOString();
    expect(await ingest(t, [use(c, {}, { timestamp: soon, externalId: "skew-ok" }), use(c, {}, { externalId: "no-ts" })])).toEqual({ __typename: "IngestSummary", inserted: 2, duplicates: 0, creditedUnits: "0", ignoredValues: 0 });
    const stored = await t.db.event.findFirstOrThrow({ where: { externalId: "no-ts" } });
    expect(Math.abs(stored.timestamp.getTime() - Date.now())).toBeLessThan(60_000);
  });

  it("a call large enough for the LIKE index counts as one that is not (the shared meters are frozen)", async () => {
    const c = await customer(t);
    const name = `like-${Math.random().toString(36).slice(2, 8)}`;
    const clauses = Array.from({ length: 98 }, (_, i) => ({ property: "model", operator: "LIKE" as const, value: `m${i}-` }));
    const m = await meter(t, "COUNT", { filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: name }, { filter: { conjunction: "OR", clauses } }] } });
    const send = (n: number, from: number) =>
      Array.from({ length: n }, (_, i) => ({ name, customerId: c, externalId: `${name}:${from}:${i}`, metadata: { model: `gpt-m${(from + i) % 150}-x` } }));
    // 2,100 events × 98 clauses: past worthIndexing's threshold (200,000); 100 events: below it. Models m98…m149
    // match no clause.
    const matching = (n: number, from: number) => send(n, from).filter((e) => Number(/m(\d+)-/.exec(e.metadata.model)![1]) < 98).length;
    expect(await ingest(t, send(2_100, 0))).toMatchObject({ __typename: "IngestSummary", inserted: 2_100 });
    expect(await ingest(t, send(100, 7))).toMatchObject({ __typename: "IngestSummary", inserted: 100 });
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe(String(matching(2_100, 0) + matching(100, 7)));
    // events(meterId:) reads them back through the same index: exactly the matching ones
    const listed: string[] = [];
    let after: string | null | undefined;
    do {
      const { events } = await t.ok(ListEvents, { meterId: m, first: 500, after });
      listed.push(...events.edges.map((e) => e.node.externalId!));
      after = events.pageInfo.hasNextPage ? events.pageInfo.endCursor : null;
    } while (after);
    const modelOf = (externalId: string) => {
      const [, from, i] = externalId.split(":").map(Number);
      return (from + i) % 150;
    };
    expect(listed.length).toBe(matching(2_100, 0) + matching(100, 7));
    expect(listed.every((id) => modelOf(id) < 98)).toBe(true);
  });

  it("refuses more than 10,000 events in one call", async () => {
    const c = await customer(t);
    const events = Array.from({ length: 10_001 }, () => use(c));
    const { ingestEvents } = await t.ok(IngestEvents, { events });
    expect(ingestEvents).toMatchObject({ __typename: "InvalidInputError", field: "events", message: expect.stringContaining("10000") });
  });
});

describe("idempotency by externalId", () => {
  it("counts a repeated event once, within a batch and across batches", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT");
    expect(await ingest(t, [use(c, {}, { externalId: "e1" }), use(c, {}, { externalId: "e1" }), use(c, {}, { externalId: "e2" })])).toMatchObject({ inserted: 2, duplicates: 1 });
    expect(await ingest(t, [use(c, {}, { externalId: "e1" }), use(c, {}, { externalId: "e3" })])).toMatchObject({ inserted: 1, duplicates: 1 });
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("3");
  });

  it("8 clients sending the same 1,000 events at once insert 1,000 in total", async () => {
    const c = await customer(t);
    const m = await meter(t, "SUM", { property: "n" });
    const events = Array.from({ length: 1000 }, (_, i) => use(c, { n: 1 }, { externalId: `conc-${i}` }));
    const results = await Promise.all(Array.from({ length: 8 }, () => ingest(t, events)));
    expect(results.reduce((s, r) => s + r.inserted, 0)).toBe(1000);
    expect(results.reduce((s, r) => s + r.duplicates, 0)).toBe(7000);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("1000");
  });

  it("is per organization: another tenant may use the same externalId", async () => {
    const other = await t.newOrganization();
    const oc = await customer(t, "tenant-b-cust", other.token);
    const c = await customer(t);
    await ingest(t, [use(c, {}, { externalId: "shared-id" })]);
    expect(await ingest(t, [use(oc, {}, { externalId: "shared-id" })], other.token)).toMatchObject({ inserted: 1, duplicates: 0 });
  });
});

describe("unknown external customers", () => {
  it("keeps events for an unknown externalCustomerId and counts them once the customer is created", async () => {
    const m = await meter(t, "SUM", { property: "n" });
    expect(await ingest(t, [{ name: "use", externalCustomerId: "future-user", metadata: { n: 2 } }, { name: "use", externalCustomerId: "future-user", metadata: { n: 3 } }])).toMatchObject({ inserted: 2 });
    const c = await customer(t, "future-user");
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "5", balance: "-5" });
    await ingest(t, [{ name: "use", externalCustomerId: "future-user", metadata: { n: 1 } }]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("6");
  });
});

describe("concurrency", () => {
  it("16 concurrent requests of distinct events end with the balance a serial replay gives", async () => {
    const meters = { sum: await meter(t, "SUM", { property: "n" }), max: await meter(t, "MAX", { property: "n" }), uniq: await meter(t, "UNIQUE", { property: "u" }) };
    const batches = Array.from({ length: 16 }, (_, b) => Array.from({ length: 50 }, (_, i) => ({ n: ((b * 50 + i) % 97) / 4, u: `u${(b * 7 + i) % 41}` })));
    const parallel = await customer(t);
    const serial = await customer(t);
    await Promise.all(batches.map((batch) => ingest(t, batch.map((md) => use(parallel, md)))));
    for (const batch of batches) await ingest(t, batch.map((md) => use(serial, md)));
    for (const m of Object.values(meters)) {
      const [p, s] = [await balanceOf(t, parallel, m), await balanceOf(t, serial, m)];
      expect(p?.consumedUnits).toBe(s?.consumedUnits);
      // one version per transaction; concurrent calls may share one
      expect(p?.version).toBeGreaterThanOrEqual(1);
      expect(p?.version).toBeLessThanOrEqual(16);
    }
  });

  it("40 concurrent small calls, some repeating each other's externalIds: each event counts once, each call's summary is its own", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("small") });
    const c = await customer(t);
    // call k sends keys small-k-0..2, and repeats small-(k-1)-0 (which call k - 1 also sends) with another value
    const calls = Array.from({ length: 40 }, (_, k) => [
      ...[0, 1, 2].map((j) => ({ name: "small", customerId: c, externalId: `small-${k}-${j}`, metadata: { n: k + 1 } })),
      ...(k > 0 ? [{ name: "small", customerId: c, externalId: `small-${k - 1}-0`, metadata: { n: 1000 } }] : []),
    ]);
    let results: { inserted: number; duplicates: number }[] = [];
    const queries = await t.queriesDuring(async () => {
      results = await Promise.all(calls.map((events) => ingest(t, events)));
    });
    results.forEach((r, k) => expect(r.inserted + r.duplicates).toBe(calls[k].length));
    expect(results.reduce((n, r) => n + r.inserted, 0)).toBe(120); // 120 distinct keys, whichever call came first
    const stored = await t.db.event.findMany({ where: { externalId: { startsWith: "small-" } }, select: { metadata: true } });
    expect(stored).toHaveLength(120);
    // the balance counts exactly the stored events, each once
    const counted = stored.reduce((n, e) => n + (e.metadata as { n: number }).n, 0);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe(String(counted));
    // On PostgreSQL calls arriving while two transactions run wait and are stored together (SQLite's
    // single connection lets them arrive one at a time). Each transaction updates the one balance once (its
    // events may take several INSERTs: SQLite's go in power-of-two chunks, src/db/sql.ts).
    const transactions = queries.filter((q) => q.startsWith(`UPDATE "CustomerMeter"`)).length;
    if (process.env.TEST_DATABASE_URL) expect(transactions).toBeLessThan(40);
    expect((await balanceOf(t, c, m))?.version).toBe(transactions);
  });
});

describe("events", () => {
  it("lists events by customer, name, meter and time range, oldest first, in pages", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT", { filter: { conjunction: "AND", clauses: [{ property: "tier", operator: "EQ", value: "gold" }] } });
    const t0 = Date.now() - 60_000;
    await ingest(t, Array.from({ length: 6 }, (_, i) => ({
      name: i % 2 ? "a" : "b",
      customerId: c,
      externalId: `list-${i}`,
      timestamp: new Date(t0 + i * 1000).toISOString(),
      metadata: { tier: i < 3 ? "gold" : "silver" },
    })));
    const all = await t.ok(ListEvents, { customerId: c });
    expect(all.events.edges.map((e) => e.node.externalId)).toEqual(["list-0", "list-1", "list-2", "list-3", "list-4", "list-5"]);
    expect(new Set(all.events.edges.map((e) => e.node.customer?.id))).toEqual(new Set([c]));
    const named_a = await t.ok(ListEvents, { customerId: c, name: "a" });
    expect(named_a.events.edges.map((e) => e.node.externalId)).toEqual(["list-1", "list-3", "list-5"]);
    const gold = await t.ok(ListEvents, { customerId: c, meterId: m });
    expect(gold.events.edges.map((e) => e.node.externalId)).toEqual(["list-0", "list-1", "list-2"]);
    const range = await t.ok(ListEvents, { customerId: c, from: new Date(t0 + 1000).toISOString(), to: new Date(t0 + 3000).toISOString() });
    expect(range.events.edges.map((e) => e.node.externalId)).toEqual(["list-1", "list-2"]);
    const p1 = await t.ok(ListEvents, { customerId: c, meterId: m, first: 2 });
    expect(p1.events.pageInfo.hasNextPage).toBe(true);
    const p2 = await t.ok(ListEvents, { customerId: c, meterId: m, first: 2, after: p1.events.pageInfo.endCursor });
    expect(p2.events.edges.map((e) => e.node.externalId)).toEqual(["list-2"]);
    expect(p2.events.pageInfo.hasNextPage).toBe(false);
  });
});


describe("what every call reads first", () => {
  it("counts on a meter created between two calls from the next call on, and no longer on one archived", async () => {
    const c = await customer(t);
    const first = await meter(t, "COUNT", { filter: named("between-calls") });
    await ingest(t, [{ name: "between-calls", customerId: c }]);
    const second = await meter(t, "COUNT", { filter: named("between-calls") });
    await ingest(t, [{ name: "between-calls", customerId: c }]);
    expect((await balanceOf(t, c, first))?.consumedUnits).toBe("2");
    expect((await balanceOf(t, c, second))?.consumedUnits).toBe("1");
    await t.ok(ArchiveMeter, { id: first });
    await ingest(t, [{ name: "between-calls", customerId: c }]);
    expect((await balanceOf(t, c, first))?.consumedUnits).toBe("2");
    expect((await balanceOf(t, c, second))?.consumedUnits).toBe("2");
  });

  it("calls looked up together are each answered for their own organization and customers (one statement per organization)", async () => {
    const tag = `together-${Math.random().toString(36).slice(2, 8)}`;
    const a = await customer(t);
    const b = await customer(t, `${tag}-b`);
    const m = await meter(t, "COUNT", { filter: named(tag) });
    const other = await t.newOrganization();
    const o = await customer(t, `${tag}-o`, other.token);
    const { createMeter } = await t.ok(CreateMeter, { input: { name: tag, filter: named(tag) as never, aggregation: { func: "COUNT" } } }, other.token);
    if (createMeter.__typename !== "Meter") throw new Error(JSON.stringify(createMeter));
    const ev = (extra: object, n: number) => ({ name: tag, externalId: `${tag}-${n}`, ...extra });
    const calls: [string, object[]][] = [
      [t.organizationId, [ev({ customerId: a }, 1), ev({ customerId: a }, 2)]],
      [t.organizationId, [ev({ externalCustomerId: `${tag}-b` }, 3)]],
      [t.organizationId, [ev({ customerId: a }, 4), ev({ customerId: "nope" }, 5)]],
      [other.id, [ev({ customerId: a }, 6)]],
      [other.id, [ev({ customerId: o }, 7), ev({ externalCustomerId: `${tag}-o` }, 8)]],
      [t.organizationId, [ev({ externalCustomerId: `${tag}-later` }, 9)]],
    ];
    const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };
    let answers: PromiseSettledResult<{ inserted: number }>[] = [];
    // Called in one tick, as requests read from the sockets in one go are.
    const queries = await t.queriesDuring(async () => {
      answers = await Promise.allSettled(calls.map(([organizationId, events]) => ingestEvents(t.db, silent, organizationId, events as never)));
    });
    const outcome = (r: PromiseSettledResult<{ inserted: number }>) =>
      r.status === "fulfilled" ? { inserted: r.value.inserted } : { error: (r.reason as { code?: string }).code, field: (r.reason as { field?: string }).field };
    expect(answers.map(outcome)).toEqual([
      { inserted: 2 },
      { inserted: 1 },
      { error: "NOT_FOUND", field: "events.1.customerId" },
      { error: "NOT_FOUND", field: "events.0.customerId" },
      { inserted: 2 },
      { inserted: 1 },
    ]);
    expect((await balanceOf(t, a, m))?.consumedUnits).toBe("2");
    expect((await balanceOf(t, b, m))?.consumedUnits).toBe("1");
    const { customerMeter } = await t.ok(GetCustomerMeter, { customerId: o, meterId: createMeter.id }, other.token);
    expect(customerMeter?.consumedUnits).toBe("2");
    // the customers of this organization's four calls in one statement, the other organization's two in another
    expect(queries.filter((q) => q.includes(`SELECT 'C' AS "kind"`))).toHaveLength(2);
  });

  // SQLite plans without statistics: the customers a call names must be found through their own index
  // entries whatever mix of customerId and externalCustomerId it sends, never by reading every customer of the
  // organization (a read that grew with the customer count on every call, however small).
  it("finds the customers a call names by id or external id through their indexes (SQLite's plan)", async ({ skip }) => {
    const sql = sqlOf(t.db);
    if (sql.provider !== "sqlite") skip("SQLite's query planner");
    const plan = async (ids: string[], externalIds: string[]) => {
      const statement = customersAndMetersStatement(sql, t.organizationId, ids, externalIds);
      return (await sql.query<{ detail: string }>(`EXPLAIN QUERY PLAN ${statement.text}`, statement.values)).map((r) => r.detail).join("\n");
    };
    expect(await plan(["c1"], [])).toMatch(/SEARCH Customer USING INDEX \w+ \(id=\?\)/);
    expect(await plan([], ["x1", "x2"])).toMatch(/SEARCH Customer USING INDEX Customer_organizationId_externalId_key \(organizationId=\? AND externalId=\?\)/);
    const both = await plan(["c1"], ["x1"]);
    expect(both).toMatch(/SEARCH Customer USING INDEX \w+ \(id=\?\)/);
    expect(both).toMatch(/SEARCH Customer USING INDEX Customer_organizationId_externalId_key \(organizationId=\? AND externalId=\?\)/);
    // Many at once (an ingest call of 1,000 events names hundreds): with eight ids or more and no statistics,
    // SQLite had preferred the organization's index to the primary key, reading every customer of it.
    const many = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    const manyIds = await plan(many("c", 8), []);
    expect(manyIds).toMatch(/SEARCH Customer USING INDEX \w+ \(id=\?\)/);
    const mixed = await plan(many("c", 600), many("x", 300));
    expect(mixed).toMatch(/SEARCH Customer USING INDEX \w+ \(id=\?\)/);
    expect(mixed).toMatch(/SEARCH Customer USING INDEX Customer_organizationId_externalId_key \(organizationId=\? AND externalId=\?\)/);
    for (const p of [await plan(["c1"], []), await plan([], ["x1"]), both, manyIds, mixed, await plan([], many("x", 600))]) {
      expect(p).not.toMatch(/Customer USING INDEX \w+ \(organizationId=\?\)|SCAN Customer/);
    }
  });
});
