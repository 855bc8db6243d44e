// Long-lived authority: a WebSocket authenticated on connect closes when its credential ends (expiry,
// revocation, customer deletion) within a second, on every node; tokens can be listed and revoked (GraphQL and
// CLI); a customer session sees only the catalog that concerns its customer.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { ADMIN_TOKEN_CACHE_MS } from "../src/domain/auth.ts";
import { createLogger } from "../src/log.ts";
import { createAppPubSub } from "../src/pubsub.ts";
import { createApp } from "../src/server.ts";
import { CLOSE_CODES, createSocketAuthority } from "../src/socket-authority.ts";
import {
  CatalogItem,
  CreateAccessToken,
  CreateSession,
  CustomerMeterIds,
  CustomerStateChanged,
  DeleteCustomer,
  GetCustomer,
  ListAccessTokens,
  ListCustomers,
  ListEvents,
  ListMeters,
  RevokeAccessToken,
  SessionCatalog,
  UpdateCustomer,
} from "./documents.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { tsx } from "./support/process.ts";

let t: TestApp;
let opened = 0;
const figures: Record<string, number> = {};

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
  console.log(`authority figures (ms): ${JSON.stringify(figures)}`);
});

async function session(customerId: string, ttlSeconds?: number) {
  const { createCustomerSession } = await t.ok(CreateSession, { customerId, ttlSeconds });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  return createCustomerSession;
}

async function adminToken(name = "second admin") {
  const { createAccessToken } = await t.ok(CreateAccessToken, { name });
  if (createAccessToken.__typename !== "CreatedAccessToken") throw new Error(JSON.stringify(createAccessToken));
  return { id: createAccessToken.accessToken.id, token: createAccessToken.token };
}

/** A socket on `url` (default: this test app) with a live customerStateChanged subscription, and when it closed. */
async function watchingSocket(token: string, customerId?: string) {
  let closedAt = 0;
  let resolveClosed!: (e: { code: number; reason: string; at: number }) => void;
  const closed = new Promise<{ code: number; reason: string; at: number }>((r) => (resolveClosed = r));
  const client = t.wsClient(token, (e) => {
    closedAt = Date.now();
    resolveClosed({ code: e.code, reason: e.reason, at: closedAt });
  });
  const sub = subscription(client, CustomerStateChanged, customerId ? { customerId } : {});
  await t.subscribed(++opened);
  return { client, sub, closed, isOpen: () => closedAt === 0 };
}

