// Property: random sequences of grants (some scheduled, some expiring, at several priorities), usage (some of
// it negative, on a CREDIT meter: each negative value becomes a grant of its own) and waits give the same ledger, balances and grants whether the scheduler records time's
// effects as they fall due (a pass after every wait) or the sequence is split into a few runs with no
// scheduler in between (writes and reads then settle what fell due). Both must also agree with a small
// reference model of the balance rules written here from design.md.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BalanceAt, GrantScheduled } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { balanceOf, creditGrantsOf, customer, ingest, ledgerOf, meter, named } from "./support/fixtures.ts";

const MINUTE = 60_000;
const BASE = new Date("2027-01-01T00:00:00.000Z").getTime();

type Op =
  | { kind: "grant"; units: number; priority: number; effectiveIn: number; expiresAfter: number | null }
  | { kind: "use"; units: number }
  | { kind: "wait"; minutes: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("grant" as const),
    units: fc.integer({ min: 1, max: 100 }),
    priority: fc.integer({ min: 0, max: 2 }),
    effectiveIn: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 })),
    expiresAfter: fc.option(fc.integer({ min: 1, max: 8 }), { nil: null }),
  }),
  fc.record({ kind: fc.constant("use" as const), units: fc.integer({ min: -15, max: 60 }) }),
  fc.record({ kind: fc.constant("wait" as const), minutes: fc.integer({ min: 1, max: 5 }) }),
);

// ---- the reference model: whole units, the rules as design.md states them ----
interface ModelGrant {
  index: number;
  units: number;
  remaining: number;
  priority: number;
  effectiveAt: number;
  expiresAt: number | null;
  credited: boolean;
  ended: boolean;
}

type Entry = [kind: string, units: string, balanceAfter: string, minute: number, grant: number | null];


/** The README's burn order: lower priority number, then soonest expiry (never last), then the older grant. */
const burnOrder = (x: ModelGrant, y: ModelGrant) => x.priority - y.priority || (x.expiresAt ?? Infinity) - (y.expiresAt ?? Infinity) || x.index - y.index;
class Model {
  balance = 0;
  grants: ModelGrant[] = [];
  ledger: Entry[] = [];

  constructor(private start: number) {}

  private entry(kind: string, units: number, at: number, grant: number | null) {
    this.ledger.push([kind, String(units + 0), String(this.balance), (at - this.start) / MINUTE, grant]);
  }

  /** Activations and expiries due by `now`, in time order; at one instant expiries first, activations in burn order. */
  settle(now: number) {
    const points: { at: number; expiry: boolean; g: ModelGrant }[] = [];
    for (const g of this.grants) {
      if (!g.credited && !g.ended && g.effectiveAt <= now) points.push({ at: g.effectiveAt, expiry: false, g });
      if (!g.ended && g.expiresAt !== null && g.expiresAt <= now) points.push({ at: g.expiresAt, expiry: true, g });
    }
    points.sort((a, b) => a.at - b.at || Number(b.expiry) - Number(a.expiry) || (a.expiry ? a.g.index - b.g.index : burnOrder(a.g, b.g)));
    for (const p of points) {
      if (p.expiry) {
        const removed = p.g.credited ? p.g.remaining : 0;
        this.balance -= removed;
        p.g.remaining = 0;
        p.g.ended = true;
        if (removed) this.entry("EXPIRY", -removed, p.at, p.g.index);
      } else this.credit(p.g, p.at);
    }
  }

  credit(g: ModelGrant, at: number) {
    const overage = Math.max(0, -this.balance);
    g.remaining = g.units - Math.min(overage, g.units);
    g.credited = true;
    this.balance += g.units;
    this.entry("GRANT", g.units, at, g.index);
  }

  live(now: number) {
    return this.grants
      .filter((g) => g.credited && !g.ended && (g.expiresAt === null || g.expiresAt > now))
      .sort(burnOrder);
  }

  use(units: number, now: number) {
    if (units < 0) {
      // A CREDIT meter: a negative value is never negative consumption. It is a new grant (priority 10, no
      // expiry) credited now, which like any grant first pays off overage; no USAGE entry.
      const g: ModelGrant = { index: this.grants.length, units: -units, remaining: -units, priority: 10, effectiveAt: now, expiresAt: null, credited: false, ended: false };
      this.grants.push(g);
      this.credit(g, now);
      return;
    }
    let left = units;
    for (const g of this.live(now)) {
      const take = Math.min(g.remaining, left);
      g.remaining -= take;
      left -= take;
    }
    this.balance -= units;
    this.entry("USAGE", -units, now, null);
  }
}

let t: TestApp;
let meterId: string;
const EVENT = "prop-use";

beforeAll(async () => {
  t = await startTestApp();
  t.setNow(new Date(BASE));
  meterId = await meter(t, "SUM", { property: "n", filter: named(EVENT), negativeValues: "CREDIT" });
});
afterAll(() => t?.close());

interface RunResult {
  reads: string[];
  ledger: unknown[];
  grants: string[];
  balance: string;
  at: string[];
}

