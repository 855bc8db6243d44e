// Customer portal sessions: a short-lived bearer token that can read exactly one customer.
import type { Db } from "../db/client.ts";
import { mintToken } from "./auth.ts";
import { InvalidInputError } from "./errors.ts";

export const DEFAULT_SESSION_TTL_SECONDS = 60 * 60; // one hour
export const MAX_SESSION_TTL_SECONDS = 7 * 24 * 60 * 60; // one week

export async function createCustomerSession(
  db: Db,
  organizationId: string,
  customerId: string,
  ttlSeconds: number = DEFAULT_SESSION_TTL_SECONDS,
  now = new Date(),
): Promise<{ id: string; token: string; expiresAt: Date }> {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > MAX_SESSION_TTL_SECONDS) {
    throw new InvalidInputError(`must be between 60 and ${MAX_SESSION_TTL_SECONDS} seconds`, "ttlSeconds");
  }
  const { secret, tokenHash, prefix } = mintToken("CUSTOMER_SESSION");
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  const { id } = await db.accessToken.create({
    data: { organizationId, kind: "CUSTOMER_SESSION", tokenHash, prefix, customerId, expiresAt, name: "customer session" },
    select: { id: true },
  });
  return { id, token: secret, expiresAt };
}

/** Where a session opens the customer portal: the token in the fragment, so no request line or log carries it. */
export function portalUrl(publicUrl: string, token: string): string {
  return `${publicUrl}/portal#token=${encodeURIComponent(token)}`;
}
