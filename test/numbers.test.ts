// Numbers from clients: negative values (REJECT refuses them, CREDIT turns them into credits), numeric
// strings, numbers a double cannot carry, sums past the 64-bit range, NUL characters, and the
// per-organization limits on what every event is matched against.
import { parse } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import {
  ArchiveMeter,
  AuthorizeUsage,
  BalanceAt,
  CreateCustomer,
  CreateMeter,
  CustomerMeterUpdated,
  GrantCredits,
  IngestEvents,
  IngestStrict,
  LedgerOf,
  UpdateMeter,
} from "./documents.ts";
import type { EventInput, MeterFilterInput } from "./gql/graphql.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { balanceOf, customer, grant, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

let serial = 0;
/** A fresh customer, an event name of its own and a meter of `func` on property `n` counting it. */
async function setup(func: "SUM" | "MAX" | "MIN" | "AVG" = "SUM", negativeValues?: "REJECT" | "CREDIT") {
  const name = `num-${++serial}`;
  const m = await meter(t, func, { property: "n", filter: named(name), negativeValues });
  const c = await customer(t);
  const ev = (n: unknown, extra: Partial<EventInput> = {}): EventInput => ({ name, customerId: c, metadata: { n }, ...extra });
  return { c, m, name, ev };
}

async function ingestResult(events: EventInput[], strict = false) {
  if (strict) return (await t.ok(IngestStrict, { events })).ingestEvents;
  return (await t.ok(IngestEvents, { events })).ingestEvents;
}

const ledgerOf = async (c: string, m: string) =>
  (await t.ok(LedgerOf, { customerId: c, meterId: m })).ledger.edges.map((e) => [e.node.kind, e.node.units, e.node.balanceAfter, e.node.eventCount]);

describe("negative values on a REJECT meter (the default)", () => {
  for (const strict of [false, true]) {
    it(`refuse the whole batch in ${strict ? "STRICT" : "STANDARD"} mode, naming the value; nothing is written`, async () => {
      const { c, m, ev } = await setup();
      await grant(t, c, m, "5");
      const before = await balanceOf(t, c, m);
      const result = await ingestResult([ev(3, { externalId: `ok-${serial}` }), ev(-1_000_000, { externalId: `neg-${serial}` })], strict);
      expect(result).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "events.1.metadata.n" });
      expect(await t.db.event.count({ where: { customerId: c } })).toBe(0);
      expect(await balanceOf(t, c, m)).toEqual(before);
      expect(await t.db.creditGrant.count({ where: { customerId: c } })).toBe(1);
    });
  }

  it("a numeric string counts as a negative value too", async () => {
    const { ev } = await setup();
    expect(await ingestResult([ev("-2.5")])).toMatchObject({ __typename: "InvalidInputError", field: "events.0.metadata.n" });
  });

  it("an event the meter's filter does not match is not refused for it", async () => {
    const { c, m } = await setup();
    expect(await ingest(t, [{ name: "some-other-event", customerId: c, metadata: { n: -5 } }])).toMatchObject({ inserted: 1 });
    expect(await balanceOf(t, c, m)).toBeNull();
  });

  it("a credits-only authorizeUsage after a refused negative event allows no more than the real credits", async () => {
    const { c, m, ev } = await setup();
    await grant(t, c, m, "5");
    expect(await ingestResult([ev(-1_000_000)])).toMatchObject({ __typename: "InvalidInputError" });
    const authorize = async (units: string) => {
      const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId: c, meterId: m, units } });
      if (authorizeUsage.__typename !== "UsageAuthorization") throw new Error(JSON.stringify(authorizeUsage));
      return authorizeUsage;
    };
    expect(await authorize("999999")).toMatchObject({ allowed: false, code: "INSUFFICIENT_CREDITS", balance: "5" });
    expect(await authorize("5")).toMatchObject({ allowed: true, balance: "0" });
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "5", creditedUnits: "5", balance: "0" });
  });

  for (const func of ["MAX", "MIN", "AVG"] as const) {
    it(`${func} meters refuse negative values, and cannot be made CREDIT meters`, async () => {
      const { ev } = await setup(func);
      expect(await ingestResult([ev(1), ev(-1)])).toMatchObject({ __typename: "InvalidInputError", field: "events.1.metadata.n" });
      const { createMeter } = await t.ok(CreateMeter, { input: { name: "x", filter: named("x"), aggregation: { func, property: "n" }, negativeValues: "CREDIT" } });
      expect(createMeter).toMatchObject({ __typename: "InvalidInputError", field: "input.negativeValues" });
    });
  }

  it("a meter says what it does with negative values; REJECT unless asked", async () => {
    const { createMeter } = await t.ok(CreateMeter, { input: { name: "default", filter: named("d"), aggregation: { func: "SUM", property: "n" } } });
    expect(createMeter).toMatchObject({ __typename: "Meter", negativeValues: "REJECT" });
  });
});

