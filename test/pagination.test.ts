// One pagination rule for every list. The connection fields are found by introspection, so a list added
// later is held to the rule without anyone remembering to add it here: a field this file cannot reach fails.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { parse } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeleteCustomer, GrantCredits, ListCustomers, OrdersOf } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { benefit, customer, grant, ingest, meter, named, order, product } from "./support/fixtures.ts";
import { MAX_PAGE_SIZE } from "../src/schema/pagination.ts";
import { MAX_EVENTS_PAGE_SIZE } from "../src/domain/events.ts";

let t: TestApp;
let c: string;
let m: string;
let plan: string;
let pack: string;

/** Connections without totalCount, each for a documented reason (README "Pagination"). */
const WITHOUT_TOTAL_COUNT = new Set(["EventConnection"]);

interface ConnectionField {
  /** Type.field, e.g. Query.ledger or Customer.orders */
  name: string;
  parent: string;
  field: string;
  connectionType: string;
  args: { name: string; required: boolean; description: string | null }[];
}

/** How to reach a connection field of a type other than Query: a query reading one instance of that type. */
const PARENTS: Record<string, (inner: string) => string> = {
  Customer: (inner) => `customer(id: $customerId) { ${inner} }`,
};

/** Values for a connection's other arguments, by name: the list is read for the test customer and meter. */
const ARG_VALUES = (): Record<string, { type: string; value: unknown }> => ({
  customerId: { type: "ID", value: c },
  meterId: { type: "ID", value: m },
  within: { type: "Int!", value: 365 * 86_400 },
});

async function connectionFields(): Promise<ConnectionField[]> {
  const { data } = await t.exec(
    doc<{ __schema: { types: { name: string; kind: string; fields: { name: string; type: unknown; args: { name: string; description: string | null; type: { kind: string } }[] }[] | null }[] } }>(`{
      __schema { types { name kind fields { name type { kind name ofType { kind name } } args { name description type { kind } } } } }
    }`),
  );
  const found: ConnectionField[] = [];
  for (const type of data!.__schema.types) {
    if (type.kind !== "OBJECT" || type.name.startsWith("__")) continue;
    for (const f of type.fields ?? []) {
      const argNames = f.args.map((a) => a.name);
      if (!argNames.includes("first") || !argNames.includes("after")) continue;
      found.push({
        name: `${type.name}.${f.name}`,
        parent: type.name,
        field: f.name,
        connectionType: namedType(f.type),
        args: f.args.map((a) => ({ name: a.name, required: a.type.kind === "NON_NULL", description: a.description })),
      });
    }
  }
  return found;
}

function namedType(type: unknown): string {
  const t = type as { name: string | null; ofType?: unknown };
  return t.name ?? namedType(t.ofType);
}

function doc<R>(source: string): TypedDocumentNode<R, Record<string, unknown>> {
  return parse(source) as TypedDocumentNode<R, Record<string, unknown>>;
}

type Connection = { totalCount?: number; edges: { cursor: string }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };

/** A query of one connection field with first/last/after as variables and its other arguments from ARG_VALUES. */
function listQuery(cf: ConnectionField, selection: string) {
  const values = ARG_VALUES();
  const own = cf.args.filter((a) => values[a.name] && !["first", "last", "after", "before"].includes(a.name));
  const missing = cf.args.filter((a) => a.required && !values[a.name]).map((a) => a.name);
  if (missing.length) throw new Error(`${cf.name}: no test value for required argument(s) ${missing.join(", ")}; add them to ARG_VALUES`);
  const used = new Map(own.map((a) => [a.name, values[a.name]]));
  if (cf.parent !== "Query") used.set("customerId", values.customerId);
  const declarations = ["$first: Int", "$last: Int", "$after: String", ...[...used].map(([name, v]) => `$${name}: ${v.type}`)];
  const call = `${cf.field}(first: $first, last: $last, after: $after${own.map((a) => `, ${a.name}: $${a.name}`).join("")}) { ${selection} }`;
  let body = call;
  if (cf.parent !== "Query") {
    const reach = PARENTS[cf.parent];
    if (!reach) throw new Error(`${cf.name}: no way to reach a ${cf.parent}; add it to PARENTS`);
    body = reach(call);
  }
  const variables = Object.fromEntries([...used].map(([name, v]) => [name, v.value]));
  const read = (data: Record<string, unknown>): Connection => {
    const holder = cf.parent === "Query" ? data : (Object.values(data)[0] as Record<string, unknown>);
    return holder[cf.field] as Connection;
  };
  return { document: doc<Record<string, unknown>>(`query(${declarations.join(", ")}) { ${body} }`), variables, read };
}

