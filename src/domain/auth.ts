// Bearer credentials: how secrets are minted, stored (hashed) and turned into a Principal.
import { hash, randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import { sqlOf, type Db } from "../db/client.ts";
import { asDate } from "../db/sql.ts";
import { ForbiddenError, UnauthenticatedError } from "./errors.ts";

export type TokenKind = "ADMIN" | "CUSTOMER_SESSION";

/**
 * Who is calling, always within exactly one organization. `expiresAt` is the token's own end (null or absent:
 * none); long-lived connections close at that instant.
 */
export type Principal =
  | { kind: "admin"; organizationId: string; tokenId: string; expiresAt?: Date | null }
  | { kind: "customer"; organizationId: string; tokenId: string; customerId: string; expiresAt?: Date | null };

const PREFIX: Record<TokenKind, string> = { ADMIN: "crl_admin_", CUSTOMER_SESSION: "crl_cs_" };

export function hashToken(secret: string): string {
  // one-shot: no Hash object per call (every request hashes its bearer secret)
  return hash("sha256", secret, "hex");
}

/** A new random secret (256 bits) and what is stored of it. */
export function mintToken(kind: TokenKind): { secret: string; tokenHash: string; prefix: string } {
  const secret = PREFIX[kind] + randomBytes(32).toString("base64url");
  return { secret, tokenHash: hashToken(secret), prefix: secret.slice(0, PREFIX[kind].length + 4) };
}

/** "Bearer <secret>" → secret; anything else → null. */
export function bearerSecret(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

/**
 * Resolve a presented secret. Unknown, revoked and expired secrets are all UNAUTHENTICATED; a customer
 * session whose customer was deleted is too.
 */
export async function authenticate(db: Db, secret: string, now = new Date()): Promise<Principal> {
  return lookUp(db, hashToken(secret), now);
}

async function lookUp(db: Db, tokenHash: string, now: Date): Promise<Principal> {
  // One statement on the hot reads' connection: customer sessions are looked up on every request.
  const sql = sqlOf(db);
  const token = await sql.first<{ id: string; kind: string; organizationId: string; customerId: string | null; expiresAt: Date | string | null; revokedAt: Date | string | null; customerDeletedAt: Date | string | null }>(
    `SELECT t."id", t."kind", t."organizationId", t."customerId", t."expiresAt", t."revokedAt", c."deletedAt" AS "customerDeletedAt"
       FROM "AccessToken" t LEFT JOIN "Customer" c ON c."id" = t."customerId" WHERE t."tokenHash" = ${sql.param(1)}`,
    [tokenHash],
  );
  const expiresAt = token?.expiresAt == null ? null : asDate(token.expiresAt);
  if (!token || token.revokedAt != null || (expiresAt && expiresAt <= now)) {
    throw new UnauthenticatedError("The access token is invalid or has expired");
  }
  if (token.kind === "ADMIN") return { kind: "admin", organizationId: token.organizationId, tokenId: token.id, expiresAt };
  if (!token.customerId || token.customerDeletedAt != null) {
    throw new UnauthenticatedError("The customer of this session no longer exists");
  }
  return { kind: "customer", organizationId: token.organizationId, tokenId: token.id, customerId: token.customerId, expiresAt };
}

/** How long a node trusts an admin token it has looked up before asking the database again. */
export const ADMIN_TOKEN_CACHE_MS = 5_000;
const ADMIN_TOKEN_CACHE_SIZE = 10_000;

/**
 * `authenticate` with a short memory for admin tokens, called with the secret's hashToken (an HTTP request's
 * guard hashed it for its rate limit); `forget` drops a token the moment it is revoked.
 */
export interface CachedAuthenticator {
  (tokenHash: string, now?: Date): Promise<Principal>;
  /** Drop a remembered admin token (by AccessToken id) so its next use is looked up again. */
  forget(tokenId: string): void;
}

/**
 * `authenticate` with a short memory for admin tokens, the credentials on every ingest and authorization call
 * from a merchant's backend: one statement fewer per request. Customer sessions are always looked up (their
 * customer may be deleted at any moment), as are unknown secrets (nothing is cached for them). An admin
 * token's own expiresAt is still checked on every use. A revocation announced to this node (see
 * src/socket-authority.ts) calls `forget`; one this node missed takes effect within `ttlMs`.
 */
export function cachedAuthenticator(db: Db, ttlMs = ADMIN_TOKEN_CACHE_MS): CachedAuthenticator {
  const cache = new LRUCache<string, Principal>({ max: ADMIN_TOKEN_CACHE_SIZE, ttl: ttlMs });
  // A lookup in flight when its token is forgotten read it before the revocation committed: what it read is
  // answered to its own caller but never kept. `forgotten` holds when each token was last forgotten (counted
  // in `forgets`), for as long as a lookup could still be in flight.
  let forgets = 0;
  const forgotten = new LRUCache<string, number>({ max: ADMIN_TOKEN_CACHE_SIZE, ttl: Math.max(ttlMs, 60_000) });
  const authenticator = async (key: string, now = new Date()) => {
    const hit = cache.get(key);
    if (hit && (!hit.expiresAt || hit.expiresAt > now)) return hit;
    cache.delete(key);
    const startedAt = forgets;
    const principal = await lookUp(db, key, now);
    if (principal.kind === "admin" && (forgotten.get(principal.tokenId) ?? -1) < startedAt) cache.set(key, principal);
    return principal;
  };
  return Object.assign(authenticator, {
    forget(tokenId: string) {
      forgotten.set(tokenId, forgets++);
      const keys = [...cache.entries()].filter(([, principal]) => principal.tokenId === tokenId).map(([key]) => key);
      for (const key of keys) cache.delete(key);
    },
  });
}

/**
 * Which customer a read is about, given what the caller asked for. A customer session reads only itself:
 * omitting the customer means itself, naming another customer is FORBIDDEN.
 */
export function assertCanReadCustomer(principal: Principal, customerId: string, field: string): void {
  if (principal.kind === "customer" && principal.customerId !== customerId) {
    throw new ForbiddenError("A customer session can only read its own customer", field);
  }
}
