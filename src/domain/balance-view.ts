// Reading a balance as of now. The stored row is exact as of its last write; since then only time can have
// changed it (a grant took effect or expired) and the scheduler may not have recorded that yet. Reads fold
// those steps in with the same pure `settle` the write path uses, so a read never shows expired credits,
// whenever the scheduler runs. Also what live reservations hold, and so what is available.
import type { Db } from "../db/client.ts";
import { sqlOf } from "../db/client.ts";
import { balanceKey, dueGrantsAndHolds } from "./balances.ts";
import { settle } from "./settle.ts";
import { availableUnits } from "./rules.ts";

export interface StoredBalance {
  customerId: string;
  meterId: string;
  balance: bigint;
  creditedUnits: bigint;
}

export interface BalanceView {
  balance: bigint;
  creditedUnits: bigint;
  /** held by live reservations */
  heldUnits: bigint;
  /** what authorizations may still use on a credits-only meter: balance − heldUnits */
  availableUnits: bigint;
  /** remainingUnits of grants that time has changed since the row was written */
  remaining: Map<string, bigint>;
  /** grants that have taken effect (or expired) by now though the row does not say so yet */
  settled: Map<string, { creditedAt: Date | null; expiredAt: Date | null }>;
}

/** Views of many rows: one statement however many rows. */
export async function balanceViews(db: Db, rows: StoredBalance[], now: Date): Promise<Map<string, BalanceView>> {
  const sql = sqlOf(db);
  const { due, held } = await dueGrantsAndHolds(sql, rows, now);
  const out = new Map<string, BalanceView>();
  for (const row of rows) {
    const k = balanceKey(row.customerId, row.meterId);
    const grants = due.get(k) ?? [];
    const { steps, balance } = settle(row.balance, grants, now);
    const heldUnits = held.get(k) ?? 0n;
    const view: BalanceView = {
      balance,
      creditedUnits: row.creditedUnits + steps.reduce((sum, s) => sum + s.units, 0n),
      heldUnits,
      availableUnits: availableUnits(balance, heldUnits),
      remaining: new Map(grants.map((g) => [g.id, g.remainingUnits])),
      settled: new Map(),
    };
    for (const s of steps) {
      const prev = view.settled.get(s.grant.id) ?? { creditedAt: null, expiredAt: null };
      view.settled.set(s.grant.id, s.kind === "GRANT" ? { ...prev, creditedAt: s.at } : { ...prev, expiredAt: s.at });
    }
    out.set(k, view);
  }
  return out;
}

/**
 * Per-request batching: every view asked for in one tick of the event loop is read together. Nothing is
 * cached beyond that, so a long-lived subscription context always reads fresh.
 */
export function viewLoader(db: Db, clock: () => Date): (row: StoredBalance) => Promise<BalanceView> {
  let queue: { row: StoredBalance; resolve: (v: BalanceView) => void; reject: (e: unknown) => void }[] = [];
  const flush = async () => {
    const batch = queue;
    queue = [];
    try {
      const unique = new Map(batch.map((q) => [balanceKey(q.row.customerId, q.row.meterId), q.row]));
      const views = await balanceViews(db, [...unique.values()], clock());
      for (const q of batch) q.resolve(views.get(balanceKey(q.row.customerId, q.row.meterId))!);
    } catch (err) {
      for (const q of batch) q.reject(err);
    }
  };
  return (row) =>
    new Promise<BalanceView>((resolve, reject) => {
      if (queue.push({ row, resolve, reject }) === 1) setImmediate(() => void flush());
    });
}
