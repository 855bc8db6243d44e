// Redis dies under two nodes while both ingest: no node exits, every acknowledged event is counted,
// /healthz says "degraded" meanwhile, and once Redis is back a subscriber on node A is pushed the stored
// balance, including what node B wrote while A could not hear of it. The test runs its own redis-server on a
// free port so it can kill and restart it; the nodes start before it does. Skipped without redis-server.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomerMeterUpdated } from "./documents.ts";
import { freshDatabase, subscription } from "./support/app.ts";
import { gql, startServer } from "./support/process.ts";

const hasRedisServer = spawnSync("redis-server", ["--version"]).status === 0;
const ADMIN = "outage-admin-token-0123456789abc";
/** How long Redis stays down while both nodes keep ingesting (long enough for ioredis to give up retrying). */
const OUTAGE_MS = 12_000;
const dir = mkdtempSync(path.join(tmpdir(), "credits-outage-"));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A throw-away redis-server in the foreground (so the test can kill it); resolves once it accepts connections. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      output += chunk;
      if (output.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
  });
  return child;
}

async function stopRedis(redis: ChildProcess) {
  if (redis.exitCode !== null || redis.signalCode !== null) return;
  const exited = new Promise((resolve) => redis.once("exit", resolve));
  redis.kill("SIGKILL");
  await exited;
}

async function health(url: string) {
  const res = await fetch(url.replace("/graphql", "/healthz"));
  return { http: res.status, ...((await res.json()) as { status: string; down: string[] }) };
}

