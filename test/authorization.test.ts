import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthorizeUsage,
  Availability,
  AvailabilityUpdated,
  CommitReservation,
  CreateMeter,
  CreateSession,
  IngestStrict,
  ReleaseReservation,
  ReservationsOf,
  ReserveUsage,
} from "./documents.ts";
import type { AuthorizeUsageInput, ReserveUsageInput } from "./gql/graphql.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { authorizeUsage, type Authorization, type UsageRequest } from "../src/domain/authorization.ts";
import { benefit, customer, grant, ingest, ledgerOf as ledgerEntries, meter, named, order, product } from "./support/fixtures.ts";

let t: TestApp;
const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };
const T0 = new Date("2026-05-01T00:00:00.000Z");

beforeAll(async () => {
  // The contention tests drive thousands of calls from one token as fast as the node answers, like the
  // benchmarks: lift the per-token rate limit (test/limits.test.ts covers it) so a fast machine cannot trip it.
  t = await startTestApp({ limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } });
  t.setNow(T0);
});
afterAll(() => t?.close());

/** A customer with `units` credits on a SUM meter of its own (credits-only: no metered price). */
async function funded(units: string) {
  const name = `auth-${Math.random().toString(36).slice(2, 8)}`;
  const m = await meter(t, "SUM", { property: "n", filter: named(name) });
  const c = await customer(t);
  if (units !== "0") await grant(t, c, m, units);
  return { c, m, name };
}

/** A customer subscribed to a plan with 5 credits and a metered price on a SUM meter of events named `name`: usage past zero is billable overage. */
async function metered(name: string) {
  const m = await meter(t, "SUM", { property: "n", filter: named(name) });
  const plan = await product(t, [await benefit(t, m, "5")], {
    recurring: true,
    prices: [{ type: "METERED_UNIT", currency: "usd", meterId: m, unitAmount: "0.1" }],
  });
  const c = await customer(t);
  await order(t, c, plan);
  return { c, m };
}

async function authorize(input: AuthorizeUsageInput) {
  const { authorizeUsage } = await t.ok(AuthorizeUsage, { input });
  if (authorizeUsage.__typename !== "UsageAuthorization") throw new Error(JSON.stringify(authorizeUsage));
  return authorizeUsage;
}

async function reserve(input: ReserveUsageInput) {
  const { reserveUsage } = await t.ok(ReserveUsage, { input });
  if (reserveUsage.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserveUsage));
  return reserveUsage;
}

async function availability(c: string, m: string) {
  return (await t.ok(Availability, { customerId: c, meterId: m })).customerMeter;
}

const ledgerOf = (c: string, m: string) => ledgerEntries(t, c, m);

