// Signed webhooks from the outbox: a real receiver on a loopback port, every signature verified with the
// standardwebhooks library; retries keep the webhook-id, survive a restart, first attempts follow commit
// order with gapless sequence numbers, private addresses are refused without the setting, and two nodes
// deliver each message once.
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { createWebhookEndpoint } from "../src/domain/webhooks.ts";
import { createLogger } from "../src/log.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp } from "../src/server.ts";
import { createWebhookWorker, DEFAULT_WEBHOOK_SETTINGS } from "../src/webhooks/delivery.ts";
import { CreateWebhookEndpoint, DeleteWebhookEndpoint, RedeliverWebhook, UpdateWebhookEndpoint, WebhookDeliveries, WebhookEndpoints } from "./documents.ts";
import type { UpdateWebhookEndpointInput } from "./gql/graphql.ts";
import { startTestApp, TEST_WEBHOOK_KEY, type TestApp } from "./support/app.ts";
import { customer, grant, meter } from "./support/fixtures.ts";
import { startReceiver, tickUntil, type Received } from "./support/receiver.ts";

const SETTINGS = { allowPrivateNetworks: true, retryBaseMs: 20, timeoutMs: 2000 };
let t: TestApp;
let meterId: string;
let customerId: string;

beforeAll(async () => {
  t = await startTestApp({ webhooks: SETTINGS });
  meterId = await meter(t, "COUNT");
  customerId = await customer(t);
});
afterAll(() => t.close());
afterEach(() => t.db.webhookEndpoint.deleteMany({}));

async function endpoint(url: string, eventTypes = ["credit_grant.created"]) {
  const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url, eventTypes } });
  if (createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(createWebhookEndpoint));
  return createWebhookEndpoint;
}


/** Every request's signature checks out with the endpoint's secret; answers the parsed bodies and the webhook-sequence headers. */
function verified(secret: string, received: Received[]) {
  const wh = new Webhook(secret);
  return received.map((r) => ({
    id: String(r.headers["webhook-id"]),
    sequence: Number(r.headers["webhook-sequence"]),
    body: wh.verify(r.body, r.headers as Record<string, string>) as { type: string; timestamp: string; data: Record<string, string> },
  }));
}

async function deliveriesOf(endpointId: string) {
  return (await t.ok(WebhookDeliveries, { endpointId, first: 100 })).webhookDeliveries.edges.map((e) => e.node);
}

it("a receiver answering 500 twice then 200 gets the same webhook-id three times, and the log shows three attempts", async () => {
  const receiver = await startReceiver();
  try {
    const created = await endpoint(receiver.url);
    expect(created.secret).toMatch(/^whsec_/);
    receiver.answer(500, 500);
    const g = await grant(t, customerId, meterId, "5");
    await tickUntil([t.app.webhooks], () => receiver.received.length === 3);
    const bodies = verified(created.secret, receiver.received);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1);
    // the contract's body: exactly { type, timestamp, data }; the sequence number is the webhook-sequence header
    expect(Object.keys(bodies[0].body).sort()).toEqual(["data", "timestamp", "type"]);
    expect(bodies[0].body).toMatchObject({ type: "credit_grant.created", data: { grantId: g.id, customerId, meterId, units: "5" } });
    expect(bodies.map((b) => b.sequence)).toEqual([1, 1, 1]);
    const [delivery] = await deliveriesOf(created.endpoint.id);
    expect(delivery).toMatchObject({ webhookId: bodies[0].id, status: "SUCCEEDED", attempts: 3, lastResponseStatus: 200, nextAttemptAt: null });
  } finally {
    await receiver.close();
  }
});

it("a server restarted between attempts still delivers", async () => {
  const receiver = await startReceiver();
  try {
    const created = await endpoint(receiver.url);
    receiver.answer(503);
    await grant(t, customerId, meterId, "1");
    await tickUntil([t.app.webhooks], () => receiver.received.length === 1);
    // A new node process on the same database (the first one is gone): its worker finds the pending retry.
    const db = await createPrisma(t.databaseUrl);
    const { pubsub } = createAppPubSub();
    const restarted = createApp({ db, pubsub, log: createLogger("silent"), webhooks: { ...SETTINGS, key: TEST_WEBHOOK_KEY } });
    try {
      await tickUntil([restarted.webhooks], () => receiver.received.length === 2);
    } finally {
      await restarted.close();
      await db.$disconnect();
    }
    const bodies = verified(created.secret, receiver.received);
    expect(bodies[1].id).toBe(bodies[0].id);
    expect((await deliveriesOf(created.endpoint.id))[0]).toMatchObject({ status: "SUCCEEDED", attempts: 2 });
  } finally {
    await receiver.close();
  }
});

