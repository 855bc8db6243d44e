// Background work inside the server: credit expiry and subscription cycles at period end. One pass at a time; several nodes
// may run it at once (each renewal is guarded by the period end it read).
import type { Db } from "./db/client.ts";
import { expireDueGrants } from "./domain/grants.ts";
import type { Notify } from "./domain/notify.ts";
import { processDueSubscriptions, type RenewalMode } from "./domain/subscriptions.ts";
import type { Logger } from "./log.ts";

export interface Scheduler {
  /** Run one pass now (tests call this with a controlled clock). */
  tick(): Promise<void>;
  start(intervalMs: number): void;
  stop(): Promise<void>;
}

export function createScheduler(deps: { db: Db; notify: Notify; log: Logger; clock: () => Date; renewalMode: RenewalMode }): Scheduler {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;
  const pass = async () => {
    try {
      const now = deps.clock();
      const expired = await expireDueGrants(deps.db, deps.notify, now);
      if (expired) deps.log.info({ expired }, "credit grants expired");
      const processed = await processDueSubscriptions(deps.db, deps.notify, now, deps.renewalMode);
      if (processed) deps.log.info({ processed }, "subscription cycles processed");
    } catch (err) {
      deps.log.error({ err }, "scheduler pass failed");
    }
  };
  const tick = async () => {
    while (running) await running; // never two passes at once in one process
    running = pass();
    try {
      await running;
    } finally {
      running = null;
    }
  };
  return {
    tick,
    start(intervalMs) {
      timer = setInterval(() => void tick(), intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      if (running) await running;
    },
  };
}
