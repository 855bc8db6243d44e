// One error model: a fault has one code wherever it happens, and every error names the input at fault —
// typed union members, and the errors graphql-js raises before any resolver runs (variables and literals).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeUsage, CreateCustomer, CreateOrder, CreateSession, GetCustomerMeter, GrantCredits, IngestEvents } from "./documents.ts";
import { startTestApp, type GraphQLErrorJson, type TestApp } from "./support/app.ts";
import { benefit, customer, meter, named, product } from "./support/fixtures.ts";

let t: TestApp;
let m: string;

beforeAll(async () => {
  t = await startTestApp();
  m = await meter(t, "SUM", { property: "n", filter: named("errors") });
});
afterAll(() => t?.close());

/** A document as text (an inline literal cannot be sent through a typed document with variables). */
async function post(query: string, variables?: Record<string, unknown>, token: string | null = t.adminToken): Promise<{ data?: unknown; errors?: GraphQLErrorJson[] }> {
  const headers: Record<string, string> = { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(t.url, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  return (await response.json()) as { data?: unknown; errors?: GraphQLErrorJson[] };
}

async function session(customerId: string): Promise<string> {
  const { createCustomerSession } = await t.ok(CreateSession, { customerId });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  return createCustomerSession.token;
}

describe("an unknown id is NOT_FOUND everywhere", () => {
  const unknown = "c_unknown";

  it("in every mutation that names a customer, with the argument as field", async () => {
    const ingested = (await t.ok(IngestEvents, { events: [{ name: "errors", customerId: unknown }] })).ingestEvents;
    expect(ingested).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "events.0.customerId" });
    const granted = (await t.ok(GrantCredits, { input: { customerId: unknown, meterId: m, units: "1" } })).grantCredits;
    expect(granted).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "input.customerId" });
    const authorized = (await t.ok(AuthorizeUsage, { input: { externalCustomerId: unknown, meterId: m, units: "1" } })).authorizeUsage;
    expect(authorized).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "input.externalCustomerId" });
    const ordered = (await t.ok(CreateOrder, { input: { customerId: unknown, productId: await product(t, [await benefit(t, m, "1")]) } })).createOrder;
    expect(ordered).toMatchObject({ __typename: "NotFoundError", code: "NOT_FOUND", field: "input.customerId" });
  });

  it("in queries too, as a GraphQL error with the same code and field", async () => {
    const error = await t.error(GetCustomerMeter, { customerId: unknown, meterId: m });
    expect(error.extensions).toMatchObject({ code: "NOT_FOUND", field: "customerId" });
  });
});

describe("FORBIDDEN", () => {
  it("a customer session calling an admin mutation gets a typed ForbiddenError member of its result union", async () => {
    const token = await session(await customer(t));
    const { createCustomer } = await t.ok(CreateCustomer, { input: { email: "no@example.com" } }, token);
    expect(createCustomer).toMatchObject({ __typename: "ForbiddenError", code: "FORBIDDEN" });
  });

  it("a customer session reading another customer gets FORBIDDEN naming the argument", async () => {
    const token = await session(await customer(t));
    const other = await customer(t);
    const error = await t.error(GetCustomerMeter, { customerId: other, meterId: m }, token);
    expect(error.extensions).toMatchObject({ code: "FORBIDDEN", field: "customerId" });
  });

  it("no token at all stays a top-level UNAUTHENTICATED error, before any resolver", async () => {
    const { errors } = await post(`mutation { createCustomer(input: { email: "x@example.com" }) { __typename } }`, undefined, null);
    expect(errors?.map((e) => e.extensions?.code)).toEqual(["UNAUTHENTICATED"]);
  });
});

