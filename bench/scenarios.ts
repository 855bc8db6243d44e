// The request scenarios of `npm run bench`, each an autocannon run from the bench's own process: the bare-Yoga
// floors, customerMeter and customerState reads, authorizeUsage(1) over many small balances, reserve +
// commit, and 1-event ingest calls. Each checks every answer and keeps what the books need.
import type autocannon from "autocannon";
import type { Context } from "./context.ts";
import { allocationWindow } from "./heap-sampling.ts";
import { BenchFailure, inTurn, load, type Load } from "./harness.ts";
import { graphqlClient } from "./support.ts";
import { generateEvents, eventInput, type BenchEvent } from "./workload.ts";

type Slot = Record<string, unknown>;
const body = (query: string, variables?: Record<string, unknown>) => JSON.stringify(variables ? { query, variables } : { query });

/** A failure seen inside autocannon's callbacks, thrown once the run is over. */
function failures() {
  let first: string | null = null;
  return {
    note(message: string) {
      first ??= message;
    },
    check(what: string) {
      if (first) throw new BenchFailure(`${what}: ${first}`);
    },
  };
}

export async function floors(ctx: Context): Promise<{ read: Load; mutation: Load }> {
  const o = ctx.options;
  await load({ url: ctx.floor.url, connections: o.connections, duration: 1, body: body("{ hello }") }); // warm-up
  const read = await load({ url: ctx.floor.url, pid: ctx.floor.pid, connections: o.connections, duration: o.duration, body: body("{ hello }") });
  const mutation = await load({ url: ctx.floor.url, pid: ctx.floor.pid, connections: o.connections, duration: o.duration, body: body("mutation { bump }") });
  return { read, mutation };
}

/** One request shape cycling over prepared bodies; an answer without `expect`, or with errors, is noted. */
function cycling(bodies: string[], expect: string, f: ReturnType<typeof failures>): autocannon.Request[] {
  let n = 0;
  return [
    {
      setupRequest: (req) => ({ ...req, body: bodies[n++ % bodies.length] }),
      onResponse: (_status, text) => {
        if (!text.includes(expect) || text.includes('"errors"')) f.note(text.slice(0, 300));
      },
    },
  ];
}

/** One second of `bodies` before a measured run, so that it measures a warm service (compiled, caches filled). */
async function warmUp(ctx: Context, what: string, bodies: string[], expect: string): Promise<void> {
  const f = failures();
  await load({ url: ctx.service.url, token: ctx.token, connections: ctx.options.connections, duration: 1, requests: cycling(bodies, expect, f) });
  f.check(`${what} (warm-up)`);
}

/** Read scenarios: one request shape cycling over prepared bodies after a warm-up; an answer with errors fails the run. */
async function cycle(ctx: Context, what: string, bodies: string[], expect: string): Promise<Load> {
  await warmUp(ctx, what, bodies, expect);
  const f = failures();
  const o = ctx.options;
  const result = await load({ url: ctx.service.url, pid: ctx.service.pid, token: ctx.token, connections: o.connections, duration: o.duration, requests: cycling(bodies, expect, f) });
  f.check(what);
  return result;
}

export function customerMeterReads(ctx: Context): Promise<Load> {
  const query = `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance availableUnits consumedUnits } }`;
  const { customerIds, meterIds } = ctx.seeded;
  const bodies = customerIds.slice(0, ctx.options.authCustomers).map((c) => body(query, { c, m: meterIds.holds }));
  return cycle(ctx, "customerMeter", bodies, '"availableUnits"');
}

export async function customerStateReads(ctx: Context): Promise<Load> {
  const query = `query($c: ID) { customerState(customerId: $c) { customer { id } meters { meter { id name } balance availableUnits consumedUnits } } }`;
  const b = body(query, { c: ctx.seeded.stateCustomerId });
  const gql = graphqlClient(ctx.service.url, ctx.token);
  const state = await gql.request<{ customerState: { meters: unknown[] } }>(query, { c: ctx.seeded.stateCustomerId });
  if (state.customerState.meters.length !== ctx.options.meters) {
    throw new BenchFailure(`customerState shows ${state.customerState.meters.length} meters, expected ${ctx.options.meters}`);
  }
  return cycle(ctx, "customerState", [b], '"meters"');
}

