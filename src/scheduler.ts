// Background work inside the server: grant expiry and activation, expired holds, subscription cycles at
// period end, credits.expiring, and the webhook history's retention. One pass at a time; several nodes may run it at once (every step is conditional on the state it
// read, under row locks).
import type { Db } from "./db/client.ts";
import { announceExpiringCredits } from "./domain/alert-rules.ts";
import { expireDueReservations } from "./domain/authorization.ts";
import { settleDueGrants } from "./domain/grants.ts";
import type { Notify } from "./domain/notify.ts";
import { processDueSubscriptions, type RenewalMode } from "./domain/subscriptions.ts";
import { pruneWebhookHistory } from "./domain/webhooks.ts";
import type { Logger } from "./log.ts";
import { onePassAtATime } from "./one-pass.ts";

export interface Scheduler {
  /** Run one pass now (tests call this with a controlled clock). */
  tick(): Promise<void>;
  start(intervalMs: number): void;
  stop(): Promise<void>;
}

export function createScheduler(deps: { db: Db; notify: Notify; log: Logger; clock: () => Date; renewalMode: RenewalMode; webhookRetentionMs: number }): Scheduler {
  let timer: NodeJS.Timeout | undefined;
  const pass = async () => {
    try {
      const now = deps.clock();
      // Renewals first: each cycle caught up after downtime is settled as of the period end it renews, and
      // expiries recorded up to now before them would date the late cycles' grants after those expiries.
      const processed = await processDueSubscriptions(deps.db, deps.notify, now, deps.renewalMode);
      if (processed) deps.log.info({ processed }, "subscription cycles processed");
      const settled = await settleDueGrants(deps.db, deps.notify, now);
      if (settled) deps.log.info({ settled }, "balances brought up to date (grant expiries and activations)");
      const released = await expireDueReservations(deps.db, deps.notify, now);
      if (released) deps.log.info({ released }, "expired reservations released");
      const expiring = await announceExpiringCredits(deps.db, now);
      if (expiring) deps.log.info({ expiring }, "credits.expiring raised");
      const pruned = await pruneWebhookHistory(deps.db, new Date(now.getTime() - deps.webhookRetentionMs));
      if (pruned.deliveries || pruned.messages) deps.log.info(pruned, "webhook history past its retention pruned");
    } catch (err) {
      deps.log.error({ err }, "scheduler pass failed");
    }
  };
  const { tick, idle } = onePassAtATime(pass);
  return {
    tick,
    start(intervalMs) {
      timer = setInterval(() => void tick(), intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await idle();
    },
  };
}
