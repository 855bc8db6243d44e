import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Availability, AuthorizeUsage, BalanceAt, LedgerOf, CommitReservation, CreateBenefit, CreateCreditSystem, CreateProduct, EntitlementState, GrantCredits, CreateSession, IngestStrict, RatedLedger, ReleaseReservation, ReservationsOfMeter, ReserveRated, SessionBalances, SetCreditRate, UpdateMeter, UpdateProduct } from "./documents.ts";
import type { CreateCreditSystemInput, SetCreditRateInput } from "./gql/graphql.ts";
import { drawOf, drawsOf, RatedUsage, type Rate } from "../src/domain/credit-systems.ts";
import { adjustBalances, adjustment } from "../src/domain/balances.ts";
import { orderedId } from "../src/domain/ids.ts";
import { usageAdjustments } from "../src/domain/ingestion.ts";
import { activeMeters } from "../src/domain/meters.ts";
import { InsufficientCreditsError } from "../src/domain/errors.ts";
import { sqlTransaction } from "../src/domain/transactions.ts";
import { UNIT_SCALE } from "../src/domain/units.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";

let t: TestApp;
const T0 = new Date("2026-06-01T00:00:00.000Z");

beforeAll(async () => {
  t = await startTestApp({ limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } });
  t.setNow(T0);
});
afterAll(() => t?.close());

let serial = 0;
const unique = (what: string) => `${what}-${++serial}-${Math.random().toString(36).slice(2, 6)}`;

async function creditSystem(input: CreateCreditSystemInput) {
  const { createCreditSystem } = await t.ok(CreateCreditSystem, { input });
  if (createCreditSystem.__typename !== "Meter") throw new Error(JSON.stringify(createCreditSystem));
  return createCreditSystem;
}

async function setRate(input: SetCreditRateInput) {
  const { setCreditRate } = await t.ok(SetCreditRate, { input });
  if (setCreditRate.__typename !== "Meter") throw new Error(JSON.stringify(setCreditRate));
  return setCreditRate;
}

const ledgerOf = async (c: string, m: string) => (await t.ok(RatedLedger, { customerId: c, meterId: m, first: 100 })).ledger.edges.map((e) => e.node);
const events = (name: string, c: string, n: number, timestamp?: Date, metadata?: object) =>
  Array.from({ length: n }, () => ({ name, customerId: c, timestamp: timestamp?.toISOString(), metadata }));

/** A pool fed by an API-call meter at 1 credit and a premium meter at 5 (the seeds' glossary). */
async function seedsPool() {
  const calls = unique("call");
  const premium = unique("premium");
  const api = await meter(t, "COUNT", { filter: named(calls) });
  const pro = await meter(t, "COUNT", { filter: named(premium) });
  const pool = await creditSystem({ name: "credits", rates: [{ meterId: api, creditsPerUnit: "1" }, { meterId: pro, creditsPerUnit: "5" }] });
  return { api, pro, pool: pool.id, calls, premium };
}

