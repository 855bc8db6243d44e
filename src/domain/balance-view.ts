// Reading a balance as of now. The stored row is exact as of its last write; since then only time can have
// changed it (a grant took effect or expired) and the scheduler may not have recorded that yet. Reads fold
// those steps in with the same pure `settle` the write path uses, so a read never shows expired credits,
// whenever the scheduler runs. Also what live reservations hold, and so what is available.
import DataLoader from "dataloader";
import type { Db } from "../db/client.ts";
import { sqlOf } from "../db/client.ts";
import { asDate, type Sql } from "../db/sql.ts";
import { balanceKey, dueGrantsAndHolds } from "./balances.ts";
import { settle, type TimedGrant } from "./settle.ts";
import { availableUnits, grantDue, holdLive } from "./rules.ts";
import { lookupBatches } from "./lookup-batch.ts";

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
    out.set(k, viewOf(row, due.get(k) ?? [], held.get(k) ?? 0n, now));
  }
  return out;
}

/** One row's view as of `now`, given its grants due by then (burn order) and what its live holds take. */
function viewOf(row: StoredBalance, grants: TimedGrant[], heldUnits: bigint, now: Date): BalanceView {
  const { steps, balance } = settle(row.balance, grants, now);
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
  return view;
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
  return (row) => {
    const ready = primed.get(row);
    if (ready) return Promise.resolve(ready);
    return new Promise<BalanceView>((resolve, reject) => {
      if (queue.push({ row, resolve, reject }) === 1) setImmediate(() => void flush());
    });
  };
}

/** Views read together with their rows (readBalance): a view loader answers these without reading again. */
const primed = new WeakMap<StoredBalance, BalanceView>();

export function primeView(row: StoredBalance, view: BalanceView): void {
  primed.set(row, view);
}

