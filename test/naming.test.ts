// One naming convention: a customer is addressed by customerId | externalCustomerId, every mutation takes one
// `input` (the older loose arguments stay one release, deprecated, and still work), closed sets are enums,
// and email is optional.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CommitReservation,
  CommitReservationByInput,
  CreateAccessToken,
  CreateAccessTokenByInput,
  CreateCustomer,
  CreateSession,
  CreateSessionByInput,
  CustomerByExternalId,
  DeleteCustomerByInput,
  DeprecatedArguments,
  GetCustomer,
  GrantKinds,
  IngestEventsByInput,
  ReserveUsage,
  UpdateCustomer,
  UpdateCustomerByInput,
  UpdateMeter,
  UpdateMeterByInput,
} from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { customer, grant, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
let m: string;

beforeAll(async () => {
  t = await startTestApp();
  m = await meter(t, "SUM", { property: "n", filter: named("naming") });
});
afterAll(() => t?.close());

describe("deprecated aliases still work and introspection shows them deprecated", () => {
  let deprecated: Map<string, boolean>;
  beforeAll(async () => {
    const { __schema } = await t.ok(DeprecatedArguments, {}, null);
    deprecated = new Map(
      [...(__schema.queryType.fields ?? []), ...(__schema.mutationType?.fields ?? [])].flatMap((f) => f.args.map((a) => [`${f.name}.${a.name}`, a.isDeprecated] as const)),
    );
  });
  const shows = (field: string, args: string[]) => {
    for (const arg of args) expect(deprecated.get(`${field}.${arg}`), `${field}(${arg})`).toBe(true);
  };

  it("customer(externalId) → externalCustomerId", async () => {
    const c = await customer(t, "alias_ext");
    expect((await t.ok(GetCustomer, { externalId: "alias_ext" })).customer?.id).toBe(c);
    expect((await t.ok(CustomerByExternalId, { externalCustomerId: "alias_ext" })).customer?.id).toBe(c);
    shows("customer", ["externalId"]);
    expect(deprecated.get("customer.externalCustomerId")).toBe(false);
  });

  it("updateCustomer(id) → input.customerId", async () => {
    const c = await customer(t);
    expect((await t.ok(UpdateCustomer, { id: c, input: { name: "old form" } })).updateCustomer).toMatchObject({ __typename: "Customer", name: "old form" });
    shows("updateCustomer", ["id"]);
  });

  it("createCustomerSession(customerId, externalCustomerId, ttlSeconds) → input", async () => {
    const c = await customer(t);
    expect((await t.ok(CreateSession, { customerId: c, ttlSeconds: 120 })).createCustomerSession).toMatchObject({ __typename: "CustomerSession", customer: { id: c } });
    shows("createCustomerSession", ["customerId", "externalCustomerId", "ttlSeconds"]);
  });

  it("ingestEvents(events, mode) → input", async () => {
    const c = await customer(t);
    expect((await ingest(t, [{ name: "naming", customerId: c, metadata: { n: 1 } }])).inserted).toBe(1);
    shows("ingestEvents", ["events", "mode"]);
  });

  it("commitReservation(id, units) → input", async () => {
    const c = await customer(t);
    await grant(t, c, m, "10");
    const reserved = (await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "2" } })).reserveUsage;
    if (reserved.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserved));
    expect((await t.ok(CommitReservation, { id: reserved.id!, units: "1" })).commitReservation).toMatchObject({ __typename: "Reservation", status: "COMMITTED" });
    shows("commitReservation", ["id", "units"]);
  });

  it("createAccessToken(name) → input", async () => {
    expect((await t.ok(CreateAccessToken, { name: "old form" })).createAccessToken.__typename).toBe("CreatedAccessToken");
    shows("createAccessToken", ["name"]);
  });

  it("updateMeter(id) and updateProduct(id) → input.id", async () => {
    expect((await t.ok(UpdateMeter, { id: m, input: { name: "renamed the old way" } })).updateMeter).toMatchObject({ __typename: "Meter", name: "renamed the old way" });
    shows("updateMeter", ["id"]);
    shows("updateProduct", ["id"]);
  });
});

