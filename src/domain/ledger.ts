// Reading the ledger: the history of one balance, and the balance at any instant, answered from it.
import type { Db } from "../db/client.ts";

/** The balance of (customer, meter) right after the last ledger entry at or before `at`; 0 before any. */
export async function balanceAt(db: Db, customerId: string, meterId: string, at: Date): Promise<bigint> {
  const last = await db.ledgerEntry.findFirst({
    where: { customerId, meterId, occurredAt: { lte: at } },
    orderBy: [{ occurredAt: "desc" }, { id: "desc" }],
    select: { balanceAfter: true },
  });
  return last?.balanceAfter ?? 0n;
}

/** Live grants with something left that expire within `withinMs` of `now`, soonest first. */
export function expiringGrants(db: Db, customerId: string, meterId: string | null, now: Date, withinMs: number) {
  return db.creditGrant.findMany({
    where: {
      customerId,
      ...(meterId ? { meterId } : {}),
      voidedAt: null,
      expiredAt: null,
      remainingUnits: { gt: 0n },
      expiresAt: { gt: now, lte: new Date(now.getTime() + withinMs) },
    },
    orderBy: [{ expiresAt: "asc" }, { id: "asc" }],
  });
}
