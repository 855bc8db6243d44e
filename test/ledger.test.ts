import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BalanceAt, CreateMeter, CreditGrantsOf, ExpiringCredits, GrantScheduled, GrantStates, GrantWithOptions, LedgerOf, VoidCreditGrant } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, customer, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
const T0 = new Date("2026-03-01T00:00:00.000Z");
const HOUR = 3_600_000;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

/** A fresh customer and SUM meter of its own (negative values are credited). */
async function setup() {
  t.setNow(T0);
  const name = `led-${Math.random().toString(36).slice(2, 8)}`;
  const m = await meter(t, "SUM", { property: "n", filter: named(name), negativeValues: "CREDIT" });
  const c = await customer(t);
  return { c, m, use: (n: number) => ingest(t, [{ name, customerId: c, metadata: { n } }]) };
}

async function grant(c: string, m: string, units: string, opts: { priority?: number; expiresAt?: Date } = {}) {
  const { grantCredits } = await t.ok(GrantWithOptions, { input: { customerId: c, meterId: m, units, priority: opts.priority, expiresAt: opts.expiresAt?.toISOString() } });
  if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
  return grantCredits.id;
}

async function remaining(c: string, m: string): Promise<Record<string, string>> {
  const { creditGrants } = await t.ok(CreditGrantsOf, { customerId: c, meterId: m });
  return Object.fromEntries(creditGrants.edges.map((e) => [e.node.id, e.node.remainingUnits]));
}

describe("burn-down order", () => {
  it("priorities 1 and 2, usage 120 on two grants of 100 → 0 and 80", async () => {
    const { c, m, use } = await setup();
    const second = await grant(c, m, "100", { priority: 2 });
    const first = await grant(c, m, "100", { priority: 1 });
    await use(120);
    expect(await remaining(c, m)).toEqual({ [first]: "0", [second]: "80" });
    expect((await balanceOf(t, c, m))?.balance).toBe("80");
  });

  it("at equal priority the later-expiring grant burns last, and a never-expiring one after both", async () => {
    const { c, m, use } = await setup();
    const never = await grant(c, m, "50");
    const late = await grant(c, m, "50", { expiresAt: new Date(T0.getTime() + 48 * HOUR) });
    const soon = await grant(c, m, "50", { expiresAt: new Date(T0.getTime() + 24 * HOUR) });
    await use(70);
    expect(await remaining(c, m)).toEqual({ [soon]: "0", [late]: "30", [never]: "50" });
  });

  it("usage before any grant, then a grant that first covers the overage", async () => {
    const { c, m, use } = await setup();
    await use(30);
    expect((await balanceOf(t, c, m))?.balance).toBe("-30");
    const g = await grant(c, m, "100");
    expect(await remaining(c, m)).toEqual({ [g]: "70" });
    expect((await balanceOf(t, c, m))?.balance).toBe("70");
  });

  it("a negative usage value on a CREDIT meter is a new grant (NEGATIVE_USAGE), burnt like any other", async () => {
    const { c, m, use } = await setup();
    const g = await grant(c, m, "100");
    await use(60);
    await use(-25);
    const credit = await t.db.creditGrant.findFirstOrThrow({ where: { customerId: c, meterId: m, source: "NEGATIVE_USAGE" } });
    expect(credit).toMatchObject({ units: 25_000_000n, remainingUnits: 25_000_000n, expiresAt: null, priority: 10 });
    expect(await remaining(c, m)).toEqual({ [g]: "40", [credit.id]: "25" });
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "60", creditedUnits: "125", balance: "65" });
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.balanceAfter, e.node.grant?.id ?? null])).toEqual([
      ["GRANT", "100", "100", g],
      ["USAGE", "-60", "40", null],
      ["GRANT", "25", "65", credit.id],
    ]);
    // burn order as for any grant: same priority, neither expires, so the older grant burns first
    await use(50);
    expect(await remaining(c, m)).toEqual({ [g]: "0", [credit.id]: "15" });
  });

  it("a negative value arriving in overage first pays off the overage, as any grant does", async () => {
    const { c, m, use } = await setup();
    await use(30);
    await use(-40);
    const credit = await t.db.creditGrant.findFirstOrThrow({ where: { customerId: c, meterId: m, source: "NEGATIVE_USAGE" } });
    expect(credit.remainingUnits).toBe(10_000_000n);
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "30", creditedUnits: "40", balance: "10" });
  });
});

