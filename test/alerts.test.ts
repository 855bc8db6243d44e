// Balance alerts: state with hysteresis, recorded in the balance's own transaction and delivered once, on the
// balanceAlerts subscription and as signed webhooks; credits.expiring once per grant.
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import type { Notify } from "../src/domain/notify.ts";
import { createLogger } from "../src/log.ts";
import { createScheduler } from "../src/scheduler.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp } from "../src/server.ts";
import { print } from "graphql";
import { BalanceAlerts, CreateMeter, CreateSession, IngestEvents, CreateWebhookEndpoint, GrantWithOptions, SetBalanceAlert } from "./documents.ts";
import type { SetBalanceAlertInput } from "./gql/graphql.ts";
import { startTestApp, subscription, TEST_WEBHOOK_KEY, type TestApp } from "./support/app.ts";
import { customer, grant, ingest, meter, named } from "./support/fixtures.ts";
import { startReceiver, tickUntil } from "./support/receiver.ts";

const SETTINGS = { allowPrivateNetworks: true, retryBaseMs: 20, timeoutMs: 2000 };
let t: TestApp;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let secret: string;

beforeAll(async () => {
  t = await startTestApp({ webhooks: SETTINGS });
  receiver = await startReceiver();
  const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url: receiver.url, eventTypes: ["balance.low", "balance.depleted", "balance.recovered", "credits.expiring"] } });
  if (createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(createWebhookEndpoint));
  secret = createWebhookEndpoint.secret;
});
afterAll(async () => {
  await t.close();
  await receiver.close();
});
afterEach(() => void receiver.received.splice(0));


/** The webhooks received so far, each signature verified. */
function webhooks() {
  const wh = new Webhook(secret);
  return receiver.received.map((r) => ({ id: String(r.headers["webhook-id"]), ...(wh.verify(r.body, r.headers as Record<string, string>) as { type: string; data: Record<string, string> }) }));
}

async function setAlert(input: { meterId: string; customerId?: string; lowBalanceUnits?: string; expiringWithinDays?: number }) {
  const { setBalanceAlert } = await t.ok(SetBalanceAlert, { input });
  if (setBalanceAlert.__typename !== "SetBalanceAlertPayload") throw new Error(JSON.stringify(setBalanceAlert));
  return setBalanceAlert.rule;
}

const calls = (customerId: string, n: number, name = "call") => Array.from({ length: n }, () => ({ name, customerId }));

it("low → usage → usage → grant → usage below again is exactly low, recovered, low on the subscription and the webhook", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("call") });
  const customerId = await customer(t);
  await grant(t, customerId, meterId, "10");
  await setAlert({ meterId, lowBalanceUnits: "5" }); // the organization's default
  const sub = subscription(t.wsClient(t.adminToken), BalanceAlerts, { meterId });
  await t.subscribed(1);

  await ingest(t, calls(customerId, 6)); // 4 left: below 5
  await ingest(t, calls(customerId, 1)); // 3: still below, nothing new
  await ingest(t, calls(customerId, 1)); // 2
  await grant(t, customerId, meterId, "10"); // 12: recovered
  await ingest(t, calls(customerId, 8)); // 4: below again
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 3);
  await t.app.webhooks.tick();

  const received = webhooks();
  expect(received.map((w) => w.type)).toEqual(["balance.low", "balance.recovered", "balance.low"]);
  expect(received.map((w) => w.data.availableUnits)).toEqual(["4", "12", "4"]);
  expect(received[0].data).toMatchObject({ customerId, meterId, threshold: "5", balance: "4" });
  const pushed = [];
  for (let i = 0; i < 3; i++) pushed.push((await sub.next()).data!.balanceAlerts);
  expect(pushed.map((a) => [a.type, a.balance, a.threshold, a.customer.id])).toEqual([
    ["LOW", "4", "5", customerId],
    ["RECOVERED", "12", "5", customerId],
    ["LOW", "4", "5", customerId],
  ]);
  // the same alerts: the subscription's ids are the webhooks' ids
  expect(pushed.map((a) => `msg_${a.id}`)).toEqual(received.map((w) => w.id));
  await expect(sub.next(300)).rejects.toThrow();
  sub.close();
});

