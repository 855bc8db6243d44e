// Authorization benchmark: how many authorizeUsage calls per second the service answers through GraphQL over
// real HTTP with many concurrent clients on one credits-only balance, and proof that none of them overdraws it.
//
//   npx tsx bench/authorize.ts                      (npm run bench:authorize)
//   CLIENTS=64 REQUESTS=200 CREDITS=5000 npx tsx bench/authorize.ts
//   DATABASE_URL=postgresql://… npx tsx bench/authorize.ts --customers 16
//
// Options (flag or environment variable): CLIENTS (64 concurrent clients), REQUESTS (100 authorizations of
// 1 unit per client), CREDITS (half of CLIENTS × REQUESTS, so half are allowed and half refused), CUSTOMERS
// (1: every client on the same balance, the contended case; more spreads clients over customers, each with
// CREDITS), DATABASE_URL (default: a fresh SQLite file in a temp dir; a postgresql:// URL must point at an
// empty or migratable database), CPU_PROFILE (a file to write a V8 CPU profile of phase A to; the bench
// process holds both the server and the clients).
//
// Phases, each timed on its own at the same concurrency:
//   A  authorizeUsage: CLIENTS clients, each sending REQUESTS calls one after another
//   B  baseline: the same number of authenticated customerMeter reads over the same HTTP stack (what GraphQL,
//      auth and the database cost without a write)
//   C  floor: the same number of raw conditional UPDATEs (balance = balance − 1 WHERE balance ≥ 1) through the
//      same Prisma client, without HTTP, GraphQL, ledger or grants
// Checks (any failure exits 1): exactly min(CREDITS, calls) allowed per customer, balance = CREDITS − allowed
// and never negative, one USAGE ledger entry per allowed call, grants' remaining units sum to the balance.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createPrisma, providerOfDb, type Db } from "../src/db/client.ts";
import { migrateDeploy } from "../src/db/migrate.ts";
import { createOrganization } from "../src/domain/organizations.ts";
import { createLogger } from "../src/log.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp, type App } from "../src/server.ts";
import type { Limits } from "../src/limits.ts";

// The benchmarks measure throughput from one token: lift the per-client rate and concurrency limits.
const UNTHROTTLED: Partial<Limits> = { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000, concurrencyPerClient: 100_000, queuePerClient: 100_000 };
import { graphqlClient, intOption, millis, option, percentile, pool, seconds, startCpuProfile, thousands, withTimeout } from "./support.ts";

const OVERALL_TIMEOUT_MS = 15 * 60_000;

class BenchFailure extends Error {}

const config = (() => {
  const clients = intOption("CLIENTS", 64, 1, 10_000);
  const requests = intOption("REQUESTS", 100, 1, 1_000_000);
  return {
    clients,
    requests,
    customers: intOption("CUSTOMERS", 1, 1, clients),
    credits: intOption("CREDITS", Math.max(1, Math.floor((clients * requests) / 2)), 1, 1_000_000_000),
    databaseUrl: option("DATABASE_URL"),
    cpuProfile: option("CPU_PROFILE"),
  };
})();

const AUTHORIZE = `mutation($input: AuthorizeUsageInput!) {
  authorizeUsage(input: $input) { __typename ... on UsageAuthorization { allowed code } ... on Error { code message } }
}`;
const READ = `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance availableUnits } }`;

interface Phase {
  ms: number;
  latencies: number[];
}

/** CLIENTS workers, each making REQUESTS calls in sequence; worker w works for customer w mod CUSTOMERS. */
async function clients(call: (worker: number) => Promise<void>): Promise<Phase> {
  const latencies: number[] = [];
  const start = performance.now();
  await pool(config.clients, config.clients, async (w) => {
    for (let i = 0; i < config.requests; i++) {
      const s = performance.now();
      await call(w);
      latencies.push(performance.now() - s);
    }
  });
  return { ms: performance.now() - start, latencies };
}