/** The maximum a connection publishes on its `first` argument ("At most N; …"). */
function publishedMax(cf: ConnectionField): number {
  const description = cf.args.find((a) => a.name === "first")?.description ?? "";
  const max = /At most (\d+)/.exec(description)?.[1];
  if (!max) throw new Error(`${cf.name}: its first argument does not state its maximum`);
  return Number(max);
}

let fields: ConnectionField[];

beforeAll(async () => {
  t = await startTestApp();
  m = await meter(t, "SUM", { property: "n", filter: named("page") });
  c = await customer(t, "pages_1");
  await customer(t, "pages_2");
  const b = await benefit(t, m, "10");
  plan = await product(t, [b], { recurring: true });
  pack = await product(t, [b]);
  await order(t, c, plan);
  await order(t, c, pack);
  await order(t, c, pack);
  await grant(t, c, m, "5");
  for (const days of [1, 2]) {
    await t.ok(GrantCredits, { input: { customerId: c, meterId: m, units: "3", expiresAt: new Date(Date.now() + days * 86_400_000).toISOString() } });
  }
  await ingest(t, [1, 2, 3].map((n) => ({ name: "page", customerId: c, metadata: { n } })));
  fields = await connectionFields();
});
afterAll(() => t?.close());

describe("every connection", () => {
  it("is found by introspection (the lists this suite is known to cover are among them)", () => {
    const names = fields.map((f) => f.name);
    for (const known of ["Query.customers", "Query.ledger", "Query.events", "Query.orders", "Customer.orders", "Query.expiringCredits"]) {
      expect(names).toContain(known);
    }
  });

  it("publishes its maximum: 100, or a documented larger one (events: 500)", () => {
    for (const cf of fields) expect([cf.name, publishedMax(cf)]).toEqual([cf.name, cf.name === "Query.events" ? MAX_EVENTS_PAGE_SIZE : MAX_PAGE_SIZE]);
  });

  it("refuses first or last above its maximum, and below 0, with BAD_USER_INPUT naming the argument", async () => {
    for (const cf of fields) {
      const max = publishedMax(cf);
      const { document, variables } = listQuery(cf, "edges { cursor }");
      for (const [arg, size] of [["first", max + 1], ["last", max + 1], ["first", -1], ["last", -1]] as const) {
        const result = await t.exec(document, { ...variables, [arg]: size });
        expect([cf.name, arg, size, result.errors?.map((e) => e.extensions)]).toEqual([cf.name, arg, size, [expect.objectContaining({ code: "BAD_USER_INPUT", field: arg })]]);
      }
    }
  });

  it("answers first at its maximum in full", async () => {
    for (const cf of fields) {
      const { document, variables, read } = listQuery(cf, "edges { cursor } pageInfo { hasNextPage endCursor }");
      const result = await t.exec(document, { ...variables, first: publishedMax(cf) });
      expect([cf.name, result.errors]).toEqual([cf.name, undefined]);
      expect([cf.name, read(result.data!).pageInfo.hasNextPage]).toEqual([cf.name, false]);
    }
  });

  it("has totalCount, the size of the whole list whatever the page, except the documented few", async () => {
    let counted = 0;
    for (const cf of fields.filter((f) => !WITHOUT_TOTAL_COUNT.has(f.connectionType))) {
      const whole = listQuery(cf, "totalCount edges { cursor } pageInfo { hasNextPage endCursor }");
      const all = await t.exec(whole.document, { ...whole.variables, first: publishedMax(cf) });
      expect([cf.name, all.errors]).toEqual([cf.name, undefined]);
      const list = whole.read(all.data!);
      expect([cf.name, list.totalCount]).toEqual([cf.name, list.edges.length]);
      const onePage = await t.exec(whole.document, { ...whole.variables, first: 1 });
      expect([cf.name, whole.read(onePage.data!).totalCount]).toEqual([cf.name, list.edges.length]);
      if (list.edges.length > 1) counted++;
    }
    expect(counted).toBeGreaterThan(5); // most lists had several items: the counts were not all trivially 0 or 1
  });

  it("pages with first/after through exactly the whole list, in its order", async () => {
    let paged = 0;
    for (const cf of fields) {
      const q = listQuery(cf, "edges { cursor } pageInfo { hasNextPage endCursor }");
      const all = q.read((await t.ok(q.document, { ...q.variables, first: publishedMax(cf) })));
      const cursors: string[] = [];
      for (let after: string | null = null, more = true; more; ) {
        const page = q.read(await t.ok(q.document, { ...q.variables, first: 1, after }));
        cursors.push(...page.edges.map((e) => e.cursor));
        more = page.pageInfo.hasNextPage;
        after = page.pageInfo.endCursor;
      }
      expect([cf.name, cursors]).toEqual([cf.name, all.edges.map((e) => e.cursor)]);
      if (cursors.length > 1) paged++;
    }
    expect(paged).toBeGreaterThan(5);
  });

  it("events page forward only: last and before are refused rather than ignored", async () => {
    const result = await t.exec(doc(`{ events(last: 1) { edges { cursor } } }`));
    expect(result.errors?.map((e) => e.extensions)).toEqual([expect.objectContaining({ code: "BAD_USER_INPUT", field: "last" })]);
  });
});

