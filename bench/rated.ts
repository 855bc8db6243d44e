// The ingest row with rated meters in `npm run bench`: `requests` (COUNT) and `tokens` (SUM) start feeding
// one credit system, then the same batch ingest runs again on new events, so each of their events also draws
// from the pool (src/domain/credit-systems.ts). Compared with the plain ingest row of the same run.
import type { Context } from "./context.ts";
import { BenchFailure, type Load } from "./harness.ts";
import { ingestCalls } from "./ingest.ts";
import { graphqlClient } from "./support.ts";
import { generateEvents } from "./workload.ts";

export async function ratedIngest(ctx: Context): Promise<{ load: Load; eventsPerSecond: number }> {
  const gql = graphqlClient(ctx.service.url, ctx.token);
  const { meterIds } = ctx.seeded;
  const rates = [
    { meterId: meterIds.requests, creditsPerUnit: "1" },
    { meterId: meterIds.tokens, creditsPerUnit: "0.002" },
  ];
  const { createCreditSystem } = await gql.request<{ createCreditSystem: { __typename: string; id?: string } }>(
    `mutation($input: CreateCreditSystemInput!) { createCreditSystem(input: $input) { __typename ... on Meter { id } ... on Error { message } } }`,
    { input: { name: "bench credits", rates } },
  );
  if (!createCreditSystem.id) throw new BenchFailure(`createCreditSystem: ${JSON.stringify(createCreditSystem)}`);
  const o = ctx.options;
  const load = await ingestCalls(ctx, generateEvents(o.events, o.customers, o.seed + 2, "r"));
  return { load, eventsPerSecond: ctx.options.events / load.seconds };
}
