// Alert rules as the API manages them (setBalanceAlert), and credits.expiring: a grant with units left that
// expires within its rule's window is announced once (CreditExpiryNotice), found by the scheduler.
import type { Db } from "../db/client.ts";
import { resolveCustomerRef, type CustomerRef } from "./customers.ts";
import { InvalidInputError } from "./errors.ts";
import { requireMeter } from "./meters.ts";
import { forgetRules, ruleOf, type AlertRule } from "./alerts.ts";
import { writeOutbox, type OutboxEvent } from "./outbox.ts";
import { sqlTransaction } from "./transactions.ts";
import { formatUnits } from "./units.ts";

/** The longest credits.expiring window. */
export const MAX_EXPIRING_DAYS = 366;

export interface AlertRuleInput extends CustomerRef {
  meterId: string;
  /** micro-units, ≥ 0; null: none */
  lowBalanceUnits?: bigint | null;
  expiringWithinDays?: number | null;
}

/**
 * Create or replace the rule of a customer (or, naming none, the organization's default) on a meter. Both
 * thresholds null removes the rule (and answers null).
 */
export async function setBalanceAlert(db: Db, organizationId: string, input: AlertRuleInput): Promise<AlertRule | null> {
  const low = input.lowBalanceUnits ?? null;
  if (low !== null && low < 0n) throw new InvalidInputError("must not be negative", "input.lowBalanceUnits");
  const days = input.expiringWithinDays ?? null;
  if (days !== null && (!Number.isInteger(days) || days < 1 || days > MAX_EXPIRING_DAYS)) {
    throw new InvalidInputError(`must be an integer from 1 to ${MAX_EXPIRING_DAYS}`, "input.expiringWithinDays");
  }
  const named = input.customerId != null || input.externalCustomerId != null;
  const customerId = named ? (await resolveCustomerRef(db, organizationId, input, "input")).id : "";
  await requireMeter(db, organizationId, input.meterId, "input.meterId");
  const where = { organizationId_meterId_customerId: { organizationId, meterId: input.meterId, customerId } };
  forgetRules(organizationId);
  if (low === null && days === null) {
    await db.balanceAlertRule.deleteMany({ where: where.organizationId_meterId_customerId });
    return null;
  }
  const data = { lowBalanceUnits: low, expiringWithinDays: days };
  const row = await db.balanceAlertRule.upsert({ where, create: { organizationId, meterId: input.meterId, customerId, ...data }, update: data });
  forgetRules(organizationId);
  return ruleOf(row);
}

export async function listBalanceAlerts(db: Db, organizationId: string, filter: { customerId?: string | null; meterId?: string | null }): Promise<AlertRule[]> {
  const rows = await db.balanceAlertRule.findMany({
    where: { organizationId, ...(filter.meterId ? { meterId: filter.meterId } : {}), ...(filter.customerId ? { customerId: { in: [filter.customerId, ""] } } : {}) },
    orderBy: { id: "asc" },
  });
  return rows.map(ruleOf);
}

const DAY_MS = 86_400_000;

/**
 * credits.expiring: every grant with units left, in the balance, that expires within its rule's window and
 * was not announced yet, is announced once (its CreditExpiryNotice and the outbox row in one transaction; a
 * notice another node wrote first wins). Answers how many were announced. The scheduler runs it.
 */
export async function announceExpiringCredits(db: Db, now: Date): Promise<number> {
  const rules = (await db.balanceAlertRule.findMany({ where: { expiringWithinDays: { not: null } } })).map(ruleOf);
  // A customer's own rule on a meter replaces the organization's default there, with or without a window.
  const defaultMeters = [...new Set(rules.filter((r) => !r.customerId).map((r) => r.meterId))];
  const ownRules = defaultMeters.length ? await db.balanceAlertRule.findMany({ where: { customerId: { not: "" }, meterId: { in: defaultMeters } }, select: { customerId: true, meterId: true } }) : [];
  const own = new Set(ownRules.map((r) => `${r.customerId} ${r.meterId}`));
  let announced = 0;
  for (const rule of rules) {
    const grants = await db.creditGrant.findMany({
      where: {
        organizationId: rule.organizationId,
        meterId: rule.meterId,
        ...(rule.customerId ? { customerId: rule.customerId } : {}),
        remainingUnits: { gt: 0n },
        creditedAt: { not: null },
        voidedAt: null,
        expiredAt: null,
        expiresAt: { gt: now, lte: new Date(now.getTime() + rule.expiringWithinDays! * DAY_MS) },
        expiryNotice: null,
      },
      orderBy: { id: "asc" },
      take: 1000,
    });
    // A customer with a rule of its own on the meter follows that one, not the organization's default.
    const due = grants.filter((g) => rule.customerId || !own.has(`${g.customerId} ${g.meterId}`));
    if (!due.length) continue;
    announced += await sqlTransaction(db, async (sql) => {
      const at = sql.date(now);
      // the notices this transaction wrote, not those another node's pass wrote first: each grant is announced once
      const written = await sql.insertMany<{ grantId: string }>(
        "CreditExpiryNotice",
        ["grantId", "organizationId", "createdAt"],
        due.map((g) => [g.id, g.organizationId, at]),
        `ON CONFLICT ("grantId") DO NOTHING RETURNING "grantId"`,
      );
      const fresh = new Set(written.map((w) => w.grantId));
      const events: OutboxEvent[] = due
        .filter((g) => fresh.has(g.id))
        .map((g) => ({
          organizationId: g.organizationId,
          type: "credits.expiring",
          data: { grantId: g.id, customerId: g.customerId, meterId: g.meterId, units: formatUnits(g.remainingUnits), expiresAt: g.expiresAt!.toISOString(), withinDays: rule.expiringWithinDays },
        }));
      await writeOutbox(sql, events, now);
      return events.length;
    });
  }
  return announced;
}