describe("voids and expiry", () => {
  it("voiding mid-period removes what remains and keeps the history", async () => {
    const { c, m, use } = await setup();
    const g = await grant(c, m, "100");
    await use(30);
    const { voidCreditGrant } = await t.ok(VoidCreditGrant, { id: g });
    expect(voidCreditGrant).toMatchObject({ remainingUnits: "0", voidedAt: T0.toISOString() });
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "30", balance: "0" });
    await t.ok(VoidCreditGrant, { id: g }); // twice changes nothing
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.balanceAfter])).toEqual([
      ["GRANT", "100", "100"],
      ["USAGE", "-30", "70"],
      ["VOID", "-70", "0"],
    ]);
  });

  it("100 expiring + 50 non-expiring, use 120 → 30 left, still 30 after the expiry", async () => {
    const { c, m, use } = await setup();
    await grant(c, m, "100", { expiresAt: new Date(T0.getTime() + HOUR) });
    await grant(c, m, "50");
    await use(120);
    expect((await balanceOf(t, c, m))?.balance).toBe("30");
    t.advance(2 * HOUR);
    await t.app.scheduler.tick();
    expect((await balanceOf(t, c, m))?.balance).toBe("30");
    // the used-up grant is marked expired; nothing left, so no ledger entry (entries record balance changes)
    expect((await t.db.creditGrant.findFirstOrThrow({ where: { customerId: c, expiresAt: { not: null } } })).expiredAt).not.toBeNull();
    expect(await t.db.ledgerEntry.count({ where: { customerId: c, kind: "EXPIRY" } })).toBe(0);
  });

  it("entries name their meter, their grant and the last event they cover", async () => {
    const { c } = await setup();
    const name = `named-${Math.random().toString(36).slice(2, 8)}`;
    const m2 = await meter(t, "COUNT", { filter: named(name) });
    const g = await grant(c, m2, "5");
    await ingest(t, [{ name, customerId: c, externalId: `${name}-1` }, { name, customerId: c, externalId: `${name}-2` }]);
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m2 });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.meter.id, e.node.grant?.id ?? null, e.node.event?.externalId ?? null, e.node.eventCount])).toEqual([
      ["GRANT", m2, g, null, 0],
      ["USAGE", m2, null, `${name}-2`, 2],
    ]);
  });

  it("expiry is exclusive: usage at exactly expiresAt cannot use the grant, and the remainder leaves", async () => {
    const { c, m, use } = await setup();
    const expiresAt = new Date(T0.getTime() + HOUR);
    const g = await grant(c, m, "100", { expiresAt });
    t.setNow(expiresAt);
    await use(10); // the scheduler has not run: the write itself records the expiry first
    expect(await remaining(c, m)).toEqual({ [g]: "0" });
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "0", balance: "-10" });
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.balanceAfter, e.node.occurredAt])).toEqual([
      ["GRANT", "100", "100", T0.toISOString()],
      ["EXPIRY", "-100", "0", expiresAt.toISOString()],
      ["USAGE", "-10", "-10", expiresAt.toISOString()],
    ]);
    await t.app.scheduler.tick(); // nothing left for it to do
    expect((await t.ok(LedgerOf, { customerId: c, meterId: m })).ledger.edges).toHaveLength(3);
  });

  it("a quiet balance reads correctly before the expiry pass has run, and the pass records it at expiresAt", async () => {
    const { c, m, use } = await setup();
    const expiresAt = new Date(T0.getTime() + HOUR);
    const g = await grant(c, m, "100", { expiresAt });
    await grant(c, m, "5");
    await use(30);
    t.setNow(new Date(expiresAt.getTime() + 5 * HOUR));
    // nothing has written to this balance since the expiry
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "35", balance: "5" });
    expect((await remaining(c, m))[g]).toBe("0");
    const at = async (d: Date) => (await t.ok(BalanceAt, { customerId: c, meterId: m, at: d.toISOString() })).balanceAt;
    expect(await at(new Date(expiresAt.getTime() - 1))).toBe("75");
    expect(await at(expiresAt)).toBe("5");
    await t.app.scheduler.tick();
    expect(await balanceOf(t, c, m)).toMatchObject({ creditedUnits: "35", balance: "5" });
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.at(-1)!.node).toMatchObject({ kind: "EXPIRY", units: "-70", balanceAfter: "5", occurredAt: expiresAt.toISOString() });
    expect(await at(expiresAt)).toBe("5");
  });

  it("expiringCredits lists grants with units left that expire soon", async () => {
    const { c, m } = await setup();
    const soon = await grant(c, m, "5", { expiresAt: new Date(T0.getTime() + HOUR) });
    await grant(c, m, "5", { expiresAt: new Date(T0.getTime() + 72 * HOUR) });
    await grant(c, m, "5");
    const { expiringCredits } = await t.ok(ExpiringCredits, { customerId: c, meterId: m, within: 24 * 3600 });
    expect(expiringCredits.edges.map((e) => e.node.id)).toEqual([soon]);
    expect(expiringCredits.totalCount).toBe(1);
  });

  it("rejects an expiry in the past and an out-of-range priority", async () => {
    const { c, m } = await setup();
    const past = await t.ok(GrantWithOptions, { input: { customerId: c, meterId: m, units: "1", expiresAt: new Date(T0.getTime() - 1).toISOString() } });
    expect(past.grantCredits).toMatchObject({ __typename: "InvalidInputError", field: "input.expiresAt" });
    const prio = await t.ok(GrantWithOptions, { input: { customerId: c, meterId: m, units: "1", priority: -1 } });
    expect(prio.grantCredits).toMatchObject({ __typename: "InvalidInputError", field: "input.priority" });
  });
});

