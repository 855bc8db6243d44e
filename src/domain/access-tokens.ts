// Managing bearer credentials: listing them (never their secrets), minting admin tokens, revoking any token.
import type { Db } from "../db/client.ts";
import { mintToken, type TokenKind } from "./auth.ts";
import { InvalidInputError, NotFoundError } from "./errors.ts";
import type { Notify } from "./notify.ts";

/** What is shown of a token: everything but its hash. */
export const TOKEN_LISTING = {
  id: true,
  organizationId: true,
  kind: true,
  prefix: true,
  name: true,
  customerId: true,
  expiresAt: true,
  revokedAt: true,
  createdAt: true,
} as const;

export interface TokenListing {
  id: string;
  organizationId: string;
  kind: string;
  prefix: string;
  name: string | null;
  customerId: string | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
}

function checkName(name: string | null | undefined, field: string): string | null {
  const trimmed = name?.trim();
  if (!trimmed) return null;
  if (trimmed.length > 100) throw new InvalidInputError("must be at most 100 characters", field);
  return trimmed;
}

/** A new admin token of the organization. The secret is returned once; only its hash is stored. */
export async function createAdminToken(db: Db, organizationId: string, name: string | null | undefined, field = "name"): Promise<{ token: string; accessToken: TokenListing }> {
  const { secret, tokenHash, prefix } = mintToken("ADMIN");
  const accessToken = await db.accessToken.create({
    data: { organizationId, kind: "ADMIN" satisfies TokenKind, tokenHash, prefix, name: checkName(name, field) ?? "admin token" },
    select: TOKEN_LISTING,
  });
  return { token: secret, accessToken };
}

/**
 * Revoke a token of the organization (an admin token, the caller's own included, or a customer session).
 * Revoking a revoked token changes nothing and returns it as it is. Announced after the write, so every node
 * forgets the token and closes the connections it opened.
 */
export async function revokeAccessToken(db: Db, notify: Notify, organizationId: string, id: string, now = new Date(), field = "id"): Promise<TokenListing> {
  const token = await db.accessToken.findFirst({ where: { id, organizationId }, select: TOKEN_LISTING });
  if (!token) throw new NotFoundError("No such access token", field);
  let result = token;
  if (!token.revokedAt) {
    // Only the first revocation sets the instant (concurrent revocations agree on it).
    await db.accessToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: now } });
    result = await db.accessToken.findUniqueOrThrow({ where: { id }, select: TOKEN_LISTING });
  }
  notify.accessRevoked(organizationId, { tokenIds: [id], customerId: null });
  return result;
}

/**
 * The token an operator names on the command line: its id, or the start of its secret as listings show it
 * (`crl_cs_AbCd`). Across organizations; an ambiguous prefix is refused.
 */
export async function findTokenByIdOrPrefix(db: Db, idOrPrefix: string): Promise<TokenListing> {
  const byId = await db.accessToken.findUnique({ where: { id: idOrPrefix }, select: TOKEN_LISTING });
  if (byId) return byId;
  const matches = await db.accessToken.findMany({ where: { prefix: idOrPrefix }, select: TOKEN_LISTING, take: 2 });
  if (matches.length === 1) return matches[0];
  if (matches.length > 1) throw new InvalidInputError("more than one token has this prefix; give its id", "id");
  throw new NotFoundError("No access token with this id or prefix", "id");
}

/** The organization's tokens, newest first, without secrets. */
export async function listAccessTokens(db: Db, organizationId: string): Promise<TokenListing[]> {
  return db.accessToken.findMany({ where: { organizationId }, select: TOKEN_LISTING, orderBy: [{ createdAt: "desc" }, { id: "desc" }] });
}
