// Batch ingestion in `npm run bench`: `events` events in calls of `batch` over `customers` customers × 3
// meters, `ingestConnections` calls in flight (autocannon), then the raw-driver floor writing the same rows.
import type { Context } from "./context.ts";
import { BenchFailure, inTurn, load, type Load } from "./harness.ts";
import { postgresFloor, sqliteFloor, type FloorResult } from "./floor-raw.ts";
import { orderedId } from "../src/domain/ids.ts";
import { eventInput, generateEvents, type BenchEvent } from "./workload.ts";

const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { ... on IngestSummary { inserted duplicates } ... on Error { code message } } }`;

export interface IngestResult {
  load: Load;
  eventsPerSecond: number;
  floor: FloorResult & { eventsPerSecond: number };
}

/** `afterCalls` runs once the service has answered every call, before the floor (e.g. to read its memory). */
export async function batchIngest(ctx: Context, afterCalls: () => void = () => {}): Promise<IngestResult> {
  const o = ctx.options;
  const { events, load: result } = await ingestCalls(ctx, "e");
  afterCalls();
  // The floor's own tables: any organization id of the service's shape does (the API does not show it).
  const organizationId = orderedId();
  const { customerIds, meterIds } = ctx.seeded;
  const floor =
    o.engine === "postgresql"
      ? await postgresFloor(ctx.databaseUrl, o.ingestConnections, organizationId, events, o.batch, customerIds, meterIds)
      : await sqliteFloor(ctx.databaseUrl.replace(/^file:/, ""), ctx.tempDir, organizationId, events, o.batch, customerIds, meterIds);
  if (floor.events !== o.events) throw new BenchFailure(`raw floor stored ${floor.events} of ${o.events} events`);
  return { load: result, eventsPerSecond: o.events / result.seconds, floor: { ...floor, eventsPerSecond: o.events / (floor.ms / 1000) } };
}

/** The service's part of a batch ingest: `events` new events (externalIds `idPrefix`0…) in calls of `batch`. */
export async function ingestCalls(ctx: Context, idPrefix: string): Promise<{ events: BenchEvent[]; load: Load }> {
  const o = ctx.options;
  const events = generateEvents(o.events, o.customers, o.seed, idPrefix);
  const batches: { body: string; events: BenchEvent[] }[] = [];
  for (let i = 0; i < events.length; i += o.batch) {
    const slice = events.slice(i, i + o.batch);
    batches.push({ body: JSON.stringify({ query: INGEST, variables: { events: slice.map(eventInput) } }), events: slice });
  }
  let failure: string | null = null;
  const result = await load({
    url: ctx.service.url,
    token: ctx.token,
    connections: o.ingestConnections,
    amount: batches.length,
    requests: [
      inTurn(
        batches,
        (b) => b.body,
        (b, text) => {
          const r = (JSON.parse(text) as { data?: { ingestEvents?: { inserted?: number; duplicates?: number } } }).data?.ingestEvents;
          if (r?.inserted === b.events.length && r.duplicates === 0) for (const e of b.events) ctx.books.add(e);
          else failure ??= text.slice(0, 300);
        },
      ),
    ],
  });
  if (failure) throw new BenchFailure(`batch ingest ${idPrefix}: ${failure}`);
  ctx.log(`ingest: ${o.events} events in ${result.seconds.toFixed(1)} s (${Math.round(o.events / result.seconds)} events/s)`);
  return { events, load: result };
}