describe("grant idempotency", () => {
  it("a retry answers the grant after its instants passed; its key with other terms is a CONFLICT", async () => {
    const { c, m } = await setup();
    const at = (ms: number) => new Date(T0.getTime() + ms).toISOString();
    const body = { customerId: c, meterId: m, units: "50", idempotencyKey: "pay_terms", effectiveAt: at(0), expiresAt: at(90_000), priority: 3, description: "pack" };
    const first = (await t.ok(GrantWithOptions, { input: body })).grantCredits;
    expect(first).toMatchObject({ __typename: "CreditGrant", priority: 3 });
    t.advance(120_000); // the client retries after the grant's expiresAt: the same request, the same grant
    expect((await t.ok(GrantWithOptions, { input: body })).grantCredits).toEqual(first);
    for (const other of [{ expiresAt: at(86_400_000) }, { expiresAt: null }, { priority: 4 }, { description: "another pack" }, { effectiveAt: at(3_600_000) }]) {
      const answer = (await t.ok(GrantWithOptions, { input: { ...body, ...other } })).grantCredits;
      expect(answer, JSON.stringify(other)).toMatchObject({ __typename: "ConflictError", field: "input.idempotencyKey" });
    }
    // a grant scheduled for later, retried once it is in force
    const later = { customerId: c, meterId: m, units: "5", idempotencyKey: "pay_later", effectiveAt: at(3_600_000) };
    const scheduled = (await t.ok(GrantWithOptions, { input: later })).grantCredits;
    t.setNow(new Date(T0.getTime() + 7_200_000));
    expect((await t.ok(GrantWithOptions, { input: later })).grantCredits).toEqual(scheduled);
    await t.app.scheduler.tick(); // the scheduled grant's GRANT entry
    expect(await t.db.creditGrant.count({ where: { customerId: c, meterId: m } })).toBe(2);
    expect(await t.db.ledgerEntry.count({ where: { customerId: c, meterId: m, kind: "GRANT" } })).toBe(2);
  });
});

