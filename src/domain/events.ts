// Reading events back: a cursor-paged list filtered by customer, name, time range and meter.
import type { Db } from "../db/client.ts";
import type { Event } from "../generated/prisma-postgresql/client.ts";
import { InvalidInputError, NotFoundError } from "./errors.ts";
import { LikeIndex, worthIndexing } from "./like-index.ts";
import { filterMatches, type EventLike } from "./meter-filter.ts";
import { toActiveMeter } from "./meters.ts";

export interface EventFilter {
  customerId?: string;
  meterId?: string;
  name?: string;
  from?: Date;
  to?: Date;
}

export interface Page {
  /** Within 0…MAX_EVENTS_PAGE_SIZE: the schema's pagination rule refuses anything else before this runs. */
  first: number;
  after?: string;
}

/** Events are small flat rows read in bulk (exports), so their list allows larger pages than the others. */
export const MAX_EVENTS_PAGE_SIZE = 500;
/** A meter filter is evaluated here, not in SQL: a page stops scanning after this many events. */
const MAX_SCANNED = 20_000;
/** Events read per statement while a meter filter is scanned. */
const SCAN_BATCH = 1000;

const encodeCursor = (e: Pick<Event, "timestamp" | "id">) => Buffer.from(`${e.timestamp.toISOString()}|${e.id}`).toString("base64url");

function decodeCursor(cursor: string): { timestamp: Date; id: string } {
  const [iso, id] = Buffer.from(cursor, "base64url").toString().split("|");
  const timestamp = new Date(iso);
  if (!id || Number.isNaN(timestamp.getTime())) throw new InvalidInputError("is not a cursor from this list", "after");
  return { timestamp, id };
}

export async function listEvents(db: Db, organizationId: string, filter: EventFilter, page: Page) {
  const first = page.first;
  let matches: ((e: EventLike) => boolean) | null = null;
  if (filter.meterId) {
    const meter = await db.meter.findFirst({ where: { id: filter.meterId, organizationId } });
    if (!meter) throw new NotFoundError("No such meter", "meterId");
    const active = toActiveMeter(meter);
    // Many LIKE clauses: each event's text is scanned once for all of them (src/domain/like-index.ts), as
    // ingestion does, when a page scanning its most events would pay for the index. Testing each clause with
    // `includes` cost 9 s of CPU for one page (100 clauses, 19,000 events of 1,000 characters); 0.7 s now.
    const likes = worthIndexing(MAX_SCANNED, [active.filter]) ? new LikeIndex([active.filter]) : null;
    matches = likes ? (e) => filterMatches(active.filter, e, likes.forEvent()) : (e) => filterMatches(active.filter, e);
  }
  const where = {
    organizationId,
    ...(filter.customerId ? { customerId: filter.customerId } : {}),
    ...(filter.name ? { name: filter.name } : {}),
    ...(filter.from || filter.to ? { timestamp: { ...(filter.from ? { gte: filter.from } : {}), ...(filter.to ? { lt: filter.to } : {}) } } : {}),
  };
  let position = page.after ? decodeCursor(page.after) : null;
  const found: Event[] = [];
  let scanned = 0;
  let exhausted = false;
  let lastScanned: Event | null = null;
  while (found.length <= first && !exhausted && scanned < MAX_SCANNED) {
    const take = matches ? SCAN_BATCH : first + 1;
    const batch = await db.event.findMany({
      where: position ? { AND: [where, { OR: [{ timestamp: { gt: position.timestamp } }, { timestamp: position.timestamp, id: { gt: position.id } }] }] } : where,
      orderBy: [{ timestamp: "asc" }, { id: "asc" }],
      take,
    });
    exhausted = batch.length < take;
    for (const e of batch) {
      scanned++;
      lastScanned = e;
      if (!matches || matches({ name: e.name, metadata: e.metadata as EventLike["metadata"] })) found.push(e);
      if (found.length > first) break;
    }
    if (lastScanned) position = { timestamp: lastScanned.timestamp, id: lastScanned.id };
  }
  const nodes = found.slice(0, first);
  const hasNextPage = found.length > first || (!exhausted && scanned >= MAX_SCANNED);
  const edges = nodes.map((node) => ({ cursor: encodeCursor(node), node }));
  // When the scan limit ends a page early, continue after the last event scanned, not the last one returned.
  const endCursor = found.length <= first && hasNextPage && lastScanned ? encodeCursor(lastScanned) : (edges.at(-1)?.cursor ?? null);
  return { edges, pageInfo: { hasNextPage, hasPreviousPage: Boolean(page.after), startCursor: edges[0]?.cursor ?? null, endCursor } };
}