/**
 * authorizeUsage(1) round-robin over the first `authCustomers` customers, each holding `authCredits` on the
 * credits-only `credits` meter; `authCalls` calls in all. Then the books: every customer got exactly
 * min(credits, its calls) allowed, its balance is credits − allowed (never below zero).
 */
export async function authorize(ctx: Context): Promise<Load & { allowed: number; refused: number }> {
  const o = ctx.options;
  const { customerIds, meterIds } = ctx.seeded;
  const query = `mutation($input: AuthorizeUsageInput!) { authorizeUsage(input: $input) { __typename ... on UsageAuthorization { allowed code } ... on Error { message } } }`;
  const input = (customerId: string) => body(query, { input: { customerId, meterId: meterIds.credits, units: "1" } });
  await warmUp(ctx, "authorizeUsage", ctx.seeded.warmCustomerIds.map(input), '"allowed":true');
  const bodies = customerIds.slice(0, o.authCustomers).map(input);
  const calls = Array.from({ length: o.authCustomers }, () => 0);
  const allowed = Array.from({ length: o.authCustomers }, () => 0);
  let refused = 0;
  const f = failures();
  const allocations = await allocationWindow(ctx.service, "authorize");
  const result = await load({
    url: ctx.service.url,
    pid: ctx.service.pid,
    token: ctx.token,
    connections: o.connections,
    amount: o.authCalls,
    requests: [
      inTurn(
        bodies.map((_, i) => i),
        (i) => bodies[i],
        (i, text) => {
          calls[i]++;
          const a = (JSON.parse(text) as { data?: { authorizeUsage?: { allowed?: boolean; code?: string } } }).data?.authorizeUsage;
          if (a?.allowed === true) allowed[i]++;
          else if (a?.code === "INSUFFICIENT_CREDITS") refused++;
          else f.note(text.slice(0, 300));
        },
      ),
    ],
  });
  if (allocations) ctx.log(`allocations during the authorizeUsage row sampled to ${await allocations.stop(o.authCalls)} (npx tsx bench/profile.ts <file>)`);
  f.check("authorizeUsage");
  const gql = graphqlClient(ctx.service.url, ctx.token);
  const credits = BigInt(o.authCredits);
  for (let i = 0; i < o.authCustomers; i++) {
    const want = Math.min(o.authCredits, calls[i]);
    if (allowed[i] !== want) throw new BenchFailure(`authorizeUsage: customer c${i} got ${allowed[i]} of ${calls[i]} calls allowed with ${o.authCredits} credits`);
    const { customerMeter: m } = await gql.request<{ customerMeter: { balance: string; consumedUnits: string } }>(
      `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance consumedUnits } }`,
      { c: customerIds[i], m: meterIds.credits },
    );
    if (m.balance !== String(credits - BigInt(want)) || m.consumedUnits !== String(want)) {
      throw new BenchFailure(`authorizeUsage: customer c${i} shows balance ${m.balance}, consumed ${m.consumedUnits}; expected ${credits - BigInt(want)} and ${want}`);
    }
  }
  return { ...result, allowed: allowed.reduce((a, b) => a + b, 0), refused };
}

/**
 * reserveUsage(1) then commitReservation(1) on each connection, round-robin over the `authCustomers`
 * customers on the `holds` meter (large balances: every hold is allowed). Books: each customer's consumed
 * units on `holds` equal its acknowledged commits.
 */
export async function reserveCommit(ctx: Context): Promise<Load & { commits: number }> {
  const o = ctx.options;
  const { customerIds, meterIds } = ctx.seeded;
  const warm = failures();
  await load({ url: ctx.service.url, token: ctx.token, connections: o.connections, duration: 1, requests: reserveThenCommit(ctx, ctx.seeded.warmCustomerIds, () => {}, warm) });
  warm.check("reserve + commit (warm-up)");
  const commits = Array.from({ length: o.authCustomers }, () => 0);
  const f = failures();
  const requests = reserveThenCommit(ctx, customerIds.slice(0, o.authCustomers), (i) => commits[i]++, f);
  const result = await load({ url: ctx.service.url, pid: ctx.service.pid, token: ctx.token, connections: o.connections, amount: o.reserveCalls, requests });
  f.check("reserve + commit");
  // A connection's share of the requests can end with a reserve: that hold stays live (it expires by itself)
  // and moves no units, so the books compare consumed units with commits only.
  const gql = graphqlClient(ctx.service.url, ctx.token);
  for (let i = 0; i < o.authCustomers; i++) {
    const { customerMeter: m } = await gql.request<{ customerMeter: { balance: string; consumedUnits: string } }>(
      `query($c: ID, $m: ID!) { customerMeter(customerId: $c, meterId: $m) { balance consumedUnits } }`,
      { c: customerIds[i], m: meterIds.holds },
    );
    if (m.consumedUnits !== String(commits[i])) throw new BenchFailure(`reserve + commit: customer c${i} consumed ${m.consumedUnits}, ${commits[i]} commits acknowledged`);
  }
  return { ...result, commits: commits.reduce((a, b) => a + b, 0) };
}