/** A CustomerMeter row as the hot read returns it: Prisma's shape, so resolvers cannot tell the two apart. */
export interface BalanceRow extends StoredBalance {
  id: string;
  organizationId: string;
  consumedUnits: bigint;
  aggCount: bigint;
  aggSum: bigint;
  aggMax: bigint | null;
  aggMin: bigint | null;
  directUnits: bigint;
  version: number;
  ledgerSequence: bigint;
  ledgerAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

const BIGINT_COLUMNS = ["consumedUnits", "creditedUnits", "balance", "aggCount", "aggSum", "directUnits", "ledgerSequence"] as const;
const NULLABLE_BIGINT_COLUMNS = ["aggMax", "aggMin"] as const;
const ROW_COLUMNS = ["id", "organizationId", "customerId", "meterId", ...BIGINT_COLUMNS, ...NULLABLE_BIGINT_COLUMNS, "version", "ledgerAt", "createdAt", "updatedAt"];

/** One statement's row in the engines' shapes (SQLite: integers as bigint, dates as text) as a BalanceRow. */
function balanceRowOf(r: Record<string, unknown>): BalanceRow {
  const row = { id: String(r.id), organizationId: String(r.organizationId), customerId: String(r.customerId), meterId: String(r.meterId) } as BalanceRow;
  for (const c of BIGINT_COLUMNS) row[c] = BigInt(r[c] as bigint);
  for (const c of NULLABLE_BIGINT_COLUMNS) row[c] = r[c] == null ? null : BigInt(r[c] as bigint);
  row.version = Number(r.version);
  row.ledgerAt = r.ledgerAt == null ? null : asDate(r.ledgerAt as Date | string);
  row.createdAt = asDate(r.createdAt as Date | string);
  row.updatedAt = asDate(r.updatedAt as Date | string);
  return row;
}

/**
 * The columns of a CustomerMeter row `m`, with what live holds take from it and whether any of its grants is
 * due: parameters 1 to 3 are `now`.
 */
function rowWithViewColumns(sql: Sql): string {
  let text = viewColumns.get(sql.provider);
  if (text === undefined) viewColumns.set(sql.provider, (text = viewColumnsText(sql)));
  return text;
}

/** rowWithViewColumns' text by engine, built once: every balance read starts with it. */
const viewColumns = new Map<string, string>();

function viewColumnsText(sql: Sql): string {
  return `${ROW_COLUMNS.map((c) => `m."${c}"`).join(", ")},
       (SELECT SUM(r."units") FROM "Reservation" r
         WHERE r."customerId" = m."customerId" AND r."meterId" = m."meterId" AND ${holdLive.sql(sql, 1, "r")}) AS "held",
       CASE WHEN EXISTS (SELECT 1 FROM "CreditGrant" g
         WHERE g."customerId" = m."customerId" AND g."meterId" = m."meterId" AND ${grantDue.sql(sql, 2, "g")}) THEN 1 ELSE 0 END AS "due"`;
}

/**
 * Rows read with rowWithViewColumns, as BalanceRows whose views are primed. Rows with nothing due need no
 * other statement; those with a grant due (between its instant and the scheduler's next pass) are folded in
 * by one more.
 */
async function rowsWithViews(db: Db, found: Record<string, unknown>[], now: Date): Promise<BalanceRow[]> {
  const rows = found.map(balanceRowOf);
  const due: BalanceRow[] = [];
  rows.forEach((row, i) => {
    if (Number(found[i].due) !== 0) return due.push(row);
    // nothing due: the stored balance is the balance now
    primeView(row, viewOf(row, [], found[i].held == null ? 0n : BigInt(found[i].held as bigint), now));
  });
  if (due.length) {
    const views = await balanceViews(db, due, now);
    for (const row of due) primeView(row, views.get(balanceKey(row.customerId, row.meterId))!);
  }
  return rows;
}

/**
 * One balance, as of `now`, in one statement: the live customer the lookup names (null: none) and its row on
 * the meter (null: no usage or credits there yet), whose view a view loader then answers without reading.
 *
 * On PostgreSQL the reads of every request that asks before the event loop turns are one statement per
 * organization and lookup column (src/domain/lookup-batch.ts), as authorizations' lookups are: each is read in its
 * own row of a lateral subquery, all in one snapshot and as of the latest of their instants (a read a few
 * milliseconds later than asked, whole and exact as of then).
 */
export async function readBalance(
  db: Db,
  organizationId: string,
  lookup: { column: "id" | "externalId"; value: string },
  meterId: string,
  now: Date,
): Promise<{ customerId: string; row: BalanceRow | null } | null> {
  const sql = sqlOf(db);
  if (sql.provider === "postgresql") return (await batchedRead(db, { organizationId, column: lookup.column, value: lookup.value, meterId, now })) ?? null;
  const at = sql.date(now);
  const found = await sql.first<Record<string, unknown>>(readBalanceSelect(sql, lookup.column, sql.param(4), sql.param(5), sql.param(6)), [at, at, at, meterId, organizationId, lookup.value]);
  return found ? balanceFound(db, found, now) : null;
}

/** readBalance's SELECT: `meter`, `organization` and `customer` (matched on `column`) are SQL expressions; parameters 1–3 are `now`. */
function readBalanceSelect(sql: Sql, column: "id" | "externalId", meter: string, organization: string, customer: string): string {
  return `SELECT c."id" AS "cid", ${rowWithViewColumns(sql)}
     FROM "Customer" c LEFT JOIN "CustomerMeter" m ON m."customerId" = c."id" AND m."meterId" = ${meter}
     WHERE c."organizationId" = ${organization} AND c."${column}" = ${customer} AND c."deletedAt" IS NULL
     LIMIT 1`;
}

/** What readBalance answers for the row its statement found. */
async function balanceFound(db: Db, found: Record<string, unknown>, now: Date): Promise<{ customerId: string; row: BalanceRow | null }> {
  const customerId = String(found.cid);
  if (found.id == null) return { customerId, row: null };
  const [row] = await rowsWithViews(db, [found], now);
  return { customerId, row };
}

/** readBalance's batches on PostgreSQL (src/domain/lookup-batch.ts). */
const batchedRead = lookupBatches(
  (sql, column, organization, customer, meter) => readBalanceSelect(sql, column, meter, organization, customer),
  balanceFound,
);

/** Every balance row of one customer, by meter id, views primed: one statement (two with a grant due). */
export async function readBalancesOf(db: Db, customerId: string, now: Date): Promise<BalanceRow[]> {
  const sql = sqlOf(db);
  const at = sql.date(now);
  const found = await sql.query<Record<string, unknown>>(
    `SELECT ${rowWithViewColumns(sql)} FROM "CustomerMeter" m WHERE m."customerId" = ${sql.param(4)} ORDER BY m."meterId"`,
    [at, at, at, customerId],
  );
  return rowsWithViews(db, found, now);
}

/** Pairs per statement of the row loader (SQLite binds two parameters each). */
const ROWS_PER_READ = 500;

/**
 * Balance rows by (customer, meter), their views primed, for everything that re-reads balances by key (the
 * live subscriptions, on every commit): every row asked for in one tick of the event loop, by any request or
 * subscriber, is read in one statement. One commit that wakes a thousand subscribers reads once. Nothing is
 * cached beyond the batch.
 */
export function balanceRowLoader(db: Db, clock: () => Date): DataLoader<{ customerId: string; meterId: string }, BalanceRow | null, string> {
  return new DataLoader(
    async (keys) => {
      const sql = sqlOf(db);
      const now = clock();
      const at = sql.date(now);
      const rows = new Map<string, BalanceRow>();
      for (let i = 0; i < keys.length; i += ROWS_PER_READ) {
        const pairs = sql.pairsIn("customerId", "meterId", keys.slice(i, i + ROWS_PER_READ), 4);
        const found = await sql.query<Record<string, unknown>>(`SELECT ${rowWithViewColumns(sql)} FROM "CustomerMeter" m WHERE ${pairs.clause}`, [at, at, at, ...pairs.values]);
        for (const row of await rowsWithViews(db, found, now)) rows.set(balanceKey(row.customerId, row.meterId), row);
      }
      return keys.map((k) => rows.get(balanceKey(k.customerId, k.meterId)) ?? null);
    },
    { cache: false, cacheKeyFn: (k) => balanceKey(k.customerId, k.meterId) },
  );
}
