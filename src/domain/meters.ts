// Meters: what usage counts and how. A meter's filter and aggregation are fixed once it has counted events.
import type { Db } from "../db/client.ts";
import type { Meter } from "../generated/prisma-postgresql/client.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "./errors.ts";
import { parseAggregation, parseMeterFilter, type Aggregation, type MeterFilter } from "./meter-filter.ts";

export interface MeterInput {
  name: string;
  filter: unknown;
  aggregation: { func: string; property?: string | null };
}

/** A meter ready for matching events. */
export interface ActiveMeter {
  id: string;
  filter: MeterFilter;
  aggregation: Aggregation;
}

function checkName(name: string, field: string): string {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 200) throw new InvalidInputError("must be 1 to 200 characters", field);
  return trimmed;
}

export async function createMeter(db: Db, organizationId: string, input: MeterInput): Promise<Meter> {
  const name = checkName(input.name, "input.name");
  const filter = parseMeterFilter(input.filter, "input.filter");
  const aggregation = parseAggregation(input.aggregation, "input.aggregation");
  return db.meter.create({
    data: { organizationId, name, filter: filter as object, aggregationFunc: aggregation.func, aggregationProperty: aggregation.property },
  });
}

export async function requireMeter(db: Db, organizationId: string, id: string, field: string): Promise<Meter> {
  const meter = await db.meter.findFirst({ where: { id, organizationId } });
  if (!meter) throw new NotFoundError("No such meter", field);
  return meter;
}

/** Rename always; change filter or aggregation only while the meter has counted nothing. */
export async function updateMeter(db: Db, organizationId: string, id: string, input: Partial<MeterInput>): Promise<Meter> {
  await requireMeter(db, organizationId, id, "id");
  const data: Record<string, unknown> = {};
  if (input.name != null) data.name = checkName(input.name, "input.name");
  if (input.filter != null) data.filter = parseMeterFilter(input.filter, "input.filter");
  if (input.aggregation != null) {
    const aggregation = parseAggregation(input.aggregation, "input.aggregation");
    data.aggregationFunc = aggregation.func;
    data.aggregationProperty = aggregation.property;
  }
  if (data.filter !== undefined || data.aggregationFunc !== undefined) {
    const counted = await db.customerMeter.findFirst({ where: { meterId: id, aggCount: { not: 0n } }, select: { id: true } });
    if (counted) {
      throw new ConflictError("The meter has counted events; its filter and aggregation can no longer change (create a new meter)", data.filter !== undefined ? "input.filter" : "input.aggregation");
    }
  }
  return db.meter.update({ where: { id }, data });
}

/** Archived meters keep their balances but count no new events. */
export async function archiveMeter(db: Db, organizationId: string, id: string): Promise<Meter> {
  const meter = await requireMeter(db, organizationId, id, "id");
  if (meter.archivedAt) return meter;
  return db.meter.update({ where: { id }, data: { archivedAt: new Date() } });
}

export function toActiveMeter(meter: Pick<Meter, "id" | "filter" | "aggregationFunc" | "aggregationProperty">): ActiveMeter {
  return {
    id: meter.id,
    filter: meter.filter as unknown as MeterFilter,
    aggregation: { func: meter.aggregationFunc as Aggregation["func"], property: meter.aggregationProperty },
  };
}

/** The organization's meters that count new events. */
export async function activeMeters(db: Pick<Db, "meter">, organizationId: string): Promise<ActiveMeter[]> {
  const meters = await db.meter.findMany({
    where: { organizationId, archivedAt: null },
    select: { id: true, filter: true, aggregationFunc: true, aggregationProperty: true },
    orderBy: { id: "asc" },
  });
  return meters.map(toActiveMeter);
}
