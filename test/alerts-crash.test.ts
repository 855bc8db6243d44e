// kill -9 during a burst of alert-producing ingests: the server runs as its own process (src/main.ts), is
// killed with SIGKILL while requests are in flight, and started again on the same database. Every crossing
// that committed is delivered with exactly one webhook-id (a resend of the same id is allowed: delivery is
// at least once), and no crossing is delivered for a request that did not commit.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { print } from "graphql";
import { Webhook } from "standardwebhooks";
import { afterAll, expect, it } from "vitest";
import { CreateCustomer, CreateMeter, CreateWebhookEndpoint, GetCustomerMeter, GrantCredits, IngestEvents, SetBalanceAlert, WebhookDeliveries } from "./documents.ts";
import { freshDatabase } from "./support/app.ts";
import { named } from "./support/fixtures.ts";
import { gql, startServer } from "./support/process.ts";
import { startReceiver } from "./support/receiver.ts";

const ADMIN = "crash-admin-token-0123456789";
const CUSTOMERS = 40;
const WORKERS = 4;
const dir = mkdtempSync(path.join(tmpdir(), "credits-crash-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Poll `probe` until it answers something `done` accepts. */
async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not reached; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it("after a kill -9 mid-burst and a restart, every committed crossing is delivered once by webhook-id, none for uncommitted work", async () => {
  const database = await freshDatabase(dir);
  const receiver = await startReceiver();
  const env = {
    DATABASE_URL: database.url,
    ADMIN_TOKEN: ADMIN,
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
    WEBHOOK_SECRET_KEY: "07".repeat(32),
    WEBHOOK_POLL_MS: "50",
    WEBHOOK_RETRY_BASE_MS: "50",
    WEBHOOK_TIMEOUT_MS: "1000",
    SCHEDULER_INTERVAL_MS: "60000",
  };
  const first = startServer(env);
  let second: ReturnType<typeof startServer> | undefined;
  try {
    const url = await first.ready;
    const ok = async (doc: Parameters<typeof print>[0], variables: object, on = url) => {
      const result = await gql(on, ADMIN, print(doc), variables);
      if (result.errors?.length) throw new Error(JSON.stringify(result.errors));
      return result.data;
    };
    const meterId = (await ok(CreateMeter, { input: { name: "calls", filter: named("call"), aggregation: { func: "COUNT" } } })).createMeter.id as string;
    const created = (await ok(CreateWebhookEndpoint, { input: { url: receiver.url, eventTypes: ["balance.low", "balance.depleted", "balance.recovered"] } })).createWebhookEndpoint;
    await ok(SetBalanceAlert, { input: { meterId, lowBalanceUnits: "5" } });
    const customers: string[] = [];
    for (let i = 0; i < CUSTOMERS; i++) {
      const id = (await ok(CreateCustomer, { input: { externalId: `crash_${i}` } })).createCustomer.id as string;
      await ok(GrantCredits, { input: { customerId: id, meterId, units: "10" } });
      customers.push(id);
    }

    // The burst: one batch per customer takes it from 10 to 4, across the low line. Workers stop sending once
    // the process is killed; a batch whose answer never came may or may not have committed.
    const acknowledged = new Set<string>();
    let killed = false;
    const queue = [...customers];
    const worker = async () => {
      for (let customerId = queue.shift(); customerId && !killed; customerId = queue.shift()) {
        const events = Array.from({ length: 6 }, () => ({ name: "call", customerId }));
        try {
          const { ingestEvents } = await ok(IngestEvents, { events });
          if (ingestEvents.inserted === 6) acknowledged.add(customerId);
        } catch {
          // cut off by the kill
        }
        if (acknowledged.size >= CUSTOMERS / 2 && !killed) {
          killed = true;
          first.child.kill("SIGKILL");
        }
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    expect((await first.exited).signal).toBe("SIGKILL");
    expect(acknowledged.size).toBeGreaterThanOrEqual(CUSTOMERS / 2);
    expect(acknowledged.size).toBeLessThan(CUSTOMERS); // the kill came mid-burst

    second = startServer(env);
    const url2 = await second.ready;
    // What committed is what the restarted node reads: 4 left after the batch, 10 without it.
    const committed = new Set<string>();
    for (const customerId of customers) {
      const { balance } = (await ok(GetCustomerMeter, { customerId, meterId }, url2)).customerMeter;
      expect(["4", "10"]).toContain(balance);
      if (balance === "4") committed.add(customerId);
    }
    for (const customerId of acknowledged) expect(committed.has(customerId)).toBe(true);
    expect(committed.size).toBeLessThan(CUSTOMERS);

    // Every delivery in the log succeeded, one per committed crossing.
    const log = await until(
      async () => (await ok(WebhookDeliveries, { endpointId: created.endpoint.id, first: 100 }, url2)).webhookDeliveries.edges.map((e: { node: { status: string } }) => e.node),
      (nodes: { status: string }[]) => nodes.length === committed.size && nodes.every((d) => d.status === "SUCCEEDED"),
    );
    expect(log).toHaveLength(committed.size);

    // The receiver: every signature checks out; one webhook-id per committed customer, all balance.low.
    const wh = new Webhook(created.secret);
    const byId = new Map<string, { type: string; data: { customerId: string; availableUnits: string } }>();
    for (const r of receiver.received) byId.set(String(r.headers["webhook-id"]), wh.verify(r.body, r.headers as Record<string, string>) as never);
    const alerts = [...byId.values()];
    expect(alerts.every((a) => a.type === "balance.low" && a.data.availableUnits === "4")).toBe(true);
    expect(alerts.map((a) => a.data.customerId).sort()).toEqual([...committed].sort());
  } finally {
    if (first.child.exitCode === null && first.child.signalCode === null) first.child.kill("SIGKILL");
    await second?.stop();
    await receiver.close();
    await database.drop();
  }
});