describe("credit systems", () => {
  it("the seeds' example: a 10,000 pack, 100 calls at 1 and 20 premium calls at 5 leave 9,800; a session sees the pool and each feature", async () => {
    const { api, pro, pool, calls, premium } = await seedsPool();
    const c = await customer(t);
    await order(t, c, await product(t, [await benefit(t, pool, "10000")]));
    await ingest(t, [...events(calls, c, 100), ...events(premium, c, 20)]);

    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "9800", creditedUnits: "10000", consumedUnits: "200" });
    expect(await balanceOf(t, c, api)).toMatchObject({ consumedUnits: "100" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "20" });

    const draws = (await ledgerOf(c, pool)).filter((e) => e.kind === "USAGE");
    expect(draws).toHaveLength(2);
    expect(draws).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ units: "-100", eventCount: 100, creditsPerUnit: "1", ratedMeter: { id: api } }),
        expect.objectContaining({ units: "-100", eventCount: 20, creditsPerUnit: "5", ratedMeter: { id: pro } }),
      ]),
    );
    expect(draws.at(-1)!.balanceAfter).toBe("9800");

    const { createCustomerSession } = await t.ok(CreateSession, { customerId: c });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
    const seen = (await t.ok(SessionBalances, {}, createCustomerSession.token)).customerMeters.edges.map((e) => e.node);
    expect(seen).toEqual(
      expect.arrayContaining([
        { balance: "9800", consumedUnits: "200", meter: { id: pool, creditSystem: true, creditSystemId: null } },
        expect.objectContaining({ consumedUnits: "100", meter: { id: api, creditSystem: false, creditSystemId: pool } }),
        expect.objectContaining({ consumedUnits: "20", meter: { id: pro, creditSystem: false, creditSystemId: pool } }),
      ]),
    );
    expect(seen).toHaveLength(3);
  });

  it("a rated event costs one ledger row: the pool's draw carries the rated meter's units, its ledger and balanceAt read them", async () => {
    const calls = unique("call");
    const api = await meter(t, "COUNT", { filter: named(calls) });
    const c = await customer(t);
    const before = new Date(T0.getTime() + 30_000);
    const rated = new Date(T0.getTime() + 45_000);
    const t1 = new Date(T0.getTime() + 60_000);
    const t2 = new Date(T0.getTime() + 120_000);
    const t3 = new Date(T0.getTime() + 180_000);
    try {
      t.setNow(before);
      await ingest(t, events(calls, c, 1)); // an entry of the meter's own, from before it was rated
      t.setNow(rated);
      const pool = (await creditSystem({ name: "credits", rates: [{ meterId: api, creditsPerUnit: "1" }] })).id;
      await grant(t, c, pool, "100");
      t.setNow(t1);
      await ingest(t, events(calls, c, 3));
      t.setNow(t3);
      await ingest(t, events(calls, c, 2));
      const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId: c, meterId: api, units: "4" } });
      expect(authorizeUsage).toMatchObject({ allowed: true, balance: "91" });

      // The customer's whole ledger: usage on the pool only once the meter is rated, each draw with the rated meter's units.
      const all = (await t.ok(RatedLedger, { customerId: c, first: 100 })).ledger.edges.map((e) => e.node);
      expect(all.filter((e) => e.kind === "USAGE").map((e) => ({ meter: e.meter.id, units: e.units, ratedUnits: e.ratedUnits, ratedBalanceAfter: e.ratedBalanceAfter }))).toEqual([
        { meter: api, units: "-1", ratedUnits: null, ratedBalanceAfter: null },
        { meter: pool, units: "-3", ratedUnits: "3", ratedBalanceAfter: "-4" },
        { meter: pool, units: "-2", ratedUnits: "2", ratedBalanceAfter: "-6" },
        { meter: pool, units: "-4", ratedUnits: "4", ratedBalanceAfter: "-10" },
      ]);
      // The rated meter's ledger: its own entry and the draws that carry its usage, nothing twice.
      const own = (await ledgerOf(c, api)).map((e) => ({ kind: e.kind, meter: e.meter.id, ratedUnits: e.ratedUnits }));
      expect(own).toEqual([
        { kind: "USAGE", meter: api, ratedUnits: null },
        { kind: "USAGE", meter: pool, ratedUnits: "3" },
        { kind: "USAGE", meter: pool, ratedUnits: "2" },
        { kind: "USAGE", meter: pool, ratedUnits: "4" },
      ]);
      // The rated meter's balance at each instant, as its balance row says now.
      const at = async (when: Date) => (await t.ok(BalanceAt, { customerId: c, meterId: api, at: when.toISOString() })).balanceAt;
      expect([await at(T0), await at(before), await at(t1), await at(t2), await at(t3)]).toEqual(["0", "-1", "-4", "-4", "-10"]);
      expect(await balanceOf(t, c, api)).toMatchObject({ balance: "-10", consumedUnits: "10" });
      expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "91" });
    } finally {
      t.setNow(T0);
    }
  });

  it("tiered packs (the README's example): three one-time products at volume prices, each order grants its tier on the pool", async () => {
    const { api, pool, calls } = await seedsPool();
    const tier = async (units: string, amount: string) => product(t, [await benefit(t, pool, units)], { prices: [{ type: "FIXED", amount, currency: "usd" }] });
    const [small, medium, large] = [await tier("1000", "10000"), await tier("10000", "80000"), await tier("50000", "300000")];
    const c = await customer(t);
    await order(t, c, small);
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "1000" });
    await order(t, c, small); // packs stack
    await order(t, c, medium);
    await order(t, c, large);
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "62000", creditedUnits: "62000" });
    await ingest(t, events(calls, c, 2));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "61998" });
    expect(await balanceOf(t, c, api)).toMatchObject({ consumedUnits: "2" });
  });

  it("rounds each event's draw half away from zero to the micro-credit", async () => {
    const name = unique("tokens");
    const m = await meter(t, "SUM", { property: "n", filter: named(name) });
    const pool = (await creditSystem({ name: "tokens", rates: [{ meterId: m, creditsPerUnit: "0.333333" }] })).id;
    const c = await customer(t);
    await grant(t, c, pool, "10");
    // 1.5 × 0.333333 = 0.4999995 → 0.5 per event (the batch total 0.9999990 would round to 0.999999)
    await ingest(t, events(name, c, 2, undefined, { n: 1.5 }));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "9", consumedUnits: "1" });
    // 0.000001 × 0.333333 = 0.000000333333 → 0
    await ingest(t, events(name, c, 1, undefined, { n: 0.000001 }));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "9" });
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "3.000001" });
  });

  it("a batch under one rate draws the sum of its events' rounded draws, whole units or not", async () => {
    const name = unique("tokens");
    const m = await meter(t, "SUM", { property: "n", filter: named(name) });
    const pool = (await creditSystem({ name: "tokens", rates: [{ meterId: m, creditsPerUnit: "0.333333" }] })).id;
    const c = await customer(t);
    // whole units: no event rounds, 3 × 0.333333 + 7 × 0.333333 = 3.33333
    await ingest(t, [...events(name, c, 1, undefined, { n: 3 }), ...events(name, c, 1, undefined, { n: 7 })]);
    expect(await balanceOf(t, c, pool)).toMatchObject({ consumedUnits: "3.33333" });
    // 3 → 0.999999, 1.5 → 0.4999995 → 0.5, 0.000001 → 0: 1.499999 (the batch's 4.500001 × 0.333333 would round to 1.5)
    await ingest(t, [...events(name, c, 1, undefined, { n: 3 }), ...events(name, c, 1, undefined, { n: 1.5 }), ...events(name, c, 1, undefined, { n: 0.000001 })]);
    expect(await balanceOf(t, c, pool)).toMatchObject({ consumedUnits: "4.833329" });
    const draws = (await ledgerOf(c, pool)).filter((e) => e.kind === "USAGE").map((e) => ({ units: e.units, events: e.eventCount }));
    expect(draws).toEqual(expect.arrayContaining([{ units: "-3.33333", events: 2 }, { units: "-1.499999", events: 3 }]));
  });

  it("a rate change at t: usage timestamped before t keeps the old rate, in the ledger and in balanceAt", async () => {
    const { api, pool, calls } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "1000");
    t.setNow(new Date(T0.getTime() + 3_600_000));
    const before = t.advance(0);
    const changeAt = new Date(before.getTime() + 60_000);
    await ingest(t, events(calls, c, 10, new Date(before.getTime() - 1000)));
    expect((await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "2.5", effectiveAt: changeAt.toISOString() })).creditRates).toEqual(
      expect.arrayContaining([{ meter: { id: api }, creditsPerUnit: "2.5", effectiveAt: changeAt.toISOString() }]),
    );
    const after = t.advance(120_000);
    // late: timestamped before the change, counted after it
    await ingest(t, [...events(calls, c, 4, new Date(changeAt.getTime() - 1)), ...events(calls, c, 6, new Date(changeAt.getTime() + 1000))]);

    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: String(1000 - 10 - 4 - 6 * 2.5) });
    const draws = (await ledgerOf(c, pool)).filter((e) => e.kind === "USAGE").map((e) => ({ units: e.units, rate: e.creditsPerUnit, events: e.eventCount }));
    expect(draws).toEqual(expect.arrayContaining([{ units: "-10", rate: "1", events: 10 }, { units: "-4", rate: "1", events: 4 }, { units: "-15", rate: "2.5", events: 6 }]));
    expect(draws).toHaveLength(3);
    const at = async (when: Date) => (await t.ok(BalanceAt, { customerId: c, meterId: pool, at: when.toISOString() })).balanceAt;
    expect(await at(new Date(before.getTime() + 1))).toBe("990");
    expect(await at(after)).toBe("971");
  });

  it("a write whose events fall under two rates draws at each, and each draw's entry names the last event it drew for", async () => {
    const { api, pool, calls } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "100");
    const now = t.advance(60_000);
    await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "2", effectiveAt: new Date(now.getTime() + 5_000).toISOString() });
    const at = (ms: number) => new Date(now.getTime() + ms).toISOString();
    const [oldA, newA, oldB, newB] = ["old-a", "new-a", "old-b", "new-b"].map(unique);
    await ingest(t, [
      { name: calls, customerId: c, externalId: oldA, timestamp: at(0) },
      { name: calls, customerId: c, externalId: newA, timestamp: at(10_000) },
      { name: calls, customerId: c, externalId: oldB, timestamp: at(1_000) },
      { name: calls, customerId: c, externalId: newB, timestamp: at(20_000) },
    ]);
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: pool, first: 100 });
    const draws = ledger.edges.map((e) => e.node).filter((n) => n.kind === "USAGE");
    // at rate 1 the two events before the new rate, the later one (in the call's order) named; at rate 2 the others
    expect(draws.map((d) => [d.units, d.eventCount, d.event?.externalId])).toEqual(
      expect.arrayContaining([
        ["-2", 2, oldB],
        ["-4", 2, newB],
      ]),
    );
    expect(draws).toHaveLength(2);
  });

  it("a new rate starts after usage already drawn with a timestamp ahead of the clock (allowed up to a minute)", async () => {
    const { api, pool, calls } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "1000");
    const now = t.advance(60_000);
    const ahead = new Date(now.getTime() + 30_000);
    await ingest(t, events(calls, c, 2, ahead)); // drawn at 1
    // asked to start before it: refused, the usage would sit after the rate's start at the old rate
    const early = (await t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: api, creditsPerUnit: "3", effectiveAt: new Date(now.getTime() + 10_000).toISOString() } })).setCreditRate;
    expect(early).toMatchObject({ __typename: "ConflictError", field: "input.effectiveAt", message: expect.stringContaining(ahead.toISOString()) });
    // "now": it starts just after that usage
    const rates = (await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "3" })).creditRates.filter((r) => r.meter.id === api);
    expect(rates.at(-1)).toEqual({ meter: { id: api }, creditsPerUnit: "3", effectiveAt: new Date(ahead.getTime() + 1).toISOString() });
    // usage timestamped before the rate's start keeps the rate it was drawn at: 1 each
    await ingest(t, events(calls, c, 1, new Date(now.getTime() + 20_000)));
    await ingest(t, events(calls, c, 1, new Date(ahead.getTime() + 5_000)));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: String(1000 - 2 - 1 - 3) });
  });

  it("a rate set while usage timestamped ahead is being written: every draw is at the rate its instant has in the final rates", async () => {
    // the rate is set 0 to 33 ms after the calls went out: some rounds while a group is between its read of the
    // rates and its commit (before the rating lock, such a group drew usage after the new start at the old rate)
    for (let round = 0; round < 12; round++) {
      const { api, pool, calls } = await seedsPool();
      const c = await customer(t);
      await grant(t, c, pool, "100000");
      const now = t.advance(60_000);
      const ahead = new Date(now.getTime() + 30_000);
      // calls in flight on the node's writer when the rate is set (effective now)
      const writes = Array.from({ length: 4 }, () => ingest(t, events(calls, c, 1000, ahead)));
      const rated = new Promise((r) => setTimeout(r, round * 3)).then(() => setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "3" }));
      await Promise.all([...writes, rated]);
      const rates = (await rated).creditRates.filter((r) => r.meter.id === api);
      const start = new Date(rates.at(-1)!.effectiveAt);
      // 4,000 events at `ahead`: each at 3 if the new rate had started by then, else at 1
      const drawn = start <= ahead ? 3 * 4000 : 4000;
      expect(await balanceOf(t, c, pool), `round ${round}: rate from ${start.toISOString()}, usage at ${ahead.toISOString()}`).toMatchObject({ balance: String(100000 - drawn) });
    }
  });

  it("refuses meters that cannot be rated or already feed a pool, naming the input", async () => {
    const { api, pool } = await seedsPool();
    const max = await meter(t, "MAX", { property: "n", filter: named(unique("max")) });
    const refused = async (input: CreateCreditSystemInput) => (await t.ok(CreateCreditSystem, { input })).createCreditSystem;
    expect(await refused({ name: "x", rates: [{ meterId: api, creditsPerUnit: "1" }] })).toMatchObject({ __typename: "ConflictError", field: "input.rates.0.meterId" });
    expect(await refused({ name: "x", rates: [{ meterId: max, creditsPerUnit: "1" }] })).toMatchObject({ __typename: "InvalidInputError", field: "input.rates.0.meterId" });
    expect(await refused({ name: "x", rates: [{ meterId: pool, creditsPerUnit: "1" }] })).toMatchObject({ __typename: "InvalidInputError", field: "input.rates.0.meterId" });
    expect(await refused({ name: "x", rates: [{ meterId: max, creditsPerUnit: "0" }] })).toMatchObject({ __typename: "InvalidInputError", field: "input.rates.0.creditsPerUnit" });
    expect(await refused({ name: "x", rates: [] })).toMatchObject({ __typename: "InvalidInputError", field: "input.rates" });
    const other = (await creditSystem({ name: "other", rates: [{ meterId: await meter(t, "COUNT", { filter: named(unique("o")) }), creditsPerUnit: "1" }] })).id;
    expect((await t.ok(SetCreditRate, { input: { creditSystemId: other, meterId: api, creditsPerUnit: "2" } })).setCreditRate).toMatchObject({
      __typename: "ConflictError",
      field: "input.meterId",
    });
    expect((await t.ok(SetCreditRate, { input: { creditSystemId: api, meterId: api, creditsPerUnit: "2" } })).setCreditRate).toMatchObject({
      __typename: "NotFoundError",
      field: "input.creditSystemId",
    });
  });

  it("a rate is a row of its own: never edited at its instant, never started in the past", async () => {
    const created = t.advance(0);
    const { api, pool, calls } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "1000");
    t.advance(2_000);
    await ingest(t, events(calls, c, 10, new Date(created.getTime() + 1_000)));
    const refused = async (input: SetCreditRateInput) => (await t.ok(SetCreditRate, { input })).setCreditRate;
    // before the events' instant: it would re-price usage already drawn at 1
    expect(await refused({ creditSystemId: pool, meterId: api, creditsPerUnit: "5", effectiveAt: new Date(created.getTime() - 3_600_000).toISOString() })).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.effectiveAt",
    });
    // within the clock skew allowed, an instant just past means now
    const now = t.advance(0);
    await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "5", effectiveAt: new Date(now.getTime() - 1_500).toISOString() });
    // a later rate, then another one at its instant: refused, the first stands
    const later = new Date(now.getTime() + 3_600_000).toISOString();
    await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "7", effectiveAt: later });
    expect(await refused({ creditSystemId: pool, meterId: api, creditsPerUnit: "9", effectiveAt: later })).toMatchObject({ __typename: "ConflictError", field: "input.effectiveAt" });
    const rates = (await setRate({ creditSystemId: pool, meterId: api, creditsPerUnit: "8", effectiveAt: new Date(now.getTime() + 7_200_000).toISOString() })).creditRates;
    expect(rates.filter((r) => r.meter.id === api).map((r) => [r.creditsPerUnit, r.effectiveAt])).toEqual([
      ["1", created.toISOString()],
      ["5", now.toISOString()],
      ["7", later],
      ["8", new Date(now.getTime() + 7_200_000).toISOString()],
    ]);
    await ingest(t, events(calls, c, 10, new Date(created.getTime() + 1_000))); // late usage keeps its rate
    await ingest(t, events(calls, c, 2, now)); // usage from now on: 5 each
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: String(1000 - 10 - 10 - 2 * 5) });
  });

  it("credits go to the pool, never to a rated meter: a meter with unspent credits or on sale in a product is not rated", async () => {
    const name = unique("held");
    const held = await meter(t, "COUNT", { filter: named(name) });
    const c = await customer(t);
    const pack = await grant(t, c, held, "100"); // bought before any credit system existed
    const rate = [{ meterId: held, creditsPerUnit: "1" }];
    expect((await t.ok(CreateCreditSystem, { input: { name: "x", rates: rate } })).createCreditSystem).toMatchObject({
      __typename: "ConflictError",
      field: "input.rates.0.meterId",
      message: expect.stringContaining(pack.id),
    });
    const pool = (await creditSystem({ name: "credits", rates: [{ meterId: await meter(t, "COUNT", { filter: named(unique("o")) }), creditsPerUnit: "1" }] })).id;
    expect((await t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: held, creditsPerUnit: "1" } })).setCreditRate).toMatchObject({ __typename: "ConflictError", field: "input.meterId" });
    // spent, the credits are no obstacle
    await ingest(t, events(name, c, 100));
    await setRate({ creditSystemId: pool, meterId: held, creditsPerUnit: "1" });
    // rated: grants and benefits on it are refused, naming the pool
    const refusal = { __typename: "InvalidInputError", field: "input.meterId", message: expect.stringContaining(pool) };
    expect((await t.ok(GrantCredits, { input: { customerId: c, meterId: held, units: "5" } })).grantCredits).toMatchObject(refusal);
    expect((await t.ok(CreateBenefit, { input: { type: "METER_CREDITS", description: "5 on the meter", meterId: held, units: "5" } })).createBenefit).toMatchObject(refusal);
    // a product on sale that grants credits on a meter keeps it out of credit systems
    const sold = await meter(t, "COUNT", { filter: named(unique("sold")) });
    await product(t, [await benefit(t, sold, "10")]);
    expect((await t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: sold, creditsPerUnit: "1" } })).setCreditRate).toMatchObject({
      __typename: "ConflictError",
      field: "input.meterId",
      message: expect.stringContaining("Product"),
    });
  });

  it("a benefit made before its meter was rated goes into no product after: createProduct and updateProduct refuse it, naming the pool", async () => {
    const m = await meter(t, "COUNT", { filter: named(unique("later")) });
    const early = await benefit(t, m, "10"); // in no product yet, so nothing stops the join
    const pool = (await creditSystem({ name: "credits", rates: [{ meterId: m, creditsPerUnit: "1" }] })).id;
    const other = await benefit(t, await meter(t, "COUNT", { filter: named(unique("plain")) }), "3");
    const refusal = { __typename: "InvalidInputError", field: "input.benefitIds.1", message: expect.stringContaining(pool) };
    expect((await t.ok(CreateProduct, { input: { name: "pack", benefitIds: [other, early] } })).createProduct).toMatchObject(refusal);
    const p = await product(t, [other]);
    expect((await t.ok(UpdateProduct, { id: p, input: { benefitIds: [other, early] } })).updateProduct).toMatchObject(refusal);
    expect(await t.db.productBenefit.count({ where: { benefitId: early } })).toBe(0);
    expect((await t.db.productBenefit.findMany({ where: { productId: p } })).map((b) => b.benefitId)).toEqual([other]);
  });

  it("products racing a meter's join to a credit system: each time the product or the join is refused, never neither", async () => {
    const pool = (await creditSystem({ name: "race", rates: [{ meterId: await meter(t, "COUNT", { filter: named(unique("r")) }), creditsPerUnit: "1" }] })).id;
    const rounds = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const m = await meter(t, "COUNT", { filter: named(unique("prace")) });
        const b = await benefit(t, m, "5");
        const sale = i % 2 ? t.ok(UpdateProduct, { id: await product(t, []), input: { benefitIds: [b] } }).then((r) => r.updateProduct) : t.ok(CreateProduct, { input: { name: "p", benefitIds: [b] } }).then((r) => r.createProduct);
        const [p, r] = await Promise.all([sale, t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: m, creditsPerUnit: "1" } })]);
        return { sold: p.__typename === "Product", rated: r.setCreditRate.__typename === "Meter", m, b };
      }),
    );
    for (const { sold, rated, m, b } of rounds) {
      expect(sold !== rated, m).toBe(true);
      const inProduct = await t.db.productBenefit.count({ where: { benefitId: b } });
      const joined = (await t.db.meter.findUniqueOrThrow({ where: { id: m } })).creditPoolId !== null;
      expect(inProduct > 0 && joined, m).toBe(false);
    }
  });

  it("grants racing a meter's join to a credit system: each time the grant or the join is refused, never neither", async () => {
    const pool = (await creditSystem({ name: "race", rates: [{ meterId: await meter(t, "COUNT", { filter: named(unique("r")) }), creditsPerUnit: "1" }] })).id;
    const c = await customer(t);
    const rounds = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const m = await meter(t, "COUNT", { filter: named(unique("race")) });
        const [g, r] = await Promise.all([
          t.ok(GrantCredits, { input: { customerId: c, meterId: m, units: "5" } }),
          t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: m, creditsPerUnit: "1" } }),
        ]);
        return { granted: g.grantCredits.__typename === "CreditGrant", rated: r.setCreditRate.__typename === "Meter", m };
      }),
    );
    for (const { granted, rated, m } of rounds) {
      expect(granted !== rated, m).toBe(true);
      const open = await t.db.creditGrant.count({ where: { meterId: m, remainingUnits: { gt: 0n } } });
      const joined = (await t.db.meter.findUniqueOrThrow({ where: { id: m } })).creditPoolId !== null;
      expect(open > 0 && joined, m).toBe(false);
    }
  });

  it("a meter that turns negative values into credits is never rated (its credits would not reach the pool)", async () => {
    const credit = await meter(t, "SUM", { property: "n", filter: named(unique("credit")), negativeValues: "CREDIT" });
    expect((await t.ok(CreateCreditSystem, { input: { name: "x", rates: [{ meterId: credit, creditsPerUnit: "2" }] } })).createCreditSystem).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.rates.0.meterId",
    });
    const rated = await meter(t, "SUM", { property: "n", filter: named(unique("rated")) });
    const pool = (await creditSystem({ name: "tokens", rates: [{ meterId: rated, creditsPerUnit: "2" }] })).id;
    expect((await t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: credit, creditsPerUnit: "2" } })).setCreditRate).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.meterId",
    });
    expect((await t.ok(UpdateMeter, { id: rated, input: { negativeValues: "CREDIT" } })).updateMeter).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.negativeValues",
    });
  });

  it("updateMeter keeps a pool from counting events of its own and a rated meter additive", async () => {
    const { api, pool, calls } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "100");
    // a pool's filter, aggregation and negative values stay as created: its usage is what its meters draw
    for (const [input, field] of [
      [{ filter: { conjunction: "AND", clauses: [] } }, "input.filter"],
      [{ aggregation: { func: "SUM", property: "n" } }, "input.aggregation"],
      [{ negativeValues: "CREDIT" }, "input.negativeValues"],
    ] as const) {
      expect((await t.ok(UpdateMeter, { id: pool, input: input as never })).updateMeter).toMatchObject({ __typename: "InvalidInputError", field });
    }
    expect((await t.ok(UpdateMeter, { id: pool, input: { name: "renamed pool" } })).updateMeter).toMatchObject({ __typename: "Meter", name: "renamed pool" });
    await ingest(t, events(calls, c, 2));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "98", consumedUnits: "2" });
    // a rated meter that has counted nothing yet still cannot become MAX: the pool draws units × rate
    const tokens = await meter(t, "SUM", { property: "n", filter: named(unique("fresh")) });
    await setRate({ creditSystemId: pool, meterId: tokens, creditsPerUnit: "1" });
    expect((await t.ok(UpdateMeter, { id: tokens, input: { aggregation: { func: "MAX", property: "n" } } })).updateMeter).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.aggregation.func",
    });
    expect((await t.ok(UpdateMeter, { id: api, input: { aggregation: { func: "SUM", property: "n" } } })).updateMeter).toMatchObject({ __typename: "ConflictError" });
  });

  it("an unrated meter turned MAX while it joins a pool: one of the two is refused, never both written", async () => {
    const { pool } = await seedsPool();
    for (let round = 0; round < 6; round++) {
      const m = await meter(t, "SUM", { property: "n", filter: named(unique("race")) });
      const [joined, changed] = await Promise.all([
        t.ok(SetCreditRate, { input: { creditSystemId: pool, meterId: m, creditsPerUnit: "1" } }),
        t.ok(UpdateMeter, { id: m, input: { aggregation: { func: "MAX", property: "n" } } }),
      ]);
      const rated = joined.setCreditRate.__typename === "Meter";
      const turned = changed.updateMeter.__typename === "Meter";
      expect([rated, turned]).not.toEqual([true, true]);
      expect(rated || turned).toBe(true);
    }
  });
});