describe("negative values on a CREDIT meter", () => {
  it("are credited as a NEGATIVE_USAGE grant with a GRANT ledger entry; consumedUnits only grows", async () => {
    const { c, m, ev } = await setup("SUM", "CREDIT");
    await ingest(t, [ev(40)]);
    const summary = await ingestResult([ev(-10), ev(5), ev("-2.5")]);
    expect(summary).toMatchObject({ __typename: "IngestSummary", inserted: 3, creditedUnits: "12.5" });
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "45", creditedUnits: "12.5", balance: "-32.5" });
    // one grant per (customer, meter) per transaction, summing its negative values
    const grants = await t.db.creditGrant.findMany({ where: { customerId: c, meterId: m } });
    expect(grants).toEqual([expect.objectContaining({ source: "NEGATIVE_USAGE", units: 12_500_000n, expiresAt: null, priority: 10 })]);
    // it arrived in overage, so it paid the overage off first, as any grant does
    expect(grants[0].remainingUnits).toBe(0n);
    expect(await ledgerOf(c, m)).toEqual([
      ["USAGE", "-40", "-40", 1],
      ["GRANT", "12.5", "-27.5", 2],
      ["USAGE", "-5", "-32.5", 1],
    ]);
  });

  it("STRICT counts the batch's credits in the credits-only check, and says how much it credited", async () => {
    const { c, m, ev } = await setup("SUM", "CREDIT");
    await grant(t, c, m, "5");
    expect(await ingestResult([ev(-10), ev(15)], true)).toMatchObject({ __typename: "IngestSummary", inserted: 2, creditedUnits: "10" });
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "15", creditedUnits: "15", balance: "0" });
    expect(await ingestResult([ev(-1), ev(2)], true)).toMatchObject({ __typename: "InsufficientCreditsError" });
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: "0" });
  });

  it("events stored before their customer existed are credited when it does", async () => {
    const name = `pending-${++serial}`;
    const m = await meter(t, "SUM", { property: "n", filter: named(name), negativeValues: "CREDIT" });
    const summary = await ingest(t, [{ name, externalCustomerId: `later-${serial}`, metadata: { n: -7 } }]);
    expect(summary).toMatchObject({ inserted: 1, creditedUnits: "0" }); // nobody to credit yet
    const c = await customer(t, `later-${serial}`);
    expect(await balanceOf(t, c, m)).toMatchObject({ consumedUnits: "0", creditedUnits: "7", balance: "7" });
  });
});