it("first attempts follow commit order and sequence numbers have no gaps, while a failing delivery is retried on the side", async () => {
  const receiver = await startReceiver();
  try {
    const created = await endpoint(receiver.url);
    receiver.answer(200, 500); // the second delivery fails once: the third goes out anyway
    const grants = [];
    for (const units of ["1", "2", "3", "4", "5"]) grants.push((await grant(t, customerId, meterId, units)).id);
    await tickUntil([t.app.webhooks], () => receiver.received.length === 6);
    const bodies = verified(created.secret, receiver.received);
    const firsts = bodies.filter((b, i) => bodies.findIndex((o) => o.id === b.id) === i);
    expect(firsts.map((b) => b.body.data.grantId)).toEqual(grants);
    expect(firsts.map((b) => b.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(bodies[2].sequence).toBe(3); // not held back by the failed second
    expect(bodies.at(-1)!.sequence).toBe(2);
    const log = await deliveriesOf(created.endpoint.id);
    expect(log.map((d) => d.sequence).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(log.every((d) => d.status === "SUCCEEDED")).toBe(true);
  } finally {
    await receiver.close();
  }
});

describe("private addresses", () => {
  it("are refused at creation without WEBHOOK_ALLOW_PRIVATE_NETWORKS", async () => {
    for (const url of ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]:9/x", "http://[::ffff:192.168.0.1]/x"]) {
      await expect(createWebhookEndpoint(t.db, { allowPrivateNetworks: false, key: TEST_WEBHOOK_KEY }, t.organizationId, { url }), url).rejects.toMatchObject({ code: "BAD_USER_INPUT", field: "input.url" });
    }
    const { createWebhookEndpoint: refused } = await t.ok(CreateWebhookEndpoint, { input: { url: "ftp://example.com/x" } });
    expect(refused).toMatchObject({ __typename: "InvalidInputError", field: "input.url" });
  });

  it("are refused at send time too (after DNS resolution), as a failed attempt", async () => {
    const receiver = await startReceiver();
    try {
      const created = await endpoint(receiver.url); // allowed when created
      await grant(t, customerId, meterId, "1");
      const strict = createWebhookWorker({ db: t.db, pubsub: t.pubsub, log: createLogger("silent"), settings: { ...DEFAULT_WEBHOOK_SETTINGS, ...SETTINGS, allowPrivateNetworks: false, key: TEST_WEBHOOK_KEY } });
      await strict.tick();
      const [delivery] = await deliveriesOf(created.endpoint.id);
      expect(receiver.received).toHaveLength(0);
      expect(delivery).toMatchObject({ status: "PENDING", attempts: 1, lastResponseStatus: null });
      const stored = await t.db.webhookDelivery.findUniqueOrThrow({ where: { id: delivery.id } });
      expect(stored.lastError).toMatch(/loopback, private or link-local/);
    } finally {
      await receiver.close();
    }
  });
});

describe.skipIf(!/^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? ""))("two nodes", () => {
  it("deliver each message once, whichever node's worker runs", async () => {
    const receiver = await startReceiver();
    const db = await createPrisma(t.databaseUrl);
    const { pubsub, close } = createAppPubSub(process.env.REDIS_URL);
    const other = createApp({ db, pubsub, log: createLogger("silent"), webhooks: { ...SETTINGS, key: TEST_WEBHOOK_KEY } });
    try {
      const created = await endpoint(receiver.url);
      receiver.answer(500, 500, 500);
      for (let i = 0; i < 8; i++) await grant(t, customerId, meterId, "1");
      await tickUntil([t.app.webhooks, other.webhooks], () => new Set(receiver.received.map((r) => r.headers["webhook-id"])).size === 8 && receiver.received.length === 11);
      await Promise.all([t.app.webhooks.tick(), other.webhooks.tick()]);
      const bodies = verified(created.secret, receiver.received);
      expect(bodies).toHaveLength(11); // 8 messages, 3 of them retried once
      const log = await deliveriesOf(created.endpoint.id);
      expect(log.map((d) => d.sequence).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(log.reduce((n, d) => n + d.attempts, 0)).toBe(11);
    } finally {
      await other.close();
      await close();
      await db.$disconnect();
      await receiver.close();
    }
  });
});

describe("managing endpoints through the API", () => {
  /** An endpoint on `receiver` that has received one grant's webhook. */
  const deliveredOnce = async (receiver: Awaited<ReturnType<typeof startReceiver>>) => {
    const created = await endpoint(receiver.url);
    await grant(t, customerId, meterId, "1");
    await tickUntil([t.app.webhooks], () => receiver.received.length === 1);
    return created;
  };
  const endpointOf = async (id: string) => (await t.ok(WebhookEndpoints)).webhookEndpoints.edges.map((e) => e.node).find((e) => e.id === id);

  it("updateWebhookEndpoint changes url, event types and description, disables and enables; errors name their field", async () => {
    const first = await startReceiver();
    const second = await startReceiver();
    try {
      const created = await endpoint(first.url);
      const { updateWebhookEndpoint: updated } = await t.ok(UpdateWebhookEndpoint, { id: created.endpoint.id, input: { url: second.url, eventTypes: ["credit_grant.created", "order.created"], description: " billing " } });
      expect(updated).toMatchObject({ __typename: "WebhookEndpoint", status: "ENABLED" });
      expect(await endpointOf(created.endpoint.id)).toMatchObject({ url: second.url, eventTypes: ["credit_grant.created", "order.created"], description: "billing" });
      await grant(t, customerId, meterId, "1");
      await tickUntil([t.app.webhooks], () => second.received.length === 1);
      expect(first.received).toHaveLength(0);

      // disabled: nothing is sent; enabled again: what happened meanwhile goes first, then the rest
      const { updateWebhookEndpoint: off } = await t.ok(UpdateWebhookEndpoint, { id: created.endpoint.id, input: { disabled: true } });
      expect(off).toMatchObject({ status: "DISABLED", disabledReason: "disabled through the API" });
      const meanwhile = await grant(t, customerId, meterId, "1");
      await t.app.webhooks.tick();
      await t.app.webhooks.tick();
      expect(second.received).toHaveLength(1);
      const { updateWebhookEndpoint: on } = await t.ok(UpdateWebhookEndpoint, { id: created.endpoint.id, input: { disabled: false } });
      expect(on).toMatchObject({ status: "ENABLED", disabledReason: null });
      const g = await grant(t, customerId, meterId, "3");
      await tickUntil([t.app.webhooks], () => second.received.length === 3);
      expect(verified(created.secret, second.received).slice(1).map((r) => r.body.data.grantId)).toEqual([meanwhile.id, g.id]);

      const refusals: [UpdateWebhookEndpointInput, string][] = [
        [{ eventTypes: ["credit_grant.created", "balance.sideways"] }, "input.eventTypes.1"],
        [{ url: "not a url" }, "input.url"],
        [{ description: "x".repeat(501) }, "input.description"],
      ];
      for (const [input, field] of refusals) {
        const { updateWebhookEndpoint: refused } = await t.ok(UpdateWebhookEndpoint, { id: created.endpoint.id, input });
        expect(refused, field).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field });
      }
      const { updateWebhookEndpoint: missing } = await t.ok(UpdateWebhookEndpoint, { id: "no-such-endpoint", input: { description: "x" } });
      expect(missing).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "id" });
    } finally {
      await first.close();
      await second.close();
    }
  });

  it("deleteWebhookEndpoint removes the endpoint and its log; deleting it again is NOT_FOUND", async () => {
    const receiver = await startReceiver();
    try {
      const created = await deliveredOnce(receiver);
      expect(await deliveriesOf(created.endpoint.id)).toHaveLength(1);
      const { deleteWebhookEndpoint: deleted } = await t.ok(DeleteWebhookEndpoint, { id: created.endpoint.id });
      expect(deleted).toMatchObject({ __typename: "WebhookEndpoint", id: created.endpoint.id });
      expect(await endpointOf(created.endpoint.id)).toBeUndefined();
      expect(await t.db.webhookDelivery.count({ where: { endpointId: created.endpoint.id } })).toBe(0);
      await grant(t, customerId, meterId, "1");
      await t.app.webhooks.tick();
      expect(receiver.received).toHaveLength(1);
      const { deleteWebhookEndpoint: again } = await t.ok(DeleteWebhookEndpoint, { id: created.endpoint.id });
      expect(again).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "id" });
    } finally {
      await receiver.close();
    }
  });

  it("redeliverWebhook sends a succeeded delivery again with the same webhook-id; an unknown one is NOT_FOUND", async () => {
    const receiver = await startReceiver();
    try {
      const created = await deliveredOnce(receiver);
      const [delivery] = await deliveriesOf(created.endpoint.id);
      expect(delivery).toMatchObject({ status: "SUCCEEDED", attempts: 1 });
      const { redeliverWebhook } = await t.ok(RedeliverWebhook, { id: delivery.id });
      expect(redeliverWebhook).toMatchObject({ __typename: "WebhookDelivery", id: delivery.id, status: "PENDING" });
      await tickUntil([t.app.webhooks], () => receiver.received.length === 2);
      const bodies = verified(created.secret, receiver.received);
      expect(bodies.map((b) => b.id)).toEqual([delivery.webhookId, delivery.webhookId]);
      expect((await deliveriesOf(created.endpoint.id))[0]).toMatchObject({ status: "SUCCEEDED", attempts: 2 });
      const { redeliverWebhook: missing } = await t.ok(RedeliverWebhook, { id: "no-such-delivery" });
      expect(missing).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "id" });
    } finally {
      await receiver.close();
    }
  });
});

