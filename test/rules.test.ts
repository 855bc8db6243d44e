// Each rule of src/domain/rules.ts has a TypeScript form, a SQL form and a Prisma filter. On generated rows
// stored in the real database (SQLite, or PostgreSQL with TEST_DATABASE_URL), every form must pick exactly
// the same rows. Instants are drawn around one `at`, so every boundary (before, at, after) is exercised.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqlOf } from "../src/db/client.ts";
import { balanceKey } from "../src/domain/balances.ts";
import { overagePairs } from "../src/domain/overage.ts";
import { grantDue, grantInPlay, grantOpen, holdLive, holdStatus, overageAllowed, type GrantRecord } from "../src/domain/rules.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { customer, meter } from "./support/fixtures.ts";

let t: TestApp;
let customerIds: string[];
let meterIds: string[];
const AT = new Date("2026-06-01T12:00:00.000Z");
const RUNS = 12;

beforeAll(async () => {
  t = await startTestApp();
  customerIds = [await customer(t), await customer(t)];
  meterIds = [await meter(t, "COUNT"), await meter(t, "COUNT")];
});
afterAll(() => t?.close());

const instant = fc.constantFrom(-60_000, -1, 0, 1, 60_000).map((ms) => new Date(AT.getTime() + ms));
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: null });
const sorted = (ids: string[]) => [...ids].sort();

describe("grant rules", () => {
  const grantArb = fc.record({ creditedAt: maybe(instant), effectiveAt: instant, expiresAt: maybe(instant), voidedAt: maybe(instant), expiredAt: maybe(instant) });

  it("open, due and in play: the TypeScript, SQL and Prisma forms pick the same grants", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(grantArb, { minLength: 1, maxLength: 25 }), async (grants) => {
        await t.db.creditGrant.deleteMany({ where: { organizationId: t.organizationId } });
        const rows = grants.map((g, i) => ({
          ...g,
          id: `grant_${i}`,
          organizationId: t.organizationId,
          customerId: customerIds[0],
          meterId: meterIds[0],
          units: 1n,
          remainingUnits: 1n,
          source: "ADMIN",
        }));
        await t.db.creditGrant.createMany({ data: rows });
        const stored: (GrantRecord & { id: string })[] = await t.db.creditGrant.findMany({ where: { organizationId: t.organizationId } });
        const sql = sqlOf(t.db);
        const at = sql.date(AT);
        const select = async (condition: string, values: unknown[]) =>
          sorted((await sql.query<{ id: string }>(`SELECT g."id" FROM "CreditGrant" g WHERE g."organizationId" = ${sql.param(1)} AND ${condition}`, [t.organizationId, ...values])).map((r) => r.id));
        const byTs = (rule: (g: GrantRecord) => boolean) => sorted(stored.filter(rule).map((g) => g.id));
        const byPrisma = async (where: object) => sorted((await t.db.creditGrant.findMany({ where: { organizationId: t.organizationId, ...where }, select: { id: true } })).map((g) => g.id));

        const open = byTs(grantOpen.test);
        expect(await select(grantOpen.sql("g"), [])).toEqual(open);
        expect(await byPrisma(grantOpen.where)).toEqual(open);

        const due = byTs((g) => grantDue.test(g, AT));
        expect(await select(grantDue.sql(sql, 2, "g"), [at, at])).toEqual(due);
        expect(await byPrisma(grantDue.where(AT))).toEqual(due);

        expect(await select(grantInPlay.sql(sql, 2, "g"), [at])).toEqual(byTs((g) => grantInPlay.test(g, AT)));
      }),
      { numRuns: RUNS },
    );
  });
});

describe("hold rules", () => {
  const holdArb = fc.record({ status: fc.constantFrom("HELD", "COMMITTED", "RELEASED", "EXPIRED"), expiresAt: maybe(instant) });

  it("live and lapsed: the TypeScript, SQL and Prisma forms pick the same reservations", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(holdArb, { minLength: 1, maxLength: 25 }), async (holds) => {
        await t.db.reservation.deleteMany({ where: { organizationId: t.organizationId } });
        await t.db.reservation.createMany({
          data: holds.map((h, i) => ({ ...h, id: `hold_${i}`, organizationId: t.organizationId, customerId: customerIds[0], meterId: meterIds[0], units: 1n })),
        });
        const stored = await t.db.reservation.findMany({ where: { organizationId: t.organizationId } });
        const sql = sqlOf(t.db);
        const live = sorted(stored.filter((r) => holdLive.test(r, AT)).map((r) => r.id));
        const bySql = await sql.query<{ id: string }>(`SELECT r."id" FROM "Reservation" r WHERE r."organizationId" = ${sql.param(1)} AND ${holdLive.sql(sql, 2, "r")}`, [t.organizationId, sql.date(AT)]);
        expect(sorted(bySql.map((r) => r.id))).toEqual(live);
        const prisma = async (where: object) => sorted((await t.db.reservation.findMany({ where: { organizationId: t.organizationId, ...where } })).map((r) => r.id));
        expect(await prisma(holdLive.where(AT))).toEqual(live);
        expect(await prisma(holdLive.lapsedWhere(AT))).toEqual(sorted(stored.filter((r) => r.status === "HELD" && holdStatus(r, AT) === "EXPIRED").map((r) => r.id)));
      }),
      { numRuns: RUNS },
    );
  });
});

