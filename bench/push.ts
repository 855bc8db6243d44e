// Ingest → subscriber latency in `npm run bench`: `subscriptions` open graphql-ws subscriptions (50 per
// socket, one per customer on the `requests` meter), then one 1-event ingest at a time, each timed from the
// request (and from its response) to the message on that customer's subscription; and one call with an event
// for each of `fanOut` subscribed customers, timed until the last of them has its message.
import { performance } from "node:perf_hooks";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import type { Context } from "./context.ts";
import { BenchFailure } from "./harness.ts";
import { decimalText, percentile, withTimeout } from "./support.ts";
import type { BenchEvent } from "./workload.ts";

const PER_SOCKET = 50;
const SUBSCRIPTION = `subscription($c: String!, $m: ID) { customerMeterUpdated(externalCustomerId: $c, meterId: $m) { consumedUnits version } }`;
const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { ... on IngestSummary { inserted duplicates } ... on Error { message } } }`;

interface Message {
  at: number;
  consumedUnits: string;
}

export interface PushResult {
  samples: number;
  requestToPush: { p50: number; p99: number };
  responseToPush: { p50: number; p99: number };
  /** a call with one event for each of `fanOut` subscribed customers: request → last subscriber's message */
  fanOutMs: number;
  fanOut: number;
}

export async function pushLatency(ctx: Context): Promise<PushResult> {
  const o = ctx.options;
  const subs = Math.min(o.subscriptions, o.customers);
  const counts = Array.from({ length: subs }, () => 0);
  const waiters = new Map<number, (m: Message) => void>();
  let failure: string | null = null;
  const sockets: Client[] = [];
  const disposers: (() => void)[] = [];
  try {
    for (let s = 0; s * PER_SOCKET < subs; s++) {
      const client = createClient({
        url: ctx.service.url.replace(/^http/, "ws"),
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${ctx.token}` },
        onNonLazyError: (err) => void (failure ??= `socket ${s}: ${String(err)}`),
      });
      sockets.push(client);
      for (let i = s * PER_SOCKET; i < Math.min(subs, (s + 1) * PER_SOCKET); i++) {
        disposers.push(
          client.subscribe<{ customerMeterUpdated: { consumedUnits: string } }>(
            { query: SUBSCRIPTION, variables: { c: `c${i}`, m: ctx.seeded.meterIds.requests } },
            {
              next: (result) => {
                const at = performance.now();
                if (!result.data) return void (failure ??= `subscription c${i}: ${JSON.stringify(result.errors)}`);
                counts[i]++;
                const w = waiters.get(i);
                if (w) {
                  waiters.delete(i);
                  w({ at, consumedUnits: result.data.customerMeterUpdated.consumedUnits });
                }
              },
              error: (err) => void (failure ??= `subscription c${i}: ${err instanceof Error ? err.message : JSON.stringify(err)}`),
              complete: () => void (failure ??= `subscription c${i} completed`),
            },
          ),
        );
      }
    }
    let serial = 0;
    const event = (customer: number): BenchEvent => ({
      name: "api.request",
      customer,
      externalId: `push${serial++}`,
      timestamp: new Date().toISOString(),
      metadata: { route: "/v1/push" },
      meter: "requests",
      micro: 1_000_000n,
    });
    const ingest = async (events: BenchEvent[]) => {
      const res = await fetch(ctx.service.url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ctx.token}` },
        body: JSON.stringify({ query: INGEST, variables: { events: events.map((e) => ({ name: e.name, externalCustomerId: `c${e.customer}`, externalId: e.externalId, metadata: e.metadata })) } }),
      });
      const text = await res.text();
      const r = (JSON.parse(text) as { data?: { ingestEvents?: { inserted?: number } } }).data?.ingestEvents;
      if (r?.inserted !== events.length) throw new BenchFailure(`push: ingest answered ${text.slice(0, 300)}`);
      for (const e of events) ctx.books.add(e);
    };
    // Calls touching many subscribed customers at once go in chunks of `fanOut` customers: on SQLite, more
    // than about 500 subscribers woken by one commit fail (see the README, Performance).
    const fanOut = Math.min(o.fanOut, subs);
    const chunks = (from: number, to: number) => {
      const out: BenchEvent[][] = [];
      for (let i = from; i < to; i += fanOut) out.push(Array.from({ length: Math.min(fanOut, to - i) }, (_, k) => event(i + k)));
      return out;
    };

    // Subscriptions become live asynchronously: send a round for everyone until each has had a message.
    const deadline = performance.now() + 60_000;
    while (counts.some((c) => c === 0)) {
      if (failure) throw new BenchFailure(failure);
      if (performance.now() > deadline) throw new BenchFailure(`push: ${counts.filter((c) => c === 0).length} subscriptions never received a message`);
      for (const chunk of chunks(0, subs)) await ingest(chunk);
      const until = performance.now() + 2_000;
      while (counts.some((c) => c === 0) && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 500)); // let the last round's messages land

    // Fan-out: one call with an event for each of `fanOut` subscribed customers.
    const before = counts.slice();
    const f0 = performance.now();
    let lastAt = 0;
    const arrivals = Array.from({ length: fanOut }, (_, i) => new Promise<void>((resolve) => waiters.set(i, (m) => ((lastAt = Math.max(lastAt, m.at)), resolve()))));
    await ingest(chunks(0, fanOut)[0]);
    await withTimeout(Promise.all(arrivals), 30_000, "fan-out messages");
    const fanOutMs = lastAt - f0;
    if (counts.some((c, i) => c !== before[i] + (i < fanOut ? 1 : 0))) throw new BenchFailure("push: the fan-out call gave a subscriber other than exactly one message");

    // Samples: one event at a time, each for another customer.
    const requestToPush: number[] = [];
    const responseToPush: number[] = [];
    for (let k = 0; k < o.latencySamples; k++) {
      const i = (k * 37) % subs;
      const e = event(i);
      const arrived = new Promise<Message>((resolve) => waiters.set(i, resolve));
      const t0 = performance.now();
      await ingest([e]);
      const t1 = performance.now();
      const m = await withTimeout(arrived, 10_000, `message for c${i}`);
      const want = decimalText(ctx.books.expected(i, "requests"), 6);
      if (m.consumedUnits !== want) throw new BenchFailure(`push: c${i} pushed consumedUnits ${m.consumedUnits}, the books say ${want}`);
      requestToPush.push(m.at - t0);
      responseToPush.push(m.at - t1);
    }
    if (failure) throw new BenchFailure(failure);
    return {
      samples: requestToPush.length,
      requestToPush: { p50: percentile(requestToPush, 50), p99: percentile(requestToPush, 99) },
      responseToPush: { p50: percentile(responseToPush, 50), p99: percentile(responseToPush, 99) },
      fanOutMs,
      fanOut,
    };
  } finally {
    for (const d of disposers) d();
    await Promise.all(sockets.map((s) => s.dispose()));
  }
}