describe("drawsOf: the draws of one write", () => {
  const AT = Date.parse("2026-06-01T00:00:00.000Z");
  /**
   * The per-event rule as written: each event at the rate in force at its instant (the first before any), rounded
   * on its own; each rate's draw names the last of its events (events are named by their place, "e<i>").
   */
  function perEvent(rates: Rate[], events: { at: number; value: bigint }[]): [bigint, { units: bigint; rated: bigint; events: number; lastEventId: string | null }][] {
    const out = new Map<bigint, { units: bigint; rated: bigint; events: number; lastEventId: string | null }>();
    events.forEach((e, i) => {
      let rate = rates[0]!;
      for (const r of rates) if (r.at.getTime() <= e.at) rate = r;
      const d = out.get(rate.perUnit) ?? { units: 0n, rated: 0n, events: 0, lastEventId: null };
      out.set(rate.perUnit, { units: d.units + drawOf(e.value, rate.perUnit), rated: d.rated + e.value, events: d.events + 1, lastEventId: `e${i}` });
    });
    return [...out];
  }
  const entries = (draws: ReturnType<typeof drawsOf>) => draws.map(({ perUnit, ...d }) => [perUnit, d] as const);
  const usageOf = (events: { at: number; value: bigint }[], from = 0) => {
    const u = new RatedUsage();
    events.forEach((e, i) => u.add(e.at, e.value, `e${from + i}`));
    return u;
  };
  // whole credits, rates whose products round, and rates dividing 10^6 in between
  const perUnit = fc.oneof(
    fc.bigInt({ min: 1n, max: 5n }).map((n) => n * 1_000_000n),
    fc.constantFrom(1n, 2_000n, 333_333n, 500_000n, 1_500_000n, 999_999n),
    fc.bigInt({ min: 1n, max: 10_000_000n }),
  );
  const rates = fc.uniqueArray(fc.integer({ min: 0, max: 10 }), { minLength: 1, maxLength: 4 }).chain((slots) =>
    fc.tuple(...slots.sort((a, b) => a - b).map((slot) => perUnit.map((p): Rate => ({ at: new Date(AT + slot * 1000), perUnit: p })))),
  );
  // whole units, values that are multiples of small powers of ten, and any micro-units
  const value = fc.oneof(
    fc.bigInt({ min: 0n, max: 5_000n }).map((n) => n * 1_000_000n),
    fc.tuple(fc.bigInt({ min: 0n, max: 100_000n }), fc.constantFrom(2n, 10n, 1_000n, 500_000n)).map(([n, k]) => n * k),
    fc.bigInt({ min: 0n, max: 10n ** 12n }),
  );
  const event = (fromMs: number, toMs: number) => fc.record({ at: fc.integer({ min: fromMs, max: toMs }).map((ms) => AT + ms), value });

  it("equals the per-event rule across rates, instants and values, and so does any split of the events into writes", () => {
    fc.assert(
      fc.property(rates, fc.array(event(-2_000, 12_000), { maxLength: 60 }), fc.array(fc.nat(60), { maxLength: 4 }), (rs, events, cuts) => {
        const expected = perEvent(rs, events);
        expect(entries(drawsOf(rs, usageOf(events)))).toEqual(expected);
        // Writes of any size draw the same per rate.
        const bounds = [0, ...cuts.map((c) => c % (events.length + 1)).sort((a, b) => a - b), events.length];
        const total = new Map<bigint, bigint>();
        for (let i = 1; i < bounds.length; i++) {
          for (const d of drawsOf(rs, usageOf(events.slice(bounds[i - 1], bounds[i]), bounds[i - 1]))) total.set(d.perUnit, (total.get(d.perUnit) ?? 0n) + d.units);
        }
        expect(total).toEqual(new Map(expected.map(([p, d]) => [p, d.units])));
      }),
      { numRuns: 300 },
    );
  });

  it("under one rate (the one-multiplication path when no event rounds), equals the per-event rule", () => {
    // every event after the last rate took effect
    fc.assert(
      fc.property(rates, fc.array(event(10_000, 20_000), { minLength: 1, maxLength: 60 }), (rs, events) => {
        expect(entries(drawsOf(rs, usageOf(events)))).toEqual(perEvent(rs, events));
      }),
      { numRuns: 500 },
    );
  });
});

