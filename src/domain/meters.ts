// Meters: what usage counts and how. A meter's filter and aggregation are fixed once it has counted events.
import { providerOfDb, type Db } from "../db/client.ts";
import { asDate, Sql } from "../db/sql.ts";
import type { Meter } from "../generated/prisma-postgresql/client.ts";
import { ConflictError, InvalidInputError, LimitExceededError, NotFoundError } from "./errors.ts";
import { clauseCount, parseAggregation, parseMeterFilter, type Aggregation, type MeterFilter } from "./meter-filter.ts";

/**
 * What a meter does with a negative aggregated value. REJECT (the default: a client must not be able to
 * mint credits by sending negative usage): the event, and with it the whole batch, is refused. CREDIT (SUM
 * meters only): the negative part becomes credits — a grant with source NEGATIVE_USAGE — and never reduces
 * consumption.
 */
export const NEGATIVE_VALUES = ["REJECT", "CREDIT"] as const;
export type NegativeValues = (typeof NEGATIVE_VALUES)[number];

export interface MeterInput {
  name: string;
  filter: unknown;
  aggregation: { func: string; property?: string | null };
  negativeValues?: string | null;
}

/** Every column of a Meter row, for the reads past Prisma (meterOfRow reads them back). */
export const METER_COLUMNS = `"id", "organizationId", "name", "filter", "aggregationFunc", "aggregationProperty", "negativeValues", "creditPoolId", "creditSystem", "archivedAt", "createdAt", "updatedAt"`;

/** A Meter row read past Prisma (METER_COLUMNS, either engine's shapes) as Prisma would return it. */
export function meterOfRow(row: Record<string, unknown>): Meter {
  return {
    id: String(row.id),
    organizationId: String(row.organizationId),
    name: String(row.name),
    // PostgreSQL's driver parses jsonb; SQLite keeps Json columns as text
    filter: (typeof row.filter === "string" ? JSON.parse(row.filter) : row.filter) as Meter["filter"],
    aggregationFunc: String(row.aggregationFunc),
    aggregationProperty: row.aggregationProperty == null ? null : String(row.aggregationProperty),
    negativeValues: String(row.negativeValues),
    creditPoolId: row.creditPoolId == null ? null : String(row.creditPoolId),
    // SQLite stores booleans as integers
    creditSystem: row.creditSystem === true || Number(row.creditSystem) === 1,
    archivedAt: row.archivedAt == null ? null : asDate(row.archivedAt as Date | string),
    createdAt: asDate(row.createdAt as Date | string),
    updatedAt: asDate(row.updatedAt as Date | string),
  };
}

/** A meter ready for matching events. */
export interface ActiveMeter {
  id: string;
  filter: MeterFilter;
  aggregation: Aggregation;
  negativeValues: NegativeValues;
  /** feeds a credit system: its counted values keep their events' timestamps, to be rated */
  rated: boolean;
  /** the credit system it feeds, whose overage policy its usage follows; null when not rated */
  poolMeterId: string | null;
}

/** Per-organization limits on what every ingested event is matched against (see src/config.ts). */
export interface MeterLimits {
  /** active (not archived) meters per organization */
  maxActiveMeters: number;
  /** filter clauses in total across the organization's active meters */
  maxFilterClauses: number;
}

export const DEFAULT_METER_LIMITS: MeterLimits = { maxActiveMeters: 200, maxFilterClauses: 2000 };

function checkNegativeValues(value: string | null | undefined, aggregation: Aggregation, field: string): NegativeValues {
  const chosen = value ?? "REJECT";
  if (!(NEGATIVE_VALUES as readonly string[]).includes(chosen)) throw new InvalidInputError(`must be one of ${NEGATIVE_VALUES.join(", ")}`, field);
  if (chosen === "CREDIT" && aggregation.func !== "SUM") {
    throw new InvalidInputError(`only SUM meters can turn negative values into credits (${aggregation.func} refuses them)`, field);
  }
  return chosen as NegativeValues;
}

/**
 * Run `work` with the organization's meter definitions serialized (PostgreSQL: its row locked), refusing
 * what would take the organization past its limits. `replacing` is a meter whose filter the work replaces.
 */
async function withinLimits<T>(
  db: Db,
  organizationId: string,
  limits: MeterLimits,
  change: { newMeter: boolean; filter: MeterFilter | null; replacing?: string },
  work: (tx: Db) => Promise<T>,
): Promise<T> {
  return db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    if (providerOfDb(db) === "postgresql") await tx.$queryRawUnsafe(`SELECT 1 FROM "Organization" WHERE "id" = $1 FOR UPDATE`, organizationId);
    const active = await tx.meter.findMany({ where: { organizationId, archivedAt: null }, select: { id: true, filter: true } });
    if (change.newMeter && active.length + 1 > limits.maxActiveMeters) {
      throw new LimitExceededError(`An organization has at most ${limits.maxActiveMeters} active meters: archive one first`, "input", limits.maxActiveMeters);
    }
    if (change.filter) {
      const others = active.filter((m) => m.id !== change.replacing).reduce((n, m) => n + clauseCount(m.filter as unknown as MeterFilter), 0);
      const total = others + clauseCount(change.filter);
      if (total > limits.maxFilterClauses) {
        throw new LimitExceededError(
          `An organization's active meters have at most ${limits.maxFilterClauses} filter clauses in total (${others} in use, this filter has ${clauseCount(change.filter)})`,
          "input.filter",
          limits.maxFilterClauses,
        );
      }
    }
    return work(tx);
  });
}

