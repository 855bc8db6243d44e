// What every HTTP request to /graphql passes before Yoga sees it: the client's request budget and a declared
// body length over the limit, both answered here without reading the body (a body sent without a length is
// counted as it is read: src/http/graphql-limits.ts); plus node:http's timeouts and connection cap.
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from "node:http";
import type { Limits } from "../limits.ts";
import { createConcurrencyLimiter, requestClientKey, rateLimitedError, type ConcurrencyLimiter, type KnownTokens, type RateLimiter } from "./rate-limit.ts";

/** Options for `createServer`: headers, request and keep-alive timeouts, checked often enough to matter. */
export function httpServerOptions(limits: Limits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks the two request timeouts on this interval (default 30 s, which would let a slow client hold
    // a connection for headersTimeout + 30 s).
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** Settings only a created server takes. */
export function applyServerLimits(server: Server, limits: Limits): void {
  server.maxConnections = limits.maxConnections;
}

type ErrorJson = { message: string; extensions: Record<string, unknown> };

/** A GraphQL-shaped error response; the connection is closed after it when the body was not read. */
function refuse(req: IncomingMessage, res: ServerResponse, status: number, error: ErrorJson, headers: Record<string, string> = {}, dropConnection = false) {
  const body = JSON.stringify({ errors: [error] });
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body), ...headers, ...(dropConnection ? { connection: "close" } : {}) });
  res.end(body);
  // Give the client a moment to read the answer, then stop receiving a body nobody will read.
  if (dropConnection) res.once("finish", () => setTimeout(() => req.socket.destroy(), 500).unref());
}

function tooLarge(limit: number): ErrorJson {
  return { message: `Request body is larger than the limit of ${limit} bytes.`, extensions: { code: "REQUEST_ENTITY_TOO_LARGE" } };
}

/**
 * Returns a function that either answers a request itself (413 for a declared length over the limit, 429 over
 * the client's budget or with its line of waiting requests full: returns true) or lets it through to Yoga
 * (returns false), once the client has a free slot; the slot is freed when the response is done.
 */
export function createHttpGuard(limits: Limits, rateLimiter: RateLimiter, concurrency: ConcurrencyLimiter, known: KnownTokens) {
  // Delayed refusals waiting per client: slots and no line, so one over the bound is answered at once.
  const tarpit = createConcurrencyLimiter(limits.queuePerClient, 0);
  return async function guard(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const declared = req.headers["content-length"];
    if (declared !== undefined && Number(declared) > limits.maxBodyBytes) {
      refuse(req, res, 413, tooLarge(limits.maxBodyBytes), {}, true);
      return true;
    }
    const key = requestClientKey(req, known);
    const decision = await rateLimiter.take(key);
    if (!decision.allowed) {
      // Node discards a small unread body itself and keeps the connection. The answer waits until the budget
      // refills (at most rateLimitDelayMs): a client retrying at once on its connections then gets a few
      // answers a second, not thousands, and the node's time goes to other clients. Waiting answers are
      // bounded per client like waiting requests; beyond that a refusal is sent at once.
      const answer = () => {
        if (!res.writableEnded && !res.destroyed) {
          refuse(req, res, 429, rateLimitedError(decision.retryAfterSeconds).toJSON() as ErrorJson, { "retry-after": String(decision.retryAfterSeconds) });
        }
      };
      const delay = Math.min(decision.retryAfterMs, limits.rateLimitDelayMs);
      const delayed = delay > 0 ? await tarpit.acquire(key) : null;
      if (!delayed) answer();
      else {
        const timer = setTimeout(() => (delayed(), answer()), delay);
        res.once("close", () => (clearTimeout(timer), delayed()));
      }
      return true;
    }
    const release = await concurrency.acquire(key);
    if (!release) {
      refuse(req, res, 429, rateLimitedError(1, "Too many requests in progress for this client: wait for some to finish.").toJSON() as ErrorJson, { "retry-after": "1" });
      return true;
    }
    res.once("close", release);
    if (res.destroyed || req.socket.destroyed) {
      release();
      return true;
    }
    // A body without a declared length (chunked) is counted as it is read (src/http/graphql-limits.ts).
    return false;
  };
}