describe("input forms", () => {
  it("updateCustomer and deleteCustomer address a customer by externalCustomerId or customerId", async () => {
    const c = await customer(t, "by_ext");
    const updated = (await t.ok(UpdateCustomerByInput, { input: { externalCustomerId: "by_ext", name: "Ada" } })).updateCustomer;
    expect(updated).toMatchObject({ __typename: "Customer", id: c, name: "Ada" });
    expect((await t.ok(UpdateCustomerByInput, { input: { customerId: c, name: "Bea" } })).updateCustomer).toMatchObject({ name: "Bea" });
    const missing = (await t.ok(UpdateCustomerByInput, { input: { externalCustomerId: "nobody", name: "x" } })).updateCustomer;
    expect(missing).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "input.externalCustomerId" });
    const both = (await t.ok(UpdateCustomer, { id: c, input: { customerId: c, name: "x" } })).updateCustomer;
    expect(both).toMatchObject({ __typename: "InvalidInputError", field: "id" });
    expect((await t.ok(DeleteCustomerByInput, { input: { externalCustomerId: "by_ext" } })).deleteCustomer).toMatchObject({ __typename: "Customer", id: c });
    expect((await t.ok(CustomerByExternalId, { externalCustomerId: "by_ext" })).customer).toBeNull();
  });

  it("createCustomerSession(input) names its errors under input", async () => {
    const c = await customer(t, "session_input");
    expect((await t.ok(CreateSessionByInput, { input: { externalCustomerId: "session_input" } })).createCustomerSession).toMatchObject({ customer: { id: c } });
    const short = (await t.ok(CreateSessionByInput, { input: { customerId: c, ttlSeconds: 5 } })).createCustomerSession;
    expect(short).toMatchObject({ __typename: "InvalidInputError", field: "input.ttlSeconds" });
    const unknown = (await t.ok(CreateSessionByInput, { input: { customerId: "nobody" } })).createCustomerSession;
    expect(unknown).toMatchObject({ __typename: "NotFoundError", field: "input.customerId" });
  });

  it("ingestEvents(input) names a bad event under input.events", async () => {
    const c = await customer(t);
    expect((await t.ok(IngestEventsByInput, { input: { events: [{ name: "naming", customerId: c }], mode: "STRICT" } })).ingestEvents).toMatchObject({ inserted: 1 });
    const bad = (await t.ok(IngestEventsByInput, { input: { events: [{ name: "naming", customerId: "nobody" }] } })).ingestEvents;
    expect(bad).toMatchObject({ __typename: "NotFoundError", field: "input.events.0.customerId" });
    // Neither form given: the loose form's required argument is checked in the resolver, as a typed error.
    const neither = await fetch(t.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${t.adminToken}` },
      body: JSON.stringify({ query: "mutation { ingestEvents { __typename ... on Error { field } } }" }),
    });
    expect(await neither.json()).toEqual({ data: { ingestEvents: { __typename: "InvalidInputError", field: "input" } } });
  });

  it("commitReservation(input), createAccessToken(input) and updateMeter(input.id)", async () => {
    const c = await customer(t);
    await grant(t, c, m, "10");
    const reserved = (await t.ok(ReserveUsage, { input: { customerId: c, meterId: m, units: "2" } })).reserveUsage;
    if (reserved.__typename !== "UsageReservation") throw new Error(JSON.stringify(reserved));
    expect((await t.ok(CommitReservationByInput, { input: { id: reserved.id!, units: "2" } })).commitReservation).toMatchObject({ status: "COMMITTED" });
    expect((await t.ok(CommitReservationByInput, { input: { id: "nope", units: "1" } })).commitReservation).toMatchObject({ __typename: "NotFoundError", field: "input.id" });
    expect((await t.ok(CreateAccessTokenByInput, { input: { name: "x".repeat(101) } })).createAccessToken).toMatchObject({ __typename: "InvalidInputError", field: "input.name" });
    expect((await t.ok(UpdateMeterByInput, { input: { id: m, name: "renamed" } })).updateMeter).toMatchObject({ __typename: "Meter", name: "renamed" });
    expect((await t.ok(UpdateMeterByInput, { input: { id: "nope", name: "x" } })).updateMeter).toMatchObject({ __typename: "NotFoundError", field: "input.id" });
  });
});

describe("closed sets are enums with their old wire text", () => {
  it("CreditGrant.source and LedgerEntry.kind", async () => {
    const c = await customer(t);
    await grant(t, c, m, "5");
    await ingest(t, [{ name: "naming", customerId: c, metadata: { n: 2 } }]);
    const { creditGrants, ledger } = await t.ok(GrantKinds, { customerId: c, meterId: m });
    expect(creditGrants.edges.map((e) => e.node.source)).toEqual(["ADMIN"]);
    expect(ledger.edges.map((e) => e.node.kind)).toEqual(["GRANT", "USAGE"]);
    const introspection = await fetch(t.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `{ s: __type(name: "CreditGrant") { fields { name type { ofType { kind name } } } } k: __type(name: "LedgerEntry") { fields { name type { ofType { kind name } } } } }` }),
    });
    const { data } = (await introspection.json()) as { data: Record<"s" | "k", { fields: { name: string; type: { ofType: { kind: string; name: string } } }[] }> };
    expect(data.s.fields.find((f) => f.name === "source")?.type.ofType).toEqual({ kind: "ENUM", name: "CreditGrantSource" });
    expect(data.k.fields.find((f) => f.name === "kind")?.type.ofType).toEqual({ kind: "ENUM", name: "LedgerEntryKind" });
  });
});

describe("email is optional", () => {
  it("customers known only by the merchant's id, several of them; a given email stays unique", async () => {
    const first = (await t.ok(CreateCustomer, { input: { externalId: "no_email_1" } })).createCustomer;
    const second = (await t.ok(CreateCustomer, { input: { externalId: "no_email_2" } })).createCustomer;
    expect(first).toMatchObject({ __typename: "Customer", email: null });
    expect(second).toMatchObject({ __typename: "Customer", email: null });
    await t.ok(CreateCustomer, { input: { email: "once@example.com" } });
    const again = (await t.ok(CreateCustomer, { input: { email: "ONCE@example.com" } })).createCustomer;
    expect(again).toMatchObject({ __typename: "ConflictError", field: "input.email" });
    // null clears an email
    const cleared = (await t.ok(UpdateCustomerByInput, { input: { externalCustomerId: "no_email_1", email: "set@example.com" } })).updateCustomer;
    expect(cleared).toMatchObject({ email: "set@example.com" });
    expect((await t.ok(UpdateCustomerByInput, { input: { externalCustomerId: "no_email_1", email: null } })).updateCustomer).toMatchObject({ email: null });
  });
});
