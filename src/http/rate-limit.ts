// Per-client request budget (rate-limiter-flexible, in memory on each node). A client is its token (a hash of
// the bearer secret, once the token has authenticated on this node) or else its peer address. HTTP requests
// and WebSocket operations draw on the same budget: `perSecond` a second, plus a burst of `burst` extra
// requests per 10 s.
import type { IncomingMessage } from "node:http";
import { GraphQLError } from "graphql";
import { LRUCache } from "lru-cache";
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { bearerSecret, hashToken } from "../domain/auth.ts";

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number; retryAfterMs: number };

export interface RateLimiter {
  take(key: string): Promise<RateDecision>;
}

export function createRateLimiter(perSecond: number, burst: number): RateLimiter {
  const limiter = new BurstyRateLimiter(
    new RateLimiterMemory({ keyPrefix: "rate", points: perSecond, duration: 1 }),
    new RateLimiterMemory({ keyPrefix: "burst", points: burst, duration: 10 }),
  );
  return {
    async take(key) {
      try {
        await limiter.consume(key, 1);
        return { allowed: true };
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)), retryAfterMs: err.msBeforeNext };
      }
    },
  };
}

/** Tokens this node has seen authenticate lately (by hash): their requests count against the token. */
export interface KnownTokens {
  add(tokenHash: string): void;
  has(tokenHash: string): boolean;
}

/** How long a token that authenticated keeps its own budget without authenticating again. */
const KNOWN_TOKEN_TTL_MS = 15 * 60_000;

export function createKnownTokens(max = 100_000): KnownTokens {
  const seen = new LRUCache<string, true>({ max, ttl: KNOWN_TOKEN_TTL_MS, updateAgeOnGet: true });
  return { add: (tokenHash) => void seen.set(tokenHash, true), has: (tokenHash) => seen.has(tokenHash) };
}

/** The hash of a bearer header's secret (null: none, or not a bearer header). */
export function tokenHashOf(authorization: string | null | undefined): string | null {
  const secret = authorization ? bearerSecret(authorization) : null;
  return secret ? hashToken(secret) : null;
}

/**
 * Whom a request counts against: `token:<sha256 of the secret>` when it carries a bearer token this node has
 * seen authenticate (KnownTokens), otherwise `addr:<peer address>`. A token not known yet (its first request,
 * or one that is not a token at all) counts against its address: a client inventing a new bearer string for
 * every request gets no fresh budget, and its lookups of them are bounded by its address's budget.
 */
export function keyOf(tokenHash: string | null, address: string | undefined, known: KnownTokens): string {
  return tokenHash && known.has(tokenHash) ? `token:${tokenHash}` : `addr:${address ?? "unknown"}`;
}

const requestHashes = new WeakMap<IncomingMessage, { secret: string; tokenHash: string } | null>();

/**
 * The bearer secret an HTTP request carries and its hashToken (null: none, or not a bearer header), computed
 * once per request: its rate limit (the guard) and its authentication (src/server.ts) both need the hash.
 */
export function bearerHashOf(req: IncomingMessage): { secret: string; tokenHash: string } | null {
  let found = requestHashes.get(req);
  if (found === undefined) {
    const secret = bearerSecret(req.headers.authorization);
    found = secret ? { secret, tokenHash: hashToken(secret) } : null;
    requestHashes.set(req, found);
  }
  return found;
}

/** The budget key (keyOf) of an HTTP request (its token's hash computed once: bearerHashOf). */
export function requestClientKey(req: IncomingMessage, known: KnownTokens): string {
  return keyOf(bearerHashOf(req)?.tokenHash ?? null, req.socket.remoteAddress, known);
}

export const RATE_LIMITED_MESSAGE = "Too many requests: slow down and retry after the time given in retry-after.";

/** The GraphQL error of a request or operation over budget. */
export function rateLimitedError(retryAfterSeconds: number, message = RATE_LIMITED_MESSAGE): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "RATE_LIMITED", retryAfter: retryAfterSeconds } });
}

export interface ConcurrencyLimiter {
  /** A slot for `key`: its release function, after waiting in line if all slots are taken; null when the line is full too. */
  acquire(key: string): Promise<(() => void) | null>;
}

/**
 * At most `slots` requests of one client in progress on this node; up to `queued` more wait in line (first come,
 * first served), beyond that a request is refused. Keeps one client's concurrency from crowding out the others.
 */
export function createConcurrencyLimiter(slots: number, queued: number): ConcurrencyLimiter {
  const clients = new Map<string, { running: number; waiting: (() => void)[] }>();
  return {
    acquire(key) {
      let client = clients.get(key);
      if (!client) clients.set(key, (client = { running: 0, waiting: [] }));
      const state = client;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        const next = state.waiting.shift();
        if (next) next();
        else if (--state.running === 0) clients.delete(key);
      };
      if (state.running < slots) {
        state.running++;
        return Promise.resolve(release);
      }
      if (state.waiting.length >= queued) return Promise.resolve(null);
      return new Promise((resolve) => state.waiting.push(() => resolve(release)));
    },
  };
}
