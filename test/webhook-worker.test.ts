// The webhook worker against slow, unresponsive and disabled endpoints: one sender per endpoint even when a
// turn outlasts a lease, no starvation of one tenant by another's dead endpoints, a cap on endpoints, and
// events made while an endpoint is disabled kept for it (within the retention).
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { createLogger } from "../src/log.ts";
import { LOOKUP_TIMEOUT_MS, MAX_LOOKUPS, MAX_WEBHOOK_ENDPOINTS, pruneWebhookHistory, resolveHostsWith, resolvePublicAddresses } from "../src/domain/webhooks.ts";
import { createWebhookWorker, DEFAULT_WEBHOOK_SETTINGS, retryDelay } from "../src/webhooks/delivery.ts";
import { Webhook } from "standardwebhooks";
import { CreateMeter, CreateWebhookEndpoint, GrantCredits, RotateWebhookSecret, UpdateWebhookEndpoint } from "./documents.ts";
import { startTestApp, TEST_WEBHOOK_KEY, type TestApp } from "./support/app.ts";
import { customer, grant, meter } from "./support/fixtures.ts";
import { tickUntil } from "./support/receiver.ts";

const TIMEOUT = 1000;
const SETTINGS = { allowPrivateNetworks: true, retryBaseMs: 20, timeoutMs: TIMEOUT };
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ webhooks: SETTINGS, limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } });
});
afterAll(() => t?.close());
afterEach(async () => {
  await t.db.webhookDelivery.deleteMany({});
  await t.db.webhookEndpoint.deleteMany({});
});

