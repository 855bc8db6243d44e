// Balance alerts: state, not events. Each (customer, meter) with an alert rule has a stored level — OK, LOW
// (available below the rule's lowBalanceUnits) or DEPLETED (available ≤ 0). The balance write
// (BalanceBook.write, the one place every balance change goes through) compares the level its new balance
// gives with the stored one, and a transaction that moves it across a line records the alert in the outbox
// in the same transaction: balance.low and balance.depleted going down, balance.recovered once back at or
// above the threshold. A balance that stays below fires nothing more: hysteresis by construction. On
// PostgreSQL the balance row is locked by that write, so one crossing is recorded once whichever node saw it.
//
// Rules are cached per organization (RULES_CACHE_MS): a write of an organization without rules costs no
// statement at all beyond a lookup every few seconds.
import { LRUCache } from "lru-cache";
import type { Sql } from "../db/sql.ts";
import type { AlertType, OutboxEvent } from "./outbox.ts";
import { formatUnits } from "./units.ts";

export type AlertLevel = "OK" | "LOW" | "DEPLETED";

export interface AlertRule {
  id: string;
  organizationId: string;
  /** null: the organization's default for the meter */
  customerId: string | null;
  meterId: string;
  /** micro-units; null: only depleted and its recovery */
  lowBalanceUnits: bigint | null;
  expiringWithinDays: number | null;
}

/** How long a node trusts its copy of an organization's rules (a change made on another node reaches it within this). */
export const RULES_CACHE_MS = 5_000;

interface RuleSet {
  /** meterId → the organization's default */
  defaults: Map<string, AlertRule>;
  /** `customerId meterId` → that customer's rule */
  customers: Map<string, AlertRule>;
}

/** organizationId → its rules (null: none), for RULES_CACHE_MS; bounded like the other per-node caches. */
const cache = new LRUCache<string, { rules: RuleSet | null }>({ max: 10_000, ttl: RULES_CACHE_MS });
const key = (customerId: string, meterId: string) => `${customerId} ${meterId}`;

export interface RuleRow {
  id: string;
  organizationId: string;
  customerId: string;
  meterId: string;
  lowBalanceUnits: bigint | number | string | null;
  expiringWithinDays: bigint | number | null;
}

export function ruleOf(r: RuleRow): AlertRule {
  return {
    id: r.id,
    organizationId: r.organizationId,
    customerId: r.customerId === "" ? null : r.customerId,
    meterId: r.meterId,
    lowBalanceUnits: r.lowBalanceUnits === null ? null : BigInt(r.lowBalanceUnits),
    expiringWithinDays: r.expiringWithinDays === null ? null : Number(r.expiringWithinDays),
  };
}

const RULE_COLUMNS = `"id", "organizationId", "customerId", "meterId", "lowBalanceUnits", "expiringWithinDays"`;

