// Group commit: the node's writer decides the balance-moving calls that arrive together in one transaction,
// each against what the ones before it left, and answers each caller on its own. The writer is held while
// the calls are sent (each queued before the next, so their order is known), then drains them as one group.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArchiveMeter, AuthorizeUsage, Availability, CommitReservation, DeleteCustomer, IngestEvents, IngestStrict, ReleaseReservation, ReserveUsage, UpdateMeter } from "./documents.ts";
import type { AuthorizeUsageInput, EventInput, ReserveUsageInput } from "./gql/graphql.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, customer, grant, ingest, ledgerOf as ledgerEntries, meter, named } from "./support/fixtures.ts";
import { authorizeUsage } from "../src/domain/authorization.ts";
import { holdWriter, MAX_GROUP_JOBS } from "../src/domain/writer.ts";

let t: TestApp;
const TRILLION = "1000000000000";
const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };

beforeAll(async () => {
  // Groups here hold more calls of one token than its default 8 at once (test/limits.test.ts covers that limit).
  t = await startTestApp({ limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000, concurrencyPerClient: 64 } });
});
afterAll(() => t?.close());

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Send `calls` in order while the writer is held, each queued before the next is sent; then run `meanwhile`
 * (while they wait) and release it.
 */
async function inOneGroup(calls: (() => Promise<unknown>)[], meanwhile?: () => Promise<unknown>): Promise<unknown[]> {
  const hold = holdWriter(t.db);
  const answers: Promise<unknown>[] = [];
  try {
    for (const [i, call] of calls.entries()) {
      answers.push(call());
      await until(() => hold.queued() === i + 1, `call ${i} to reach the writer`);
    }
    await meanwhile?.();
  } finally {
    hold.release();
  }
  return Promise.all(answers);
}

const authorize = async (input: AuthorizeUsageInput) => (await t.ok(AuthorizeUsage, { input })).authorizeUsage;
const reserve = async (input: ReserveUsageInput) => (await t.ok(ReserveUsage, { input })).reserveUsage;
const ingestCall = async (events: EventInput[]) => (await t.ok(IngestEvents, { events })).ingestEvents;
const strictCall = async (events: EventInput[]) => (await t.ok(IngestStrict, { events })).ingestEvents;
const commit = async (id: string, units: string) => (await t.ok(CommitReservation, { id, units })).commitReservation;
const release = async (id: string) => (await t.ok(ReleaseReservation, { id })).releaseReservation;
const availability = async (c: string, m: string) => (await t.ok(Availability, { customerId: c, meterId: m })).customerMeter;
const ledgerOf = (c: string, m: string) => ledgerEntries(t, c, m);
const eventCount = (externalIds: string[]) => t.db.event.count({ where: { organizationId: t.organizationId, externalId: { in: externalIds } } });

async function held(c: string, m: string, units: string): Promise<string> {
  const r = await reserve({ customerId: c, meterId: m, units });
  if (r.__typename !== "UsageReservation" || !r.allowed) throw new Error(JSON.stringify(r));
  return r.id!;
}

