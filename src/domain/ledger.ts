// Reading the ledger: the history of one balance, and the balance at any instant, answered from it.
import type { Db } from "../db/client.ts";
import { sqlOf } from "../db/client.ts";
import { balanceKey, dueGrants } from "./balances.ts";
import { settle } from "./settle.ts";
import { grantOpen } from "./rules.ts";

/**
 * The balance of (customer, meter) at `at`: right after the last ledger entry at or before it (0 before any),
 * plus what time did after that entry and no write has recorded yet (expiries and activations by
 * min(at, now)), exactly as the next write will record it.
 */
export async function balanceAt(db: Db, customerId: string, meterId: string, at: Date, now: Date): Promise<bigint> {
  const latest = [{ occurredAt: "desc" as const }, { sequence: "desc" as const }, { id: "desc" as const }];
  const own = await db.ledgerEntry.findFirst({ where: { customerId, meterId, occurredAt: { lte: at } }, orderBy: latest, select: { balanceAfter: true, sequence: true } });
  let last = own?.balanceAfter ?? 0n;
  // A rated meter's usage is on its pool's draws (folds, src/domain/balances.ts), numbered among its own entries.
  const pool = await poolOf(db, meterId);
  if (pool) {
    const fold = await db.ledgerEntry.findFirst({
      where: { customerId, meterId: pool, ratedMeterId: meterId, ratedSequence: { not: null }, occurredAt: { lte: at } },
      orderBy: latest,
      select: { ratedBalanceAfter: true, ratedSequence: true },
    });
    if (fold && fold.ratedSequence! > (own?.sequence ?? 0n)) last = fold.ratedBalanceAfter!;
  }
  const until = at < now ? at : now;
  const sql = sqlOf(db);
  const due = (await dueGrants(sql, [{ customerId, meterId }], until)).get(balanceKey(customerId, meterId)) ?? [];
  return settle(last, due, until).balance;
}

/** The credit system a rated meter feeds (null: none, or no such meter). */
async function poolOf(db: Db, meterId: string): Promise<string | null> {
  return (await db.meter.findUnique({ where: { id: meterId }, select: { creditPoolId: true } }))?.creditPoolId ?? null;
}

/**
 * The ledger rows of one meter's balances: its own entries and, for a rated meter, its pool's draws that carry
 * its usage (folds, src/domain/balances.ts) — they stand for entries it no longer writes itself.
 */
export async function meterHistory(db: Db, meterId: string) {
  const pool = await poolOf(db, meterId);
  return pool ? { OR: [{ meterId }, { meterId: pool, ratedMeterId: meterId, ratedSequence: { not: null } }] } : { meterId };
}

/**
 * Live grants with something left that expire within `withinMs` of `now`: the filter and the order (soonest
 * first) of a list that is paged, since a customer can hold any number of grants.
 */
export function expiringGrants(customerId: string, meterId: string | null, now: Date, withinMs: number) {
  return {
    where: {
      customerId,
      ...(meterId ? { meterId } : {}),
      ...grantOpen.where,
      remainingUnits: { gt: 0n },
      expiresAt: { gt: now, lte: new Date(now.getTime() + withinMs) },
    },
    orderBy: [{ expiresAt: "asc" as const }, { id: "asc" as const }],
  };
}