/** Fails after `ms` instead of hanging when a socket never closes. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe("sockets close when their credential ends", () => {
  it("a customer session's socket closes (4401) within 1 s of its expiry, and gets pushes until then", async () => {
    const ada = await customer(t);
    t.setNow(new Date());
    const s = await session(ada, 60);
    const socket = await watchingSocket(s.token);
    // one second before expiry the session still works, over HTTP and on its socket
    t.advance(59_000);
    await t.ok(UpdateCustomer, { id: ada, input: { name: "Ada" } });
    expect((await socket.sub.next()).data?.customerStateChanged.customer.name).toBe("Ada");
    expect((await t.ok(GetCustomer, {}, s.token)).customer?.id).toBe(ada);
    expect(socket.isOpen()).toBe(true);

    const expiredAt = Date.now();
    t.advance(1_000); // now exactly expiresAt
    const event = await within(socket.closed, 5000, "close after expiry");
    figures.expiryToClose = event.at - expiredAt;
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    expect(event.reason).toMatch(/expired/);
    expect(event.at - expiredAt).toBeLessThan(1000);
    expect((await t.error(GetCustomer, {}, s.token)).extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("the expiry timer fires on its own when the token's end comes in real time", async () => {
    // The authority on its own, with a real clock and a stand-in socket: the timer closes it at expiresAt.
    const { EventEmitter } = await import("node:events");
    const fake = Object.assign(new EventEmitter(), {
      OPEN: 1,
      CONNECTING: 0,
      readyState: 1,
      closedWith: null as null | { code: number; at: number },
      close(code: number) {
        this.closedWith = { code, at: Date.now() };
        this.readyState = 3;
      },
    });
    const { pubsub } = createAppPubSub();
    const authority = createSocketAuthority({ db: t.db, pubsub, log: createLogger("silent"), clock: () => new Date(), forgetToken: () => {}, sweepMs: 60_000 });
    const expiresAt = new Date(Date.now() + 300);
    expect(authority.admit(fake as never, { kind: "customer", organizationId: "o", tokenId: "tk", customerId: "c", expiresAt })).toBe(true);
    expect(authority.size).toBe(1);
    await new Promise((r) => setTimeout(r, 800));
    expect(fake.closedWith?.code).toBe(CLOSE_CODES.unauthorized);
    figures.timerLate = fake.closedWith!.at - expiresAt.getTime();
    expect(fake.closedWith!.at).toBeGreaterThanOrEqual(expiresAt.getTime());
    expect(fake.closedWith!.at - expiresAt.getTime()).toBeLessThan(1000);
    expect(authority.size).toBe(0);
    // an already-expired principal is refused on admission, its socket closed
    Object.assign(fake, { readyState: 1, closedWith: null });
    expect(authority.admit(fake as never, { kind: "admin", organizationId: "o", tokenId: "t2", expiresAt: new Date(Date.now() - 1) })).toBe(false);
    expect(fake.closedWith?.code).toBe(CLOSE_CODES.unauthorized);
    expect(authority.size).toBe(0);
    await authority.stop();
  });

  it("every operation is checked in memory: an ended credential runs nothing even before a timer or message closes its socket", async () => {
    const { EventEmitter } = await import("node:events");
    const fake = Object.assign(new EventEmitter(), {
      OPEN: 1,
      CONNECTING: 0,
      readyState: 1,
      closedWith: null as null | number,
      close(code: number) {
        this.closedWith = code;
        this.readyState = 3;
      },
    });
    let now = Date.now();
    const { pubsub } = createAppPubSub();
    const authority = createSocketAuthority({ db: t.db, pubsub, log: createLogger("silent"), clock: () => new Date(now), forgetToken: () => {}, sweepMs: 60_000 });
    const principal = { kind: "customer" as const, organizationId: "o", tokenId: "tk", customerId: "c", expiresAt: new Date(now + 60_000) };
    expect(authority.admit(fake as never, principal)).toBe(true);
    expect(authority.allows(fake as never, principal)).toBe(true);
    now += 60_000; // the clock passes expiresAt; the socket's timer has not fired
    expect(authority.allows(fake as never, principal)).toBe(false);
    expect(fake.closedWith).toBe(CLOSE_CODES.unauthorized);
    expect(authority.size).toBe(0);
    await authority.stop();
  });

  it("a customer session's socket closes (4401) within 1 s of its revocation", async () => {
    const c = await customer(t);
    const s = await session(c);
    const socket = await watchingSocket(s.token);
    const before = Date.now();
    const { revokeAccessToken } = await t.ok(RevokeAccessToken, { id: s.id });
    expect(revokeAccessToken).toMatchObject({ __typename: "AccessToken", id: s.id, kind: "CUSTOMER_SESSION" });
    const event = await within(socket.closed, 5000, "close after revocation");
    figures.revocationToClose = event.at - before;
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    expect(event.reason).toMatch(/revoked/);
    expect(event.at - before).toBeLessThan(1000);
    expect((await t.error(GetCustomer, {}, s.token)).extensions?.code).toBe("UNAUTHENTICATED");
    expect((await t.db.accessToken.findUniqueOrThrow({ where: { id: s.id } })).revokedAt).not.toBeNull();
  });

  it("a deleted customer's session sockets close (4403) within 1 s, before any push of the deletion", async () => {
    const c = await customer(t);
    const s = await session(c);
    const socket = await watchingSocket(s.token);
    const before = Date.now();
    expect((await t.ok(DeleteCustomer, { id: c })).deleteCustomer.__typename).toBe("Customer");
    const event = await within(socket.closed, 5000, "close after deletion");
    figures.deletionToClose = event.at - before;
    expect(event.code).toBe(CLOSE_CODES.customerDeleted);
    expect(event.at - before).toBeLessThan(1000);
    expect(socket.sub.pending()).toBe(0);
    expect((await t.error(GetCustomer, {}, s.token)).extensions?.code).toBe("UNAUTHENTICATED");
    expect((await t.ok(ListAccessTokens, { customerId: c, active: true })).accessTokens.edges).toEqual([]);
  });

  it("an admin token's sockets close on its revocation; revoking the token in use is allowed", async () => {
    const c = await customer(t);
    const second = await adminToken();
    const socket = await watchingSocket(second.token, c);
    // the second token revokes itself: the request completes, the token is refused afterwards
    const before = Date.now();
    const { revokeAccessToken } = await t.ok(RevokeAccessToken, { id: second.id }, second.token);
    expect(revokeAccessToken).toMatchObject({ __typename: "AccessToken", id: second.id, kind: "ADMIN" });
    const event = await within(socket.closed, 5000, "close after admin revocation");
    figures.adminRevocationToClose = event.at - before;
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    expect(event.at - before).toBeLessThan(1000);
    // refused at once on this node, though it was cached a moment ago
    expect((await t.error(ListCustomers, {}, second.token)).extensions?.code).toBe("UNAUTHENTICATED");
    // a second revocation changes nothing
    const again = await t.ok(RevokeAccessToken, { id: second.id });
    expect(again.revokeAccessToken).toMatchObject({ __typename: "AccessToken", revokedAt: revokeAccessToken.__typename === "AccessToken" ? revokeAccessToken.revokedAt : "" });
  });

  it("a revocation or deletion this node never heard of (another process, no Redis) closes the socket at the next sweep", async () => {
    const [c, d] = [await customer(t), await customer(t)];
    const [s, sd] = [await session(c), await session(d)];
    const socket = await watchingSocket(s.token);
    const deletedSocket = await watchingSocket(sd.token);
    const before = Date.now();
    // written without any announcement
    await t.db.accessToken.update({ where: { id: s.id }, data: { revokedAt: new Date() } });
    await t.db.customer.update({ where: { id: d }, data: { deletedAt: new Date() } });
    const [event, deleted] = await Promise.all([
      within(socket.closed, ADMIN_TOKEN_CACHE_MS + 3000, "close at sweep"),
      within(deletedSocket.closed, ADMIN_TOKEN_CACHE_MS + 3000, "close at sweep (deleted)"),
    ]);
    figures.unannouncedRevocationToClose = event.at - before;
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    expect(deleted.code).toBe(CLOSE_CODES.customerDeleted);
    expect(event.at - before).toBeLessThan(ADMIN_TOKEN_CACHE_MS + 1000);
    expect(deleted.at - before).toBeLessThan(ADMIN_TOKEN_CACHE_MS + 1000);
  });

  it("an operation on a socket whose credential this node knows has ended is refused", async () => {
    const c = await customer(t);
    const s = await session(c);
    const socket = await watchingSocket(s.token);
    // The revocation is known in memory (as from a pub/sub message) before any socket is told.
    t.app.authority.apply({ tokenIds: [s.id], customerId: null });
    const event = await within(socket.closed, 1000, "close on known revocation");
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    // a new connection with the same token is closed at once, even before the database is asked again
    const closed = new Promise<{ code: number }>((resolve) => t.wsClient(s.token, resolve));
    expect((await within(closed, 2000, "reconnect refused")).code).toBe(CLOSE_CODES.unauthorized);
  });
});

describe("a revoked admin token on two nodes sharing one database", () => {
  it("is refused on the other node within the cache window, and its socket there closes", async () => {
    const withRedis = !!process.env.REDIS_URL;
    // Node B: a second app over the same database; with REDIS_URL both nodes share Redis pub/sub, without it
    // they share nothing but the database (like nodes whose pub/sub is down).
    const dbB = await createPrisma(t.databaseUrl);
    const busB = createAppPubSub(process.env.REDIS_URL);
    const appB = createApp({ db: dbB, pubsub: busB.pubsub, log: createLogger("silent") });
    const portB = await appB.listen(0, "127.0.0.1");
    const urlB = `http://127.0.0.1:${portB}/graphql`;
    const status = async (token: string) =>
      (
        await fetch(urlB, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: "{ customers { edges { cursor } } }" }),
        })
      ).status;
    const { createClient } = await import("graphql-ws");
    const { default: WebSocket } = await import("ws");
    try {
      const x = await adminToken("used on node B");
      expect(await status(x.token)).toBe(200); // node B now remembers it for ADMIN_TOKEN_CACHE_MS
      let closedB: { code: number; at: number } | null = null;
      const clientB = createClient({
        url: urlB.replace("http", "ws"),
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: false,
        connectionParams: { authorization: `Bearer ${x.token}` },
        on: { closed: (e) => (closedB = { code: (e as { code: number }).code, at: Date.now() }) },
        onNonLazyError: () => {},
      });
      // the socket on B is open once a query over it answers
      const viaSocket = await new Promise<unknown>((resolve, reject) =>
        clientB.subscribe({ query: "{ customers { edges { cursor } } }" }, { next: resolve, error: reject, complete: () => {} }),
      );
      expect(viaSocket).toMatchObject({ data: { customers: expect.anything() } });

      const before = Date.now();
      expect((await t.ok(RevokeAccessToken, { id: x.id })).revokeAccessToken.__typename).toBe("AccessToken");
      expect((await t.error(ListCustomers, {}, x.token)).extensions?.code).toBe("UNAUTHENTICATED"); // node A: at once
      let refusedAt = 0;
      while (!refusedAt && Date.now() - before < ADMIN_TOKEN_CACHE_MS + 2000) {
        if ((await status(x.token)) === 401) refusedAt = Date.now();
        else await new Promise((r) => setTimeout(r, 50));
      }
      expect(refusedAt).toBeGreaterThan(0);
      figures[withRedis ? "otherNodeRefusesViaRedis" : "otherNodeRefusesNoBus"] = refusedAt - before;
      expect(refusedAt - before).toBeLessThan(withRedis ? 1000 : ADMIN_TOKEN_CACHE_MS + 500);

      const deadline = Date.now() + ADMIN_TOKEN_CACHE_MS + 3000;
      while (!closedB && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const closed = closedB as { code: number; at: number } | null;
      expect(closed?.code).toBe(CLOSE_CODES.unauthorized);
      figures[withRedis ? "otherNodeSocketClosesViaRedis" : "otherNodeSocketClosesNoBus"] = closed!.at - before;
      expect(closed!.at - before).toBeLessThan(withRedis ? 1000 : ADMIN_TOKEN_CACHE_MS + 1000);
      await clientB.dispose();
    } finally {
      await appB.close();
      await busB.close();
      await dbB.$disconnect();
    }
  }, 20_000);
});

describe("listing and revoking tokens", () => {
  it("lists the organization's tokens without secrets; sessions and other organizations cannot", async () => {
    const c = await customer(t);
    const s = await session(c);
    const { accessTokens } = await t.ok(ListAccessTokens, { customerId: c });
    expect(accessTokens.edges.map((e) => e.node)).toEqual([
      { id: s.id, kind: "CUSTOMER_SESSION", prefix: s.token.slice(0, 11), name: "customer session", customer: { id: c }, expiresAt: s.expiresAt, revokedAt: null, createdAt: expect.any(String) },
    ]);
    const all = await t.ok(ListAccessTokens, {});
    expect(JSON.stringify(all)).not.toContain(s.token);
    expect(JSON.stringify(all)).not.toContain(t.adminToken);
    expect(all.accessTokens.edges.some((e) => e.node.kind === "ADMIN")).toBe(true);

    await t.ok(RevokeAccessToken, { id: s.id });
    const active = await t.ok(ListAccessTokens, { customerId: c, active: true });
    expect(active.accessTokens.edges).toEqual([]);
    const inactive = await t.ok(ListAccessTokens, { customerId: c, active: false });
    expect(inactive.accessTokens.edges.map((e) => e.node.id)).toEqual([s.id]);

    const other = await t.newOrganization();
    expect((await t.ok(RevokeAccessToken, { id: s.id }, other.token)).revokeAccessToken).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "id" });
    expect((await t.ok(ListAccessTokens, {}, other.token)).accessTokens.edges.map((e) => e.node.id)).not.toContain(s.id);
    const live = await session(c);
    expect((await t.error(ListAccessTokens, {}, live.token)).extensions?.code).toBe("FORBIDDEN");
    const attempt = await t.ok(RevokeAccessToken, { id: live.id }, live.token);
    expect(attempt.revokeAccessToken).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
    expect((await t.ok(CreateAccessToken, { name: "x".repeat(101) })).createAccessToken).toMatchObject({ __typename: "InvalidInputError", field: "name" });
  });

  it("accessTokens(externalCustomerId) lists that customer's sessions; an unknown one is NOT_FOUND, both forms BAD_USER_INPUT", async () => {
    const c = await customer(t, "tokens_ext");
    const s = await session(c);
    await session(await customer(t)); // someone else's
    const { accessTokens } = await t.ok(ListAccessTokens, { externalCustomerId: "tokens_ext" });
    expect(accessTokens.edges.map((e) => [e.node.id, e.node.customer?.id])).toEqual([[s.id, c]]);
    expect(await t.error(ListAccessTokens, { externalCustomerId: "nobody" })).toMatchObject({ extensions: { code: "NOT_FOUND", field: "externalCustomerId" } });
    expect(await t.error(ListAccessTokens, { customerId: c, externalCustomerId: "tokens_ext" })).toMatchObject({ extensions: { code: "BAD_USER_INPUT", field: "customerId" } });
  });

  it("npm run cli -- token list / token revoke", async () => {
    const c = await customer(t);
    const s = await session(c);
    const socket = await watchingSocket(s.token);
    const env = { ...process.env, DATABASE_URL: t.databaseUrl };
    const run = promisify(execFile);
    const listed = await run(tsx, ["src/cli.ts", "token", "list", t.organizationId], { env });
    const row = listed.stdout.split("\n").find((l) => l.startsWith(s.id));
    expect(row?.split("\t").slice(0, 3)).toEqual([s.id, "CUSTOMER_SESSION", s.token.slice(0, 11)]);
    expect(listed.stdout).not.toContain(s.token);

    const revoked = await run(tsx, ["src/cli.ts", "token", "revoke", s.token.slice(0, 11)], { env });
    const before = Date.now();
    expect(revoked.stdout).toContain(`revoked ${s.id}`);
    expect((await t.error(GetCustomer, {}, s.token)).extensions?.code).toBe("UNAUTHENTICATED");
    // With REDIS_URL the CLI announces it; without, the server's sweep finds it.
    const event = await within(socket.closed, ADMIN_TOKEN_CACHE_MS + 3000, "close after CLI revocation");
    figures.cliExitToClose = event.at - before; // negative: closed before the CLI process had exited
    expect(event.code).toBe(CLOSE_CODES.unauthorized);
    expect(event.at - before).toBeLessThan(ADMIN_TOKEN_CACHE_MS + 1000);
  }, 90_000);
});

describe("what a customer session sees of the catalog", () => {
  it("only its own meters (without filters), products and benefits", async () => {
    const ada = await customer(t);
    const bob = await customer(t);
    const granted = await meter(t, "SUM", { property: "n", filter: named("catalog-granted") });
    const used = await meter(t, "COUNT", { filter: named("catalog-used") });
    const bobs = await meter(t, "COUNT", { filter: named("catalog-bob") });
    const nobodys = await meter(t, "COUNT", { filter: named("catalog-nobody") });
    await grant(t, ada, granted, "10");
    await ingest(t, [{ name: "catalog-used", customerId: ada }]);
    const adaBenefit = await benefit(t, granted, "5");
    const adaSubscriptionBenefit = await benefit(t, granted, "7");
    const bobBenefit = await benefit(t, bobs, "3");
    await benefit(t, nobodys, "1");
    const adaProduct = await product(t, [adaBenefit]);
    const adaPlan = await product(t, [adaSubscriptionBenefit], { recurring: true });
    const bobProduct = await product(t, [bobBenefit]);
    await product(t, []);
    await order(t, ada, adaProduct);
    await order(t, ada, adaPlan);
    await order(t, bob, bobProduct);

    const s = await session(ada);
    const seen = await t.ok(SessionCatalog, {}, s.token);
    expect(seen.meters.edges.map((e) => e.node.id).sort()).toEqual([granted, used].sort());
    expect(seen.meters.edges.every((e) => e.node.filter === null)).toBe(true);
    expect(seen.products.edges.map((e) => e.node.id).sort()).toEqual([adaProduct, adaPlan].sort());
    expect(seen.benefits.edges.map((e) => e.node.id).sort()).toEqual([adaBenefit, adaSubscriptionBenefit].sort());

    expect(await t.ok(CatalogItem, { meterId: bobs, productId: bobProduct, benefitId: bobBenefit }, s.token)).toEqual({ meter: null, product: null, benefit: null });
    expect(await t.ok(CatalogItem, { meterId: granted, productId: adaProduct, benefitId: adaBenefit }, s.token)).toEqual({
      meter: { id: granted, filter: null },
      product: { id: adaProduct },
      benefit: { id: adaBenefit },
    });
    const balances = await t.ok(CustomerMeterIds, {}, s.token);
    expect(balances.customerMeters.edges.map((e) => e.node.meter.filter)).toEqual([null, null]);
    // its events, filtered by a meter of its own; another meter (whose filter it could probe) does not exist for it
    expect((await t.ok(ListEvents, { meterId: used }, s.token)).events.edges.map((e) => e.node.name)).toEqual(["catalog-used"]);
    const probe = await t.error(ListEvents, { meterId: bobs }, s.token);
    expect(probe.extensions).toMatchObject({ code: "NOT_FOUND", field: "meterId" });

    // the admin sees everything, filters included
    const admin = await t.ok(SessionCatalog, {});
    expect(admin.meters.edges.map((e) => e.node.id)).toEqual(expect.arrayContaining([granted, used, bobs, nobodys]));
    expect(admin.meters.edges.find((e) => e.node.id === bobs)?.node.filter).toEqual({ conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "catalog-bob" }] });
    expect(admin.products.edges.map((e) => e.node.id)).toEqual(expect.arrayContaining([adaProduct, adaPlan, bobProduct]));
    expect(admin.benefits.edges.map((e) => e.node.id)).toEqual(expect.arrayContaining([adaBenefit, bobBenefit]));
    expect(await t.ok(CatalogItem, { meterId: bobs, productId: bobProduct, benefitId: bobBenefit })).toMatchObject({ meter: { id: bobs }, product: { id: bobProduct }, benefit: { id: bobBenefit } });
    expect((await t.ok(ListMeters, {})).meters.edges.length).toBeGreaterThanOrEqual(4);
  });
});