describe("authorizeUsage on rated meters", () => {
  async function authorize(customerId: string, meterId: string, units: string) {
    const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId, meterId, units } });
    if (authorizeUsage.__typename !== "UsageAuthorization") throw new Error(JSON.stringify(authorizeUsage));
    return authorizeUsage;
  }

  it("deducts units × the current rate from the pool and answers the pool's balance", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "12");
    expect(await authorize(c, pro, "2")).toMatchObject({ allowed: true, balance: "2" });
    expect(await authorize(c, pro, "1")).toMatchObject({ allowed: false, balance: "2", code: "INSUFFICIENT_CREDITS" });
    expect(await authorize(c, api, "2")).toMatchObject({ allowed: true, balance: "0" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "2" });
    expect(await balanceOf(t, c, api)).toMatchObject({ consumedUnits: "2" });
  });

  it("64 concurrent clients on two rated meters of one pool never overdraw it", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "100");
    const client = async (i: number) => {
      const drawn = { api: 0, pro: 0 };
      for (let n = 0; n < 8; n++) {
        const onPro = (i + n) % 2 === 0;
        if ((await authorize(c, onPro ? pro : api, "1")).allowed) drawn[onPro ? "pro" : "api"]++;
      }
      return drawn;
    };
    const all = await Promise.all(Array.from({ length: 64 }, (_, i) => client(i)));
    const apiCalls = all.reduce((s, d) => s + d.api, 0);
    const proCalls = all.reduce((s, d) => s + d.pro, 0);
    const left = 100 - apiCalls - 5 * proCalls;
    expect(left).toBeGreaterThanOrEqual(0);
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: String(left), consumedUnits: String(100 - left) });
    expect(await balanceOf(t, c, api)).toMatchObject({ consumedUnits: String(apiCalls) });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: String(proCalls) });
    // 512 calls for at most 100 credits: the pool ran dry (less than one API call's credit is left)
    expect(left).toBe(0);
  }, 180_000);
});

