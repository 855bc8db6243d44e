import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateCustomer, CreateSession, CustomerStateChanged, UpdateCustomer } from "./documents.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";

let t: TestApp;
let ada: string;
let bob: string;

beforeAll(async () => {
  t = await startTestApp();
  for (const email of ["ada@example.com", "bob@example.com"]) {
    const { createCustomer } = await t.ok(CreateCustomer, { input: { email, externalId: email.split("@")[0] } });
    if (createCustomer.__typename !== "Customer") throw new Error("setup failed");
    if (email.startsWith("ada")) ada = createCustomer.id;
    else bob = createCustomer.id;
  }
});
afterAll(() => t?.close());

describe("customerStateChanged over graphql-ws", () => {
  it("pushes the stored customer after an update made over HTTP", async () => {
    const opened = 1;
    const sub = subscription(t.wsClient(t.adminToken), CustomerStateChanged, { externalCustomerId: "ada" });
    await t.subscribed(opened);
    await t.ok(UpdateCustomer, { id: ada, input: { name: "Ada Lovelace" } });
    const msg = await sub.next();
    expect(msg.errors).toBeUndefined();
    expect(msg.data?.customerStateChanged.customer).toEqual({ id: ada, name: "Ada Lovelace", email: "ada@example.com" });
    sub.close();
  });

  it("lets a customer session watch itself", async () => {
    const { createCustomerSession } = await t.ok(CreateSession, { customerId: bob });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
    const sub = subscription(t.wsClient(createCustomerSession.token), CustomerStateChanged, {});
    await t.subscribed(2);
    await t.ok(UpdateCustomer, { id: bob, input: { name: "Bob" } });
    expect((await sub.next()).data?.customerStateChanged.customer.name).toBe("Bob");
    sub.close();
  });

  it("refuses a customer session that subscribes to another customer", async () => {
    const { createCustomerSession } = await t.ok(CreateSession, { customerId: bob });
    if (createCustomerSession.__typename !== "CustomerSession") throw new Error("no session");
    const sub = subscription(t.wsClient(createCustomerSession.token), CustomerStateChanged, { customerId: ada });
    const msg = await sub.next();
    expect(msg.errors?.[0]).toMatchObject({ extensions: { code: "FORBIDDEN" } });
  });

  it("hides another organization's customer from a subscription", async () => {
    const other = await t.newOrganization();
    const sub = subscription(t.wsClient(other.token), CustomerStateChanged, { customerId: ada });
    expect((await sub.next()).errors?.[0]).toMatchObject({ extensions: { code: "NOT_FOUND" } });
  });

  it("closes a connection without a valid token with 4401", async () => {
    for (const token of [null, "crl_admin_bogus"]) {
      const closed = new Promise<{ code: number; reason: string }>((resolve) => t.wsClient(token, resolve));
      const event = await closed;
      expect(event.code).toBe(4401);
      expect(event.reason).toMatch(/^Unauthorized/);
    }
  });
});