/** Polls until `check` holds (bounded; nothing is asserted about how long it took). */
async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { __typename ... on IngestSummary { inserted duplicates } ... on Error { code message } } }`;
const BALANCE = `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance consumedUnits version } }`;

describe.skipIf(!hasRedisServer)("Redis outage under two nodes", () => {
  let redisPort: number;
  let redis: ChildProcess;
  let servers: ReturnType<typeof startServer>[] = [];
  let urls: string[] = [];
  let drop: (() => Promise<void>) | undefined;
  let env: Record<string, string>;
  let customerId: string;
  let meterId: string;
  const ok = async (url: string, query: string, variables?: object) => {
    const result = await gql(url, ADMIN, query, variables);
    if (result.errors?.length) throw new Error(`GraphQL errors from ${url}: ${JSON.stringify(result.errors)}`);
    return result.data;
  };

  // Both nodes start while Redis is not running yet (it is started by the first test).
  beforeAll(async () => {
    redisPort = await freePort();
    const database = await freshDatabase(dir);
    drop = database.drop;
    env = { DATABASE_URL: database.url, REDIS_URL: `redis://127.0.0.1:${redisPort}`, ADMIN_TOKEN: ADMIN, SCHEDULER_INTERVAL_MS: "60000" };
    // one after the other: on SQLite both would migrate the same file at once
    servers = [startServer(env)];
    urls = [await servers[0].ready];
    servers.push(startServer(env));
    urls.push(await servers[1].ready);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => (s.child.exitCode === null ? s.stop() : undefined)));
    if (redis) await stopRedis(redis);
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it("nodes started while Redis is down serve reads and writes and report degraded, then ok once Redis runs", async () => {
    const [a, b] = urls;
    for (const url of urls) expect(await health(url)).toEqual({ http: 200, status: "degraded", down: ["redis"], checks: { database: "ok", redis: "down" } });
    customerId = (await ok(a, `mutation { createCustomer(input: { email: "outage@example.com" }) { ... on Customer { id } } }`)).createCustomer.id;
    meterId = (
      await ok(b, `mutation { createMeter(input: { name: "calls", filter: { conjunction: AND, clauses: [{ property: "name", operator: EQ, value: "call" }] }, aggregation: { func: COUNT } }) { ... on Meter { id } } }`)
    ).createMeter.id;
    // a write that publishes (to nobody, for now)
    await ok(a, `mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename } }`, { input: { customerId, meterId, units: "100000" } });
    expect((await ok(b, BALANCE, { c: customerId, m: meterId })).customerMeter.balance).toBe("100000");

    redis = await startRedis(redisPort);
    for (const url of urls) await eventually(() => health(url), (h) => h.status === "ok", `/healthz of ${url} once Redis runs`);
    for (const s of servers) expect(s.child.exitCode).toBeNull();
  }, 60_000);

  it("no node exits, every acknowledged event counts, /healthz says degraded, subscribers get the stored balance when Redis returns", async () => {
    const [a, b] = urls;
    let acknowledged = 0;
    let streaming = false;
    let streams: Promise<void>[] = [];
    let batchNo = 0;
    const ingest = async (url: string, size: number) => {
      const batch = batchNo++;
      const events = Array.from({ length: size }, (_, i) => ({ name: "call", customerId, externalId: `b${batch}-${i}` }));
      const answer = (await ok(url, INGEST, { events })).ingestEvents;
      expect(answer).toEqual({ __typename: "IngestSummary", inserted: size, duplicates: 0 });
      acknowledged += size;
    };

    // A subscriber on node A, live once a push of an ingest on B arrives.
    const client = createClient({ url: a.replace("http", "ws"), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${ADMIN}` }, retryAttempts: 0 });
    const sub = subscription(client, CustomerMeterUpdated, { customerId, meterId });
    try {
      let first;
      for (let attempt = 0; attempt < 20 && !first; attempt++) {
        await ingest(b, 1);
        first = await sub.next(500).catch(() => undefined);
      }
      expect(first?.data?.customerMeterUpdated).toBeDefined();

      // A stream of ingests on both nodes, through the outage (paced: the machine is shared with other tests).
      const stream = async (url: string) => {
        while (streaming) {
          await ingest(url, 5);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      streaming = true;
      streams = [stream(a), stream(b)];
      await eventually(async () => acknowledged, (n) => n >= 50, "ingests before the outage");

      await stopRedis(redis);
      const killedAt = Date.now();
      const atBefore = acknowledged;
      for (const url of urls) {
        expect(await eventually(() => health(url), (h) => h.status === "degraded", `/healthz of ${url} during the outage`)).toEqual({ http: 200, status: "degraded", down: ["redis"], checks: { database: "ok", redis: "down" } });
      }
      await eventually(async () => Date.now() - killedAt, (ms) => ms >= OUTAGE_MS, "outage");
      streaming = false;
      await Promise.all(streams);
      expect(acknowledged - atBefore).toBeGreaterThan(0); // writes went on without Redis
      // A's own writes still reach its subscriber: one more on A, and the subscriber has caught up with it.
      await ingest(a, 1);
      const onA = (await ok(a, BALANCE, { c: customerId, m: meterId })).customerMeter;
      let last = first!;
      while (last.data?.customerMeterUpdated.version !== onA.version) last = await sub.next(20_000);
      // messages still queued for the subscription re-read the row when their turn comes: let them drain
      for (let m; (m = await sub.next(1000).catch(() => undefined)); ) last = m;
      // The outage's last write is B's: A's subscriber cannot hear of it while Redis is down.
      await ingest(b, 3);
      const stored = (await ok(b, BALANCE, { c: customerId, m: meterId })).customerMeter;
      expect(stored.version).toBeGreaterThan(onA.version);
      while (sub.pending()) last = await sub.next();
      expect(last.data?.customerMeterUpdated.version).toBe(onA.version);
      for (const s of servers) expect(s.child.exitCode).toBeNull();

      redis = await startRedis(redisPort);
      const outageMs = Date.now() - killedAt;
      for (const url of urls) await eventually(() => health(url), (h) => h.status === "ok", `/healthz of ${url} after the outage`);
      // Without any further write, A's subscriber is pushed the stored balance.
      while (last.data?.customerMeterUpdated.version !== stored.version) {
        last = await sub.next(20_000);
        expect(last.errors).toBeUndefined();
      }
      expect(last.data?.customerMeterUpdated).toMatchObject({ balance: stored.balance, consumedUnits: stored.consumedUnits });
      // node A's subscribers were caught up when its subscribing connection came back. The stored balance may
      // reach the subscriber first, by B's batch resent when B's connection is back: the log line is waited for.
      await eventually(async () => servers[0].output(), (out) => out.includes("redis reconnected: subscribers re-read their balances"), "node A's catch-up after the outage");

      // Every acknowledged event counts, on both nodes' reads.
      expect(stored.consumedUnits).toBe(String(acknowledged));
      expect(stored.balance).toBe(String(100_000 - acknowledged));
      expect((await ok(a, BALANCE, { c: customerId, m: meterId })).customerMeter).toEqual(stored);
      for (const s of servers) expect(s.child.exitCode).toBeNull();
      console.log(`redis outage: ${acknowledged} events acknowledged, ${acknowledged - atBefore} of them while Redis was down for ${outageMs} ms`);
    } finally {
      streaming = false;
      await Promise.allSettled(streams);
      sub.close();
      await client.dispose();
    }
  }, 120_000);
});
