// After a Redis outage each node re-reads the balances its subscribers watch (src/realtime.ts); the database
// may be coming back at the same moment, so the re-read tries again rather than leaving subscribers stale.
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../src/db/client.ts";
import { createLogger } from "../src/log.ts";
import type { RedisLink } from "../src/pubsub.ts";
import { catchUpAfterRedisOutage } from "../src/realtime.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { customer, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

it("the re-read after a Redis outage tries again while the database does not answer, then tells every subscriber", async () => {
  const c = await customer(t);
  const m = await meter(t, "COUNT", { filter: named("after-outage") });
  await ingest(t, [{ name: "after-outage", customerId: c }]);
  let failing = 2;
  // the database refuses the first two reads, as one restarting would
  const flaky = new Proxy(t.db, {
    get: (db, property) =>
      property === "customerMeter"
        ? { findMany: (args: Parameters<Db["customerMeter"]["findMany"]>[0]) => (failing-- > 0 ? Promise.reject(new Error("the database is restarting")) : db.customerMeter.findMany(args)) }
        : Reflect.get(db, property),
  }) as Db;
  let resubscribed: ((customerIds: string[]) => void) | undefined;
  const delivered: unknown[] = [];
  const link = { up: () => true, onResubscribed: (listener) => void (resubscribed = listener), deliverLocally: (_customerId, payload) => void delivered.push(payload) } satisfies RedisLink;
  catchUpAfterRedisOutage(flaky, link, createLogger("silent"), { total: 5_000, every: 20 });
  resubscribed!([c]);
  const deadline = Date.now() + 5_000;
  while (!delivered.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(failing).toBeLessThan(0);
  const stored = await t.db.customerMeter.findUniqueOrThrow({ where: { customerId_meterId: { customerId: c, meterId: m } } });
  expect(delivered).toEqual([{ customerId: c, balances: [{ meterId: m, version: stored.version }] }]);
});
