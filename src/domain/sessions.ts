// Customer portal sessions: a short-lived bearer token that can read exactly one customer.
import { providerOfDb, type Db } from "../db/client.ts";
import { Sql } from "../db/sql.ts";
import { lockLiveCustomer } from "./customers.ts";
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
  // written only while the customer lives (a session racing its deletion is not minted after it)
  const { id } = await db.$transaction(async (txClient) => {
    const tx = txClient as unknown as Db;
    await lockLiveCustomer(new Sql(tx, providerOfDb(db)), customerId, "customerId");
    return tx.accessToken.create({
      data: { organizationId, kind: "CUSTOMER_SESSION", tokenHash, prefix, customerId, expiresAt, name: "customer session" },
      select: { id: true },
    });
  });
  return { id, token: secret, expiresAt };
}

/** Where a session opens the customer portal: the token in the fragment, so no request line or log carries it. */
export function portalUrl(publicUrl: string, token: string): string {
  return `${publicUrl}/portal#token=${encodeURIComponent(token)}`;
}