describe("an endpoint failing for the whole retry window", () => {
  it("is disabled, visibly (status, reason, failingSince), and can be enabled again", async () => {
    const small = await startTestApp({ webhooks: { ...SETTINGS, retryWindowMs: 400 } });
    const receiver = await startReceiver();
    try {
      receiver.answer(...Array.from({ length: 1000 }, () => 500));
      const { createWebhookEndpoint: created } = await small.ok(CreateWebhookEndpoint, { input: { url: receiver.url, eventTypes: ["credit_grant.created"] } });
      if (created.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(created));
      const m = await meter(small, "COUNT");
      const c = await customer(small);
      const listed = async () => (await small.ok(WebhookEndpoints)).webhookEndpoints.edges[0].node;
      // traffic keeps coming while every attempt fails, until the window has passed since the first failure
      const deadline = Date.now() + 20_000;
      while ((await listed()).status === "ENABLED") {
        if (Date.now() > deadline) throw new Error("endpoint never disabled");
        await grant(small, c, m, "1");
        await small.app.webhooks.tick();
      }
      const disabled = await listed();
      expect(disabled.disabledReason).toMatch(/every delivery failed/);
      expect(disabled.failingSince).not.toBeNull();
      expect(new Date(disabled.disabledAt!).getTime() - new Date(disabled.failingSince!).getTime()).toBeGreaterThanOrEqual(400);
      // nothing more is sent to it
      const sent = receiver.received.length;
      await grant(small, c, m, "1");
      await small.app.webhooks.tick();
      expect(receiver.received).toHaveLength(sent);
      const { updateWebhookEndpoint: enabled } = await small.ok(UpdateWebhookEndpoint, { id: created.endpoint.id, input: { disabled: false } });
      expect(enabled).toMatchObject({ status: "ENABLED", disabledReason: null });
      expect((await listed()).failingSince).toBeNull();
    } finally {
      await receiver.close();
      await small.close();
    }
  });
});