describe("authorizeUsage on a credits-only meter", () => {
  it("balance 5 and five concurrent authorizations of 10: all refused, nothing changes", async () => {
    const { c, m } = await funded("5");
    const before = await ledgerOf(c, m);
    const answers = await Promise.all(Array.from({ length: 5 }, () => authorize({ customerId: c, meterId: m, units: "10" })));
    expect(answers).toEqual(Array.from({ length: 5 }, () => ({ __typename: "UsageAuthorization", allowed: false, balance: "5", code: "INSUFFICIENT_CREDITS", replayed: false })));
    expect(await availability(c, m)).toMatchObject({ balance: "5", consumedUnits: "0", availableUnits: "5" });
    expect(await ledgerOf(c, m)).toEqual(before);
  });

  it("balance 50 and 64 concurrent clients authorizing 1 unit 100 times each: exactly 50 succeed, balance 0", async () => {
    const { c, m } = await funded("50");
    const client = async () => {
      let allowed = 0;
      for (let i = 0; i < 100; i++) if ((await authorize({ customerId: c, meterId: m, units: "1" })).allowed) allowed++;
      return allowed;
    };
    const perClient = await Promise.all(Array.from({ length: 64 }, client));
    expect(perClient.reduce((a, b) => a + b, 0)).toBe(50);
    expect(await availability(c, m)).toMatchObject({ balance: "0", consumedUnits: "50", creditedUnits: "50" });
    const usage = (await ledgerOf(c, m)).filter((e) => e.kind === "USAGE");
    expect(usage).toHaveLength(50);
    expect(usage.at(-1)).toMatchObject({ units: "-1", balanceAfter: "0" });
  }, 180_000); // about 20 s alone; three times that beside the heaviest other file (two workers on two cores)

  it("deducts exactly, burns grants in order, and leaves the rest available", async () => {
    const { c, m } = await funded("1");
    await grant(t, c, m, "0.2");
    expect(await authorize({ customerId: c, meterId: m, units: "0.9" })).toMatchObject({ allowed: true, balance: "0.3", code: "OK" });
    expect(await authorize({ customerId: c, meterId: m, units: "0.3" })).toMatchObject({ allowed: true, balance: "0" });
    expect(await authorize({ customerId: c, meterId: m, units: "0.000001" })).toMatchObject({ allowed: false, balance: "0" });
  });

  it("an idempotency key deducts once, also when the same call races itself", async () => {
    const { c, m } = await funded("10");
    const input = { customerId: c, meterId: m, units: "3", idempotencyKey: "req-1" };
    const answers = await Promise.all(Array.from({ length: 5 }, () => authorize(input)));
    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    expect(answers.every((a) => a.allowed)).toBe(true);
    expect((await availability(c, m))?.balance).toBe("7");
    expect(await authorize(input)).toMatchObject({ allowed: true, replayed: true, balance: "7" });
    const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { ...input, units: "4" } });
    expect(authorizeUsage).toMatchObject({ __typename: "ConflictError", field: "input.idempotencyKey" });
  });

  it("usage counted from events beyond the balance makes later authorizations refuse", async () => {
    const { c, m, name } = await funded("5");
    await ingest(t, [{ name, customerId: c, metadata: { n: 7 } }]);
    expect(await authorize({ customerId: c, meterId: m, units: "1" })).toMatchObject({ allowed: false, balance: "-2" });
  });

  it("rejects bad input with typed errors naming the field", async () => {
    const { c, m } = await funded("5");
    const bad = async (input: AuthorizeUsageInput) => (await t.ok(AuthorizeUsage, { input })).authorizeUsage;
    expect(await bad({ customerId: c, meterId: m, units: "0" })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.units" });
    expect(await bad({ customerId: c, meterId: m, units: "-1" })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.units" });
    expect(await bad({ customerId: c, meterId: "nope", units: "1" })).toMatchObject({ code: "NOT_FOUND", field: "input.meterId" });
    expect(await bad({ customerId: c, meterId: m, units: "1", idempotencyKey: " " })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.idempotencyKey" });
    const { createCustomerSession } = await t.ok(CreateSession, { customerId: c });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
    const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId: c, meterId: m, units: "1" } }, createCustomerSession.token);
    expect(authorizeUsage).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
  });

  it("authorizations looked up together are each answered for their own organization, customer and meter (one statement per organization and lookup on PostgreSQL)", async () => {
    const a = await funded("2");
    const external = `auth-ext-${Math.random().toString(36).slice(2, 8)}`;
    const b = await customer(t, external);
    const mb = await meter(t, "SUM", { property: "n", filter: named(external) });
    await grant(t, b, mb, "1");
    const other = await t.newOrganization();
    const o = await customer(t, `${external}-o`, other.token);
    const { createMeter } = await t.ok(CreateMeter, { input: { name: `${external}-o`, filter: named(external), aggregation: { func: "SUM", property: "n" } } }, other.token);
    if (createMeter.__typename !== "Meter") throw new Error(JSON.stringify(createMeter));
    const calls: [string, UsageRequest][] = [
      [t.organizationId, { customerId: a.c, meterId: a.m, units: 1_000_000n }],
      [t.organizationId, { customerId: a.c, meterId: a.m, units: 5_000_000n }],
      [t.organizationId, { externalCustomerId: external, meterId: mb, units: 1_000_000n }],
      [t.organizationId, { customerId: "nope", meterId: a.m, units: 1n }],
      [t.organizationId, { externalCustomerId: "nope", meterId: mb, units: 1n }],
      [t.organizationId, { customerId: a.c, meterId: "nope", units: 1n }],
      [other.id, { customerId: a.c, meterId: a.m, units: 1n }],
      [other.id, { customerId: o, meterId: createMeter.id, units: 1n }],
    ];
    let answers: PromiseSettledResult<Authorization>[] = [];
    // Asked in one tick, as requests read from the sockets in one go are.
    const queries = await t.queriesDuring(async () => {
      answers = await Promise.allSettled(calls.map(([organizationId, input]) => authorizeUsage(t.db, silent, organizationId, input)));
    });
    const outcome = (r: PromiseSettledResult<Authorization>) =>
      r.status === "fulfilled" ? { allowed: r.value.allowed, balance: r.value.balance, code: r.value.code } : { error: (r.reason as { code?: string }).code, field: (r.reason as { field?: string }).field };
    expect(answers.map(outcome)).toEqual([
      { allowed: true, balance: 1_000_000n, code: "OK" },
      { allowed: false, balance: 2_000_000n, code: "INSUFFICIENT_CREDITS" },
      { allowed: true, balance: 0n, code: "OK" },
      { error: "NOT_FOUND", field: "input.customerId" },
      { error: "NOT_FOUND", field: "input.externalCustomerId" },
      { error: "NOT_FOUND", field: "input.meterId" },
      { error: "NOT_FOUND", field: "input.customerId" },
      { allowed: false, balance: 0n, code: "INSUFFICIENT_CREDITS" },
    ]);
    if (t.databaseUrl.startsWith("postgres")) {
      // (this organization, id), (this organization, externalId), (the other one, id)
      expect(queries.filter((q) => q.includes("CROSS JOIN LATERAL") && q.includes(`FROM "Customer" c CROSS JOIN "Meter" m`))).toHaveLength(3);
    }
  });
});