describe("totalCount", () => {
  it("counts with the list's own filter", async () => {
    const onlyPacks = await t.ok(OrdersOf, { customerId: c, productId: pack, first: 1 });
    expect(onlyPacks.orders.totalCount).toBe(2);
    expect((await t.ok(OrdersOf, { customerId: c, productId: plan })).orders.totalCount).toBe(1);
    expect((await t.ok(ListCustomers, { email: "PAGES_2@example.com" })).customers.totalCount).toBe(1);
  });
});

describe("cursors mark a place in the list, not a row", () => {
  const CUSTOMERS = doc<{ customers: Connection & { edges: { node: { id: string } }[] } }>(
    `query($first: Int, $after: String, $last: Int, $before: String) { customers(first: $first, after: $after, last: $last, before: $before) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`,
  );
  const ids = (page: { edges: { node: { id: string } }[] }) => page.edges.map((e) => e.node.id);

  it("a customer deleted at the end of a page neither hides the next one nor ends the list", async () => {
    const org = await t.newOrganization("cursor places");
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push(await customer(t, `place_${i}`, org.token));
    const first = (await t.ok(CUSTOMERS, { first: 2 }, org.token)).customers;
    expect(ids(first)).toEqual(made.slice(0, 2));
    await t.ok(DeleteCustomer, { id: made[1] }, org.token);
    expect(ids((await t.ok(CUSTOMERS, { first: 2, after: first.pageInfo.endCursor }, org.token)).customers)).toEqual(made.slice(2, 4));
    // backward from the deleted one's cursor: the item before it
    expect(ids((await t.ok(CUSTOMERS, { last: 5, before: first.edges[1].cursor }, org.token)).customers)).toEqual([made[0]]);
  });

  it("a grant used up between pages of expiringCredits (ordered by expiry) does not make the next page skip one", async () => {
    const used = await meter(t, "COUNT", { filter: named("place_use") });
    const who = await customer(t, "place_grants");
    const soon = Date.now() + 86_400_000;
    const grants: string[] = [];
    // the second-soonest grant has the lowest priority number, so it is the one the usage draws from
    for (let i = 0; i < 4; i++) {
      const r = await t.ok(GrantCredits, { input: { customerId: who, meterId: used, units: "1", priority: i === 1 ? 0 : 10, expiresAt: new Date(soon + i * 60_000).toISOString() } });
      if (r.grantCredits.__typename !== "CreditGrant") throw new Error(JSON.stringify(r.grantCredits));
      grants.push(r.grantCredits.id);
    }
    const LIST = doc<{ expiringCredits: Connection & { edges: { node: { id: string } }[] } }>(
      `query($c: ID, $m: ID, $first: Int, $after: String) { expiringCredits(customerId: $c, meterId: $m, within: 864000, first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`,
    );
    const first = (await t.ok(LIST, { c: who, m: used, first: 2 })).expiringCredits;
    expect(ids(first)).toEqual(grants.slice(0, 2));
    await ingest(t, [{ name: "place_use", customerId: who }]);
    const second = (await t.ok(LIST, { c: who, m: used, first: 2, after: first.pageInfo.endCursor })).expiringCredits;
    expect(ids(second)).toEqual(grants.slice(2, 4));
    expect(second.pageInfo.hasNextPage).toBe(false);
  });

  it("the ledger pages backward from a cursor in its order (occurredAt, then entry number)", async () => {
    const LEDGER = doc<{ ledger: Connection & { edges: { node: { id: string } }[] } }>(
      `query($c: ID, $first: Int, $last: Int, $before: String) { ledger(customerId: $c, first: $first, last: $last, before: $before) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`,
    );
    const all = (await t.ok(LEDGER, { c, first: 100 })).ledger;
    expect(all.edges.length).toBeGreaterThan(3);
    const before = (await t.ok(LEDGER, { c, last: 2, before: all.edges[3].cursor })).ledger;
    expect(ids(before)).toEqual(ids(all).slice(1, 3));
  });

  it("refuses unreadable cursors, cursors naming nothing on an ordered list, and arguments that do not go together", async () => {
    const codes = async (document: TypedDocumentNode<unknown, Record<string, unknown>>, variables: Record<string, unknown>) =>
      (await t.exec(document, variables)).errors?.map((e) => [e.extensions?.code, e.extensions?.field]);
    const page = (await t.ok(CUSTOMERS, { first: 2 })).customers;
    expect(await codes(CUSTOMERS, { first: 2, after: "not-a-cursor" })).toEqual([["BAD_USER_INPUT", "after"]]);
    expect(await codes(CUSTOMERS, { last: 2, before: "not-a-cursor" })).toEqual([["BAD_USER_INPUT", "before"]]);
    expect(await codes(CUSTOMERS, { after: page.edges[0].cursor, before: page.pageInfo.endCursor })).toEqual([["BAD_USER_INPUT", "before"]]);
    expect(await codes(CUSTOMERS, { first: 1, before: page.pageInfo.endCursor })).toEqual([["BAD_USER_INPUT", "before"]]);
    expect(await codes(CUSTOMERS, { last: 1, after: page.pageInfo.endCursor })).toEqual([["BAD_USER_INPUT", "after"]]);
    const LEDGER = doc(`query($c: ID, $after: String) { ledger(customerId: $c, first: 2, after: $after) { edges { cursor } } }`);
    const nothing = Buffer.from("GPC:S:no-such-entry").toString("base64");
    expect(await codes(LEDGER, { c, after: nothing })).toEqual([["BAD_USER_INPUT", "after"]]);
  });
});