const rate = (p: Phase) => (p.latencies.length / p.ms) * 1000;
const describe = (p: Phase) =>
  `${thousands(rate(p))}/s (${p.latencies.length} calls in ${seconds(p.ms)} s; latency p50 ${millis(percentile(p.latencies, 50))} ms, p99 ${millis(percentile(p.latencies, 99))} ms)`;

async function main(): Promise<number> {
  const tempDir = mkdtempSync(path.join(tmpdir(), "credits-bench-"));
  const databaseUrl = config.databaseUrl ?? `file:${path.join(tempDir, "service.db")}`;
  const engine = /^postgres(ql)?:\/\//.test(databaseUrl) ? "PostgreSQL" : "SQLite";
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => rmSync(tempDir, { recursive: true, force: true })];
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  try {
    console.log(
      `parameters: clients=${config.clients} requests/client=${config.requests} customers=${config.customers} credits/customer=${config.credits} ` +
        `engine=${engine}${config.databaseUrl ? "" : " (temp file)"} NODE_ENV=${process.env.NODE_ENV ?? "(unset)"}`,
    );
    await migrateDeploy(databaseUrl);
    const db: Db = await createPrisma(databaseUrl);
    cleanups.unshift(() => db.$disconnect());
    const { pubsub, close: closePubSub } = createAppPubSub(undefined);
    cleanups.unshift(closePubSub);
    const app: App = createApp({ db, pubsub, log: createLogger("silent"), limits: UNTHROTTLED });
    const port = await app.listen(0, "127.0.0.1");
    cleanups.unshift(() => app.close());
    const { token } = await createOrganization(db, "Benchmark organization");
    const gql = graphqlClient(`http://127.0.0.1:${port}/graphql`, token);

    // --- setup over HTTP: one credits-only meter, customers with CREDITS each ---
    const { createMeter } = await gql.request<{ createMeter: { id: string } }>(
      `mutation { createMeter(input: { name: "api_calls", filter: { conjunction: AND, clauses: [{ property: "name", operator: EQ, value: "api_call" }] }, aggregation: { func: COUNT } }) { ... on Meter { id } } }`,
    );
    const meterId = createMeter.id;
    const customerIds: string[] = [];
    for (let i = 0; i < config.customers; i++) {
      const { createCustomer } = await gql.request<{ createCustomer: { id: string } }>(
        `mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { ... on Customer { id } } }`,
        { input: { email: `c${i}@bench.example`, externalId: `c${i}` } },
      );
      customerIds.push(createCustomer.id);
      await gql.request(`mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename } }`, {
        input: { customerId: createCustomer.id, meterId, units: String(config.credits) },
      });
    }
    const customerOf = (worker: number) => customerIds[worker % config.customers];

    // --- phase A: authorizations ---
    log(`phase A: ${config.clients} clients × ${config.requests} authorizeUsage(1)`);
    const allowed = new Map<string, number>(customerIds.map((c) => [c, 0]));
    let refused = 0;
    const bodies = customerIds.map((c) => JSON.stringify({ query: AUTHORIZE, variables: { input: { customerId: c, meterId, units: "1" } } }));
    const profiler = config.cpuProfile ? await startCpuProfile() : null;
    const phaseA = await clients(async (w) => {
      const c = customerOf(w);
      const answer = JSON.parse(await gql.post(bodies[w % config.customers])).data?.authorizeUsage;
      if (answer?.__typename !== "UsageAuthorization") throw new BenchFailure(`unexpected answer: ${JSON.stringify(answer)}`);
      if (answer.allowed) allowed.set(c, allowed.get(c)! + 1);
      else if (answer.code === "INSUFFICIENT_CREDITS") refused++;
      else throw new BenchFailure(`refused without INSUFFICIENT_CREDITS: ${JSON.stringify(answer)}`);
    });

    if (profiler) log(`phase A CPU profile written to ${await profiler.stop(config.cpuProfile!)}`);

    // --- checks: exact counts, no overdraft, ledger and grants agree ---
    const callsPerCustomer = (c: string) => Array.from({ length: config.clients }, (_, w) => w).filter((w) => customerOf(w) === c).length * config.requests;
    for (const c of customerIds) {
      const expectedAllowed = Math.min(config.credits, callsPerCustomer(c));
      const row = await db.customerMeter.findUniqueOrThrow({ where: { customerId_meterId: { customerId: c, meterId } } });
      const usage = await db.ledgerEntry.count({ where: { customerId: c, meterId, kind: "USAGE" } });
      const grants = await db.creditGrant.aggregate({ where: { customerId: c, meterId }, _sum: { remainingUnits: true } });
      const expectedBalance = BigInt(config.credits - expectedAllowed) * 1_000_000n;
      if (allowed.get(c) !== expectedAllowed) throw new BenchFailure(`customer ${c}: ${allowed.get(c)} allowed, expected exactly ${expectedAllowed}`);
      if (row.balance !== expectedBalance || row.balance < 0n) throw new BenchFailure(`customer ${c}: balance ${row.balance} µunits, expected ${expectedBalance}`);
      if (usage !== expectedAllowed) throw new BenchFailure(`customer ${c}: ${usage} USAGE ledger entries, expected ${expectedAllowed}`);
      if (grants._sum.remainingUnits !== row.balance) throw new BenchFailure(`customer ${c}: grants hold ${grants._sum.remainingUnits}, balance ${row.balance}`);
    }
    const totalAllowed = [...allowed.values()].reduce((a, b) => a + b, 0);

    // --- phase B: the same stack answering reads ---
    log("phase B: authenticated customerMeter reads at the same concurrency");
    const reads = customerIds.map((c) => JSON.stringify({ query: READ, variables: { c, m: meterId } }));
    const phaseB = await clients(async (w) => {
      const text = await gql.post(reads[w % config.customers]);
      if (!text.includes('"balance"')) throw new BenchFailure(`read failed: ${text.slice(0, 300)}`);
    });

    // --- phase C: raw conditional UPDATEs on a scratch table ---
    log("phase C: raw conditional UPDATE floor");
    await db.$executeRawUnsafe(`CREATE TABLE "BenchCounter" ("id" INTEGER PRIMARY KEY, "balance" BIGINT NOT NULL)`);
    cleanups.unshift(() => db.$executeRawUnsafe(`DROP TABLE IF EXISTS "BenchCounter"`));
    await db.$executeRawUnsafe(`INSERT INTO "BenchCounter" ("id", "balance") VALUES (1, ${config.credits})`);
    const p = providerOfDb(db) === "postgresql" ? "$1" : "?";
    let rawAllowed = 0;
    const phaseC = await clients(async () => {
      const n = await db.$executeRawUnsafe(`UPDATE "BenchCounter" SET "balance" = "balance" - 1 WHERE "id" = 1 AND "balance" >= ${p}`, 1);
      rawAllowed += n;
    });
    if (rawAllowed !== Math.min(config.credits, config.clients * config.requests)) throw new BenchFailure(`raw floor allowed ${rawAllowed}`);

    console.log(`authorizeUsage       ${describe(phaseA)}`);
    console.log(`  allowed ${thousands(totalAllowed)}, refused ${thousands(refused)} (INSUFFICIENT_CREDITS); every balance exact, none below zero: zero overdraft`);
    console.log(`baseline reads       ${describe(phaseB)}`);
    console.log(`raw UPDATE floor     ${describe(phaseC)}`);
    console.log(`ratios               authorize/read ${(rate(phaseA) / rate(phaseB)).toFixed(2)}×, authorize/raw ${(rate(phaseA) / rate(phaseC)).toFixed(2)}×`);
    return 0;
  } catch (err) {
    console.error(err instanceof BenchFailure ? `bench: FAILED: ${err.message}` : err);
    return 1;
  } finally {
    for (const c of cleanups) await Promise.resolve(c()).catch(() => {});
  }
}

const code = await withTimeout(main(), OVERALL_TIMEOUT_MS, "authorize benchmark");
process.exit(code);