describe("overage policy", () => {
  it("a customer with a metered price on the meter is authorized into billable overage", async () => {
    const { c, m } = await metered("auth-metered");
    expect(await authorize({ customerId: c, meterId: m, units: "8" })).toMatchObject({ allowed: true, balance: "-3" });
    const strict = (await t.ok(IngestStrict, { events: [{ name: "auth-metered", customerId: c, metadata: { n: 2 } }] })).ingestEvents;
    expect(strict).toMatchObject({ __typename: "IngestSummary", inserted: 1 });
    expect((await availability(c, m))?.balance).toBe("-5");
  });
});

describe("strict ingestion", () => {
  it("rejects a whole batch that would take a credits-only balance below zero, and stores none of it", async () => {
    const { c, m, name } = await funded("5");
    const other = await customer(t);
    await grant(t, other, m, "100");
    const events = [
      { name, customerId: other, metadata: { n: 1 }, externalId: "strict-1" },
      { name, customerId: c, metadata: { n: 3 }, externalId: "strict-2" },
      { name, customerId: c, metadata: { n: 3 }, externalId: "strict-3" },
    ];
    const { ingestEvents } = await t.ok(IngestStrict, { events });
    expect(ingestEvents).toMatchObject({ __typename: "InsufficientCreditsError", code: "INSUFFICIENT_CREDITS", customerId: c, meterId: m, balance: "5", available: "5", field: "events" });
    expect(await t.db.event.count({ where: { externalId: { in: ["strict-1", "strict-2", "strict-3"] } } })).toBe(0);
    expect((await availability(other, m))?.balance).toBe("100");
    // within the balance it goes through; the default mode records overage
    expect((await t.ok(IngestStrict, { events: events.slice(0, 2) })).ingestEvents).toMatchObject({ inserted: 2 });
    await ingest(t, [events[2]]);
    expect((await availability(c, m))?.balance).toBe("-1");
  });

  it("counts live holds: a batch may not use units another request holds", async () => {
    const { c, m, name } = await funded("10");
    await reserve({ customerId: c, meterId: m, units: "8" });
    const { ingestEvents } = await t.ok(IngestStrict, { events: [{ name, customerId: c, metadata: { n: 3 } }] });
    expect(ingestEvents).toMatchObject({ __typename: "InsufficientCreditsError", balance: "10", available: "2" });
  });
});