describe("scheduled grants", () => {
  const scheduled = async (c: string, m: string, units: string, effectiveAt: Date, expiresAt?: Date) => {
    const { grantCredits } = await t.ok(GrantScheduled, { input: { customerId: c, meterId: m, units, effectiveAt: effectiveAt.toISOString(), expiresAt: expiresAt?.toISOString() } });
    if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
    return grantCredits;
  };

  it("a grant effective later reaches the balance then, read correctly before the scheduler runs", async () => {
    const { c, m } = await setup();
    const at = new Date(T0.getTime() + HOUR);
    const g = await scheduled(c, m, "40", at);
    expect(g).toMatchObject({ creditedAt: null, effectiveAt: at.toISOString() });
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "0", creditedUnits: "0" });
    t.setNow(at);
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "40", creditedUnits: "40" });
    const { creditGrants } = await t.ok(GrantStates, { customerId: c, meterId: m });
    expect(creditGrants.edges[0].node).toMatchObject({ remainingUnits: "40", creditedAt: at.toISOString() });
    await t.app.scheduler.tick();
    expect((await t.db.creditGrant.findUniqueOrThrow({ where: { id: g.id } })).creditedAt).toEqual(at);
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.occurredAt])).toEqual([["GRANT", "40", at.toISOString()]]);
  });

  it("arriving while the balance is negative, it first pays off the overage", async () => {
    const { c, m, use } = await setup();
    const at = new Date(T0.getTime() + HOUR);
    await scheduled(c, m, "100", at);
    await use(30);
    t.setNow(new Date(at.getTime() + HOUR));
    await use(5); // this write records the activation (dated `at`) before its own usage
    expect(Object.values(await remaining(c, m))).toEqual(["65"]);
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "65" });
    const { ledger } = await t.ok(LedgerOf, { customerId: c, meterId: m });
    expect(ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.balanceAfter])).toEqual([
      ["USAGE", "-30", "-30"],
      ["GRANT", "100", "70"],
      ["USAGE", "-5", "65"],
    ]);
  });

  it("voiding a grant before it takes effect removes nothing from the balance", async () => {
    const { c, m } = await setup();
    await grant(c, m, "5");
    const g = await scheduled(c, m, "50", new Date(T0.getTime() + HOUR));
    expect((await t.ok(VoidCreditGrant, { id: g.id })).voidCreditGrant).toMatchObject({ voidedAt: T0.toISOString() });
    t.advance(2 * HOUR);
    await t.app.scheduler.tick();
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "5", creditedUnits: "5" });
  });

  it("cannot be backdated, and must expire after it takes effect", async () => {
    const { c, m } = await setup();
    const attempt = async (effectiveAt: Date, expiresAt?: Date) =>
      (await t.ok(GrantScheduled, { input: { customerId: c, meterId: m, units: "1", effectiveAt: effectiveAt.toISOString(), expiresAt: expiresAt?.toISOString() } })).grantCredits;
    expect(await attempt(new Date(T0.getTime() - 5 * 60_000))).toMatchObject({ code: "BAD_USER_INPUT", field: "input.effectiveAt" });
    expect(await attempt(new Date(T0.getTime() + HOUR), new Date(T0.getTime() + HOUR))).toMatchObject({ code: "BAD_USER_INPUT", field: "input.expiresAt" });
    // within the clock-skew allowance "now" means now
    expect(await attempt(new Date(T0.getTime() - 1000))).toMatchObject({ __typename: "CreditGrant", effectiveAt: T0.toISOString(), creditedAt: T0.toISOString() });
  });
});

describe("ledger", () => {
  it("balanceAt answers from the ledger at any instant", async () => {
    const { c, m, use } = await setup();
    await grant(c, m, "10");
    t.advance(HOUR);
    await use(4);
    t.advance(HOUR);
    await use(2.5);
    const at = async (ms: number) => (await t.ok(BalanceAt, { customerId: c, meterId: m, at: new Date(T0.getTime() + ms).toISOString() })).balanceAt;
    expect(await at(-1)).toBe("0");
    expect(await at(0)).toBe("10");
    expect(await at(HOUR - 1)).toBe("10");
    expect(await at(HOUR)).toBe("6");
    expect(await at(3 * HOUR)).toBe("3.5");
  });
});

describe("meter arguments of a customer's balance reads", () => {
  it("a meter id naming no meter of the organization is NOT_FOUND, not an empty history or a 0", async () => {
    const c = await customer(t);
    const mine = await meter(t, "COUNT", { filter: named("readable") });
    const other = await t.newOrganization();
    const made = (await t.ok(CreateMeter, { input: { name: "theirs", filter: named("theirs"), aggregation: { func: "COUNT" } } }, other.token)).createMeter;
    if (made.__typename !== "Meter") throw new Error(JSON.stringify(made));
    const theirs = made.id;
    const at = new Date().toISOString();
    for (const meterId of ["no-such-meter", theirs]) {
      const errors = [
        (await t.exec(BalanceAt, { customerId: c, meterId, at })).errors,
        (await t.exec(LedgerOf, { customerId: c, meterId })).errors,
        (await t.exec(CreditGrantsOf, { customerId: c, meterId })).errors,
        (await t.exec(ExpiringCredits, { customerId: c, meterId, within: 86_400 })).errors,
      ];
      expect(errors.map((e) => e?.map((x) => [x.extensions?.code, x.extensions?.field]))).toEqual(Array(4).fill([["NOT_FOUND", "meterId"]]));
    }
    // the organization's own meter without history reads as empty
    expect((await t.ok(BalanceAt, { customerId: c, meterId: mine, at })).balanceAt).toBe("0");
    expect((await t.ok(LedgerOf, { customerId: c, meterId: mine })).ledger.edges).toEqual([]);
  });
});
