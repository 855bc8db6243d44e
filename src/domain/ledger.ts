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
  const last = await db.ledgerEntry.findFirst({
    where: { customerId, meterId, occurredAt: { lte: at } },
    orderBy: [{ occurredAt: "desc" }, { sequence: "desc" }, { id: "desc" }],
    select: { balanceAfter: true },
  });
  const until = at < now ? at : now;
  const sql = sqlOf(db);
  const due = (await dueGrants(sql, [{ customerId, meterId }], until)).get(balanceKey(customerId, meterId)) ?? [];
  return settle(last?.balanceAfter ?? 0n, due, until).balance;
}

/** Live grants with something left that expire within `withinMs` of `now`, soonest first. */
/** `query`: what the caller reads of each grant's relations (Pothos's include/select for nested fields). */
export function expiringGrants<Q extends { include?: object; select?: object }>(db: Db, customerId: string, meterId: string | null, now: Date, withinMs: number, query?: Q) {
  return db.creditGrant.findMany({
    ...(query as object),
    where: {
      customerId,
      ...(meterId ? { meterId } : {}),
      ...grantOpen.where,
      remainingUnits: { gt: 0n },
      expiresAt: { gt: now, lte: new Date(now.getTime() + withinMs) },
    },
    orderBy: [{ expiresAt: "asc" }, { id: "asc" }],
  });
}