describe("reservations", () => {
  it("holds on an overage meter never add up past the 64-bit range: the hold that would is refused, typed, and the balance stays usable", async () => {
    const { c, m } = await metered("auth-metered-holds");
    // 10^12 units is the largest one input takes; nine of them (9 × 10^18 micro-units) still fit in 2^63 − 1
    for (let i = 0; i < 9; i++) expect(await reserve({ customerId: c, meterId: m, units: "1000000000000" })).toMatchObject({ allowed: true });
    const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "1000000000000" } });
    expect(reserveUsage).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "input.units", message: expect.stringContaining("units held") });
    // the balance still reads and takes usage
    expect(await availability(c, m)).toMatchObject({ balance: "5", heldUnits: "9000000000000" });
    expect(await authorize({ customerId: c, meterId: m, units: "1" })).toMatchObject({ allowed: true, balance: "4" });
  });

  it("a hold reduces what is available, a commit uses what it says, and the hold ends", async () => {
    const { c, m } = await funded("10");
    const r = await reserve({ customerId: c, meterId: m, units: "8", ttlSeconds: 60 });
    expect(r).toMatchObject({ allowed: true, balance: "10", code: "OK", expiresAt: new Date(T0.getTime() + 60_000).toISOString(), reservation: { status: "HELD", units: "8" } });
    expect(await availability(c, m)).toMatchObject({ balance: "10", heldUnits: "8", availableUnits: "2" });
    expect(await authorize({ customerId: c, meterId: m, units: "3" })).toMatchObject({ allowed: false, balance: "10" });
    expect(await reserve({ customerId: c, meterId: m, units: "3" })).toMatchObject({ id: null, allowed: false, code: "INSUFFICIENT_CREDITS" });

    const { commitReservation } = await t.ok(CommitReservation, { id: r.id!, units: "6.5" });
    expect(commitReservation).toMatchObject({ __typename: "Reservation", status: "COMMITTED", units: "8", committedUnits: "6.5" });
    expect(await availability(c, m)).toMatchObject({ balance: "3.5", heldUnits: "0", availableUnits: "3.5", consumedUnits: "6.5" });
    // a retried commit answers the same; anything else on a finished hold is a conflict
    expect((await t.ok(CommitReservation, { id: r.id!, units: "6.5" })).commitReservation).toMatchObject({ status: "COMMITTED" });
    expect((await t.ok(CommitReservation, { id: r.id!, units: "1" })).commitReservation).toMatchObject({ __typename: "ConflictError" });
    expect((await t.ok(ReleaseReservation, { id: r.id! })).releaseReservation).toMatchObject({ __typename: "ConflictError" });
    expect((await ledgerOf(c, m)).at(-1)).toMatchObject({ kind: "USAGE", units: "-6.5", balanceAfter: "3.5" });
  });

  it("a release gives the units back at once, and releasing twice changes nothing", async () => {
    const { c, m } = await funded("10");
    const r = await reserve({ customerId: c, meterId: m, units: "10" });
    expect((await availability(c, m))?.availableUnits).toBe("0");
    expect((await t.ok(ReleaseReservation, { id: r.id! })).releaseReservation).toMatchObject({ status: "RELEASED" });
    expect((await t.ok(ReleaseReservation, { id: r.id! })).releaseReservation).toMatchObject({ status: "RELEASED" });
    expect(await availability(c, m)).toMatchObject({ balance: "10", availableUnits: "10" });
  });

  it("committing beyond the hold needs the extra to be available; refused, the hold stays", async () => {
    const { c, m } = await funded("10");
    const r = await reserve({ customerId: c, meterId: m, units: "4" });
    const { commitReservation } = await t.ok(CommitReservation, { id: r.id!, units: "11" });
    expect(commitReservation).toMatchObject({ __typename: "InsufficientCreditsError", code: "INSUFFICIENT_CREDITS", available: "10" });
    expect(await availability(c, m)).toMatchObject({ balance: "10", heldUnits: "4" });
    expect((await t.ok(CommitReservation, { id: r.id!, units: "10" })).commitReservation).toMatchObject({ status: "COMMITTED" });
    expect((await availability(c, m))?.balance).toBe("0");
  });

  it("a hold that expires gives its units back by itself, and subscribers hear of it", async () => {
    const { c, m } = await funded("10");
    const r = await reserve({ customerId: c, meterId: m, units: "8", ttlSeconds: 30, idempotencyKey: "hold-1" });
    // the same key answers the same hold
    expect((await reserve({ customerId: c, meterId: m, units: "8", ttlSeconds: 30, idempotencyKey: "hold-1" })).id).toBe(r.id);
    const sub = subscription(t.wsClient(t.adminToken), AvailabilityUpdated, { customerId: c, meterId: m });
    await t.subscribed(1);
    t.advance(30_000);
    // at expiresAt the hold no longer counts, before the scheduler has run
    expect(await availability(c, m)).toMatchObject({ balance: "10", heldUnits: "0", availableUnits: "10" });
    expect(await authorize({ customerId: c, meterId: m, units: "9" })).toMatchObject({ allowed: true, balance: "1" });
    expect((await sub.next()).data?.customerMeterUpdated).toMatchObject({ balance: "1", availableUnits: "1" });
    await t.app.scheduler.tick();
    expect((await sub.next()).data?.customerMeterUpdated).toMatchObject({ balance: "1", heldUnits: "0" });
    expect((await t.db.reservation.findUniqueOrThrow({ where: { id: r.id! } })).status).toBe("EXPIRED");
    expect((await t.ok(CommitReservation, { id: r.id!, units: "1" })).commitReservation).toMatchObject({ __typename: "ConflictError", message: "The reservation is expired" });
    sub.close();
  });

  it("lists a customer's reservations by status, time-expired holds as EXPIRED; a session sees only its own", async () => {
    const { c, m } = await funded("10");
    const other = await funded("10");
    const short = await reserve({ customerId: c, meterId: m, units: "1", ttlSeconds: 10 });
    const long = await reserve({ customerId: c, meterId: m, units: "2", ttlSeconds: 600 });
    const done = await reserve({ customerId: c, meterId: m, units: "3" });
    await t.ok(CommitReservation, { id: done.id!, units: "3" });
    await reserve({ customerId: other.c, meterId: other.m, units: "1" });
    t.advance(10_000);
    const list = async (status?: "HELD" | "EXPIRED" | "COMMITTED", token?: string) =>
      (await t.ok(ReservationsOf, { customerId: token ? undefined : c, status }, token)).reservations.edges.map((e) => [e.node.id, e.node.status]);
    expect(await list("HELD")).toEqual([[long.id, "HELD"]]);
    expect(await list("EXPIRED")).toEqual([[short.id, "EXPIRED"]]);
    expect(await list("COMMITTED")).toEqual([[done.id, "COMMITTED"]]);
    expect(await list()).toEqual([[done.id, "COMMITTED"], [long.id, "HELD"], [short.id, "EXPIRED"]]);
    const { createCustomerSession } = await t.ok(CreateSession, { customerId: c });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
    expect(await list(undefined, createCustomerSession.token)).toHaveLength(3);
  });

  it("rejects a ttl out of range", async () => {
    const { c, m } = await funded("1");
    const { reserveUsage } = await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "1", ttlSeconds: 0 } });
    expect(reserveUsage).toMatchObject({ code: "BAD_USER_INPUT", field: "input.ttlSeconds" });
  });
});
