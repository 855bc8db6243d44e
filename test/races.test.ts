// Races and order: writes that meet at the same instant, on one node or two, and work the scheduler does late,
// must leave the books exactly as the same work done one step at a time, on time.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BalanceAt, CommitReservation, CreateCustomer, IngestEvents, LedgerOf, ReserveUsage } from "./documents.ts";
import { anotherNode, startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { parseUnits } from "../src/domain/units.ts";

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

describe("a customer created while its events arrive", () => {
  it("counts every event exactly once over 200 rounds of createCustomer racing ingestEvents", async () => {
    const calls = await meter(t, "COUNT", { filter: named("race-call") });
    const rounds = 200;
    const wave = 20;
    const ids: string[] = [];
    for (let start = 0; start < rounds; start += wave) {
      await Promise.all(
        Array.from({ length: wave }, async (_, i) => {
          const externalId = `race_${start + i}`;
          const [created, ingested] = await Promise.all([
            t.ok(CreateCustomer, { input: { email: `${externalId}@example.com`, externalId } }),
            t.ok(IngestEvents, { events: [{ name: "race-call", externalCustomerId: externalId, externalId: `evt_${externalId}` }] }),
          ]);
          if (created.createCustomer.__typename !== "Customer") throw new Error(JSON.stringify(created));
          expect(ingested.ingestEvents).toMatchObject({ inserted: 1 });
          ids[start + i] = created.createCustomer.id;
        }),
      );
    }
    const counted = await Promise.all(ids.map((c) => balanceOf(t, c, calls)));
    expect(counted.map((b) => b?.consumedUnits ?? "0")).toEqual(ids.map(() => "1"));
    // and no event is left waiting for a customer that exists
    expect(await t.db.event.count({ where: { organizationId: t.organizationId, customerId: null } })).toBe(0);
  });
});

describe("ledger order across nodes", () => {
  it("follows commit order when the nodes' clocks disagree", async () => {
    const m = await meter(t, "COUNT", { filter: named("two-nodes") });
    const c = await customer(t);
    await grant(t, c, m, "100");
    // Node B's clock is 30 s behind node A's.
    const b = await anotherNode(t, () => new Date(Date.now() - 30_000));
    try {
      const sent: string[] = [];
      for (let i = 0; i < 8; i++) {
        const externalId = `two_nodes_${i}`;
        const events = [{ name: "two-nodes", customerId: c, externalId }];
        if (i % 2 === 0) await ingest(t, events);
        else await b.ok(IngestEvents, { events });
        sent.push(externalId);
      }
      const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
      const entries = ledger.edges.map((e) => e.node);
      expect(entries.map((e) => e.kind)).toEqual(["GRANT", ...sent.map(() => "USAGE")]);
      expect(entries.slice(1).map((e) => e.event?.externalId)).toEqual(sent);
      // every entry starts from the balance the one before it left, and time never runs backwards
      for (let i = 1; i < entries.length; i++) {
        expect(parseUnits(entries[i].balanceAfter) - parseUnits(entries[i - 1].balanceAfter)).toBe(parseUnits(entries[i].units));
        expect(new Date(entries[i].occurredAt) >= new Date(entries[i - 1].occurredAt)).toBe(true);
      }
      expect(entries.at(-1)?.balanceAfter).toBe("92");
    } finally {
      await b.close();
    }
  });
});

describe("a reservation committed after other usage drained the balance", () => {
  it("commits what it held; only units beyond the hold must still be available", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("held-then-drained") });
    const c = await customer(t);
    await grant(t, c, m, "10");
    const reserve = async () => {
      const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "10" } });
      if (reserveUsage.__typename !== "UsageReservation" || !reserveUsage.allowed) throw new Error(JSON.stringify(reserveUsage));
      return reserveUsage.id!;
    };
    const first = await reserve();
    // Usage reported by events is recorded whatever is held: the balance is now 0, the hold still 10.
    await ingest(t, [{ name: "held-then-drained", customerId: c, metadata: { n: 10 } }]);
    expect((await t.ok(CommitReservation, { id: first, units: "10" })).commitReservation).toMatchObject({ __typename: "Reservation", status: "COMMITTED", committedUnits: "10" });
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "-10", consumedUnits: "20" });

    // Beyond the hold, the extra must be available: it is not, so that commit is refused and the hold stays.
    await grant(t, c, m, "20"); // pays off the 10 of overage, leaves 10
    const second = await reserve();
    await ingest(t, [{ name: "held-then-drained", customerId: c, metadata: { n: 1 } }]);
    const over = (await t.ok(CommitReservation, { id: second, units: "11" })).commitReservation;
    expect(over).toMatchObject({ __typename: "InsufficientCreditsError", code: "INSUFFICIENT_CREDITS" });
    expect((await t.ok(CommitReservation, { id: second, units: "10" })).commitReservation).toMatchObject({ status: "COMMITTED" });
    expect((await balanceOf(t, c, m))?.balance).toBe("-1");
  });
});

describe("a subscription cycle renewed late", () => {
  const DAY = 86_400_000;
  const START = new Date("2026-01-15T12:00:00.000Z");
  const BOUNDARIES = ["2026-02-15T12:00:00.000Z", "2026-03-15T12:00:00.000Z", "2026-04-15T12:00:00.000Z"].map((d) => new Date(d));
  const LATE = new Date("2026-04-20T08:00:00.000Z");

  /** The same customer history on a fresh server; the scheduler runs at the instants given. */
  async function history(schedulerRunsAt: Date[]) {
    const app = await startTestApp();
    app.setNow(START);
    const m = await meter(app, "SUM", { property: "n", filter: named("cycle") });
    const plan = await product(app, [await benefit(app, m, "100"), await benefit(app, m, "10", { rollover: true })], { recurring: true });
    const c = await customer(app, "subscriber");
    await order(app, c, plan);
    app.setNow(new Date(START.getTime() + DAY));
    await ingest(app, [{ name: "cycle", customerId: c, metadata: { n: 30 } }]);
    for (const at of schedulerRunsAt) {
      app.setNow(at);
      await app.app.scheduler.tick();
    }
    app.setNow(LATE);
    const { ledger } = await app.ok(LedgerOf, { customerId: c, meterId: m, first: 100 });
    const instants = [...Array.from({ length: 96 }, (_, d) => new Date(START.getTime() + d * DAY)), ...BOUNDARIES.flatMap((b) => [-1, 0, 1].map((ms) => new Date(b.getTime() + ms))), LATE];
    const balances = await Promise.all(instants.map(async (at) => (await app.ok(BalanceAt, { customerId: c, meterId: m, at: at.toISOString() })).balanceAt));
    const entries = ledger.edges.map(({ node }) => ({ kind: node.kind, units: node.units, balanceAfter: node.balanceAfter, occurredAt: node.occurredAt }));
    await app.close();
    return { entries, balances };
  }

  it("has the same ledger, in the same order, and the same balanceAt at every instant as one renewed on time", async () => {
    const onTime = await history(BOUNDARIES);
    const late = await history([LATE]);
    expect(onTime.entries.map((e) => e.kind)).toEqual(["GRANT", "GRANT", "USAGE", "EXPIRY", "GRANT", "GRANT", "EXPIRY", "GRANT", "GRANT", "EXPIRY", "GRANT", "GRANT"]);
    expect(late.entries).toEqual(onTime.entries);
    expect(late.balances).toEqual(onTime.balances);
  });
});