describe("numeric strings and numbers a double cannot carry", () => {
  it("a numeric string counts exactly, with the same 6-decimal rule as Decimal", async () => {
    const { c, m, ev } = await setup();
    await ingest(t, [ev("12.5"), ev("0.000001"), ev("999999999999.999999")]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("1000000000012.5");
    expect(await ingestResult([ev("0.0000001")])).toMatchObject({ __typename: "InvalidInputError", field: "events.0.metadata.n", message: expect.stringMatching(/decimal places/) });
  });

  it("a non-numeric string is refused in STRICT mode and counted as ignored otherwise", async () => {
    const { c, m, ev } = await setup();
    await grant(t, c, m, "100");
    expect(await ingestResult([ev(1), ev("twelve")], true)).toMatchObject({ __typename: "InvalidInputError", field: "events.1.metadata.n" });
    expect(await t.db.event.count({ where: { customerId: c } })).toBe(0);
    expect(await ingestResult([ev(1), ev("twelve"), ev(true), ev("3")])).toMatchObject({ __typename: "IngestSummary", inserted: 4, ignoredValues: 2 });
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("4");
  });

  it("a number with more than 15 significant digits is refused, telling the client to send a string", async () => {
    const { c, m, ev } = await setup();
    const result = await ingestResult([ev(1), ev(123456789012.3456)]);
    expect(result).toMatchObject({ __typename: "InvalidInputError", field: "events.1.metadata.n", message: expect.stringMatching(/numeric string/) });
    await ingest(t, [ev("123456789012.3456")]);
    expect((await balanceOf(t, c, m))?.consumedUnits).toBe("123456789012.3456");
  });
});

describe("DateTime names one instant", () => {
  it("refuses dates that do not exist and times without an offset, reads offsets and fractions exactly", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT", { filter: named("instants") });
    const at = async (value: string) => {
      const r = await t.exec(BalanceAt, { customerId: c, meterId: m, at: value });
      return r.errors ? r.errors.map((e) => e.extensions?.code) : r.data?.balanceAt;
    };
    for (const bad of ["2031-02-30T00:00:00Z", "2027-02-29T00:00:00Z", "2026-11-22T24:00:00Z", "2026-13-01T00:00:00Z", "2031-03-10T10:00:00", "2026-11-22", "2026-11-22T10:00:00+25:00"]) {
      expect([bad, await at(bad)]).toEqual([bad, ["BAD_USER_INPUT"]]);
    }
    for (const good of ["2028-02-29T00:00:00Z", "2026-11-22T10:00Z", "2026-11-22T10:00:00.123456789+05:30", "2026-11-22T10:00:00-05:00"]) {
      expect([good, await at(good)]).toEqual([good, "0"]);
    }
    const timestamps = ["2026-11-22T11:00:00+01:00", "2026-11-22T10:00:00.1234Z"];
    await ingest(t, timestamps.map((timestamp) => ({ name: "instants", customerId: c, timestamp })));
    const stored = await t.db.event.findMany({ where: { customerId: c }, orderBy: { timestamp: "asc" }, select: { timestamp: true } });
    expect(stored.map((e) => e.timestamp.toISOString())).toEqual(["2026-11-22T10:00:00.000Z", "2026-11-22T10:00:00.123Z"]);
  });
});