describe("one group, callers isolated", () => {
  it("A batch holding a refused authorization, an invalid ingest and valid work answers each caller with its own result and stores exactly the valid work", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-use") });
    const a = await customer(t);
    const b = await customer(t);
    await grant(t, a, m, "10");
    // b's usage is nine trillion units: one more trillion would take it past what a balance can hold
    await ingest(t, Array.from({ length: 9 }, () => ({ name: "gc-use", customerId: b, metadata: { n: TRILLION } })));
    const before = { a: await balanceOf(t, a, m), b: await balanceOf(t, b, m), ledger: await ledgerOf(a, m) };

    const answers = await inOneGroup([
      () => authorize({ customerId: a, meterId: m, units: "4" }),
      () => authorize({ customerId: a, meterId: m, units: "7" }), // only 6 left after the first
      () => ingestCall([{ name: "gc-use", customerId: a, metadata: { n: 1 }, externalId: "gc-1" }]),
      () => ingestCall([{ name: "gc-use", customerId: b, metadata: { n: TRILLION }, externalId: "gc-2" }]),
      () => reserve({ customerId: a, meterId: m, units: "3" }),
      () => authorize({ customerId: a, meterId: m, units: "3", idempotencyKey: "gc-key" }), // 2 available
      () => strictCall([{ name: "gc-use", customerId: a, metadata: { n: 5 }, externalId: "gc-3" }]),
      () => authorize({ customerId: a, meterId: m, units: "1", idempotencyKey: "gc-key-2" }),
    ]);
    expect(answers).toEqual([
      { __typename: "UsageAuthorization", allowed: true, balance: "6", code: "OK", replayed: false },
      { __typename: "UsageAuthorization", allowed: false, balance: "6", code: "INSUFFICIENT_CREDITS", replayed: false },
      { __typename: "IngestSummary", inserted: 1, duplicates: 0, creditedUnits: "0", ignoredValues: 0 },
      expect.objectContaining({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "events.0.metadata.n" }),
      expect.objectContaining({ __typename: "UsageReservation", allowed: true, balance: "5", code: "OK", reservation: expect.objectContaining({ status: "HELD", units: "3" }) }),
      { __typename: "UsageAuthorization", allowed: false, balance: "5", code: "INSUFFICIENT_CREDITS", replayed: false },
      expect.objectContaining({ __typename: "InsufficientCreditsError", code: "INSUFFICIENT_CREDITS", customerId: a, balance: "5", available: "2", field: "events" }),
      { __typename: "UsageAuthorization", allowed: true, balance: "4", code: "OK", replayed: false },
    ]);

    // Exactly the valid work is stored, in one transaction (a balance's version counts transactions).
    expect(await availability(a, m)).toEqual({ balance: "4", creditedUnits: "10", consumedUnits: "6", heldUnits: "3", availableUnits: "1" });
    expect((await balanceOf(t, a, m))?.version).toBe(before.a!.version + 1);
    expect(await balanceOf(t, b, m)).toEqual(before.b);
    expect(await eventCount(["gc-1"])).toBe(1);
    expect(await eventCount(["gc-2", "gc-3"])).toBe(0);
    const ledger = await ledgerOf(a, m);
    expect(ledger.slice(0, before.ledger.length)).toEqual(before.ledger);
    expect(ledger.slice(before.ledger.length).map((e) => [e.kind, e.units, e.balanceAfter, e.event?.externalId ?? null])).toEqual([
      ["USAGE", "-4", "6", null],
      ["USAGE", "-1", "5", "gc-1"],
      ["USAGE", "-1", "4", null],
    ]);
    // the ledger's numbering follows the decisions, without gaps
    const sequences = await t.db.ledgerEntry.findMany({ where: { customerId: a, meterId: m }, orderBy: { sequence: "asc" }, select: { sequence: true } });
    expect(sequences.map((e) => Number(e.sequence))).toEqual(sequences.map((_, i) => i + 1));

    // The refused call's key recorded nothing: sent again when it fits, it is decided afresh.
    expect(await t.db.reservation.count({ where: { organizationId: t.organizationId, idempotencyKey: "gc-key" } })).toBe(0);
    expect(await t.db.reservation.count({ where: { organizationId: t.organizationId, idempotencyKey: "gc-key-2", status: "COMMITTED" } })).toBe(1);
    expect(await authorize({ customerId: a, meterId: m, units: "1", idempotencyKey: "gc-key" })).toMatchObject({ allowed: true, balance: "3", replayed: false });
  });

  it("a refused call's idempotency key or externalId never makes a neighbour in its group a duplicate", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-shadow") });
    const c = await customer(t);
    await grant(t, c, m, "5");
    const answers = await inOneGroup([
      () => authorize({ customerId: c, meterId: m, units: "4" }),
      () => authorize({ customerId: c, meterId: m, units: "3", idempotencyKey: "gc-shadow" }), // refused: 1 left
      () => authorize({ customerId: c, meterId: m, units: "3", idempotencyKey: "gc-shadow" }), // the same request: refused too, not a replay
      () => strictCall([{ name: "gc-shadow", customerId: c, metadata: { n: 2 }, externalId: "gc-shadow-1" }]), // refused
      () => ingestCall([{ name: "gc-shadow", customerId: c, metadata: { n: 2 }, externalId: "gc-shadow-1" }]), // STANDARD: stored
    ]);
    expect(answers).toEqual([
      { __typename: "UsageAuthorization", allowed: true, balance: "1", code: "OK", replayed: false },
      { __typename: "UsageAuthorization", allowed: false, balance: "1", code: "INSUFFICIENT_CREDITS", replayed: false },
      { __typename: "UsageAuthorization", allowed: false, balance: "1", code: "INSUFFICIENT_CREDITS", replayed: false },
      expect.objectContaining({ __typename: "InsufficientCreditsError", available: "1" }),
      { __typename: "IngestSummary", inserted: 1, duplicates: 0, creditedUnits: "0", ignoredValues: 0 },
    ]);
    expect(await availability(c, m)).toMatchObject({ balance: "-1", consumedUnits: "6" });
    expect(await eventCount(["gc-shadow-1"])).toBe(1);
    expect(await t.db.reservation.count({ where: { organizationId: t.organizationId, idempotencyKey: "gc-shadow" } })).toBe(0);
  });

  it("holds finished in one group: a refused commit keeps its hold, the next commit wins, a later release of it is a conflict", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-holds") });
    const c = await customer(t);
    await grant(t, c, m, "10");
    const first = await held(c, m, "6");
    const second = await held(c, m, "2");
    const before = await balanceOf(t, c, m);
    const answers = await inOneGroup([
      () => commit(first, "9"), // 3 beyond the hold, 2 available besides the holds
      () => commit(first, "5"),
      () => release(first),
      () => release(second),
    ]);
    expect(answers).toEqual([
      { __typename: "InsufficientCreditsError", available: "8", code: "INSUFFICIENT_CREDITS", field: "units", message: expect.any(String) },
      { __typename: "Reservation", id: first, status: "COMMITTED", units: "6", committedUnits: "5" },
      expect.objectContaining({ __typename: "ConflictError", message: "The reservation is committed" }),
      { __typename: "Reservation", id: second, status: "RELEASED" },
    ]);
    expect(await availability(c, m)).toEqual({ balance: "5", creditedUnits: "10", consumedUnits: "5", heldUnits: "0", availableUnits: "5" });
    expect((await balanceOf(t, c, m))?.version).toBe(before!.version + 1);
  });
});