describe("retention", () => {
  it("the scheduler prunes succeeded deliveries and dispatched messages past WEBHOOK_RETENTION_DAYS; pending ones and their messages stay", async () => {
    const ok = await startReceiver();
    const failing = await startReceiver();
    try {
      const kept = await endpoint(ok.url);
      const stuck = await endpoint(failing.url);
      failing.answer(...Array.from({ length: 20 }, () => 500));
      const g = await grant(t, customerId, meterId, "2");
      await tickUntil([t.app.webhooks], () => ok.received.length === 1 && failing.received.length >= 1);
      const message = await t.db.outboxMessage.findFirstOrThrow({ where: { type: "credit_grant.created", payload: { contains: g.id } } });
      const ofMessage = () => t.db.webhookDelivery.findMany({ where: { messageId: message.id }, orderBy: { endpointId: "asc" } });
      expect((await ofMessage()).map((d) => [d.endpointId, d.status])).toEqual(
        [[kept.endpoint.id, "SUCCEEDED"], [stuck.endpoint.id, "PENDING"]].sort((a, b) => a[0].localeCompare(b[0])),
      );

      const start = Date.now();
      t.setNow(new Date(start + (DEFAULT_WEBHOOK_SETTINGS.retentionMs - 86_400_000))); // a day short of the retention
      await t.app.scheduler.tick();
      expect(await ofMessage()).toHaveLength(2);

      t.setNow(new Date(start + DEFAULT_WEBHOOK_SETTINGS.retentionMs + 60_000));
      await t.app.scheduler.tick();
      // the succeeded delivery went; the pending one stays, and so does its message
      expect((await ofMessage()).map((d) => d.endpointId)).toEqual([stuck.endpoint.id]);
      expect(await t.db.outboxMessage.findUnique({ where: { id: message.id } })).not.toBeNull();

      // once no delivery refers to it, the message goes too
      await t.db.webhookEndpoint.delete({ where: { id: stuck.endpoint.id } });
      await t.app.scheduler.tick();
      expect(await t.db.outboxMessage.findUnique({ where: { id: message.id } })).toBeNull();
      expect(await t.db.outboxMessage.count({ where: { dispatchedAt: { lt: new Date(start) } } })).toBe(0);
    } finally {
      await ok.close();
      await failing.close();
    }
  });
});
