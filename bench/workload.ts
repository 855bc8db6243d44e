// What `npm run bench` sends: the meters, deterministic usage events over many customers × 3 meters, and the
// books the run must end with (consumed micro-units per customer and meter, from acknowledged events only).
import { randomInt, seededRandom } from "./support.ts";

export const UNIT_SCALE = 1_000_000n; // the API's 6 decimals

export type UsageMeter = "requests" | "tokens" | "storage";
export const USAGE_METERS: UsageMeter[] = ["requests", "tokens", "storage"];
/** The rated-ingest runs' COUNT and SUM meters (bench/rated.ts): `requests` and `tokens` again, on events of their own names. */
export type RatedMeter = "ratedRequests" | "ratedTokens";
export const RATED_METERS: RatedMeter[] = ["ratedRequests", "ratedTokens"];
/** What an event counts on: a usage meter, a rated meter, or (the draws of rated meters) the credit system's pool. */
export type BookedMeter = UsageMeter | RatedMeter | "pool";

const filterOn = (event: string) => ({ conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: event }] });

/** Meter inputs by key: three usage meters for ingestion, `credits` for authorizeUsage, `holds` for reserve + commit, then fillers. */
export function meterInputs(total: number): Record<string, Record<string, unknown>> {
  const inputs: Record<string, Record<string, unknown>> = {
    requests: { name: "requests", filter: filterOn("api.request"), aggregation: { func: "COUNT" } },
    tokens: { name: "tokens", filter: filterOn("llm.completion"), aggregation: { func: "SUM", property: "tokens" } },
    storage: { name: "storage", filter: filterOn("storage.sample"), aggregation: { func: "MAX", property: "gb" } },
    credits: { name: "credits", filter: filterOn("bench.authorize"), aggregation: { func: "COUNT" } },
    holds: { name: "holds", filter: filterOn("bench.reserve"), aggregation: { func: "COUNT" } },
  };
  for (let i = Object.keys(inputs).length; i < total; i++) inputs[`extra${i}`] = { name: `extra${i}`, filter: filterOn(`bench.extra${i}`), aggregation: { func: "COUNT" } };
  return inputs;
}

export interface BenchEvent {
  name: string;
  customer: number;
  externalId: string;
  timestamp: string;
  metadata: Record<string, string | number>;
  meter: UsageMeter | RatedMeter;
  /** what the event adds to its meter in micro-units (COUNT one unit; SUM the value; MAX the value) */
  micro: bigint;
}

/** The rated meters' inputs: the same aggregations as `requests` and `tokens`, on the names `generateEvents` gives rated events. */
export const RATED_METER_INPUTS: Record<RatedMeter, Record<string, unknown>> = {
  ratedRequests: { name: "rated requests", filter: filterOn("api.request.rated"), aggregation: { func: "COUNT" } },
  ratedTokens: { name: "rated tokens", filter: filterOn("llm.completion.rated"), aggregation: { func: "SUM", property: "tokens" } },
};

/**
 * Deterministic events (same seed, same events), 100 ms apart from a fixed instant in the past. `rated`: the
 * same mix, with the `requests` and `tokens` events renamed to count on the rated meters instead (storage
 * samples unchanged), so a rated run has the shape of a plain one: one meter per event, the same values.
 */
export function generateEvents(count: number, customers: number, seed: number, idPrefix = "e", rated = false): BenchEvent[] {
  const random = seededRandom(seed);
  const start = Date.parse("2025-01-01T00:00:00.000Z");
  const routes = ["/v1/items", "/v1/orders", "/v1/search", "/v1/users"];
  const events: BenchEvent[] = Array.from({ length: count });
  for (let i = 0; i < count; i++) {
    const customer = randomInt(random, customers);
    const r = random();
    const timestamp = new Date(start + i * 100).toISOString();
    const externalId = `${idPrefix}${i}`;
    if (r < 0.6) {
      const metadata = { route: routes[randomInt(random, routes.length)], status: 200 };
      events[i] = rated
        ? { name: "api.request.rated", customer, externalId, timestamp, metadata, meter: "ratedRequests", micro: UNIT_SCALE }
        : { name: "api.request", customer, externalId, timestamp, metadata, meter: "requests", micro: UNIT_SCALE };
    } else if (r < 0.9) {
      const tokens = 1 + randomInt(random, 2000);
      const metadata = { tokens, model: "m1" };
      const micro = BigInt(tokens) * UNIT_SCALE;
      events[i] = rated
        ? { name: "llm.completion.rated", customer, externalId, timestamp, metadata, meter: "ratedTokens", micro }
        : { name: "llm.completion", customer, externalId, timestamp, metadata, meter: "tokens", micro };
    } else {
      // cents / 100 prints with at most 2 decimals, so the JSON number is exact; the expected value comes from the integer.
      const cents = randomInt(random, 100_001);
      events[i] = { name: "storage.sample", customer, externalId, timestamp, metadata: { gb: cents / 100 }, meter: "storage", micro: BigInt(cents) * 10n ** 4n };
    }
  }
  return events;
}

/** The event as the API takes it; `customerPrefix` names the customers (`c0`…, or the warm-up customers' `warm0`…). */
export function eventInput(e: BenchEvent, customerPrefix = "c") {
  return { name: e.name, externalCustomerId: `${customerPrefix}${e.customer}`, externalId: e.externalId, timestamp: e.timestamp, metadata: e.metadata };
}

/** Micro-credits `micro` units draw at `perUnit` micro-credits per unit: rounded half away from zero, per event (values are ≥ 0). */
const drawOf = (micro: bigint, perUnit: bigint) => (2n * micro * perUnit + UNIT_SCALE) / (2n * UNIT_SCALE);

/**
 * The books: what every (customer, meter) balance must show, from the events the service acknowledged: the
 * usage meters, and once `rate` was called the rated meters and the pool they draw from (each event's draw
 * rounded on its own, as the service must).
 */
export class Books {
  private consumed = new Map<string, bigint>();
  private rates = new Map<BookedMeter, bigint>();
  acknowledged = 0;
  /** the meters the books check */
  readonly meters: BookedMeter[] = [...USAGE_METERS];

  /** From now on `meter`'s events draw `perUnit` micro-credits per unit from the pool (all at one rate). */
  rate(meter: RatedMeter, perUnit: bigint): void {
    this.rates.set(meter, perUnit);
    for (const m of [meter, "pool"] as const) if (!this.meters.includes(m)) this.meters.push(m);
  }

  add(e: BenchEvent): void {
    const key = `${e.customer}:${e.meter}`;
    const was = this.consumed.get(key) ?? 0n;
    this.consumed.set(key, e.meter === "storage" ? (e.micro > was ? e.micro : was) : was + e.micro);
    const perUnit = this.rates.get(e.meter);
    if (perUnit !== undefined) {
      const pool = `${e.customer}:pool`;
      this.consumed.set(pool, (this.consumed.get(pool) ?? 0n) + drawOf(e.micro, perUnit));
    }
    this.acknowledged++;
  }

  expected(customer: number, meter: BookedMeter): bigint {
    return this.consumed.get(`${customer}:${meter}`) ?? 0n;
  }
}