function checkName(name: string, field: string): string {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 200) throw new InvalidInputError("must be 1 to 200 characters", field);
  return trimmed;
}

export async function createMeter(db: Db, organizationId: string, input: MeterInput, limits: MeterLimits = DEFAULT_METER_LIMITS): Promise<Meter> {
  const name = checkName(input.name, "input.name");
  const filter = parseMeterFilter(input.filter, "input.filter");
  const aggregation = parseAggregation(input.aggregation, "input.aggregation");
  const negativeValues = checkNegativeValues(input.negativeValues, aggregation, "input.negativeValues");
  return withinLimits(db, organizationId, limits, { newMeter: true, filter }, (tx) =>
    tx.meter.create({
      data: { organizationId, name, filter: filter as object, aggregationFunc: aggregation.func, aggregationProperty: aggregation.property, negativeValues },
    }),
  );
}

export async function requireMeter(db: Db, organizationId: string, id: string, field: string): Promise<Meter> {
  const meter = await db.meter.findFirst({ where: { id, organizationId } });
  if (!meter) throw new NotFoundError("No such meter", field);
  return meter;
}

/**
 * The lock under which a meter joins a credit system and under which credits are given on it, so that neither
 * slips past the other's check (PostgreSQL; SQLite runs one writer at a time).
 */
export const meterRatingLock = (meterId: string) => `meter-rating:${meterId}`;

/**
 * The lock on what a meter counts: its filter, aggregation, negative values, credit system and whether it is
 * archived. Ingestion holds it shared, from its check that the meters it matched its events against are still
 * as they were to its commit (src/domain/ingestion.ts); what changes them takes it alone first (before the
 * rating lock, where both are taken): updateMeter, archiveMeter, createCreditSystem and setCreditRate joining a
 * meter. So no event is aggregated by a definition that changed before it was written, and a meter's first
 * counted events and a change of its definition never pass each other (PostgreSQL; SQLite runs one writer at
 * a time, and ingestion checks inside its transaction there too).
 */
export const meterDefinitionLock = (meterId: string) => `meter-definition:${meterId}`;

/** Inside a transaction (`tx`, of `db`) that changes what these meters count: their definition locks, alone (PostgreSQL). */
export async function lockMeterDefinitions(db: Db, tx: Db, meterIds: string[]): Promise<void> {
  await new Sql(tx, providerOfDb(db)).lockKeys(meterIds.map(meterDefinitionLock));
}

/**
 * Credits go to a rated meter's pool, never to the rated meter (whose usage the pool pays): what would credit
 * it is refused, saying what to `do` on the pool instead.
 */
export function checkNotRated(meter: Pick<Meter, "creditPoolId">, field: string, what = "give credits"): void {
  if (meter.creditPoolId) throw new InvalidInputError(`this meter's usage is paid from its credit system: ${what} on the pool (${meter.creditPoolId})`, field);
}

