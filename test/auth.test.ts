import { parse } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeUsage, CreateCreditSystem, CreateCustomer, GrantCredits, CreateSession, GetCustomer, GetCustomerState, ListCustomers, ReserveRated, UpdateCustomer } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { benefit, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { createAdminToken } from "../src/domain/access-tokens.ts";
import { cachedAuthenticator, hashToken } from "../src/domain/auth.ts";

let t: TestApp;
let ada: string;
let bob: string;

beforeAll(async () => {
  t = await startTestApp();
  const a = await t.ok(CreateCustomer, { input: { email: "ada@example.com", externalId: "ada" } });
  const b = await t.ok(CreateCustomer, { input: { email: "bob@example.com", externalId: "bob" } });
  if (a.createCustomer.__typename !== "Customer" || b.createCustomer.__typename !== "Customer") throw new Error("setup failed");
  ada = a.createCustomer.id;
  bob = b.createCustomer.id;
});
afterAll(() => t?.close());

async function sessionFor(customerId: string, ttlSeconds?: number) {
  const { createCustomerSession } = await t.ok(CreateSession, { customerId, ttlSeconds });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  return createCustomerSession;
}

describe("authentication", () => {
  it("answers UNAUTHENTICATED without a token", async () => {
    const err = await t.error(GetCustomer, { id: ada }, null);
    expect(err.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("answers UNAUTHENTICATED with HTTP 401 for an unknown token", async () => {
    const res = await fetch(t.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer crl_admin_not-a-real-token" },
      body: JSON.stringify({ query: "{ customers { edges { cursor } } }" }),
    });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { errors: { extensions: { code: string } }[] };
    expect(body.errors[0].extensions.code).toBe("UNAUTHENTICATED");
  });

  it("answers UNAUTHENTICATED for a malformed Authorization header", async () => {
    const res = await fetch(t.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Token abc" },
      body: JSON.stringify({ query: "{ customers { edges { cursor } } }" }),
    });
    expect(((await res.json()) as { errors: { extensions: { code: string } }[] }).errors[0].extensions.code).toBe("UNAUTHENTICATED");
  });

  it("looks an admin token up once for a few seconds, a customer session on every request", async () => {
    const tokenLookups = async (read: () => Promise<unknown>) => (await t.queriesDuring(read)).filter((q) => q.includes("AccessToken")).length;
    // a token this server has not seen yet: looked up, then remembered
    const other = await t.newOrganization();
    expect(await tokenLookups(() => t.ok(ListCustomers, {}, other.token))).toBe(1);
    expect(await tokenLookups(() => t.ok(ListCustomers, {}, other.token))).toBe(0);
    const session = await sessionFor(ada);
    expect(await tokenLookups(() => t.ok(GetCustomer, { id: ada }, session.token))).toBe(1);
    expect(await tokenLookups(() => t.ok(GetCustomer, { id: ada }, session.token))).toBe(1);
  });

  it("still serves introspection without a token (GraphiQL loads its schema)", async () => {
    const res = await fetch(t.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ __schema { queryType { name } } }" }),
    });
    expect(await res.json()).toEqual({ data: { __schema: { queryType: { name: "Query" } } } });
  });
});

describe("tenancy", () => {
  it("hides another organization's customers as if they did not exist", async () => {
    const other = await t.newOrganization();
    expect((await t.ok(GetCustomer, { id: ada }, other.token)).customer).toBeNull();
    expect((await t.ok(GetCustomer, { externalId: "ada" }, other.token)).customer).toBeNull();
    expect((await t.ok(ListCustomers, {}, other.token)).customers.edges).toEqual([]);
    const upd = await t.ok(UpdateCustomer, { id: ada, input: { name: "hijack" } }, other.token);
    expect(upd.updateCustomer).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND" });
    const state = await t.error(GetCustomerState, { customerId: ada }, other.token);
    expect(state.extensions?.code).toBe("NOT_FOUND");
  });

  it("lets two organizations use the same email and externalId", async () => {
    const other = await t.newOrganization();
    const { createCustomer } = await t.ok(CreateCustomer, { input: { email: "ada@example.com", externalId: "ada" } }, other.token);
    expect(createCustomer.__typename).toBe("Customer");
  });
});

