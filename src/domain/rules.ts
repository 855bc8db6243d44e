// The rules of the books that more than one layer needs: each defined once, here, with its TypeScript form
// (for rows already in memory), its SQL form (hot-path statements, both engines) and its Prisma filter side
// by side. test/rules.test.ts holds the forms of each rule to the same answers on generated rows, on the
// engine the suite runs on. Everything else imports these; no other module restates them.
import type { Sql } from "../db/sql.ts";

/** `"name"` or `alias."name"`. */
const column = (alias: string) => (name: string) => `${alias ? `${alias}.` : ""}"${name}"`;

// ---- grants -----------------------------------------------------------------------------------------------

/** What the grant rules look at, as stored. */
export interface GrantRecord {
  creditedAt: Date | null;
  effectiveAt: Date;
  expiresAt: Date | null;
  voidedAt: Date | null;
  expiredAt: Date | null;
}

/** What the time rules look at: whether the units reached the balance, and when they arrive and leave. */
export interface GrantTimes {
  credited: boolean;
  effectiveAt: Date;
  expiresAt: Date | null;
}

export const grantTimes = (g: Pick<GrantRecord, "creditedAt" | "effectiveAt" | "expiresAt">): GrantTimes => ({
  credited: g.creditedAt !== null,
  effectiveAt: g.effectiveAt,
  expiresAt: g.expiresAt,
});

/**
 * Open: not voided and not ended (expired, reset, revoked, refunded). Only an open grant can still change a
 * balance; an ended one is history.
 */
export const grantOpen = {
  test: (g: Pick<GrantRecord, "voidedAt" | "expiredAt">): boolean => g.voidedAt === null && g.expiredAt === null,
  sql: (alias = ""): string => {
    const c = column(alias);
    return `${c("voidedAt")} IS NULL AND ${c("expiredAt")} IS NULL`;
  },
  where: { voidedAt: null, expiredAt: null },
} as const;

/**
 * Due by `at`: an open grant that time has changed and no write has recorded yet — its effectiveAt has come
 * and its units are not on the balance, or its expiresAt has come (expiresAt is exclusive: at that instant
 * the grant is gone).
 */
export const grantDue = {
  /** its units arrive by `at` */
  activation: (g: GrantTimes, at: Date): boolean => !g.credited && g.effectiveAt <= at,
  /** its remainder leaves by `at` */
  expiry: (g: GrantTimes, at: Date): boolean => g.expiresAt !== null && g.expiresAt <= at,
  /** for an open grant */
  times: (g: GrantTimes, at: Date): boolean => grantDue.activation(g, at) || grantDue.expiry(g, at),
  test: (g: GrantRecord, at: Date): boolean => grantOpen.test(g) && grantDue.times(grantTimes(g), at),
  /** two parameters from `n`, both `at` */
  sql: (sql: Sql, n: number, alias = ""): string => {
    const c = column(alias);
    return `${grantOpen.sql(alias)} AND ((${c("creditedAt")} IS NULL AND ${c("effectiveAt")} <= ${sql.param(n)}) OR ${c("expiresAt")} <= ${sql.param(n + 1)})`;
  },
  where: (at: Date) => ({ ...grantOpen.where, OR: [{ creditedAt: null, effectiveAt: { lte: at } }, { expiresAt: { lte: at } }] }),
} as const;

/**
 * In play at `at`: open, and credited or due to be by `at` — the grants a write brings up to `at` and then
 * burns or refills. Used-up grants count: units given back can refill them.
 */
export const grantInPlay = {
  test: (g: GrantRecord, at: Date): boolean => grantOpen.test(g) && (g.creditedAt !== null || g.effectiveAt <= at),
  /** one parameter at `n`: `at` */
  sql: (sql: Sql, n: number, alias = ""): string => {
    const c = column(alias);
    return `${grantOpen.sql(alias)} AND (${c("creditedAt")} IS NOT NULL OR ${c("effectiveAt")} <= ${sql.param(n)})`;
  },
} as const;

/** Usable at `at` (of a grant in play, brought up to `at`): its units are on the balance and it has not expired. */
export const grantUsable = (g: GrantTimes, at: Date): boolean => g.credited && (g.expiresAt === null || g.expiresAt > at);

// ---- holds ------------------------------------------------------------------------------------------------

export interface HoldRecord {
  status: string;
  expiresAt: Date | null;
}

/**
 * Live at `at`: a reservation still holding its units — HELD and before its expiresAt. A HELD reservation past
 * expiresAt holds nothing, whether or not the scheduler has marked it EXPIRED yet.
 */
export const holdLive = {
  test: (r: HoldRecord, at: Date): boolean => r.status === "HELD" && r.expiresAt !== null && r.expiresAt > at,
  /** one parameter at `n`: `at` */
  sql: (sql: Sql, n: number, alias = ""): string => {
    const c = column(alias);
    return `${c("status")} = 'HELD' AND ${c("expiresAt")} > ${sql.param(n)}`;
  },
  where: (at: Date) => ({ status: "HELD", expiresAt: { gt: at } }),
  /** HELD but not live: what the scheduler marks EXPIRED, and what reads already show as EXPIRED */
  lapsedWhere: (at: Date) => ({ status: "HELD", OR: [{ expiresAt: null }, { expiresAt: { lte: at } }] }),
} as const;

/** The status a reservation reads as at `at`: a lapsed hold is EXPIRED. */
export const holdStatus = (r: HoldRecord, at: Date): string => (r.status === "HELD" && !holdLive.test(r, at) ? "EXPIRED" : r.status);

/** What authorizations may still use on a credits-only balance: the balance less what live holds take. */
export const availableUnits = (balance: bigint, held: bigint): bigint => balance - held;

// ---- overage ----------------------------------------------------------------------------------------------

export interface SubscriptionPrices {
  status: string;
  prices: { type: string; meterId: string | null }[];
}

/**
 * Usage past zero on a meter is billable overage for a customer whose ACTIVE subscription's product has a
 * METERED_UNIT price on that meter; without one the meter is credits-only for that customer.
 */
export const overageAllowed = {
  test: (subscriptions: SubscriptionPrices[], meterId: string): boolean =>
    subscriptions.some((s) => s.status === "ACTIVE" && s.prices.some((p) => p.type === "METERED_UNIT" && p.meterId === meterId)),
  /** SQL expressions naming the customer's and the meter's id */
  sql: (customerId: string, meterId: string): string =>
    `EXISTS (SELECT 1 FROM "Price" p JOIN "Subscription" s ON s."productId" = p."productId"
              WHERE p."type" = 'METERED_UNIT' AND p."meterId" = ${meterId} AND s."customerId" = ${customerId} AND s."status" = 'ACTIVE')`,
  /** the subscriptions that can make some meter billable for these customers; their METERED_UNIT prices say which */
  subscriptionsWhere: (customerIds: string[]) => ({ customerId: { in: customerIds }, status: "ACTIVE", product: { prices: { some: { type: "METERED_UNIT" } } } }),
  pricesWhere: { type: "METERED_UNIT" },
} as const;