describe("sums past the 64-bit micro-unit range", () => {
  const TRILLION = "1000000000000"; // the largest single value (10^18 micro-units); int8 holds about 9.22 of them

  it("within one batch: BAD_USER_INPUT naming the event that crosses, nothing written", async () => {
    const { c, m, ev } = await setup();
    const events = Array.from({ length: 10 }, () => ev(TRILLION));
    expect(await ingestResult(events)).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "events.9.metadata.n" });
    expect(await t.db.event.count({ where: { customerId: c } })).toBe(0);
    expect(await balanceOf(t, c, m)).toBeNull();
  });

  it("with the stored aggregate: names the event of the later batch, and the balance stays as it was", async () => {
    const { c, m, ev } = await setup();
    await ingest(t, Array.from({ length: 9 }, () => ev(TRILLION)));
    const before = await balanceOf(t, c, m);
    expect(before?.consumedUnits).toBe("9000000000000");
    expect(await ingestResult([ev(1), ev(TRILLION), ev(1)])).toMatchObject({ __typename: "InvalidInputError", field: "events.1.metadata.n" });
    expect(await balanceOf(t, c, m)).toEqual(before);
    expect(await t.db.event.count({ where: { customerId: c } })).toBe(9);
  });

  it("credits of a CREDIT meter too", async () => {
    const { c, m, ev } = await setup("SUM", "CREDIT");
    expect(await ingestResult(Array.from({ length: 10 }, () => ev(`-${TRILLION}`)))).toMatchObject({ __typename: "InvalidInputError", field: "events.9.metadata.n" });
    expect(await balanceOf(t, c, m)).toBeNull();
  });

  it("grants still to take effect count: one that would overflow the balance when it arrives is refused when made", async () => {
    const { c, m, ev } = await setup();
    const give = async (units: string, effectiveAt?: Date) =>
      (await t.ok(GrantCredits, { input: { customerId: c, meterId: m, units, effectiveAt: effectiveAt?.toISOString() } })).grantCredits;
    const later = new Date(Date.now() + 3_600_000);
    // scheduled first, then immediate ones: the room the scheduled one takes is kept for it
    expect(await give(TRILLION, later)).toMatchObject({ __typename: "CreditGrant" });
    for (let i = 0; i < 8; i++) expect(await give(TRILLION)).toMatchObject({ __typename: "CreditGrant" });
    expect(await give(TRILLION)).toMatchObject({ __typename: "InvalidInputError", field: "input.units" });
    expect(await give(TRILLION, later)).toMatchObject({ __typename: "InvalidInputError", field: "input.units" });
    expect(await t.db.creditGrant.count({ where: { customerId: c, meterId: m } })).toBe(9);
    // the balance still takes usage
    await ingest(t, [ev(1)]);
    expect((await balanceOf(t, c, m))?.balance).toBe("7999999999999");
  });

  it("a single value past one trillion units is refused as too large", async () => {
    const { ev } = await setup();
    expect(await ingestResult([ev("1000000000000.000001")])).toMatchObject({ __typename: "InvalidInputError", field: "events.0.metadata.n", message: expect.stringMatching(/too large/) });
  });
});

describe("NUL characters (U+0000)", () => {
  const raw = <R = unknown>(query: string) => parse(query) as unknown as TypedDocumentNode<R, Record<string, unknown>>;

  it("are refused in variables, naming the path; nothing is written", async () => {
    const customers = await t.db.customer.count();
    const error = await t.error(CreateCustomer, { input: { email: "a\u0000@example.com", externalId: "nul-1" } });
    expect(error).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "input.email" } });
    expect(await t.db.customer.count()).toBe(customers);
  });

  it("and unpaired surrogates (which PostgreSQL's jsonb refuses) are refused in event metadata and customer fields alike, on both engines", async () => {
    const c = await customer(t);
    expect(await t.error(IngestEvents, { events: [{ name: "use", customerId: c, metadata: { user: "ada\ud800" } }] })).toMatchObject({
      extensions: { code: "BAD_USER_INPUT", field: "events.0.metadata.user" },
    });
    expect(await t.error(CreateCustomer, { input: { email: "x@example.com", externalId: "half\udc00" } })).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "input.externalId" } });
    // a whole pair is a character like any other
    await ingest(t, [{ name: "use", customerId: c, metadata: { user: "ada \ud83d\ude00" } }]);
    expect(await t.db.event.count({ where: { customerId: c } })).toBe(1);
  });

  it("are refused in metadata values and keys of events", async () => {
    const c = await customer(t);
    expect(await t.error(IngestEvents, { events: [{ name: "use", customerId: c }, { name: "use", customerId: c, metadata: { user: "ada\u0000x" } }] })).toMatchObject({
      extensions: { code: "BAD_USER_INPUT", field: "events.1.metadata.user" },
    });
    expect(await t.error(IngestEvents, { events: [{ name: "use", customerId: c, metadata: { "us\u0000er": "ada" } }] })).toMatchObject({
      extensions: { code: "BAD_USER_INPUT", field: "events.0.metadata.us\\u0000er" },
    });
    expect(await t.db.event.count({ where: { customerId: c } })).toBe(0);
  });

  it("are refused in string literals of the document", async () => {
    const error = await t.error(raw(`mutation { createCustomer(input: { email: "b\\u0000@example.com", externalId: "nul-2" }) { __typename } }`));
    expect(error).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "input.email" } });
    const query = await t.error(raw(`{ customer(externalId: "x\\u0000") { id } }`));
    expect(query).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "externalId" } });
    expect(await t.db.customer.count({ where: { externalId: "nul-2" } })).toBe(0);
  });

  it("are refused on WebSocket subscriptions too", async () => {
    const client = t.wsClient(t.adminToken);
    const sub = subscription(client, CustomerMeterUpdated, { externalCustomerId: "x\u0000y" });
    const message = await sub.next();
    expect(message.errors?.[0]).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "externalCustomerId" } });
    sub.close();
  });
});

