// Small builders for test data, all going through the public API.
import { CreateCustomer, CreateMeter, GetCustomerMeter, GrantCredits, IngestEvents } from "../documents.ts";
import type { EventInput, MeterFilterInput } from "../gql/graphql.ts";
import type { TestApp } from "./app.ts";

let serial = 0;

export async function customer(t: TestApp, externalId = `cust_${++serial}`, token?: string): Promise<string> {
  const { createCustomer } = await t.ok(CreateCustomer, { input: { email: `${externalId}@example.com`, externalId } }, token);
  if (createCustomer.__typename !== "Customer") throw new Error(JSON.stringify(createCustomer));
  return createCustomer.id;
}

/** A filter matching events with this name. */
export const named = (name: string): MeterFilterInput => ({ conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: name }] });

export async function meter(
  t: TestApp,
  func: "COUNT" | "SUM" | "MAX" | "MIN" | "AVG" | "UNIQUE",
  opts: { property?: string; filter?: MeterFilterInput; name?: string } = {},
): Promise<string> {
  const { createMeter } = await t.ok(CreateMeter, {
    input: { name: opts.name ?? `${func.toLowerCase()}_${++serial}`, filter: opts.filter ?? named("use"), aggregation: { func, property: opts.property } },
  });
  if (createMeter.__typename !== "Meter") throw new Error(JSON.stringify(createMeter));
  return createMeter.id;
}

export async function ingest(t: TestApp, events: EventInput[], token?: string) {
  const { ingestEvents } = await t.ok(IngestEvents, { events }, token);
  if (ingestEvents.__typename !== "IngestSummary") throw new Error(JSON.stringify(ingestEvents));
  return ingestEvents;
}

export async function balanceOf(t: TestApp, customerId: string, meterId: string) {
  const { customerMeter } = await t.ok(GetCustomerMeter, { customerId, meterId });
  return customerMeter;
}

export async function grant(t: TestApp, customerId: string, meterId: string, units: string, idempotencyKey?: string) {
  const { grantCredits } = await t.ok(GrantCredits, { input: { customerId, meterId, units, idempotencyKey } });
  if (grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(grantCredits));
  return grantCredits;
}
