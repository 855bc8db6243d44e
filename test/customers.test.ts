import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateCustomer, DeleteCustomer, GetCustomer, ListCustomers, UpdateCustomer } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

async function create(input: { email: string; name?: string; externalId?: string; metadata?: unknown }) {
  const { createCustomer } = await t.ok(CreateCustomer, { input });
  return createCustomer;
}

describe("customers", () => {
  it("creates a customer and reads it back by id and by externalId", async () => {
    const created = await create({ email: "Ada@Example.com", name: "Ada", externalId: "user_ada", metadata: { plan: "pro", seats: 3, beta: true } });
    expect(created.__typename).toBe("Customer");
    if (created.__typename !== "Customer") return;
    expect(created).toMatchObject({ email: "Ada@Example.com", name: "Ada", externalId: "user_ada", metadata: { plan: "pro", seats: 3, beta: true } });

    const byId = await t.ok(GetCustomer, { id: created.id });
    const byExternal = await t.ok(GetCustomer, { externalId: "user_ada" });
    expect(byId.customer?.id).toBe(created.id);
    expect(byExternal.customer?.id).toBe(created.id);
  });

  it("rejects an email that differs only in case, naming the field", async () => {
    await create({ email: "case@example.com" });
    const dup = await create({ email: "CASE@example.COM" });
    expect(dup).toMatchObject({ __typename: "ConflictError", code: "CONFLICT", field: "input.email" });
  });

  it("rejects a duplicate externalId, naming the field", async () => {
    await create({ email: "x1@example.com", externalId: "dup" });
    const dup = await create({ email: "x2@example.com", externalId: "dup" });
    expect(dup).toMatchObject({ __typename: "ConflictError", code: "CONFLICT", field: "input.externalId" });
  });

  it("rejects invalid input with typed errors and writes nothing", async () => {
    const before = await t.db.customer.count();
    expect(await create({ email: "not-an-email" })).toMatchObject({ __typename: "InvalidInputError", code: "BAD_USER_INPUT", field: "input.email" });
    expect(await create({ email: "m@example.com", metadata: { nested: { no: 1 } } })).toMatchObject({
      __typename: "InvalidInputError",
      field: "input.metadata.nested",
    });
    expect(await create({ email: "m@example.com", metadata: [1, 2] })).toMatchObject({ field: "input.metadata" });
    expect(await create({ email: "e@example.com", externalId: "   " })).toMatchObject({ field: "input.externalId" });
    expect(await t.db.customer.count()).toBe(before);
  });

  it("updates fields, and null clears name and externalId", async () => {
    const c = await create({ email: "upd@example.com", name: "Old", externalId: "upd" });
    if (c.__typename !== "Customer") throw new Error("create failed");
    const { updateCustomer } = await t.ok(UpdateCustomer, { id: c.id, input: { name: "New", email: "UPD2@example.com" } });
    expect(updateCustomer).toMatchObject({ __typename: "Customer", name: "New", email: "UPD2@example.com", externalId: "upd" });
    const cleared = await t.ok(UpdateCustomer, { id: c.id, input: { name: null, externalId: null } });
    expect(cleared.updateCustomer).toMatchObject({ name: null, externalId: null });
  });

  it("refuses an update that would collide with another customer's email", async () => {
    await create({ email: "taken@example.com" });
    const c = await create({ email: "free@example.com" });
    if (c.__typename !== "Customer") throw new Error("create failed");
    const { updateCustomer } = await t.ok(UpdateCustomer, { id: c.id, input: { email: "Taken@example.com" } });
    expect(updateCustomer).toMatchObject({ __typename: "ConflictError", field: "input.email" });
  });

  it("soft-deletes: the customer disappears from reads and its email and externalId are free again", async () => {
    const c = await create({ email: "gone@example.com", externalId: "gone" });
    if (c.__typename !== "Customer") throw new Error("create failed");
    expect((await t.ok(DeleteCustomer, { id: c.id })).deleteCustomer).toEqual({ __typename: "Customer", id: c.id });
    expect((await t.ok(GetCustomer, { id: c.id })).customer).toBeNull();
    expect((await t.ok(GetCustomer, { externalId: "gone" })).customer).toBeNull();
    expect(await t.db.customer.findUnique({ where: { id: c.id } })).not.toBeNull(); // history kept
    const again = await create({ email: "gone@example.com", externalId: "gone" });
    expect(again.__typename).toBe("Customer");
    expect((await t.ok(DeleteCustomer, { id: c.id })).deleteCustomer).toMatchObject({ __typename: "NotFoundError", field: "id" });
  });

  it("pages through customers with a Relay connection and filters by email", async () => {
    const org = await t.newOrganization("Paging org");
    const emails = ["p1@example.com", "p2@example.com", "p3@example.com"];
    for (const email of emails) await t.ok(CreateCustomer, { input: { email } }, org.token);

    const page1 = await t.ok(ListCustomers, { first: 2 }, org.token);
    expect(page1.customers.edges.map((e) => e.node.email)).toEqual(emails.slice(0, 2));
    expect(page1.customers.pageInfo.hasNextPage).toBe(true);
    const page2 = await t.ok(ListCustomers, { first: 2, after: page1.customers.pageInfo.endCursor }, org.token);
    expect(page2.customers.edges.map((e) => e.node.email)).toEqual(emails.slice(2));
    expect(page2.customers.pageInfo.hasNextPage).toBe(false);

    const filtered = await t.ok(ListCustomers, { email: "P2@EXAMPLE.com" }, org.token);
    expect(filtered.customers.edges.map((e) => e.node.email)).toEqual(["p2@example.com"]);
  });
});