it("reaching zero raises depleted (and low, crossed on the way); a customer's own rule replaces the default", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("hit") });
  const customerId = await customer(t);
  await grant(t, customerId, meterId, "3");
  await setAlert({ meterId, lowBalanceUnits: "1" });
  await setAlert({ meterId, customerId, lowBalanceUnits: "2" });
  await ingest(t, [{ name: "hit", customerId }, { name: "hit", customerId }, { name: "hit", customerId }, { name: "hit", customerId }]);
  await ingest(t, [{ name: "hit", customerId }]); // deeper below zero: nothing new
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 2);
  await t.app.webhooks.tick();
  expect(webhooks().map((w) => [w.type, w.data.threshold, w.data.availableUnits])).toEqual([
    ["balance.low", "2", "-1"],
    ["balance.depleted", "0", "-1"],
  ]);
});

/** The alert types the outbox holds for a customer, oldest first. */
async function alertTypes(customerId: string, prefix = "balance.") {
  const rows = await t.db.outboxMessage.findMany({ where: { type: { startsWith: prefix } }, orderBy: { id: "asc" } });
  return rows.filter((r) => (JSON.parse(r.payload) as { customerId?: string }).customerId === customerId).map((r) => r.type);
}

it("depleted stays depleted until recovered: a grant that leaves the balance below the line, then zero again, raises nothing new", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("dip") });
  const customerId = await customer(t);
  await grant(t, customerId, meterId, "10");
  await setAlert({ meterId, customerId, lowBalanceUnits: "5" });
  await ingest(t, calls(customerId, 10, "dip")); // 0: low, depleted
  await grant(t, customerId, meterId, "2"); // 2: below the line, not recovered
  await ingest(t, calls(customerId, 2, "dip")); // 0 again: the same depletion
  expect(await alertTypes(customerId)).toEqual(["balance.low", "balance.depleted"]);
  await grant(t, customerId, meterId, "6"); // 6: recovered
  await ingest(t, calls(customerId, 6, "dip")); // 0: low and depleted again, after the recovery
  expect(await alertTypes(customerId)).toEqual(["balance.low", "balance.depleted", "balance.recovered", "balance.low", "balance.depleted"]);
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 5); // delivered here, not to the next test
});

it("a customer's own rule replaces the organization default's expiry window too, even when it sets none", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("own-window") });
  const customerId = await customer(t);
  const { grantCredits } = await t.ok(GrantWithOptions, { input: { customerId, meterId, units: "7", expiresAt: new Date(Date.now() + 2 * 86_400_000).toISOString() } });
  if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
  await setAlert({ meterId, expiringWithinDays: 5 }); // the organization's default
  await setAlert({ meterId, customerId, lowBalanceUnits: "1" }); // the customer's own: no expiry window
  await t.app.scheduler.tick();
  expect(await alertTypes(customerId, "credits.")).toEqual([]);
});

it("an organization without rules pays no alert statement on ingest", async () => {
  const other = await t.newOrganization("no rules");
  const { createMeter } = await t.ok(CreateMeter, { input: { name: "quiet", filter: named("quiet"), aggregation: { func: "COUNT" } } }, other.token);
  if (createMeter.__typename !== "Meter") throw new Error(JSON.stringify(createMeter));
  const customerId = await customer(t, "quiet_1", other.token);
  await ingest(t, [{ name: "quiet", customerId }], other.token); // learns (and caches) that it has no rules
  const statements = await t.queriesDuring(() => ingest(t, [{ name: "quiet", customerId }], other.token));
  expect(statements.length).toBeGreaterThan(0);
  expect(statements.filter((s) => /BalanceAlert|OutboxMessage/.test(s))).toEqual([]);
});