/**
 * Play `ops` for a fresh customer from `start`. `tickAfterWait`: the scheduler runs after every wait.
 * `splits`: op indexes where one run ends and the next begins (the scheduler runs there, and only there).
 */
async function play(ops: Op[], start: number, opts: { tickAfterWait: boolean; splits: Set<number> }): Promise<RunResult> {
  t.setNow(new Date(start));
  const c = await customer(t);
  const grantIds: string[] = [];
  const reads: string[] = [];
  let now = start;
  for (const [i, op] of ops.entries()) {
    if (opts.splits.has(i)) await t.app.scheduler.tick();
    if (op.kind === "wait") {
      now += op.minutes * MINUTE;
      t.setNow(new Date(now));
      if (opts.tickAfterWait) await t.app.scheduler.tick();
    } else if (op.kind === "use") {
      await ingest(t, [{ name: EVENT, customerId: c, metadata: { n: op.units } }]);
      if (op.units < 0) {
        // the grant the negative value became, in the model's order of grants
        const credit = await t.db.creditGrant.findFirstOrThrow({ where: { customerId: c, meterId, source: "NEGATIVE_USAGE" }, orderBy: { id: "desc" } });
        grantIds.push(credit.id);
      }
    } else {
      const effectiveAt = now + op.effectiveIn * MINUTE;
      const { grantCredits } = await t.ok(GrantScheduled, {
        input: {
          customerId: c,
          meterId,
          units: String(op.units),
          priority: op.priority,
          effectiveAt: op.effectiveIn ? new Date(effectiveAt).toISOString() : undefined,
          expiresAt: op.expiresAfter === null ? undefined : new Date(effectiveAt + op.expiresAfter * MINUTE).toISOString(),
        },
      });
      if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
      grantIds.push(grantCredits.id);
    }
    reads.push((await balanceOf(t, c, meterId))?.balance ?? "none");
  }
  await t.app.scheduler.tick();
  const end = now;
  const rel = (iso: string) => (Date.parse(iso) - start) / MINUTE;
  const ledger = (await ledgerOf(t, c, meterId)).map((e) => [
    e.kind,
    e.units,
    e.balanceAfter,
    rel(e.occurredAt),
    e.grant ? grantIds.indexOf(e.grant.id) : null,
  ]);
  const grants = new Map((await creditGrantsOf(t, c, meterId)).map((g) => [g.id, g.remainingUnits]));
  const at: string[] = [];
  for (let m = 0; m <= (end - start) / MINUTE; m += 3) {
    at.push((await t.ok(BalanceAt, { customerId: c, meterId, at: new Date(start + m * MINUTE).toISOString() })).balanceAt);
  }
  return { reads, ledger, grants: grantIds.map((id) => grants.get(id)!), balance: (await balanceOf(t, c, meterId))?.balance ?? "0", at };
}

function modelOf(ops: Op[], start: number): { reads: string[]; balance: string; grants: string[]; ledger: Entry[] } {
  const model = new Model(start);
  let now = start;
  const reads: string[] = [];
  let exists = false; // the balance row appears with the first grant or usage
  for (const op of ops) {
    if (op.kind === "wait") now += op.minutes * MINUTE;
    else exists = true;
    model.settle(now);
    if (op.kind === "use") model.use(op.units, now);
    if (op.kind === "grant") {
      const effectiveAt = now + op.effectiveIn * MINUTE;
      const g: ModelGrant = {
        index: model.grants.length,
        units: op.units,
        remaining: op.units,
        priority: op.priority,
        effectiveAt,
        expiresAt: op.expiresAfter === null ? null : effectiveAt + op.expiresAfter * MINUTE,
        credited: false,
        ended: false,
      };
      model.grants.push(g);
      if (!op.effectiveIn) model.credit(g, now);
    }
    model.settle(now);
    reads.push(exists ? String(model.balance) : "none");
  }
  model.settle(now);
  return { reads, balance: String(model.balance), grants: model.grants.map((g) => String(g.remaining)), ledger: model.ledger };
}

describe("ledger property", () => {
  it("one run with the scheduler after every wait and several runs without it give identical ledgers and balances, as the model says", async () => {
    let iteration = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 6, maxLength: 30 }), fc.array(fc.nat(24), { maxLength: 3 }), async (ops, splitAt) => {
        const start = BASE + ++iteration * 86_400_000;
        const eager = await play(ops, start, { tickAfterWait: true, splits: new Set() });
        const split = await play(ops, start, { tickAfterWait: false, splits: new Set(splitAt) });
        expect(split).toEqual(eager);
        const model = modelOf(ops, start);
        expect(eager.ledger).toEqual(model.ledger);
        expect(eager.balance).toBe(model.balance);
        expect(eager.grants).toEqual(model.grants);
        expect(eager.reads).toEqual(model.reads);
      }),
      { numRuns: 30, seed: 20261123, endOnFailure: true },
    );
  }, 300_000);
});