describe("a meter rated after its caller looked it up", () => {
  // authorizeUsage and reserveUsage look the meter up before queuing; a meter found feeding no pool is marked
  // `unrated`, and BalanceBook checks that in the round trip that reads the rows instead of before it.
  const use = (c: string, meterId: string, units: bigint) =>
    adjustment({ customerId: c, meterId, direct: { units: units * UNIT_SCALE, description: "test" }, creditsOnly: true, unrated: true, field: "input.units" });

  it("still draws from the pool it feeds now, and is refused there when the pool cannot pay", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "10");
    await sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, [use(c, pro, 1n)], T0));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "5", consumedUnits: "5" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "1" });
    await expect(sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, [use(c, pro, 2n)], T0))).rejects.toBeInstanceOf(InsufficientCreditsError);
    await sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, [use(c, api, 5n)], T0));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "0", consumedUnits: "10" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "1" });
    expect(await balanceOf(t, c, api)).toMatchObject({ consumedUnits: "5" });
    // A hold is checked on the pool too (its live holds read with it): nothing left there for 1 × 5 credits.
    const hold = adjustment({ customerId: c, meterId: pro, hold: UNIT_SCALE, creditsOnly: true, unrated: true, field: "input.units" });
    await expect(sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, [hold], T0))).rejects.toMatchObject({ meterId: pool });
  });
});