it("a watched balance's stored level and holds are read with its row, not by statements of their own", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("watched") });
  const customerId = await customer(t);
  await grant(t, customerId, meterId, "3");
  await setAlert({ meterId, customerId, lowBalanceUnits: "2" });
  await ingest(t, calls(customerId, 1, "watched")); // the rule is cached and the row exists: the next write is steady state
  const statements = await t.queriesDuring(() => ingest(t, calls(customerId, 1, "watched"))); // 1 left: LOW
  const reads = statements.filter((s) => s.trimStart().startsWith("SELECT"));
  // neither the levels nor the holds by pairs (SQLite: subqueries of the locking read; PostgreSQL: one read by
  // row id once the rows are locked)
  expect(reads.filter((s) => s.trim().startsWith(`SELECT "customerId", "meterId", "level" FROM "BalanceAlertState"`))).toEqual([]);
  expect(reads.filter((s) => s.trim().startsWith(`SELECT "customerId", "meterId", SUM("units")`))).toEqual([]);
  const withLevel = reads.filter((s) => s.includes(`AS "alertLevel"`));
  expect(withLevel).toHaveLength(1);
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 1);
  expect(webhooks().map((w) => [w.type, w.data.customerId])).toEqual([["balance.low", customerId]]);
});

it("a grant expiring within the rule's window raises credits.expiring once, with its units and when", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("soon") });
  const customerId = await customer(t);
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 5 * 86_400_000);
  const { grantCredits } = await t.ok(GrantWithOptions, { input: { customerId, meterId, units: "7.5", expiresAt: expiresAt.toISOString() } });
  if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
  await grant(t, customerId, meterId, "100"); // never expires: not announced
  await setAlert({ meterId, expiringWithinDays: 3 });
  await t.app.scheduler.tick(); // 5 days ahead: not yet within 3
  t.setNow(new Date(now.getTime() + 3 * 86_400_000)); // now 2 days ahead
  await t.app.scheduler.tick();
  await t.app.scheduler.tick(); // again: nothing new
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 1);
  await t.app.webhooks.tick();
  const expiring = webhooks().filter((w) => w.type === "credits.expiring");
  expect(expiring).toHaveLength(1);
  expect(expiring[0].data).toMatchObject({ grantId: grantCredits.id, customerId, meterId, units: "7.5", expiresAt: expiresAt.toISOString() });
});

it("credits.expiring stays once per grant when two nodes' schedulers pass at the same moment", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("soon-twice") });
  const customerId = await customer(t);
  const now = t.advance(0);
  const grants: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { grantCredits } = await t.ok(GrantWithOptions, { input: { customerId, meterId, units: "1", expiresAt: new Date(now.getTime() + (i + 1) * 3_600_000).toISOString() } });
    if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
    grants.push(grantCredits.id);
  }
  await setAlert({ meterId, expiringWithinDays: 3 });
  // another node: its own client and scheduler on the same database and clock
  const otherDb = await createPrisma(t.databaseUrl);
  const quiet: Notify = { balancesChanged() {}, customerChanged() {}, accessRevoked() {} };
  const other = createScheduler({ db: otherDb, notify: quiet, log: createLogger("silent"), clock: () => t.advance(0), renewalMode: "auto", webhookRetentionMs: 86_400_000 });
  try {
    await Promise.all([t.app.scheduler.tick(), other.tick()]);
  } finally {
    await otherDb.$disconnect();
  }
  const announced = (await t.db.outboxMessage.findMany({ where: { type: "credits.expiring" } })).map((o) => JSON.parse(o.payload).grantId as string).filter((g) => grants.includes(g));
  expect(announced.sort()).toEqual([...grants].sort());
  // and delivered once each (here, not into the next test's receiver)
  const delivered = () => webhooks().filter((w) => w.type === "credits.expiring" && grants.includes(w.data.grantId as string));
  await tickUntil([t.app.webhooks], () => delivered().length >= grants.length);
  await t.app.webhooks.tick();
  expect(delivered()).toHaveLength(grants.length);
});