describe("a customer deleted while its writes wait for the writer", () => {
  it("refuses them NOT_FOUND (nothing stored, no balance moved) and decides the group's other calls", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-gone") });
    const [gone, goneExternal, goneHolder, stays] = [await customer(t), await customer(t, "gc-gone-ext"), await customer(t), await customer(t)];
    for (const c of [gone, goneExternal, goneHolder, stays]) await grant(t, c, m, "10");
    const hold = await held(goneHolder, m, "2");
    const rows = (c: string) => t.db.customerMeter.findUnique({ where: { customerId_meterId: { customerId: c, meterId: m } } });
    const before = await Promise.all([gone, goneExternal, goneHolder].map(rows));

    const answers = await inOneGroup(
      [
        () => ingestCall([{ name: "gc-gone", customerId: stays, metadata: { n: 1 }, externalId: "gc-gone-1" }, { name: "gc-gone", customerId: gone, metadata: { n: 1 }, externalId: "gc-gone-2" }]),
        () => ingestCall([{ name: "gc-gone", externalCustomerId: "gc-gone-ext", metadata: { n: 1 }, externalId: "gc-gone-3" }]),
        () => authorize({ customerId: gone, meterId: m, units: "1" }),
        () => reserve({ customerId: gone, meterId: m, units: "1", idempotencyKey: "gc-gone-key" }),
        () => commit(hold, "2"),
        () => authorize({ customerId: stays, meterId: m, units: "2" }),
        () => ingestCall([{ name: "gc-gone", customerId: stays, metadata: { n: 1 }, externalId: "gc-gone-4" }]),
        // events no meter counts: no balance row of the customer is read, the customer is checked all the same
        () => ingestCall([{ name: "gc-gone-unmetered", customerId: stays, externalId: "gc-gone-5" }, { name: "gc-gone-unmetered", customerId: gone, externalId: "gc-gone-6" }]),
      ],
      async () => {
        for (const c of [gone, goneExternal, goneHolder]) expect((await t.ok(DeleteCustomer, { id: c })).deleteCustomer).toMatchObject({ __typename: "Customer" });
      },
    );
    expect(answers).toEqual([
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No such customer", field: "events.1.customerId" }),
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No customer with this externalId", field: "events.0.externalCustomerId" }),
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No such customer", field: "input.customerId" }),
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No such customer", field: "input.customerId" }),
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No such reservation", field: "id" }),
      { __typename: "UsageAuthorization", allowed: true, balance: "8", code: "OK", replayed: false },
      { __typename: "IngestSummary", inserted: 1, duplicates: 0, creditedUnits: "0", ignoredValues: 0 },
      expect.objectContaining({ __typename: "NotFoundError", code: "NOT_FOUND", message: "No such customer", field: "events.1.customerId" }),
    ]);
    // The deleted customers' balances are as they were at their deletion; their calls stored nothing.
    expect(await Promise.all([gone, goneExternal, goneHolder].map(rows))).toEqual(before);
    expect(await eventCount(["gc-gone-1", "gc-gone-2", "gc-gone-3", "gc-gone-5", "gc-gone-6"])).toBe(0);
    expect(await t.db.reservation.count({ where: { organizationId: t.organizationId, idempotencyKey: "gc-gone-key" } })).toBe(0);
    expect(await t.db.reservation.findUniqueOrThrow({ where: { id: hold } })).toMatchObject({ status: "HELD" });
    // The other customer's calls were decided in the same group.
    expect(await eventCount(["gc-gone-4"])).toBe(1);
    expect(await availability(stays, m)).toMatchObject({ balance: "7", consumedUnits: "3" });
  });

  it("PostgreSQL: a deletion waits for a write that holds the customer's balance row", async ({ skip }) => {
    if (!t.databaseUrl.startsWith("postgres")) skip("row locks are PostgreSQL's; SQLite serializes writers");
    const { default: pg } = await import("pg");
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-gone-wait") });
    const c = await customer(t);
    await ingest(t, [{ name: "gc-gone-wait", customerId: c, metadata: { n: 1 } }]);
    const writer = new pg.Client({ connectionString: t.databaseUrl });
    await writer.connect();
    try {
      // A write in flight: the balance row locked as the node's writer locks it.
      await writer.query("BEGIN");
      await writer.query(`SELECT "id" FROM "CustomerMeter" WHERE "customerId" = $1 AND "meterId" = $2 FOR UPDATE`, [c, m]);
      let done = false;
      const deletion = t.ok(DeleteCustomer, { id: c }).then((r) => ((done = true), r));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(done).toBe(false);
      await writer.query("COMMIT");
      expect((await deletion).deleteCustomer).toMatchObject({ __typename: "Customer", id: c });
    } finally {
      await writer.end();
    }
  });
});