describe("LIKE clauses are bounded", () => {
  it("a LIKE text longer than 100 characters is refused", async () => {
    const filter: MeterFilterInput = { conjunction: "AND", clauses: [{ property: "model", operator: "LIKE", value: "x".repeat(101) }] };
    const { createMeter } = await t.ok(CreateMeter, { input: { name: "long-like", filter, aggregation: { func: "COUNT" } } });
    expect(createMeter).toMatchObject({ __typename: "InvalidInputError", field: "input.filter.clauses.0.value" });
  });
});

describe("per-organization meter limits", () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await startTestApp({ meterLimits: { maxActiveMeters: 3, maxFilterClauses: 10 } });
  });
  afterAll(() => limited?.close());

  const filterOf = (n: number): MeterFilterInput => ({
    conjunction: "OR",
    clauses: Array.from({ length: n }, (_, i) => ({ property: "model", operator: "LIKE" as const, value: `m${i}` })),
  });
  const create = async (app: TestApp, clauses: number, token?: string) =>
    (await app.ok(CreateMeter, { input: { name: `lim-${++serial}`, filter: filterOf(clauses), aggregation: { func: "COUNT" } } }, token)).createMeter;

  it("refuses a meter past the active-meter limit until one is archived; other organizations are not affected", async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const m = await create(limited, 1);
      if (m.__typename !== "Meter") throw new Error(JSON.stringify(m));
      ids.push(m.id);
    }
    expect(await create(limited, 1)).toMatchObject({ __typename: "LimitExceededError", code: "LIMIT_EXCEEDED", field: "input", limit: 3 });
    expect(await limited.db.meter.count({ where: { organizationId: limited.organizationId } })).toBe(3);
    const other = await limited.newOrganization();
    expect(await create(limited, 1, other.token)).toMatchObject({ __typename: "Meter" });
    await limited.ok(ArchiveMeter, { id: ids[0] });
    expect(await create(limited, 1)).toMatchObject({ __typename: "Meter" });
  });

  it("refuses filter clauses past the organization's total, on create and on update", async () => {
    const org = await limited.newOrganization();
    const first = await create(limited, 6, org.token);
    if (first.__typename !== "Meter") throw new Error(JSON.stringify(first));
    expect(await create(limited, 5, org.token)).toMatchObject({ __typename: "LimitExceededError", field: "input.filter", limit: 10 });
    const second = await create(limited, 4, org.token);
    if (second.__typename !== "Meter") throw new Error(JSON.stringify(second));
    const { updateMeter } = await limited.ok(UpdateMeter, { id: second.id, input: { filter: filterOf(5) } }, org.token);
    expect(updateMeter).toMatchObject({ __typename: "LimitExceededError", field: "input.filter" });
    // replacing a filter counts the new one instead of the old
    expect((await limited.ok(UpdateMeter, { id: first.id, input: { filter: filterOf(2) } }, org.token)).updateMeter).toMatchObject({ __typename: "Meter" });
  });

  it("the limits are settings with documented defaults", () => {
    expect(loadConfig({}).meterLimits).toEqual({ maxActiveMeters: 200, maxFilterClauses: 2000 });
    expect(loadConfig({ MAX_ACTIVE_METERS: "50", MAX_FILTER_CLAUSES: "500" }).meterLimits).toEqual({ maxActiveMeters: 50, maxFilterClauses: 500 });
    expect(() => loadConfig({ MAX_ACTIVE_METERS: "0" })).toThrow(/MAX_ACTIVE_METERS/);
  });
});