describe("counted usage naming its meter's pool", () => {
  // Ingestion names the pool its lookup found on each rated meter's usage (`pool`), and BalanceBook reads that
  // pool's rows with the rates instead of after them; the rates read under the rating locks decide. (The
  // adjustments are made before the transaction: on SQLite a Prisma read inside it would wait for it.)
  const counted = async (c: string, meterId: string, pool: string | null) => {
    const m = (await activeMeters(t.db, t.organizationId)).find((x) => x.id === meterId)!;
    return usageAdjustments([{ id: orderedId(), customerId: c, timestamp: T0, counted: [{ meter: { ...m, poolMeterId: pool }, value: UNIT_SCALE }] }]);
  };

  it("draws from the pool the meter feeds, even when the usage names another meter as its pool", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "10");
    const named = await counted(c, pro, pool);
    await sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, named, T0));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "5", consumedUnits: "5" });
    // the named "pool" is the other rated meter: its row is read and locked, and left as it was
    const misnamed = await counted(c, pro, api);
    await sqlTransaction(t.db, (sql) => adjustBalances(sql, t.organizationId, misnamed, T0));
    expect(await balanceOf(t, c, pool)).toMatchObject({ balance: "0", consumedUnits: "10" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "2" });
    expect(await t.db.customerMeter.count({ where: { customerId: c, meterId: api } })).toBe(0);
  });
});