/** Rename always; change filter or aggregation only while the meter has counted nothing. */
export async function updateMeter(db: Db, organizationId: string, id: string, input: Partial<MeterInput>, limits: MeterLimits = DEFAULT_METER_LIMITS): Promise<Meter> {
  const meter = await requireMeter(db, organizationId, id, "id");
  const counting = input.filter != null ? "input.filter" : input.aggregation != null ? "input.aggregation" : input.negativeValues != null ? "input.negativeValues" : null;
  // A pool's usage is what its rated meters draw: counting events of its own would charge them twice.
  if (meter.creditSystem && counting) throw new InvalidInputError("a credit system counts no events of its own: only its name can change", counting);
  const data: Record<string, unknown> = {};
  if (input.name != null) data.name = checkName(input.name, "input.name");
  if (input.filter != null) data.filter = parseMeterFilter(input.filter, "input.filter");
  if (input.aggregation != null) {
    const aggregation = parseAggregation(input.aggregation, "input.aggregation");
    data.aggregationFunc = aggregation.func;
    data.aggregationProperty = aggregation.property;
    // the pool draws units × rate: only additive usage has units to rate
    if (meter.creditPoolId && !RATEABLE.includes(aggregation.func)) {
      throw new InvalidInputError(`a meter rated into a credit system stays ${RATEABLE.join(" or ")} (the pool draws its units at the rate)`, "input.aggregation.func");
    }
  }
  if (input.negativeValues != null || data.aggregationFunc !== undefined) {
    const aggregation = { func: (data.aggregationFunc ?? meter.aggregationFunc) as Aggregation["func"], property: null };
    const field = input.negativeValues != null ? "input.negativeValues" : "input.aggregation.func";
    data.negativeValues = checkNegativeValues(input.negativeValues ?? meter.negativeValues, aggregation, field);
    // its credits would land on its own balance, which draws nothing: the pool pays for a rated meter's usage
    if (data.negativeValues === "CREDIT" && meter.creditPoolId) throw new InvalidInputError("a meter rated into a credit system cannot turn negative values into credits", field);
  }
  const changesCounting = data.filter !== undefined || data.aggregationFunc !== undefined || (data.negativeValues !== undefined && data.negativeValues !== meter.negativeValues);
  // Written only if the meter is still what these checks read: not rated meanwhile, when it turns
  // unrateable (setCreditRate joins a meter only while it is rateable, so one of the two wins).
  const unrateable = (data.aggregationFunc !== undefined && !RATEABLE.includes(data.aggregationFunc as string)) || data.negativeValues === "CREDIT";
  const where = { id, creditSystem: false, ...(unrateable ? { creditPoolId: null } : {}) };
  const write = async (tx: Db) => {
    if (changesCounting) {
      // Under the meter's definition lock: ingestion writing events matched against the old definition has
      // committed (and is counted here), and any that comes after finds the new one.
      await lockMeterDefinitions(db, tx, [id]);
      // counted: a balance aggregated its events, or negative values on a CREDIT meter became credits (which
      // aggregate nothing, so aggCount alone misses them)
      const counted =
        (await tx.customerMeter.findFirst({ where: { meterId: id, aggCount: { not: 0n } }, select: { id: true } })) ??
        (await tx.creditGrant.findFirst({ where: { meterId: id, source: "NEGATIVE_USAGE" }, select: { id: true } }));
      if (counted) {
        const field = data.filter !== undefined ? "input.filter" : data.aggregationFunc !== undefined ? "input.aggregation" : "input.negativeValues";
        throw new ConflictError("The meter has counted events; its filter, aggregation and negativeValues can no longer change (create a new meter)", field);
      }
    }
    const { count } = await tx.meter.updateMany({ where, data });
    if (count !== 1) throw new ConflictError("The meter joined a credit system meanwhile; a rated meter stays COUNT or SUM and gives no credits back", counting ?? "input");
    return tx.meter.findUniqueOrThrow({ where: { id } });
  };
  if (!counting) return db.meter.update({ where: { id }, data });
  if (data.filter === undefined || meter.archivedAt) return db.$transaction((tx) => write(tx as unknown as Db));
  return withinLimits(db, organizationId, limits, { newMeter: false, filter: data.filter as MeterFilter, replacing: id }, write);
}

/** The aggregations a credit system can rate: the pool draws the meter's units at the rate. */
export const RATEABLE: readonly string[] = ["COUNT", "SUM"];

/**
 * A meter that may feed a pool, as a condition on its row (credit-systems.ts checkRateable says why each part
 * is refused): not a pool itself, additive, giving no credits back for negative values. setCreditRate joins a
 * meter only while its row still meets it; updateMeter leaves it only on a meter not rated yet.
 */
export const RATEABLE_ROW = { creditSystem: false, aggregationFunc: { in: [...RATEABLE] }, negativeValues: { not: "CREDIT" } };

/** Archived meters keep their balances but count no new events. */
export async function archiveMeter(db: Db, organizationId: string, id: string): Promise<Meter> {
  const meter = await requireMeter(db, organizationId, id, "id");
  if (meter.archivedAt) return meter;
  // Ingestion that matched events against it before commits first; any after finds it archived.
  return db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    await lockMeterDefinitions(db, tx, [id]);
    await tx.meter.updateMany({ where: { id, archivedAt: null }, data: { archivedAt: new Date() } });
    return tx.meter.findUniqueOrThrow({ where: { id } });
  });
}

export function toActiveMeter(meter: Pick<Meter, "id" | "filter" | "aggregationFunc" | "aggregationProperty" | "negativeValues" | "creditPoolId">): ActiveMeter {
  return {
    id: meter.id,
    filter: meter.filter as unknown as MeterFilter,
    aggregation: { func: meter.aggregationFunc as Aggregation["func"], property: meter.aggregationProperty },
    negativeValues: meter.negativeValues === "CREDIT" ? "CREDIT" : "REJECT",
    rated: meter.creditPoolId !== null,
    poolMeterId: meter.creditPoolId,
  };
}

/** The organization's meters that count new events. */
export async function activeMeters(db: Pick<Db, "meter">, organizationId: string): Promise<ActiveMeter[]> {
  const meters = await db.meter.findMany({
    where: { organizationId, archivedAt: null },
    select: { id: true, filter: true, aggregationFunc: true, aggregationProperty: true, negativeValues: true, creditPoolId: true },
    orderBy: { id: "asc" },
  });
  return meters.map(toActiveMeter);
}