describe("overage rule", () => {
  const priceArb = fc.record({ type: fc.constantFrom("FIXED", "METERED_UNIT"), meter: fc.constantFrom(0, 1, null) });
  const productArb = fc.array(priceArb, { maxLength: 3 });
  const subscriptionArb = fc.record({ customer: fc.constantFrom(0, 1), product: fc.nat(2), status: fc.constantFrom("ACTIVE", "CANCELED") });

  it("the TypeScript form, the SQL form and overagePairs agree for every (customer, meter)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(productArb, { minLength: 3, maxLength: 3 }), fc.array(subscriptionArb, { maxLength: 4 }), async (products, subscriptions) => {
        const org = t.organizationId;
        await t.db.subscription.deleteMany({ where: { organizationId: org } });
        await t.db.price.deleteMany({ where: { organizationId: org } });
        await t.db.product.deleteMany({ where: { organizationId: org } });
        const productIds: string[] = [];
        for (const prices of products) {
          const p = await t.db.product.create({ data: { organizationId: org, name: "p" } });
          productIds.push(p.id);
          for (const price of prices) {
            await t.db.price.create({
              data: { organizationId: org, productId: p.id, type: price.type, currency: "usd", meterId: price.meter === null ? null : meterIds[price.meter], unitAmount: price.type === "METERED_UNIT" ? 1n : null, amount: price.type === "FIXED" ? 1n : null },
            });
          }
        }
        for (const s of subscriptions) {
          await t.db.subscription.create({
            data: { organizationId: org, customerId: customerIds[s.customer], productId: productIds[s.product], status: s.status, currentPeriodStart: AT, currentPeriodEnd: new Date(AT.getTime() + 1000) },
          });
        }
        const pairs = customerIds.flatMap((customerId) => meterIds.map((meterId) => ({ customerId, meterId })));
        const allowed = await overagePairs(t.db, pairs);
        const sql = sqlOf(t.db);
        for (const { customerId, meterId } of pairs) {
          const subs = await t.db.subscription.findMany({ where: { customerId }, select: { status: true, product: { select: { prices: { select: { type: true, meterId: true } } } } } });
          const ts = overageAllowed.test(subs.map((s) => ({ status: s.status, prices: s.product.prices })), meterId);
          // the meter's id comes first in the statement's text (SQLite numbers `?` by position)
          const [row] = await sql.query<{ allowed: unknown }>(`SELECT ${overageAllowed.sql(sql.param(2), sql.param(1))} AS "allowed"`, [meterId, customerId]);
          expect(row.allowed === true || Number(row.allowed) === 1).toBe(ts);
          expect(allowed.has(balanceKey(customerId, meterId))).toBe(ts);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("the rules' SQL on one balance's rows", () => {
  // SQLite plans without statistics: a rule evaluated for one customer must reach its rows through a
  // per-customer index, never through [status, …], which spans every customer (a read that grew with the
  // whole database on every authorization).
  it("live holds and the overage rule are read through per-customer indexes (SQLite's plan)", async ({ skip }) => {
    const sql = sqlOf(t.db);
    if (sql.provider !== "sqlite") skip("SQLite's query planner");
    const plan = async (text: string, params: unknown[]) =>
      (await sql.query<{ detail: string }>(`EXPLAIN QUERY PLAN ${text}`, params)).map((r) => r.detail).join("\n");
    const held = await plan(
      `SELECT (SELECT SUM(r."units") FROM "Reservation" r WHERE r."customerId" = c."id" AND r."meterId" = ${sql.param(1)} AND ${holdLive.sql(sql, 2, "r")}) FROM "Customer" c WHERE c."id" = ${sql.param(3)}`,
      [meterIds[0], sql.date(AT), customerIds[0]],
    );
    expect(held).toMatch(/SEARCH r USING INDEX Reservation_customerId_meterId_status_expiresAt_idx/);
    const overage = await plan(`SELECT ${overageAllowed.sql(`c."id"`, sql.param(1))} FROM "Customer" c WHERE c."id" = ${sql.param(2)}`, [meterIds[0], customerIds[0]]);
    expect(overage).toMatch(/SEARCH s USING INDEX Subscription_customerId_status_idx/);
  });
});