describe("a meter changed while ingest calls that matched it wait for the writer", () => {
  it("refuses them CONFLICT (nothing stored) and stores the others; sent again, they count by the new definition", async () => {
    const [changed, archived, kept] = [await meter(t, "SUM", { property: "n", filter: named("gc-def-a") }), await meter(t, "SUM", { property: "n", filter: named("gc-def-b") }), await meter(t, "SUM", { property: "n", filter: named("gc-def-c") })];
    const c = await customer(t);
    const calls = {
      changed: [{ name: "gc-def-a", customerId: c, metadata: { n: 5 }, externalId: "gc-def-1" }, { name: "gc-def-a", customerId: c, metadata: { n: 2 }, externalId: "gc-def-2" }],
      archived: [{ name: "gc-def-b", customerId: c, metadata: { n: 5 }, externalId: "gc-def-3" }],
      kept: [{ name: "gc-def-c", customerId: c, metadata: { n: 5 }, externalId: "gc-def-4" }],
    };
    const answers = await inOneGroup([() => ingestCall(calls.changed), () => ingestCall(calls.archived), () => ingestCall(calls.kept)], async () => {
      // Neither meter has counted anything yet, so both changes are allowed.
      expect((await t.ok(UpdateMeter, { id: changed, input: { aggregation: { func: "MAX", property: "n" } } })).updateMeter).toMatchObject({ __typename: "Meter" });
      expect((await t.ok(ArchiveMeter, { id: archived })).archiveMeter).toMatchObject({ __typename: "Meter" });
    });
    expect(answers).toEqual([
      expect.objectContaining({ __typename: "ConflictError", code: "CONFLICT", field: "events" }),
      expect.objectContaining({ __typename: "ConflictError", code: "CONFLICT", field: "events" }),
      { __typename: "IngestSummary", inserted: 1, duplicates: 0, creditedUnits: "0", ignoredValues: 0 },
    ]);
    expect(await eventCount(["gc-def-1", "gc-def-2", "gc-def-3"])).toBe(0);
    expect(await t.db.customerMeter.count({ where: { customerId: c, meterId: { in: [changed, archived] } } })).toBe(0);
    expect(await availability(c, kept)).toMatchObject({ consumedUnits: "5" });
    // Sent again: matched against the meters as they are now (MAX: the largest value; the archived meter counts nothing).
    expect(await ingestCall(calls.changed)).toMatchObject({ __typename: "IngestSummary", inserted: 2 });
    expect(await ingestCall(calls.archived)).toMatchObject({ __typename: "IngestSummary", inserted: 1 });
    expect(await availability(c, changed)).toMatchObject({ consumedUnits: "5" });
    expect(await t.db.customerMeter.count({ where: { customerId: c, meterId: archived } })).toBe(0);
  });

  it("PostgreSQL: a definition change waits for ingestion holding the meter, then sees what it counted", async ({ skip }) => {
    if (!t.databaseUrl.startsWith("postgres")) skip("advisory locks are PostgreSQL's; SQLite serializes writers");
    const { default: pg } = await import("pg");
    const m = await meter(t, "SUM", { property: "n", filter: named("gc-def-wait") });
    const c = await customer(t);
    const writer = new pg.Client({ connectionString: t.databaseUrl });
    await writer.connect();
    try {
      // An ingest group in flight: the meter's definition lock shared, its first usage about to commit.
      await writer.query("BEGIN");
      await writer.query(`SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))`, [`meter-definition:${m}`]);
      let done = false;
      const change = t.ok(UpdateMeter, { id: m, input: { aggregation: { func: "MAX", property: "n" } } }).then((r) => ((done = true), r));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(done).toBe(false);
      await writer.query(
        `INSERT INTO "CustomerMeter" ("id", "organizationId", "customerId", "meterId", "consumedUnits", "balance", "aggCount", "aggSum", "createdAt", "updatedAt") VALUES ($1, $2, $3, $4, 5000000, -5000000, 1, 5000000, now(), now())`,
        [`gc-def-wait-${m}`, t.organizationId, c, m],
      );
      await writer.query("COMMIT");
      expect((await change).updateMeter).toMatchObject({ __typename: "ConflictError", field: "input.aggregation" });
    } finally {
      await writer.end();
    }
  });
});