it("setBalanceAlert refuses bad input with typed errors naming the field", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("bad") });
  const customerId = await customer(t);
  const refusals: [SetBalanceAlertInput, string, string][] = [
    [{ meterId, lowBalanceUnits: "-1" }, "InvalidInputError", "input.lowBalanceUnits"],
    [{ meterId, expiringWithinDays: 0 }, "InvalidInputError", "input.expiringWithinDays"],
    [{ meterId, expiringWithinDays: 367 }, "InvalidInputError", "input.expiringWithinDays"],
    [{ meterId: "no-such-meter", lowBalanceUnits: "1" }, "NotFoundError", "input.meterId"],
    [{ meterId, customerId: "no-such-customer", lowBalanceUnits: "1" }, "NotFoundError", "input.customerId"],
    [{ meterId, externalCustomerId: "no-such-customer", lowBalanceUnits: "1" }, "NotFoundError", "input.externalCustomerId"],
  ];
  for (const [input, type, field] of refusals) {
    const { setBalanceAlert } = await t.ok(SetBalanceAlert, { input });
    expect(setBalanceAlert, field).toMatchObject({ __typename: type, field });
  }
  expect(await t.db.balanceAlertRule.count({ where: { meterId } })).toBe(0);
  // a session may not set rules
  const { createCustomerSession } = await t.ok(CreateSession, { customerId });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  const { setBalanceAlert: forbidden } = await t.ok(SetBalanceAlert, { input: { meterId, lowBalanceUnits: "1" } }, createCustomerSession.token);
  expect(forbidden).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
});

it("a customer session on balanceAlerts hears its own customer only, and naming another is FORBIDDEN", async () => {
  const meterId = await meter(t, "COUNT", { filter: named("own") });
  const mine = await customer(t);
  const other = await customer(t);
  for (const c of [mine, other]) await grant(t, c, meterId, "10");
  await setAlert({ meterId, lowBalanceUnits: "5" });
  const { createCustomerSession } = await t.ok(CreateSession, { customerId: mine });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  const client = t.wsClient(createCustomerSession.token);
  const sub = subscription(client, BalanceAlerts, {});
  await t.subscribed(2); // the first test's subscription, then this one
  await ingest(t, calls(other, 6, "own")); // the other customer crosses first
  await ingest(t, calls(mine, 7, "own"));
  await tickUntil([t.app.webhooks], () => receiver.received.length >= 2);
  await t.app.webhooks.tick();
  expect(webhooks().map((w) => w.data.customerId)).toEqual([other, mine]); // both were recorded
  const heard = (await sub.next()).data!.balanceAlerts;
  expect(heard).toMatchObject({ type: "LOW", availableUnits: "3", customer: { id: mine } });
  await expect(sub.next(300)).rejects.toThrow();
  sub.close();
  const refused = await subscription(client, BalanceAlerts, { customerId: other }).next();
  expect(refused.errors?.[0]).toMatchObject({ extensions: { code: "FORBIDDEN" } });
});

describe.skipIf(!/^postgres(ql)?:/.test(process.env.TEST_DATABASE_URL ?? "") || !process.env.REDIS_URL)("two nodes", () => {
  it("a crossing seen on node A is delivered once, on the subscription and as a webhook", async () => {
    const db = await createPrisma(t.databaseUrl);
    const { pubsub, close } = createAppPubSub(process.env.REDIS_URL);
    const other = createApp({ db, pubsub, log: createLogger("silent"), webhooks: { ...SETTINGS, key: TEST_WEBHOOK_KEY } });
    try {
      const meterId = await meter(t, "COUNT", { filter: named("pair") });
      const customerId = await customer(t);
      await grant(t, customerId, meterId, "10");
      await setAlert({ meterId, customerId, lowBalanceUnits: "5" });
      const sub = subscription(t.wsClient(t.adminToken), BalanceAlerts, { customerId });
      await t.subscribed(1);
      // one call on each node at once: whichever commits second crosses the line
      const url = `http://127.0.0.1:${await other.listen(0)}/graphql`;
      const onB = fetch(url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${t.adminToken}` }, body: JSON.stringify({ query: print(IngestEvents), variables: { events: calls(customerId, 3, "pair") } }) });
      await Promise.all([ingest(t, calls(customerId, 3, "pair")), onB.then(async (r) => expect((await r.json()).data.ingestEvents.inserted).toBe(3))]); // 4 left after both
      await tickUntil([t.app.webhooks, other.webhooks], () => receiver.received.length >= 1);
      await Promise.all([t.app.webhooks.tick(), other.webhooks.tick()]);
      expect(webhooks().map((w) => w.type)).toEqual(["balance.low"]);
      expect((await sub.next()).data!.balanceAlerts.type).toBe("LOW");
      await expect(sub.next(500)).rejects.toThrow();
      sub.close();
    } finally {
      await other.close();
      await close();
      await db.$disconnect();
    }
  });
});