/** reserveUsage(1) on the next of `customerIds` (holds meter), then commitReservation(1) of that hold; `committed(i)` per commit. */
function reserveThenCommit(ctx: Context, customerIds: string[], committed: (i: number) => void, f: ReturnType<typeof failures>): autocannon.Request[] {
  const reserve = `mutation($input: ReserveUsageInput!) { reserveUsage(input: $input) { __typename ... on UsageReservation { allowed code id } ... on Error { message } } }`;
  const commit = `mutation($id: ID!) { commitReservation(id: $id, units: "1") { __typename ... on Reservation { status committedUnits } ... on Error { message } } }`;
  const bodies = customerIds.map((customerId) => body(reserve, { input: { customerId, meterId: ctx.seeded.meterIds.holds, units: "1", ttlSeconds: 600 } }));
  return [
    inTurn(
      bodies.map((_, i) => i),
      (i) => bodies[i],
      (_i, text, slot) => {
        const r = (JSON.parse(text) as { data?: { reserveUsage?: { allowed?: boolean; id?: string } } }).data?.reserveUsage;
        if (r?.allowed && r.id) slot.reservation = r.id;
        else {
          slot.reservation = "none";
          f.note(`reserveUsage: ${text.slice(0, 300)}`);
        }
      },
    ),
    {
      setupRequest: (req, context: object) => ({ ...req, body: body(commit, { id: (context as Slot).reservation }) }),
      onResponse: (_status, text, context: object) => {
        const slot = context as Slot;
        const r = (JSON.parse(text) as { data?: { commitReservation?: { status?: string } } }).data?.commitReservation;
        if (r?.status === "COMMITTED") committed(slot.item as number);
        else f.note(`commitReservation: ${text.slice(0, 300)}`);
      },
    },
  ];
}

/** `singleCalls` 1-event ingestEvents calls on `connections` connections; every acknowledged event goes into the books. */
export async function singleEventCalls(ctx: Context): Promise<Load> {
  const o = ctx.options;
  // A warm-up of its own events first (acknowledged ones go into the books like the measured run's).
  await oneEventCalls(ctx, generateEvents(Math.min(WARM_UP_CALLS, o.singleCalls), o.customers, o.seed + 2, "warm"), "1-event ingest (warm-up)");
  // Generated beforehand; each request takes the next.
  return oneEventCalls(ctx, generateEvents(o.singleCalls, o.customers, o.seed + 1, "one"), "1-event ingest");
}

/** Warm-up requests of the scenarios whose requests are counted (a fixed number, never more than their own). */
const WARM_UP_CALLS = 500;

function oneEventCalls(ctx: Context, events: BenchEvent[], what: string): Promise<Load> {
  const query = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { ... on IngestSummary { inserted duplicates } ... on Error { message } } }`;
  const f = failures();
  return load({
    url: ctx.service.url,
    pid: ctx.service.pid,
    token: ctx.token,
    connections: ctx.options.connections,
    amount: events.length,
    requests: [
      inTurn(
        events,
        (e) => body(query, { events: [eventInput(e)] }),
        (e, text) => {
          const r = (JSON.parse(text) as { data?: { ingestEvents?: { inserted?: number } } }).data?.ingestEvents;
          if (r?.inserted === 1) ctx.books.add(e);
          else f.note(text.slice(0, 300));
        },
      ),
    ],
  }).then((result) => {
    f.check(what);
    return result;
  });
}
