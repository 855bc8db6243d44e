// What `npm run bench` sends: the meters, deterministic usage events over many customers × 3 meters, and the
// books the run must end with (consumed micro-units per customer and meter, from acknowledged events only).
import { randomInt, seededRandom } from "./support.ts";

export const UNIT_SCALE = 1_000_000n; // the API's 6 decimals

export type UsageMeter = "requests" | "tokens" | "storage";
export const USAGE_METERS: UsageMeter[] = ["requests", "tokens", "storage"];

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
  meter: UsageMeter;
  /** what the event adds to its meter in micro-units (COUNT one unit; SUM the value; MAX the value) */
  micro: bigint;
}

/** Deterministic events (same seed, same events), 100 ms apart from a fixed instant in the past. */
export function generateEvents(count: number, customers: number, seed: number, idPrefix = "e"): BenchEvent[] {
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
      events[i] = { name: "api.request", customer, externalId, timestamp, metadata: { route: routes[randomInt(random, routes.length)], status: 200 }, meter: "requests", micro: UNIT_SCALE };
    } else if (r < 0.9) {
      const tokens = 1 + randomInt(random, 2000);
      events[i] = { name: "llm.completion", customer, externalId, timestamp, metadata: { tokens, model: "m1" }, meter: "tokens", micro: BigInt(tokens) * UNIT_SCALE };
    } else {
      // cents / 100 prints with at most 2 decimals, so the JSON number is exact; the expected value comes from the integer.
      const cents = randomInt(random, 100_001);
      events[i] = { name: "storage.sample", customer, externalId, timestamp, metadata: { gb: cents / 100 }, meter: "storage", micro: BigInt(cents) * 10n ** 4n };
    }
  }
  return events;
}

export function eventInput(e: BenchEvent) {
  return { name: e.name, externalCustomerId: `c${e.customer}`, externalId: e.externalId, timestamp: e.timestamp, metadata: e.metadata };
}

/** The books: what every (customer, usage meter) balance must show, from the events the service acknowledged. */
export class Books {
  private consumed = new Map<string, bigint>();
  acknowledged = 0;

  add(e: BenchEvent): void {
    const key = `${e.customer}:${e.meter}`;
    const was = this.consumed.get(key) ?? 0n;
    this.consumed.set(key, e.meter === "storage" ? (e.micro > was ? e.micro : was) : was + e.micro);
    this.acknowledged++;
  }

  expected(customer: number, meter: UsageMeter): bigint {
    return this.consumed.get(`${customer}:${meter}`) ?? 0n;
  }
}