describe("scalar and type errors name their field, for variables and for literals", () => {
  const grantMutation = (units: string) => `mutation($c: ID!, $m: ID!) { grantCredits(input: { customerId: $c, meterId: $m, units: ${units} }) { __typename } }`;

  it("a Decimal variable refused names its path inside the variable", async () => {
    const { errors } = await post(`mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename } }`, {
      input: { customerId: "c", meterId: m, units: "1.0000001" },
    });
    expect(errors).toHaveLength(1);
    expect(errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.units" });
  });

  it("a Decimal literal refused names its argument path", async () => {
    const { errors } = await post(grantMutation(`"twelve"`), { c: "c", m });
    expect(errors).toHaveLength(1);
    expect(errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.units" });
  });

  it("a DateTime in a list of events names the event", async () => {
    const { errors } = await post(`mutation($events: [EventInput!]!) { ingestEvents(events: $events) { __typename } }`, {
      events: [{ name: "errors", customerId: "c" }, { name: "errors", customerId: "c", timestamp: "yesterday" }],
    });
    expect(errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "events.1.timestamp" });
  });

  it("a list of thousands of bad items: the errors graphql-js reports (it stops at 50) each name their item", async () => {
    const { errors } = await post(`mutation($events: [EventInput!]!) { ingestEvents(events: $events) { __typename } }`, { events: Array.from({ length: 20_000 }, () => ({})) }, null);
    expect(errors).toHaveLength(51);
    expect(errors!.slice(0, 50).map((e) => e.extensions?.field)).toEqual(Array.from({ length: 50 }, (_, i) => `events.${i}.name`));
    expect(errors![50]).toMatchObject({ message: expect.stringContaining("error limit reached"), extensions: { code: "BAD_USER_INPUT" } });
  });

  it("JSON and ID literals of the wrong kind name their argument", async () => {
    const json = await post(`mutation { createCustomer(input: { email: "j@example.com", metadata: SOMETHING }) { __typename } }`);
    expect(json.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.metadata" });
    const id = await post(`{ customerMeter(customerId: 1.5, meterId: "m") { balance } }`);
    expect(id.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "customerId" });
  });

  it("a required value left out names it, in a variable and in a literal", async () => {
    const variable = await post(`mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename } }`, { input: { customerId: "c", units: "1" } });
    const literal = await post(`mutation { grantCredits(input: { meterId: "m", units: "1" }) { __typename } }`);
    const argument = await post(`{ customerMeter(customerId: "c") { balance } }`);
    expect(variable.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.meterId" });
    expect(literal.errors).toBeUndefined(); // customerId is optional: the resolver names what is missing
    expect(argument.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "meterId" });
  });
});

describe("Decimal literals and variables follow one rule", () => {
  async function units(value: unknown, inline: boolean) {
    const c = await customer(t);
    const literal = typeof value === "string" ? JSON.stringify(value) : String(value);
    const query = inline
      ? `mutation($c: ID!, $m: ID!) { grantCredits(input: { customerId: $c, meterId: $m, units: ${literal} }) { __typename ... on CreditGrant { units } } }`
      : `mutation($c: ID!, $m: ID!, $u: Decimal!) { grantCredits(input: { customerId: $c, meterId: $m, units: $u }) { __typename ... on CreditGrant { units } } }`;
    const { data, errors } = await post(query, { c, m, ...(inline ? {} : { u: value }) });
    return errors ? { code: errors[0].extensions?.code, field: errors[0].extensions?.field } : (data as { grantCredits: { units: string } }).grantCredits.units;
  }

  it("a fractional number (0.1) is refused whether inline or a variable; its string is taken exactly", async () => {
    const refused = { code: "BAD_USER_INPUT", field: "input.units" };
    expect(await units(0.1, true)).toEqual(refused);
    expect(await units(0.1, false)).toMatchObject({ code: "BAD_USER_INPUT" });
    expect(await units("0.1", true)).toBe("0.1");
    expect(await units("0.1", false)).toBe("0.1");
  });

  it("an integral number is taken whether inline or a variable, written 12 or 12.0", async () => {
    expect(await units(12, true)).toBe("12");
    expect(await units(12, false)).toBe("12");
    expect(await units("12.0", true)).toBe("12");
    const inlineFloat = await post(
      `mutation($c: ID!, $m: ID!) { grantCredits(input: { customerId: $c, meterId: $m, units: 12.0 }) { ... on CreditGrant { units } } }`,
      { c: await customer(t), m },
    );
    expect(inlineFloat.data).toEqual({ grantCredits: { units: "12" } });
  });
});