async function rulesOf(sql: Sql, organizationId: string): Promise<RuleSet | null> {
  const cached = cache.get(organizationId);
  if (cached) return cached.rules;
  const rows = await sql.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM "BalanceAlertRule" WHERE "organizationId" = ${sql.param(1)}`, [organizationId]);
  let rules: RuleSet | null = null;
  if (rows.length) {
    rules = { defaults: new Map(), customers: new Map() };
    for (const rule of rows.map(ruleOf)) {
      if (rule.customerId === null) rules.defaults.set(rule.meterId, rule);
      else rules.customers.set(key(rule.customerId, rule.meterId), rule);
    }
  }
  cache.set(organizationId, { rules });
  return rules;
}

/** Forget an organization's cached rules (they were just changed on this node). */
export function forgetRules(organizationId: string): void {
  cache.delete(organizationId);
}

/** The rule a balance follows: the customer's own, else the organization's default for the meter. */
function ruleFor(rules: RuleSet, customerId: string, meterId: string): AlertRule | undefined {
  return rules.customers.get(key(customerId, meterId)) ?? rules.defaults.get(meterId);
}

/** Whether an organization's balances follow an alert rule, as a check per balance (null: the organization has none). */
export async function alertRulesOf(sql: Sql, organizationId: string): Promise<((customerId: string, meterId: string) => boolean) | null> {
  const rules = await rulesOf(sql, organizationId);
  return rules ? (customerId, meterId) => ruleFor(rules, customerId, meterId) !== undefined : null;
}

/** A balance as written, for alerting: `held` null where the write did not read its holds. */
export interface WrittenBalance {
  organizationId: string;
  customerId: string;
  meterId: string;
  balance: bigint;
  held: bigint | null;
  /** the stored level as read with the row (null: none stored); undefined where it was not read */
  level?: AlertLevel | null;
}

/** The written balances that follow a rule, with it (usually none: then no statement was run). */
export async function watchedBalances<B extends WrittenBalance>(sql: Sql, balances: B[]): Promise<{ balance: B; rule: AlertRule }[]> {
  const out: { balance: B; rule: AlertRule }[] = [];
  const byOrganization = new Map<string, RuleSet | null>();
  for (const b of balances) {
    if (!byOrganization.has(b.organizationId)) byOrganization.set(b.organizationId, await rulesOf(sql, b.organizationId));
    const rules = byOrganization.get(b.organizationId);
    const rule = rules ? ruleFor(rules, b.customerId, b.meterId) : undefined;
    if (rule) out.push({ balance: b, rule });
  }
  return out;
}

export function levelOf(available: bigint, threshold: bigint | null): AlertLevel {
  if (available <= 0n) return "DEPLETED";
  return threshold !== null && available < threshold ? "LOW" : "OK";
}

/** The alerts a move from one level to another raises, in order. */
export function crossings(from: AlertLevel, to: AlertLevel, hasThreshold: boolean): AlertType[] {
  if (from === to) return [];
  if (to === "OK") return ["balance.recovered"];
  if (to === "LOW") return from === "OK" ? ["balance.low"] : []; // DEPLETED → LOW: not stored as a move (recordCrossings)
  return from === "OK" && hasThreshold ? ["balance.low", "balance.depleted"] : ["balance.depleted"];
}

/**
 * Compare each watched balance's level (available = balance − held, held already known) with its stored
 * level; store the new levels and answer the alerts to write to the outbox. The stored levels usually came
 * with the rows (BalanceBook reads them under the row lock); those that did not are read here. One statement
 * when a level moved, none otherwise.
 */
export async function recordCrossings(sql: Sql, watched: { balance: WrittenBalance & { held: bigint }; rule: AlertRule }[], now: Date): Promise<OutboxEvent[]> {
  if (!watched.length) return [];
  const stored = new Map<string, AlertLevel>();
  const unread = watched.filter((w) => w.balance.level === undefined).map((w) => w.balance);
  for (const w of watched) if (w.balance.level) stored.set(key(w.balance.customerId, w.balance.meterId), w.balance.level);
  if (unread.length) {
    const inPairs = sql.pairsIn("customerId", "meterId", unread);
    for (const r of await sql.query<{ customerId: string; meterId: string; level: AlertLevel }>(
      `SELECT "customerId", "meterId", "level" FROM "BalanceAlertState" WHERE ${inPairs.clause}`,
      inPairs.values,
    )) {
      stored.set(key(r.customerId, r.meterId), r.level);
    }
  }
  const events: OutboxEvent[] = [];
  const moved: unknown[][] = [];
  const at = sql.date(now);
  for (const { balance: b, rule } of watched) {
    const available = b.balance - b.held;
    const from = stored.get(key(b.customerId, b.meterId)) ?? "OK";
    const to = levelOf(available, rule.lowBalanceUnits);
    // A depleted balance stays depleted until it recovers: credits that leave it below the line are no
    // recovery, so the next time it reaches zero is the same depletion, not a new one.
    if (from === to || (from === "DEPLETED" && to === "LOW")) continue;
    moved.push([b.customerId, b.meterId, b.organizationId, to, at]);
    for (const type of crossings(from, to, rule.lowBalanceUnits !== null)) {
      events.push({
        organizationId: b.organizationId,
        type,
        data: {
          customerId: b.customerId,
          meterId: b.meterId,
          balance: formatUnits(b.balance),
          availableUnits: formatUnits(available),
          threshold: type === "balance.depleted" || rule.lowBalanceUnits === null ? "0" : formatUnits(rule.lowBalanceUnits),
          ruleId: rule.id,
        },
      });
    }
  }
  if (moved.length) {
    await sql.insertMany("BalanceAlertState", ["customerId", "meterId", "organizationId", "level", "updatedAt"], moved, `ON CONFLICT ("customerId", "meterId") DO UPDATE SET "level" = excluded."level", "updatedAt" = excluded."updatedAt"`);
  }
  return events;
}

