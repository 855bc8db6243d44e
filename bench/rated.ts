// The ingest row with rated meters in `npm run bench`: two more meters, `ratedRequests` (COUNT) and
// `ratedTokens` (SUM), feed one credit system, so each of their events also draws from a pool
// (src/domain/credit-systems.ts). A meter once rated stays rated, so the plain runs keep `requests` and
// `tokens`, and the rated runs send the same mix renamed onto the rated meters (bench/workload.ts): the same
// number of events, customers and meters per event. The two are measured interleaved, plain, rated, rated,
// plain (ABBA, as the alerts row), since each run stores into a larger table than the last.
import type { Context } from "./context.ts";
import { BenchFailure } from "./harness.ts";
import { allocationWindow } from "./heap-sampling.ts";
import { cpuNote, ingestCalls, interleaved, statementsWindow, warmUsageRows, type Interleaved } from "./ingest.ts";
import { decimalText, graphqlClient } from "./support.ts";
import { generateEvents, RATED_METER_INPUTS, RATED_METERS, UNIT_SCALE, type BenchEvent } from "./workload.ts";

/** micro-credits per unit: 1 credit a request, 0.002 a token */
const RATES = { ratedRequests: 1_000_000n, ratedTokens: 2_000n };

export async function ratedIngest(ctx: Context): Promise<Interleaved> {
  const gql = graphqlClient(ctx.service.url, ctx.token);
  const { meterIds } = ctx.seeded;
  for (const m of RATED_METERS) {
    const { createMeter } = await gql.request<{ createMeter: { __typename: string; id?: string } }>(
      `mutation($input: CreateMeterInput!) { createMeter(input: $input) { __typename ... on Meter { id } ... on Error { message } } }`,
      { input: RATED_METER_INPUTS[m] },
    );
    if (!createMeter.id) throw new BenchFailure(`createMeter ${m}: ${JSON.stringify(createMeter)}`);
    meterIds[m] = createMeter.id;
  }
  const rates = RATED_METERS.map((m) => ({ meterId: meterIds[m], creditsPerUnit: decimalText(RATES[m], 6) }));
  const { createCreditSystem } = await gql.request<{ createCreditSystem: { __typename: string; id?: string } }>(
    `mutation($input: CreateCreditSystemInput!) { createCreditSystem(input: $input) { __typename ... on Meter { id } ... on Error { message } } }`,
    { input: { name: "bench credits", rates } },
  );
  if (!createCreditSystem.id) throw new BenchFailure(`createCreditSystem: ${JSON.stringify(createCreditSystem)}`);
  meterIds.pool = createCreditSystem.id;
  for (const m of RATED_METERS) ctx.books.rate(m, RATES[m]);

  const o = ctx.options;
  // Warm-up: the plain runs find every customer's balance rows there (the ingest row created them); give the
  // rated runs theirs too (each customer's two rated rows and its pool row), with one event per customer and meter.
  const at = "2025-01-01T00:00:00.000Z";
  const warm: BenchEvent[] = [];
  for (let c = 0; c < o.customers; c++) {
    warm.push({ name: "api.request.rated", customer: c, externalId: `rw${c}r`, timestamp: at, metadata: {}, meter: "ratedRequests", micro: UNIT_SCALE });
    warm.push({ name: "llm.completion.rated", customer: c, externalId: `rw${c}t`, timestamp: at, metadata: { tokens: 1 }, meter: "ratedTokens", micro: UNIT_SCALE });
  }
  await ingestCalls(ctx, warm);
  await warmUsageRows(ctx);

  // BENCH_HEAP_PROFILE: each run's allocations apart (rated-rp1, rated-ra1, …), to compare a rated run with a plain
  // one; BENCH_PG_STATEMENTS=<file> (PostgreSQL): each run's costliest statements in <file>.rp1, <file>.ra1, …
  const statementsFile = o.engine === "postgresql" ? process.env.BENCH_PG_STATEMENTS : undefined;
  const run = (n: number, prefix: string, rated: boolean) => async () => {
    const events = generateEvents(o.events, o.customers, o.seed + 20 + n, prefix, rated);
    const allocations = await allocationWindow(ctx.service, `rated-${prefix}`);
    const statements = statementsFile ? await statementsWindow(ctx.databaseUrl, `${statementsFile}.${prefix}`) : null;
    const result = await ingestCalls(ctx, events);
    await statements?.write();
    if (allocations) ctx.log(`allocations during run ${prefix} sampled to ${await allocations.stop(o.events)}`);
    return result;
  };
  const r = await interleaved(o.events, { plain: [run(1, "rp1", false), run(4, "rp2", false)], other: [run(2, "ra1", true), run(3, "ra2", true)] });
  ctx.log(`ingest on rated meters: ${Math.round(r.eventsPerSecond)} events/s; on plain meters, in the same stretch: ${Math.round(r.plainEventsPerSecond)} events/s (runs: ${r.each.map(Math.round).join(", ")})${cpuNote(r, "rated", "plain")}`);
  return r;
}
