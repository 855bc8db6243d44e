// Two server processes behind one PostgreSQL and one Redis, as several nodes behind a load balancer run:
// a subscriber on node A hears of usage ingested on node B, and both nodes ingesting and authorizing for
// the same customer at once end with an exact balance and no errors. Needs TEST_DATABASE_URL (PostgreSQL)
// and REDIS_URL (npm run test:postgres, or CI's second pass); skipped on the SQLite pass.
import { createClient } from "graphql-ws";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomerMeterUpdated } from "./documents.ts";
import { freshDatabase, subscription } from "./support/app.ts";
import { gql, startServer } from "./support/process.ts";

const enabled = /^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? "") && !!process.env.REDIS_URL;
const ADMIN = "multinode-admin-token-0123456789";

let nodes: { url: string; stop(): Promise<number | null> }[] = [];
let drop: (() => Promise<void>) | undefined;
const dir = mkdtempSync(path.join(tmpdir(), "credits-multinode-"));

beforeAll(async () => {
  if (!enabled) return;
  const database = await freshDatabase(dir);
  drop = database.drop;
  // Both nodes start at once on an empty database: migrations and the admin bootstrap must not collide.
  const env = { DATABASE_URL: database.url, REDIS_URL: process.env.REDIS_URL!, ADMIN_TOKEN: ADMIN, LOG_LEVEL: "info", SCHEDULER_INTERVAL_MS: "60000" };
  const started = [startServer(env), startServer(env)];
  const urls = await Promise.all(started.map((s) => s.ready));
  nodes = started.map((s, i) => ({ url: urls[i], stop: s.stop }));
}, 60_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await drop?.();
  rmSync(dir, { recursive: true, force: true });
});

async function ok<T = any>(url: string, query: string, variables?: object): Promise<T> {
  const result = await gql(url, ADMIN, query, variables);
  if (result.errors?.length) throw new Error(`GraphQL errors from ${url}: ${JSON.stringify(result.errors)}`);
  return result.data as T;
}

const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { __typename ... on IngestSummary { inserted } ... on Error { code message } } }`;
const AUTHORIZE = `mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) { __typename ... on UsageAuthorization { allowed balance } ... on Error { code message } } }`;
const BALANCE = `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance consumedUnits version } }`;

describe.skipIf(!enabled)("two nodes on PostgreSQL + Redis", () => {
  let customerId: string;
  let meterId: string;

  beforeAll(async () => {
    const [a] = nodes;
    customerId = (await ok(a.url, `mutation { createCustomer(input: { email: "mn@example.com" }) { ... on Customer { id } } }`)).createCustomer.id;
    meterId = (
      await ok(a.url, `mutation { createMeter(input: { name: "calls", filter: { conjunction: AND, clauses: [{ property: "name", operator: EQ, value: "call" }] }, aggregation: { func: COUNT } }) { ... on Meter { id } } }`)
    ).createMeter.id;
    await ok(a.url, `mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename } }`, { input: { customerId, meterId, units: "300" } });
  });

  it("a subscriber on node A receives the balance after usage ingested on node B", async () => {
    const [a, b] = nodes;
    const client = createClient({ url: a.url.replace("http", "ws"), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${ADMIN}` }, retryAttempts: 0 });
    const sub = subscription(client, CustomerMeterUpdated, { customerId, meterId });
    try {
      // The subscription is live once a push arrives: ingest on B until one does (each try is a real event).
      let message;
      for (let attempt = 0; attempt < 20 && !message; attempt++) {
        expect((await ok(b.url, INGEST, { events: [{ name: "call", customerId }] })).ingestEvents).toEqual({ __typename: "IngestSummary", inserted: 1 });
        message = await sub.next(500).catch(() => undefined);
      }
      expect(message?.data?.customerMeterUpdated).toBeDefined();
      while (sub.pending()) message = await sub.next();
      // the last message equals what node B stores
      const stored = (await ok(b.url, BALANCE, { c: customerId, m: meterId })).customerMeter;
      expect(message!.data!.customerMeterUpdated).toMatchObject({ balance: stored.balance, version: stored.version });

      // one more event on B arrives on A, carrying the new balance
      await ok(b.url, INGEST, { events: [{ name: "call", customerId }] });
      const next = await sub.next(5000);
      expect(next.data?.customerMeterUpdated.balance).toBe(String(Number(stored.balance) - 1));
    } finally {
      sub.close();
      await client.dispose();
    }
  });

  it("both nodes ingesting and authorizing for one customer at once: exact balance, no errors, never authorized below zero", async () => {
    const before = (await ok(nodes[0].url, BALANCE, { c: customerId, m: meterId })).customerMeter;
    const WORKERS = 8;
    const ROUNDS = 15;
    let events = 0;
    let allowed = 0;
    const worker = async (url: string, w: number) => {
      for (let i = 0; i < ROUNDS; i++) {
        const ingest = (await ok(url, INGEST, { events: [{ name: "call", customerId, externalId: `${url}-${w}-${i}` }] })).ingestEvents;
        expect(ingest).toEqual({ __typename: "IngestSummary", inserted: 1 });
        events++;
        const answer = (await ok(url, AUTHORIZE, { input: { customerId, meterId, units: "1" } })).authorizeUsage;
        expect(answer.__typename).toBe("UsageAuthorization");
        if (answer.allowed) {
          allowed++;
          expect(Number(answer.balance)).toBeGreaterThanOrEqual(0);
        }
      }
    };
    await Promise.all(nodes.flatMap((n) => Array.from({ length: WORKERS }, (_, w) => worker(n.url, w))));
    expect(events).toBe(2 * WORKERS * ROUNDS);
    const [onA, onB] = await Promise.all(nodes.map(async (n) => (await ok(n.url, BALANCE, { c: customerId, m: meterId })).customerMeter));
    expect(onA).toEqual(onB);
    expect(Number(onA.balance)).toBe(Number(before.balance) - events - allowed);
    expect(Number(onA.consumedUnits)).toBe(Number(before.consumedUnits) + events + allowed);
    expect(allowed).toBeGreaterThan(0);
  }, 120_000);
});