describe("reserveUsage on rated meters", () => {
  async function reserve(customerId: string, meterId: string, units: string, idempotencyKey?: string) {
    const { reserveUsage } = await t.ok(ReserveRated, { input: { customerId, meterId, units, idempotencyKey } });
    if (reserveUsage.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserveUsage));
    return reserveUsage;
  }
  const commit = async (id: string, units: string) => (await t.ok(CommitReservation, { id, units })).commitReservation;
  const availability = async (c: string, m: string) => (await t.ok(Availability, { customerId: c, meterId: m })).customerMeter;

  it("refuses a hold whose credits at the rate would not fit any balance, as BAD_USER_INPUT on its units", async () => {
    const m = await meter(t, "COUNT", { filter: named(unique("dear")) });
    await creditSystem({ name: "dear", rates: [{ meterId: m, creditsPerUnit: "1000000000000" }] });
    const c = await customer(t);
    const { reserveUsage } = await t.ok(ReserveRated, { input: { customerId: c, meterId: m, units: "1000000000" } });
    expect(reserveUsage).toMatchObject({ __typename: "InvalidInputError", field: "input.units" });
    expect(await t.db.reservation.count({ where: { customerId: c } })).toBe(0);
  });

  it("holds units × the current rate on the pool; the commit draws at the hold's rate even after a rate change", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "20");
    const held = await reserve(c, pro, "3");
    expect(held).toMatchObject({ allowed: true, balance: "20", code: "OK" });
    expect(held.reservation).toMatchObject({ status: "HELD", units: "3", credits: "15", creditsPerUnit: "5", meter: { id: pro }, creditSystem: { id: pool } });
    expect(await availability(c, pool)).toMatchObject({ balance: "20", heldUnits: "15", availableUnits: "5" });
    // what the hold takes from the pool is not available to the pool's other meters
    const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId: c, meterId: api, units: "6" } });
    expect(authorizeUsage).toMatchObject({ allowed: false, code: "INSUFFICIENT_CREDITS" });

    t.advance(1); // a rate of its own instant: the pool's first rates started at the previous one
    await setRate({ creditSystemId: pool, meterId: pro, creditsPerUnit: "10" });
    expect(await commit(held.reservation!.id, "3")).toMatchObject({ __typename: "Reservation", status: "COMMITTED", units: "3", committedUnits: "3" });
    expect(await availability(c, pool)).toMatchObject({ balance: "5", heldUnits: "0", availableUnits: "5" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "3" });
    const draws = (await ledgerOf(c, pool)).filter((e) => e.kind === "USAGE");
    expect(draws).toEqual([expect.objectContaining({ units: "-15", balanceAfter: "5", creditsPerUnit: "5", ratedMeter: { id: pro } })]);
    // a new hold is priced at the new rate
    expect((await reserve(c, pro, "0.5")).reservation).toMatchObject({ credits: "5", creditsPerUnit: "10" });
  });

  it("a release gives the credits back; a commit beyond the hold needs the extra credits available", async () => {
    const { pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "7");
    const first = await reserve(c, pro, "1");
    expect(await availability(c, pool)).toMatchObject({ availableUnits: "2" });
    expect(await reserve(c, pro, "1")).toMatchObject({ allowed: false, code: "INSUFFICIENT_CREDITS", reservation: null });
    expect((await t.ok(ReleaseReservation, { id: first.reservation!.id })).releaseReservation).toMatchObject({ status: "RELEASED" });
    expect(await availability(c, pool)).toMatchObject({ balance: "7", heldUnits: "0", availableUnits: "7" });

    const second = await reserve(c, pro, "1");
    // 2 units draw 10 credits: 5 were held, the other 5 are not there (7 - 5 = 2): refused, the hold stays
    expect(await commit(second.reservation!.id, "2")).toMatchObject({ __typename: "InsufficientCreditsError" });
    expect(await availability(c, pool)).toMatchObject({ balance: "7", heldUnits: "5" });
    expect(await commit(second.reservation!.id, "1")).toMatchObject({ status: "COMMITTED", committedUnits: "1" });
    expect(await availability(c, pool)).toMatchObject({ balance: "2", heldUnits: "0", availableUnits: "2" });
    expect(await balanceOf(t, c, pro)).toMatchObject({ consumedUnits: "1" });
  });

  it("an idempotency key answers the same hold again; the same key for other units is a conflict", async () => {
    const { pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "50");
    const key = unique("hold");
    const first = await reserve(c, pro, "2", key);
    const again = await reserve(c, pro, "2", key);
    expect(again.reservation).toMatchObject({ id: first.reservation!.id, units: "2", credits: "10", meter: { id: pro } });
    expect(await availability(c, pool)).toMatchObject({ heldUnits: "10" });
    const { reserveUsage } = await t.ok(ReserveRated, { input: { customerId: c, meterId: pro, units: "3", idempotencyKey: key } });
    expect(reserveUsage).toMatchObject({ __typename: "ConflictError", field: "input.idempotencyKey" });
    // listed under the rated meter and under the pool
    for (const m of [pro, pool]) {
      const { reservations } = await t.ok(ReservationsOfMeter, { customerId: c, meterId: m, status: "HELD" });
      expect(reservations.edges.map((e) => e.node)).toEqual([{ id: first.reservation!.id, units: "2", credits: "10" }]);
    }
  });

  it("64 concurrent clients holding and committing on two rated meters of one pool never overdraw it", async () => {
    const { api, pro, pool } = await seedsPool();
    const c = await customer(t);
    await grant(t, c, pool, "60");
    const client = async (i: number) => {
      let used = 0;
      for (let n = 0; n < 4; n++) {
        const onPro = (i + n) % 2 === 0;
        const hold = await reserve(c, onPro ? pro : api, "1");
        if (!hold.allowed) continue;
        const done = await commit(hold.reservation!.id, "1");
        if (done.__typename !== "Reservation") throw new Error(JSON.stringify(done));
        used += onPro ? 5 : 1;
      }
      return used;
    };
    const used = (await Promise.all(Array.from({ length: 64 }, (_, i) => client(i)))).reduce((s, u) => s + u, 0);
    expect(used).toBeLessThanOrEqual(60);
    expect(await availability(c, pool)).toMatchObject({ balance: String(60 - used), heldUnits: "0" });
    // 256 holds for 60 credits: the pool ran dry (every client's last tries were refused)
    expect(60 - used).toBeLessThan(5);
  }, 180_000);
});

