// The transport's limits in one place for src/server.ts: Yoga options, node:http server options, the
// pre-Yoga request guard and the WebSocket limits, all from one resolved `Limits` (src/limits.ts).
import type { Server } from "node:http";
import type { WebSocketServer } from "ws";
import type { Limits } from "../limits.ts";
import { corsFromAllowList, operationLimitPlugins, requestShapePlugins } from "./graphql-limits.ts";
import { applyServerLimits, createHttpGuard, httpServerOptions } from "./guard.ts";
import { createConcurrencyLimiter, createKnownTokens, createRateLimiter } from "./rate-limit.ts";
import { webSocketOriginAllowed } from "./portal.ts";
import { createSocketLimits } from "./ws-limits.ts";

export function transportLimits(limits: Limits, publicUrl?: string) {
  // One budget per client per node, shared by HTTP requests and WebSocket operations.
  const rateLimiter = createRateLimiter(limits.rateLimitPerSecond, limits.rateLimitBurst);
  // Tokens that authenticated here (src/server.ts adds them): only those count against a budget of their own.
  const knownTokens = createKnownTokens();
  const sockets = createSocketLimits(limits, rateLimiter, knownTokens);
  return {
    limits,
    /** Spread into createYoga's options. */
    yogaOptions: {
      plugins: [...operationLimitPlugins(limits), ...requestShapePlugins(limits.maxBodyBytes)],
      cors: corsFromAllowList(limits.corsOrigins),
      // The body limit is the guard's (a declared length) and requestShapePlugins' (a chunked body).
      maxRequestBodySize: false as const,
    },
    /** createServer's options. */
    serverOptions: httpServerOptions(limits),
    applyToServer: (server: Server) => applyServerLimits(server, limits),
    /** Before Yoga: true when the request was answered (429, 413). */
    guard: createHttpGuard(limits, rateLimiter, createConcurrencyLimiter(limits.concurrencyPerClient, limits.queuePerClient), knownTokens),
    knownTokens,
    /** Spread into the WebSocketServer's options (message size, browser origins, sockets per node). */
    wsServerOptions: (server: () => WebSocketServer) => {
      const admitted = sockets.verifyClient(server);
      const verifyClient: typeof admitted = (info, done) => {
        if (!webSocketOriginAllowed(info.req, limits.corsOrigins, publicUrl)) done(false, 403, "Origin not allowed (CORS_ORIGINS)");
        else admitted(info, done);
      };
      return { maxPayload: limits.wsMaxMessageBytes, verifyClient };
    },
    sockets,
  };
}