async function endpoint(url: string, token?: string) {
  const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url, eventTypes: ["credit_grant.created"] } }, token);
  if (createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(createWebhookEndpoint));
  return createWebhookEndpoint.endpoint.id;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks`;
}

/** A receiver answering 200 after `delayMs`, recording each request's webhook-id, sequence and grant units. */
async function receiver(delayMs = 0) {
  const got: { id: string; sequence: number; units: string; body: string; headers: Record<string, string> }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () =>
      setTimeout(() => {
        got.push({ id: String(req.headers["webhook-id"]), sequence: Number(req.headers["webhook-sequence"]), units: (JSON.parse(body) as { data: { units: string } }).data.units, body, headers: req.headers as Record<string, string> });
        inFlight--;
        res.writeHead(200).end();
      }, delayMs),
    );
  });
  const url = await listen(server);
  return { url, got, maxInFlight: () => maxInFlight, close: () => (server.closeAllConnections(), server.close()) };
}

it("an endpoint whose turn outlasts a lease is never sent to by two nodes: each delivery once, in order", async () => {
  const slow = await receiver(800); // within the 1 s timeout; 12 deliveries take ~10 s, longer than any one lease
  const otherNode = createWebhookWorker({ db: t.db, pubsub: t.pubsub, log: createLogger("silent"), settings: { ...DEFAULT_WEBHOOK_SETTINGS, key: TEST_WEBHOOK_KEY, ...SETTINGS } });
  try {
    await endpoint(slow.url);
    const meterId = await meter(t, "COUNT");
    const customerId = await customer(t);
    for (let i = 1; i <= 12; i++) await grant(t, customerId, meterId, String(i));
    const first = t.app.webhooks.tick();
    await new Promise((resolve) => setTimeout(resolve, 7_600)); // past the 7 s a turn's lease once lasted
    await otherNode.tick();
    await first;
    await tickUntil([t.app.webhooks], () => slow.got.length >= 12);
    expect(slow.maxInFlight()).toBe(1);
    expect(slow.got.map((g) => g.sequence)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(new Set(slow.got.map((g) => g.id)).size).toBe(12);
  } finally {
    await otherNode.stop();
    slow.close();
  }
}, 60_000);

it("another tenant's unresponsive endpoints neither starve a healthy endpoint nor hold a pass for one timeout per delivery", async () => {
  const sockets = new Set<Socket>();
  const tarpit = createServer(() => {}); // takes requests and never answers
  tarpit.on("connection", (s) => sockets.add(s));
  const tarpitUrl = await listen(tarpit);
  const healthy = await receiver();
  try {
    const other = await t.newOrganization("tarpits");
    for (let i = 0; i < 16; i++) await endpoint(tarpitUrl, other.token);
    const theirCustomer = await customer(t, "tarpit-customer", other.token);
    const { createMeter } = await t.ok(CreateMeter, { input: { name: "m", filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "x" }] }, aggregation: { func: "COUNT" } } }, other.token);
    if (createMeter.__typename !== "Meter") throw new Error(JSON.stringify(createMeter));
    for (let i = 0; i < 3; i++) await t.ok(GrantCredits, { input: { customerId: theirCustomer, meterId: createMeter.id, units: "1" } }, other.token);
    await endpoint(healthy.url); // ours, made after theirs
    await grant(t, await customer(t), await meter(t, "COUNT"), "7");
    const started = Date.now();
    await t.app.webhooks.tick();
    await t.app.webhooks.tick();
    expect(healthy.got.map((g) => g.units)).toEqual(["7"]);
    // each unresponsive endpoint cost each pass one timeout (in parallel), not one per waiting delivery
    expect(Date.now() - started).toBeLessThan(2 * (3 * TIMEOUT) - 500);
  } finally {
    for (const s of sockets) s.destroy();
    tarpit.close();
    healthy.close();
  }
}, 60_000);

it(`an organization has at most ${MAX_WEBHOOK_ENDPOINTS} endpoints (LIMIT_EXCEEDED)`, async () => {
  const url = "http://127.0.0.1:9/hooks";
  for (let i = 0; i < MAX_WEBHOOK_ENDPOINTS; i++) await endpoint(`${url}?n=${i}`);
  const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url } });
  expect(createWebhookEndpoint).toMatchObject({ __typename: "LimitExceededError", code: "LIMIT_EXCEEDED", field: "input" });
  expect(await t.db.webhookEndpoint.count({ where: { organizationId: t.organizationId } })).toBe(MAX_WEBHOOK_ENDPOINTS);
});

it("what happens while an endpoint is disabled is delivered, in order, once it is enabled again; kept for the retention only", async () => {
  const hooks = await receiver();
  try {
    const id = await endpoint(hooks.url);
    const meterId = await meter(t, "COUNT");
    const customerId = await customer(t);
    await grant(t, customerId, meterId, "1");
    await tickUntil([t.app.webhooks], () => hooks.got.length === 1);
    await t.ok(UpdateWebhookEndpoint, { id, input: { disabled: true } });
    await grant(t, customerId, meterId, "2");
    await t.app.webhooks.tick();
    expect(hooks.got).toHaveLength(1); // nothing is sent to a disabled endpoint
    await t.ok(UpdateWebhookEndpoint, { id, input: { disabled: false } });
    await grant(t, customerId, meterId, "3");
    await tickUntil([t.app.webhooks], () => hooks.got.length >= 3);
    expect(hooks.got.map((g) => [g.sequence, g.units])).toEqual([
      [1, "1"],
      [2, "2"],
      [3, "3"],
    ]);

    // disabled again: a delivery that waited past the retention is pruned with the history
    await t.ok(UpdateWebhookEndpoint, { id, input: { disabled: true } });
    await grant(t, customerId, meterId, "4");
    await t.app.webhooks.tick();
    expect(await t.db.webhookDelivery.count({ where: { endpointId: id, status: "PENDING" } })).toBe(1);
    expect(await pruneWebhookHistory(t.db, new Date(Date.now() - 60_000))).toMatchObject({ deliveries: 0 });
    await pruneWebhookHistory(t.db, new Date(Date.now() + 60_000));
    expect(await t.db.webhookDelivery.count({ where: { endpointId: id, status: "PENDING" } })).toBe(0);
  } finally {
    hooks.close();
  }
});

it("rotateWebhookSecret: the old secret signs beside the new one for the overlap asked for, then only the new one does", async () => {
  const hooks = await receiver();
  try {
    const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url: hooks.url, eventTypes: ["credit_grant.created"] } });
    if (createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(createWebhookEndpoint));
    const id = createWebhookEndpoint.endpoint.id;
    const first = createWebhookEndpoint.secret;
    const verifies = (secret: string, n: number) => {
      try {
        new Webhook(secret).verify(hooks.got[n].body, hooks.got[n].headers);
        return true;
      } catch {
        return false;
      }
    };
    const { rotateWebhookSecret: rotated } = await t.ok(RotateWebhookSecret, { id });
    if (rotated.__typename !== "RotatedWebhookSecret") throw new Error(JSON.stringify(rotated));
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(first);
    expect(new Date(rotated.previousSecretExpiresAt!).getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
    const meterId = await meter(t, "COUNT");
    const customerId = await customer(t);
    await grant(t, customerId, meterId, "1");
    await tickUntil([t.app.webhooks], () => hooks.got.length === 1);
    expect(hooks.got[0].headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect([verifies(first, 0), verifies(rotated.secret, 0)]).toEqual([true, true]);

    // no overlap: only the newest secret signs
    const { rotateWebhookSecret: again } = await t.ok(RotateWebhookSecret, { id, keepPreviousHours: 0 });
    if (again.__typename !== "RotatedWebhookSecret") throw new Error(JSON.stringify(again));
    expect(again.previousSecretExpiresAt).toBeNull();
    await grant(t, customerId, meterId, "2");
    await tickUntil([t.app.webhooks], () => hooks.got.length === 2);
    expect([verifies(first, 1), verifies(rotated.secret, 1), verifies(again.secret, 1)]).toEqual([false, false, true]);

    expect((await t.ok(RotateWebhookSecret, { id, keepPreviousHours: 169 })).rotateWebhookSecret).toMatchObject({ __typename: "InvalidInputError", field: "keepPreviousHours" });
    expect((await t.ok(RotateWebhookSecret, { id: "no-such-endpoint" })).rotateWebhookSecret).toMatchObject({ __typename: "NotFoundError", field: "id" });
  } finally {
    hooks.close();
  }
});

it(`host lookups: at most ${MAX_LOOKUPS} at once (they hold threads SQLite's commits need), none waited for beyond ${LOOKUP_TIMEOUT_MS / 1000} s`, async () => {
  let running = 0;
  let most = 0;
  resolveHostsWith(async (host) => {
    running++;
    most = Math.max(most, running);
    try {
      if (host.startsWith("hang")) await new Promise(() => {}); // a DNS server that never answers
      await new Promise((resolve) => setTimeout(resolve, 30));
      return [{ address: "93.184.216.34", family: 4 }];
    } finally {
      running--;
    }
  });
  try {
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => resolvePublicAddresses(`host${i}.example`, false)));
    expect(answers.flat().map((a) => a.address)).toEqual(Array(6).fill("93.184.216.34"));
    expect(most).toBe(MAX_LOOKUPS);
    const started = Date.now();
    const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url: "https://hang.example/hooks" } });
    expect(createWebhookEndpoint).toMatchObject({ __typename: "InvalidInputError", field: "input.url", message: expect.stringContaining(`did not resolve within ${LOOKUP_TIMEOUT_MS / 1000} s`) });
    expect(Date.now() - started).toBeLessThan(LOOKUP_TIMEOUT_MS + 2_000);
  } finally {
    resolveHostsWith();
  }
}, 30_000);

it("retries back off by doubling with ±25 % jitter, never more than an hour apart", () => {
  for (let i = 0; i < 500; i++) {
    const first = retryDelay(1000, 1);
    expect(first).toBeGreaterThanOrEqual(750);
    expect(first).toBeLessThanOrEqual(1250);
    for (const attempts of [12, 13, 30, 60]) expect(retryDelay(1000, attempts)).toBeLessThanOrEqual(3_600_000);
  }
});
