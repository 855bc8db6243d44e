// Small builders for test data, all going through the public API.
import { CreateBenefit, CreateCustomer, CreateMeter, CreateOrder, CreateProduct, CreditGrantsOf, GetCustomerMeter, GrantCredits, IngestEvents, LedgerOf } from "../documents.ts";
import type { EventInput, MeterFilterInput, PriceInput } from "../gql/graphql.ts";
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
  opts: { property?: string; filter?: MeterFilterInput; name?: string; negativeValues?: "REJECT" | "CREDIT" } = {},
): Promise<string> {
  const { createMeter } = await t.ok(CreateMeter, {
    input: {
      name: opts.name ?? `${func.toLowerCase()}_${++serial}`,
      filter: opts.filter ?? named("use"),
      aggregation: { func, property: opts.property },
      negativeValues: opts.negativeValues,
    },
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

export async function benefit(t: TestApp, meterId: string, units: string, opts: { rollover?: boolean; expiresAfterDays?: number } = {}) {
  const { createBenefit } = await t.ok(CreateBenefit, { input: { type: "METER_CREDITS", description: `${units} credits`, meterId, units, ...opts } });
  if (createBenefit.__typename !== "Benefit") throw new Error(JSON.stringify(createBenefit));
  return createBenefit.id;
}

export async function product(t: TestApp, benefitIds: string[], opts: { recurring?: boolean; prices?: PriceInput[] } = {}) {
  const { createProduct } = await t.ok(CreateProduct, {
    input: { name: "p", benefitIds, recurringInterval: opts.recurring ? "MONTH" : undefined, prices: opts.prices },
  });
  if (createProduct.__typename !== "Product") throw new Error(JSON.stringify(createProduct));
  return createProduct.id;
}

export async function order(t: TestApp, customerId: string, productId: string, idempotencyKey?: string) {
  const { createOrder } = await t.ok(CreateOrder, { input: { customerId, productId, idempotencyKey } });
  if (createOrder.__typename !== "Order") throw new Error(JSON.stringify(createOrder));
  return createOrder;
}

/** A page of any connection, as the paging helpers below read it. */
interface Page<N> {
  edges: { node: N }[];
  pageInfo: { hasNextPage: boolean; endCursor?: string | null };
}

/** Every node of a connection, following its cursors a page of `first` at a time (the lists' maximum by default). */
export async function allNodes<N>(read: (page: { first: number; after: string | null }) => Promise<Page<N>>, first = 100): Promise<N[]> {
  const nodes: N[] = [];
  for (let after: string | null = null; ; ) {
    const page: Page<N> = await read({ first, after });
    nodes.push(...page.edges.map((e) => e.node));
    if (!page.pageInfo.hasNextPage) return nodes;
    after = page.pageInfo.endCursor ?? null;
  }
}

/** A customer's whole ledger on one meter, in order. */
export const ledgerOf = (t: TestApp, customerId: string, meterId: string) =>
  allNodes(async (page) => (await t.ok(LedgerOf, { customerId, meterId, ...page })).ledger);

/** All of a customer's grants on one meter, oldest first. */
export const creditGrantsOf = (t: TestApp, customerId: string, meterId: string) =>
  allNodes(async (page) => (await t.ok(CreditGrantsOf, { customerId, meterId, ...page })).creditGrants);
