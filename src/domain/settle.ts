// What time alone does to a balance: scheduled grants take effect at effectiveAt and grants lose their unused
// remainder at expiresAt. Pure, so the write path (which records these steps before anything else touches the
// balance) and the read path (which shows them before the scheduler has recorded them) agree exactly.
import { burnOrder, type LiveGrant } from "./burn-down.ts";
import { grantDue } from "./rules.ts";

export interface TimedGrant extends LiveGrant {
  effectiveAt: Date;
  /** the units are already on the balance */
  credited: boolean;
}

export interface SettleStep {
  kind: "GRANT" | "EXPIRY";
  grant: TimedGrant;
  /** the change to the balance (negative for an expiry) */
  units: bigint;
  at: Date;
  balanceAfter: bigint;
}

/** The steps of a balance without grants (shared: never changed). */
const NO_STEPS: readonly SettleStep[] = Object.freeze([]);

/**
 * Apply, in time order, every activation and expiry due by `until` to a balance and its grants (mutated).
 * At one instant expiries come before activations: a grant expiring at T is gone at T (exclusive boundary),
 * one effective at T is there. An activation while the balance is negative first pays off the overage, so
 * that part of the grant is used up at once; activations at one instant do so in burn order.
 */
export function settle(balance: bigint, grants: TimedGrant[], until: Date): { steps: readonly SettleStep[]; balance: bigint } {
  // Usually nothing is due: then no list is made (this runs for every balance every write moves).
  let due = false;
  for (let i = 0; i < grants.length && !due; i++) due = grantDue.times(grants[i], until);
  if (!due) return { steps: NO_STEPS, balance };
  type Point = { at: Date; expiry: boolean; grant: TimedGrant };
  const points: Point[] = [];
  for (const g of grants) {
    if (grantDue.activation(g, until)) points.push({ at: g.effectiveAt, expiry: false, grant: g });
    if (grantDue.expiry(g, until)) points.push({ at: g.expiresAt!, expiry: true, grant: g });
  }
  // Grants taking effect at one instant pay off an overage in burn order (priority, soonest expiry, oldest), as
  // usage after that instant would have burnt them: a subscription cycle renewed late, after usage recorded
  // meanwhile, then leaves the same remainders as one renewed on time.
  points.sort((a, b) => a.at.getTime() - b.at.getTime() || Number(b.expiry) - Number(a.expiry) || (a.expiry ? (a.grant.id < b.grant.id ? -1 : 1) : burnOrder(a.grant, b.grant)));
  const steps: SettleStep[] = [];
  for (const p of points) {
    const g = p.grant;
    if (p.expiry) {
      // A grant that expired before it ever took effect never touched the balance.
      const removed = g.credited ? g.remainingUnits : 0n;
      g.remainingUnits = 0n;
      balance -= removed;
      steps.push({ kind: "EXPIRY", grant: g, units: -removed, at: p.at, balanceAfter: balance });
    } else {
      const overage = balance < 0n ? -balance : 0n;
      g.remainingUnits = g.units - (overage < g.units ? overage : g.units);
      g.credited = true;
      balance += g.units;
      steps.push({ kind: "GRANT", grant: g, units: g.units, at: p.at, balanceAfter: balance });
    }
  }
  return { steps, balance };
}