describe("group size", () => {
  it(`is bounded: ${MAX_GROUP_JOBS + 44} authorizations queued together commit in two transactions`, async () => {
    const m = await meter(t, "COUNT", { filter: named("gc-bound") });
    const c = await customer(t);
    await grant(t, c, m, "1000");
    const before = (await balanceOf(t, c, m))!;
    const calls = MAX_GROUP_JOBS + 44;
    const hold = holdWriter(t.db);
    let answers: Promise<{ allowed: boolean }[]>;
    try {
      answers = Promise.all(Array.from({ length: calls }, () => authorizeUsage(t.db, silent, t.organizationId, { customerId: c, meterId: m, units: 1_000_000n })));
      await until(() => hold.queued() === calls, "every call to reach the writer");
    } finally {
      hold.release();
    }
    expect((await answers).every((a) => a.allowed)).toBe(true);
    expect(await balanceOf(t, c, m)).toMatchObject({ balance: String(1000 - calls), version: before.version + 2 });
  });
});

describe("a group the database aborts", () => {
  it("is retried whole and every job decided again, against what committed meanwhile", async ({ skip }) => {
    if (!t.databaseUrl.startsWith("postgres")) skip("row locks and deadlock detection are PostgreSQL's; SQLite serializes writers");
    const { default: pg } = await import("pg");
    /**
     * One try at the deadlock. PostgreSQL checks a lock wait for deadlocks once, deadlock_timeout (1 s) after it
     * began: the group, waiting first, is the victim only if this session joins the cycle within that second. On
     * a loaded machine it may not; then this session is aborted instead, nothing was tested, and the caller tries
     * again on fresh balances.
     */
    const attempt = async (round: number) => {
      const m = await meter(t, "SUM", { property: "n", filter: named(`gc-retry-${round}`) });
      const c = await customer(t);
      const d = await customer(t);
      await grant(t, c, m, "5"); // c's balance row is created first: it sorts (and is locked) before d's
      await grant(t, d, m, "5");
      const rows = await t.db.customerMeter.findMany({ where: { meterId: m }, orderBy: { id: "asc" }, select: { id: true, customerId: true } });
      expect(rows.map((r) => r.customerId)).toEqual([c, d]);
      const other = new pg.Client({ connectionString: t.databaseUrl });
      await other.connect();
      let answers: unknown;
      let thisSessionAborted = false;
      const queries = await t.queriesDuring(async () => {
        try {
          // Another transaction holds d's row; the group will lock c's row, then wait for d's.
          await other.query("BEGIN");
          await other.query(`SELECT 1 FROM "CustomerMeter" WHERE "id" = $1 FOR UPDATE`, [rows[1].id]);
          const hold = holdWriter(t.db);
          const calls = Promise.all([c, d].map((customerId) => authorizeUsage(t.db, silent, t.organizationId, { customerId, meterId: m, units: 3_000_000n })));
          await until(() => hold.queued() === 2, "both calls to reach the writer");
          hold.release();
          // Waiting for this session's lock on d's row: only the group can be (other tests' lock waits don't count).
          // Inside this session's transaction pg_stat_activity is a snapshot taken at its first read, which would
          // never list the writer's connection when the group opened it later (this test run alone): cleared
          // before each read.
          const waiting = async () => {
            await other.query("SELECT pg_stat_clear_snapshot()");
            return (await other.query(`SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids("pid"))`)).rows[0].n as number;
          };
          for (const deadline = Date.now() + 20_000; (await waiting()) < 1; ) if (Date.now() > deadline) throw new Error("the group never waited for the row");
          // Now it wants c's row too: a deadlock, in which the group, waiting longer, is the one aborted. Once
          // it has the row, it commits a hold of 4 units on c. The retried group must see it: 3 no longer fit.
          try {
            await other.query(`SELECT 1 FROM "CustomerMeter" WHERE "id" = $1 FOR UPDATE`, [rows[0].id]);
          } catch (err) {
            if ((err as { code?: string }).code !== "40P01") throw err;
            thisSessionAborted = true;
            await other.query("ROLLBACK");
            await calls;
            return;
          }
          await other.query(
            `INSERT INTO "Reservation" ("id", "organizationId", "customerId", "meterId", "units", "status", "expiresAt", "createdAt", "updatedAt") VALUES ($1, $2, $3, $4, 4000000, 'HELD', $5, now(), now())`,
            // ISO text: node-postgres would write a Date in the process's local time zone (CI runs in America/New_York)
            [`gc-retry-hold-${round}`, t.organizationId, c, m, new Date(Date.now() + 3_600_000).toISOString()],
          );
          await other.query("COMMIT");
          answers = await calls;
        } finally {
          await other.end();
        }
      });
      return thisSessionAborted ? null : { m, c, d, answers, queries };
    };
    let tried: Awaited<ReturnType<typeof attempt>> = null;
    for (let round = 1; round <= 3 && !tried; round++) tried = await attempt(round);
    if (!tried) throw new Error("the group was never the deadlock's victim in three tries");
    const { m, c, d, answers, queries } = tried;
    expect(answers).toEqual([
      { allowed: false, balance: 5_000_000n, code: "INSUFFICIENT_CREDITS", replayed: false },
      { allowed: true, balance: 2_000_000n, code: "OK", replayed: false },
    ]);
    // two attempts of the one group, each reading and locking both rows in one statement (not each call alone)
    expect(queries.filter((q) => /FROM "CustomerMeter" cm WHERE .* FOR UPDATE/s.test(q))).toHaveLength(2);
    expect(await availability(c, m)).toMatchObject({ balance: "5", heldUnits: "4", availableUnits: "1" });
    expect(await availability(d, m)).toMatchObject({ balance: "2" });
    expect((await ledgerOf(c, m)).map((e) => e.kind)).toEqual(["GRANT"]);
  }, 60_000);
});
