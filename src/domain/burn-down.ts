// Which credits usage uses up: grants burn in order of priority (lower first), then soonest expiry
// (never-expiring last), then age (oldest first). Pure functions over a customer's live grants on one meter.

export interface LiveGrant {
  id: string;
  units: bigint;
  remainingUnits: bigint;
  priority: number;
  expiresAt: Date | null;
  createdAt: Date;
}

export function burnOrder(a: LiveGrant, b: LiveGrant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (ea !== eb) return ea < eb ? -1 : 1;
  if (a.createdAt.getTime() !== b.createdAt.getTime()) return a.createdAt.getTime() - b.createdAt.getTime();
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Use `units` from grants sorted in burn order (their remainders change). Returns what no grant covered (that
 * part of the usage is overage, or comes out of credits given back by negative usage). Allocates nothing: it
 * runs for every balance every write moves.
 */
export function burn(sorted: LiveGrant[], units: bigint): bigint {
  let left = units;
  for (const g of sorted) {
    if (left === 0n) break;
    if (g.remainingUnits <= 0n) continue;
    const take = g.remainingUnits < left ? g.remainingUnits : left;
    g.remainingUnits -= take;
    left -= take;
  }
  return left;
}

/**
 * Give `units` of usage back (a negative event): refill grants in reverse burn order, each up to what it
 * granted. Returns the rest, which stays on the balance as credits outside any grant.
 */
export function restore(sorted: LiveGrant[], units: bigint): bigint {
  let left = units;
  for (let i = sorted.length - 1; i >= 0 && left > 0n; i--) {
    const g = sorted[i];
    const room = g.units - g.remainingUnits;
    if (room <= 0n) continue;
    const put = room < left ? room : left;
    g.remainingUnits += put;
    left -= put;
  }
  return left;
}
