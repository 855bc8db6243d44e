// GET /healthz: what a load balancer and an operator need to know about this node's dependencies.
//   200 {"status":"ok", …}        everything reachable
//   200 {"status":"degraded", …}  Redis down: the node still serves reads and writes, only pushes to and from
//                                 other nodes wait for Redis (subscribers re-read when it is back)
//   503 {"status":"unavailable", …} the database is unreachable: the node cannot serve
// `down` names what is unreachable, `checks` has one entry per dependency.
import type { ServerResponse } from "node:http";
import type { Db } from "./db/client.ts";
import type { Logger } from "./log.ts";
import type { RedisLink } from "./pubsub.ts";

/** A database that does not answer within this is reported down (a pool may otherwise wait 30 s). */
const DATABASE_TIMEOUT_MS = 2000;

export function healthCheck(db: Db, redis: RedisLink | null | undefined, log: Logger) {
  return async (res: ServerResponse): Promise<void> => {
    const checks: Record<string, "ok" | "down"> = { database: "ok" };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        db.$queryRawUnsafe("SELECT 1"),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${DATABASE_TIMEOUT_MS} ms`)), DATABASE_TIMEOUT_MS))),
      ]);
    } catch (err) {
      checks.database = "down";
      log.error({ err }, "health check: database unreachable");
    } finally {
      clearTimeout(timer);
    }
    if (redis) checks.redis = redis.up() ? "ok" : "down";
    const down = Object.keys(checks).filter((k) => checks[k] !== "ok");
    const status = checks.database === "down" ? "unavailable" : down.length ? "degraded" : "ok";
    res
      .writeHead(status === "unavailable" ? 503 : 200, { "content-type": "application/json", "cache-control": "no-store" })
      .end(JSON.stringify({ status, down, checks }));
  };
}