describe("customer sessions", () => {
  it("reads its own customer, with or without naming it", async () => {
    const session = await sessionFor(ada);
    expect(session.customer.id).toBe(ada);
    expect((await t.ok(GetCustomer, {}, session.token)).customer?.id).toBe(ada);
    expect((await t.ok(GetCustomer, { id: ada }, session.token)).customer?.id).toBe(ada);
    expect((await t.ok(GetCustomerState, {}, session.token)).customerState.customer.id).toBe(ada);
  });

  it("is FORBIDDEN to read another customer", async () => {
    const session = await sessionFor(ada);
    expect((await t.error(GetCustomer, { id: bob }, session.token)).extensions?.code).toBe("FORBIDDEN");
    expect((await t.error(GetCustomer, { externalId: "bob" }, session.token)).extensions?.code).toBe("FORBIDDEN");
    expect((await t.error(GetCustomerState, { customerId: bob }, session.token)).extensions?.code).toBe("FORBIDDEN");
  });

  it("is FORBIDDEN to list customers or write", async () => {
    const session = await sessionFor(ada);
    expect((await t.error(ListCustomers, {}, session.token)).extensions?.code).toBe("FORBIDDEN");
    const write = await t.ok(UpdateCustomer, { id: ada, input: { name: "me" } }, session.token);
    expect(write.updateCustomer).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
    expect((await t.db.customer.findUniqueOrThrow({ where: { id: ada } })).name).toBeNull();
  });

  it("stops working when it expires", async () => {
    const session = await sessionFor(ada, 60);
    await t.db.accessToken.updateMany({ where: { kind: "CUSTOMER_SESSION", expiresAt: new Date(session.expiresAt) }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect((await t.error(GetCustomer, {}, session.token)).extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("rejects an out-of-range lifetime and an unknown customer with typed errors", async () => {
    expect((await t.ok(CreateSession, { customerId: ada, ttlSeconds: 5 })).createCustomerSession).toMatchObject({ __typename: "InvalidInputError", field: "ttlSeconds" });
    expect((await t.ok(CreateSession, { externalCustomerId: "nobody" })).createCustomerSession).toMatchObject({ __typename: "NotFoundError", field: "externalCustomerId" });
    expect((await t.ok(CreateSession, {})).createCustomerSession).toMatchObject({ __typename: "InvalidInputError", field: "customerId" });
  });

  it("stores only a hash of every token", async () => {
    const session = await sessionFor(bob);
    const rows = await t.db.accessToken.findMany();
    expect(rows.some((r) => r.tokenHash === session.token || r.tokenHash.includes(session.token))).toBe(false);
    expect(rows.every((r) => /^[0-9a-f]{64}$/.test(r.tokenHash))).toBe(true);
  });
});

describe("what the merchant keeps for itself", () => {
  it("a customer session reads its customer's metadata as {} and the idempotency keys of grants, orders and holds as null", async () => {
    const { createCustomer } = await t.ok(CreateCustomer, { input: { email: "kept@example.com", externalId: "kept", metadata: { risk: "high", note: "internal" } } });
    if (createCustomer.__typename !== "Customer") throw new Error(JSON.stringify(createCustomer));
    const c = createCustomer.id;
    const m = await meter(t, "COUNT", { filter: named("kept") });
    await grant(t, c, m, "10", "grant-key-1");
    await order(t, c, await product(t, [await benefit(t, m, "5")]), "order-key-1");
    await t.ok(ReserveRated, { input: { customerId: c, meterId: m, units: "1", idempotencyKey: "hold-key-1" } });
    const read = parse(`query($c: ID) { customer(id: $c) { metadata } creditGrants(customerId: $c) { edges { node { idempotencyKey } } } orders(customerId: $c) { edges { node { idempotencyKey } } } reservations(customerId: $c) { edges { node { idempotencyKey } } } }`);
    type Keys = { customer: { metadata: unknown } } & Record<"creditGrants" | "orders" | "reservations", { edges: { node: { idempotencyKey: string | null } }[] }>;
    const keys = (data: unknown) => {
      const d = data as Keys;
      return [d.customer.metadata, ...(["creditGrants", "orders", "reservations"] as const).map((f) => d[f].edges.map((e) => e.node.idempotencyKey))];
    };
    const asAdmin = await t.exec(read as never, { c } as never);
    expect(keys(asAdmin.data)).toEqual([{ risk: "high", note: "internal" }, ["grant-key-1", null], ["order-key-1"], ["hold-key-1"]]);
    const session = await sessionFor(c);
    const asCustomer = await t.exec(read as never, { c } as never, session.token);
    expect(asCustomer.errors).toBeUndefined();
    expect(keys(asCustomer.data)).toEqual([{}, [null, null], [null], [null]]);
  });
});

describe("what a session cannot learn of other customers and the merchant", () => {
  it("an authorizeUsage entry's description names the merchant's key to an admin, not to the customer's session", async () => {
    const m = await meter(t, "COUNT", { filter: named("kept-auth") });
    await grant(t, ada, m, "10");
    const { authorizeUsage } = await t.ok(AuthorizeUsage, { input: { customerId: ada, meterId: m, units: "1", idempotencyKey: "pi_secret_1" } });
    expect(authorizeUsage).toMatchObject({ allowed: true });
    const read = parse(`query($c: ID, $m: ID) { ledger(customerId: $c, meterId: $m) { edges { node { kind description } } } }`);
    const usage = (data: unknown) => (data as { ledger: { edges: { node: { kind: string; description: string | null } }[] } }).ledger.edges.filter((e) => e.node.kind === "USAGE").map((e) => e.node.description);
    expect(usage((await t.exec(read as never, { c: ada, m } as never)).data)).toEqual(["authorizeUsage pi_secret_1"]);
    const session = await sessionFor(ada);
    expect(usage((await t.exec(read as never, { c: ada, m } as never, session.token)).data)).toEqual(["authorizeUsage"]);
  });

  it("a pool's creditRates name to a session only the rated meters it has a balance on", async () => {
    const used = await meter(t, "COUNT", { filter: named("rates-used") });
    const unseen = await meter(t, "COUNT", { filter: named("rates-unreleased") });
    const { createCreditSystem } = await t.ok(CreateCreditSystem, { input: { name: "pool", rates: [{ meterId: used, creditsPerUnit: "1" }, { meterId: unseen, creditsPerUnit: "5" }] } });
    if (createCreditSystem.__typename !== "Meter") throw new Error(JSON.stringify(createCreditSystem));
    const pool = createCreditSystem.id;
    await grant(t, ada, pool, "100");
    await ingest(t, [{ name: "rates-used", customerId: ada }]);
    const read = parse(`query($p: ID!) { meter(id: $p) { creditRates { meter { id } } } }`);
    const rated = (data: unknown) => (data as { meter: { creditRates: { meter: { id: string } }[] } }).meter.creditRates.map((r) => r.meter.id);
    expect(rated((await t.exec(read as never, { p: pool } as never)).data)).toEqual(expect.arrayContaining([used, unseen]));
    const session = await sessionFor(ada);
    expect(rated((await t.exec(read as never, { p: pool } as never, session.token)).data)).toEqual([used]);
  });

  it("another customer's ledger entry or grant as a cursor is no cursor: BAD_USER_INPUT, as an id of nothing", async () => {
    const m = await meter(t, "COUNT", { filter: named("cursor-oracle") });
    const expires = new Date(Date.now() + 30 * 86_400_000).toISOString();
    for (const c of [ada, bob]) await t.ok(GrantCredits, { input: { customerId: c, meterId: m, units: "5", expiresAt: expires } });
    const ids = parse(`query($c: ID, $m: ID) { ledger(customerId: $c, meterId: $m) { edges { node { id } } } creditGrants(customerId: $c, meterId: $m) { edges { node { id } } } }`);
    const bobs = (await t.exec(ids as never, { c: bob, m } as never)).data as { ledger: { edges: { node: { id: string } }[] }; creditGrants: { edges: { node: { id: string } }[] } };
    const cursor = (id: string) => Buffer.from(`GPC:S:${id}`).toString("base64");
    const session = await sessionFor(ada);
    const codes = async (query: string, after: string) => (await t.exec(parse(query) as never, { a: after } as never, session.token)).errors?.map((e) => [e.extensions?.code, e.extensions?.field]);
    for (const query of [`query($a: String) { ledger(after: $a) { edges { node { id } } } }`, `query($a: String) { expiringCredits(within: 99999999, after: $a) { edges { node { id } } } }`]) {
      const other = query.includes("ledger") ? bobs.ledger.edges[0].node.id : bobs.creditGrants.edges[0].node.id;
      expect(await codes(query, cursor(other))).toEqual([["BAD_USER_INPUT", "after"]]);
      expect(await codes(query, cursor("no-such-row"))).toEqual([["BAD_USER_INPUT", "after"]]);
    }
  });
});

describe("the admin token cache", () => {
  it("keeps nothing a lookup read while the token was being revoked: the next use is looked up again", async () => {
    const { token, accessToken } = await createAdminToken(t.db, t.organizationId, "racing a revocation");
    const authenticate = cachedAuthenticator(t.db);
    const key = hashToken(token);
    const lookup = authenticate(key); // reads the token before the revocation commits
    authenticate.forget(accessToken.id); // the revocation's announcement arrives while that read is in flight
    await expect(lookup).resolves.toMatchObject({ kind: "admin", tokenId: accessToken.id });
    await t.db.accessToken.update({ where: { id: accessToken.id }, data: { revokedAt: new Date() } });
    await expect(authenticate(key)).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
  });
});