describe("STRICT ingestion on rated meters", () => {
  it("follows the pool's overage policy, not the rated meter's", async () => {
    const { pro, pool, premium } = await seedsPool();
    const strict = async (c: string, n: number) => (await t.ok(IngestStrict, { events: events(premium, c, n) })).ingestEvents;
    // credits-only pool: 2 premium calls (10 credits) do not fit in 7, and the whole batch is refused
    const dry = await customer(t);
    await grant(t, dry, pool, "7");
    expect(await strict(dry, 2)).toMatchObject({ __typename: "InsufficientCreditsError", meterId: pool });
    expect(await balanceOf(t, dry, pool)).toMatchObject({ balance: "7" });
    // a metered price on the pool (none on the rated meter): the same batch goes into billable overage
    const plan = await product(t, [await benefit(t, pool, "7")], { recurring: true, prices: [{ type: "METERED_UNIT", currency: "usd", meterId: pool, unitAmount: "0.1" }] });
    const billed = await customer(t);
    await order(t, billed, plan);
    expect(await strict(billed, 2)).toMatchObject({ __typename: "IngestSummary", inserted: 2 });
    expect(await balanceOf(t, billed, pool)).toMatchObject({ balance: "-3" });
    expect(await balanceOf(t, billed, pro)).toMatchObject({ consumedUnits: "2" });
    // the overage is the pool's: the rated meter's own balance (−consumed) is paid by the pool, not billed again
    const meters = (await t.ok(EntitlementState, { customerId: billed })).customerState.meters;
    const of = (id: string) => meters.find((m) => m.meter.id === id);
    expect(of(pool)).toMatchObject({ overageUnits: "3", overageAmount: "0.3" });
    expect(of(pro)).toMatchObject({ balance: "-2", overageUnits: "0", overageAmount: null });
  });

  it("a metered price on a rated meter bills nothing: the pool paid for its usage", async () => {
    const { api, pool, calls } = await seedsPool();
    const plan = await product(t, [await benefit(t, pool, "100")], { recurring: true, prices: [{ type: "METERED_UNIT", currency: "usd", meterId: api, unitAmount: "10" }] });
    const c = await customer(t);
    await order(t, c, plan);
    await ingest(t, events(calls, c, 5));
    const meters = (await t.ok(EntitlementState, { customerId: c })).customerState.meters;
    expect(meters.find((m) => m.meter.id === api)).toMatchObject({ overageUnits: "0", overageAmount: "0" });
    expect(meters.find((m) => m.meter.id === pool)).toMatchObject({ balance: "95", overageUnits: "0" });
  });
});
