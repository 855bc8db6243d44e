// The transport's limits in one place for src/server.ts: Yoga options, node:http server options, the
// pre-Yoga request guard and the WebSocket limits, all from one resolved `Limits` (src/limits.ts).
import type { Server } from "node:http";
import type { WebSocketServer } from "ws";
import type { Limits } from "../limits.ts";
import { corsFromAllowList, operationLimitPlugins, requestShapePlugins } from "./graphql-limits.ts";
import { applyServerLimits, createHttpGuard, httpServerOptions } from "./guard.ts";
import { createConcurrencyLimiter, createRateLimiter } from "./rate-limit.ts";
import { createSocketLimits } from "./ws-limits.ts";

export function transportLimits(limits: Limits) {
  // One budget per client per node, shared by HTTP requests and WebSocket operations.
  const rateLimiter = createRateLimiter(limits.rateLimitPerSecond, limits.rateLimitBurst);
  const sockets = createSocketLimits(limits, rateLimiter);
  return {
    limits,
    /** Spread into createYoga's options. */
    yogaOptions: {
      plugins: [...operationLimitPlugins(limits), ...requestShapePlugins()],
      cors: corsFromAllowList(limits.corsOrigins),
      maxRequestBodySize: limits.maxBodyBytes,
    },
    /** createServer's options. */
    serverOptions: httpServerOptions(limits),
    applyToServer: (server: Server) => applyServerLimits(server, limits),
    /** Before Yoga: true when the request was answered (429, 413). */
    guard: createHttpGuard(limits, rateLimiter, createConcurrencyLimiter(limits.concurrencyPerClient, limits.queuePerClient)),
    /** Spread into the WebSocketServer's options (message size, sockets per node). */
    wsServerOptions: (server: () => WebSocketServer) => ({ maxPayload: limits.maxBodyBytes, verifyClient: sockets.verifyClient(server) }),
    sockets,
  };
}
