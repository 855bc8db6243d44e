// Per-client request budget (rate-limiter-flexible, in memory on each node). A client is its token (a hash of
// the bearer secret) or, without a token, its peer address. HTTP requests and WebSocket operations draw on
// the same budget: `perSecond` a second, plus a burst of `burst` extra requests per 10 s.
import { GraphQLError } from "graphql";
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { bearerSecret, hashToken } from "../domain/auth.ts";

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

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
        return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)) };
      }
    },
  };
}

/**
 * Whom a request counts against: `token:<sha256 of the secret>` when it carries a bearer token (valid or not:
 * the token is checked later), otherwise `addr:<peer address>`.
 */
export function clientKey(authorization: string | null | undefined, address: string | undefined): string {
  const secret = authorization ? bearerSecret(authorization) : null;
  if (secret) return `token:${hashToken(secret)}`;
  return `addr:${address ?? "unknown"}`;
}

export const RATE_LIMITED_MESSAGE = "Too many requests: slow down and retry after the time given in retry-after.";

/** The GraphQL error of a request or operation over budget. */
export function rateLimitedError(retryAfterSeconds: number): GraphQLError {
  return new GraphQLError(RATE_LIMITED_MESSAGE, { extensions: { code: "RATE_LIMITED", retryAfter: retryAfterSeconds } });
}
