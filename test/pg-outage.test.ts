// PostgreSQL ends the node's connections (pg_terminate_backend, as a failover, a restart or an administrator
// does) while ingest calls are in flight: the node answers every call (an error or its summary), stays up, and
// once the connections are back, every call retried with its events' externalIds counts each event once.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { print } from "graphql";
import { afterAll, describe, expect, it } from "vitest";
import { CreateCustomer, CreateMeter, GetCustomerMeter, GrantCredits, IngestEvents } from "./documents.ts";
import { freshDatabase, startTestApp } from "./support/app.ts";
import { startPgProxy } from "./support/pg-proxy.ts";
import { createPrisma } from "../src/db/client.ts";
import { authorizeUsage, reserveUsage } from "../src/domain/authorization.ts";
import { ingestEvents } from "../src/domain/ingestion.ts";
import { holdWriter } from "../src/domain/writer.ts";
import { customer, grant, meter, named } from "./support/fixtures.ts";
import { gql, startServer } from "./support/process.ts";

const ADMIN = "pg-outage-admin-token-0123456789";
const dir = mkdtempSync(path.join(tmpdir(), "credits-pg-outage-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!/^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? ""))("PostgreSQL ends the node's connections", () => {
  it("during ingest: the node stays up, answers every call, and every event retried with its externalId counts once", async () => {
    const database = await freshDatabase(dir);
    const { default: pg } = await import("pg");
    const env = { DATABASE_URL: database.url, ADMIN_TOKEN: ADMIN, SCHEDULER_INTERVAL_MS: "600000", WEBHOOK_POLL_MS: "600000", RATE_LIMIT_PER_SECOND: "100000", RATE_LIMIT_BURST: "100000" };
    const server = startServer(env);
    const admin = new pg.Client({ connectionString: database.url });
    try {
      const url = await server.ready;
      await admin.connect();
      const ok = async (doc: Parameters<typeof print>[0], variables: object) => {
        const result = await gql(url, ADMIN, print(doc), variables);
        if (result.errors?.length) throw new Error(JSON.stringify(result.errors));
        return result.data;
      };
      const meterId = (await ok(CreateMeter, { input: { name: "calls", filter: named("call"), aggregation: { func: "COUNT" } } })).createMeter.id as string;
      const customerId = (await ok(CreateCustomer, { input: { externalId: "pgterm" } })).createCustomer.id as string;
      await ok(GrantCredits, { input: { customerId, meterId, units: "100000" } });

      const BATCHES = 120;
      const acknowledged = new Set<number>();
      const errors: string[] = [];
      const unanswered: string[] = [];
      let next = 0;
      let stop = false;
      const worker = async () => {
        while (!stop && next < BATCHES) {
          const b = next++;
          const events = Array.from({ length: 20 }, (_, i) => ({ name: "call", customerId, externalId: `b${b}-e${i}` }));
          try {
            const r = await gql(url, ADMIN, print(IngestEvents), { events });
            if (r.data?.ingestEvents?.__typename === "IngestSummary") acknowledged.add(b);
            else errors.push(JSON.stringify(r.errors ?? r.data).slice(0, 200)); // answered with an error: retried below
          } catch (err) {
            unanswered.push(String(err).slice(0, 200)); // no answer at all (the connection dropped)
            if (server.child.exitCode !== null || server.child.signalCode !== null) return;
          }
        }
      };
      const killer = (async () => {
        for (let i = 0; i < 15 && !stop; i++) {
          await new Promise((r) => setTimeout(r, 150));
          await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
        }
      })();
      await Promise.all([killer, ...Array.from({ length: 4 }, worker)]);
      stop = true;
      const alive = server.child.exitCode === null && server.child.signalCode === null;
      expect(alive, `the node exited (${server.child.exitCode ?? server.child.signalCode}):\n${server.output().split("\n").slice(-30).join("\n")}`).toBe(true);
      expect(unanswered).toEqual([]);
      expect(acknowledged.size + errors.length).toBe(BATCHES);

      // retry every batch with the same externalIds until acknowledged
      for (let b = 0; b < BATCHES; b++) {
        const events = Array.from({ length: 20 }, (_, i) => ({ name: "call", customerId, externalId: `b${b}-e${i}` }));
        for (let tries = 0; ; tries++) {
          const r = await gql(url, ADMIN, print(IngestEvents), { events });
          if (r.data?.ingestEvents?.__typename === "IngestSummary") break;
          if (tries > 20) throw new Error(`batch ${b} never acknowledged: ${JSON.stringify(r)}`);
          await new Promise((res) => setTimeout(res, 100));
        }
      }
      const { customerMeter } = await ok(GetCustomerMeter, { customerId, meterId });
      const ledger = await admin.query(`SELECT COALESCE(SUM("units"),0)::text AS s, COUNT(*)::int AS n FROM "LedgerEntry" WHERE "customerId" = $1 AND "meterId" = $2`, [customerId, meterId]);
      const events = await admin.query(`SELECT COUNT(*)::int AS n FROM "Event" WHERE "customerId" = $1`, [customerId]);
      expect(events.rows[0].n).toBe(BATCHES * 20);
      expect(customerMeter.consumedUnits).toBe(String(BATCHES * 20));
      expect(BigInt(ledger.rows[0].s)).toBe(BigInt(customerMeter.balance) * 1_000_000n);
    } finally {
      await admin.end().catch(() => {});
      if (server.child.exitCode === null && server.child.signalCode === null) await server.stop();
      await database.drop();
    }
  });

  it("a group whose COMMIT answer is lost: the node asks whether it committed, and answers every caller as it was, applied once", async () => {
    const t = await startTestApp({ limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } });
    const target = new URL(t.databaseUrl);
    const proxy = await startPgProxy(Number(target.port || 5432), target.hostname);
    target.port = String(proxy.port);
    const db = await createPrisma(target.toString()); // a second node's client, through the proxy
    try {
      const m = await meter(t, "COUNT", { filter: named("cut-commit") });
      const c = await customer(t);
      await grant(t, c, m, "1000");
      const silent = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };
      // one group: three ingest calls of 5 events without externalIds, an authorization and a hold without keys
      const hold = holdWriter(db);
      const calls: Promise<{ ok: boolean; value?: unknown; error?: unknown }>[] = [];
      const call = async (p: Promise<unknown>) => {
        calls.push(p.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error })));
        while (hold.queued() < calls.length) await new Promise((r) => setTimeout(r, 2));
      };
      for (let i = 0; i < 3; i++) await call(ingestEvents(db, silent, t.organizationId, Array.from({ length: 5 }, () => ({ name: "cut-commit", customerId: c }))));
      await call(authorizeUsage(db, silent, t.organizationId, { customerId: c, meterId: m, units: 7_000_000n }));
      await call(reserveUsage(db, silent, t.organizationId, { customerId: c, meterId: m, units: 11_000_000n, ttlSeconds: 3600 }));
      proxy.armCommitCut(1);
      hold.release();
      const answers = await Promise.all(calls);
      expect(proxy.cuts()).toBe(1);
      expect(answers.map((a) => (a.ok ? "ok" : String(a.error)))).toEqual(["ok", "ok", "ok", "ok", "ok"]);
      expect(answers[3].value).toMatchObject({ allowed: true });
      const events = await t.db.event.count({ where: { organizationId: t.organizationId, name: "cut-commit" } });
      const usage = await t.db.ledgerEntry.findMany({ where: { customerId: c, meterId: m, kind: "USAGE" }, select: { units: true } });
      const held = await t.db.reservation.count({ where: { customerId: c, meterId: m, status: "HELD" } });
      expect({ events, held, usage: usage.map((e) => e.units).sort() }).toEqual({ events: 15, held: 1, usage: [-7_000_000n, -5_000_000n, -5_000_000n, -5_000_000n].sort() });
      expect((await t.db.customerMeter.findUniqueOrThrow({ where: { customerId_meterId: { customerId: c, meterId: m } } })).consumedUnits).toBe(22_000_000n);
    } finally {
      await db.$disconnect().catch(() => {});
      await proxy.close();
      await t.close();
    }
  });
});
