// Seeding through the service's public GraphQL API with the organization's admin token: meters, customers
// c0…c(N-1), small credits-only balances for authorizeUsage, large ones for reserve + commit, and one
// customer with a balance on every meter for customerState.
import { BenchFailure } from "./harness.ts";
import { graphqlClient, pool } from "./support.ts";
import { meterInputs } from "./workload.ts";

export interface Seeded {
  customerIds: string[];
  meterIds: Record<string, string>;
  /** the customer with a balance on every meter */
  stateCustomerId: string;
  /** customers the write scenarios warm the service up on first (large balances on `credits` and `holds`) */
  warmCustomerIds: string[];
}

const WARM_CUSTOMERS = 64;

export interface SeedOptions {
  customers: number;
  meters: number;
  /** customers c0…c(authCustomers-1) get `authCredits` on `credits` and `holdCredits` on `holds` */
  authCustomers: number;
  authCredits: number;
  holdCredits: number;
}

export async function seed(url: string, token: string, o: SeedOptions): Promise<Seeded> {
  const gql = graphqlClient(url, token);
  const meterIds: Record<string, string> = {};
  for (const [key, input] of Object.entries(meterInputs(o.meters))) {
    const { createMeter } = await gql.request<{ createMeter: { __typename: string; id?: string } }>(
      `mutation($input: CreateMeterInput!) { createMeter(input: $input) { __typename ... on Meter { id } ... on Error { message } } }`,
      { input },
    );
    if (!createMeter.id) throw new BenchFailure(`createMeter ${key}: ${JSON.stringify(createMeter)}`);
    meterIds[key] = createMeter.id;
  }
  const createCustomer = async (externalId: string) => {
    const data = await gql.request<{ createCustomer: { __typename: string; id?: string } }>(
      `mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { __typename ... on Customer { id } ... on Error { message } } }`,
      { input: { email: `${externalId}@bench.example`, externalId } },
    );
    if (!data.createCustomer.id) throw new BenchFailure(`createCustomer ${externalId}: ${JSON.stringify(data.createCustomer)}`);
    return data.createCustomer.id;
  };
  const grant = async (customerId: string, meterId: string, units: number) => {
    const data = await gql.request<{ grantCredits: { __typename: string } }>(
      `mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename ... on Error { message } } }`,
      { input: { customerId, meterId, units: String(units) } },
    );
    if (data.grantCredits.__typename !== "CreditGrant") throw new BenchFailure(`grantCredits: ${JSON.stringify(data.grantCredits)}`);
  };
  const customerIds: string[] = Array.from({ length: o.customers });
  await pool(o.customers, 8, async (i) => {
    customerIds[i] = await createCustomer(`c${i}`);
  });
  await pool(o.authCustomers * 2, 8, async (n) => {
    const i = n >> 1;
    await (n & 1 ? grant(customerIds[i], meterIds.holds, o.holdCredits) : grant(customerIds[i], meterIds.credits, o.authCredits));
  });
  // The warm-up customers: the write scenarios' first requests compile and cache what their measured runs
  // then use (as the read scenarios' 1-s warm-up does), on balances the books of the measured runs never read.
  const warmCustomerIds: string[] = Array.from({ length: WARM_CUSTOMERS });
  await pool(WARM_CUSTOMERS, 8, async (i) => {
    warmCustomerIds[i] = await createCustomer(`warm${i}`);
    await grant(warmCustomerIds[i], meterIds.credits, o.holdCredits);
    await grant(warmCustomerIds[i], meterIds.holds, o.holdCredits);
  });
  const stateCustomerId = await createCustomer("state");
  for (const meterId of Object.values(meterIds)) await grant(stateCustomerId, meterId, 100);
  return { customerIds, meterIds, stateCustomerId, warmCustomerIds };
}
