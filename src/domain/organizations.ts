// Tenants and their admin tokens.
import type { Db } from "../db/client.ts";
import { hashToken, mintToken } from "./auth.ts";
import { isUniqueViolation } from "./prisma-errors.ts";

export interface CreatedOrganization {
  organization: { id: string; name: string };
  /** The admin token's secret. Only its hash is stored: this is the one time it can be shown. */
  token: string;
}

export async function createOrganization(db: Db, name: string): Promise<CreatedOrganization> {
  const trimmed = name.trim();
  if (!trimmed) throw new Error("An organization needs a name");
  const { secret, tokenHash, prefix } = mintToken("ADMIN");
  const organization = await db.organization.create({
    data: { name: trimmed, accessTokens: { create: { kind: "ADMIN", tokenHash, prefix, name: "initial admin token" } } },
    select: { id: true, name: true },
  });
  return { organization, token: secret };
}

/**
 * ADMIN_TOKEN bootstrap: make sure some organization accepts `secret` as an admin token. If none does yet,
 * a "Default organization" is created with it. Safe when several nodes start at once (the hash is unique).
 */
export async function ensureAdminTokenOrganization(db: Db, secret: string): Promise<{ id: string; created: boolean; revoked?: boolean }> {
  const tokenHash = hashToken(secret);
  const existing = await db.accessToken.findUnique({ where: { tokenHash }, select: { organizationId: true, kind: true, revokedAt: true } });
  if (existing) {
    if (existing.kind !== "ADMIN") throw new Error("ADMIN_TOKEN matches a customer session token; choose another secret");
    // A revoked ADMIN_TOKEN stays revoked: restarting with it does not bring it back.
    return { id: existing.organizationId, created: false, revoked: existing.revokedAt !== null };
  }
  try {
    const org = await db.organization.create({
      data: {
        name: "Default organization",
        accessTokens: { create: { kind: "ADMIN", tokenHash, prefix: secret.slice(0, 6), name: "ADMIN_TOKEN" } },
      },
      select: { id: true },
    });
    return { id: org.id, created: true };
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    return ensureAdminTokenOrganization(db, secret); // another node won the race
  }
}

/** First start without ADMIN_TOKEN: create an organization (and return its token) only if there is none. */
export async function ensureFirstOrganization(db: Db): Promise<CreatedOrganization | null> {
  if ((await db.organization.count()) > 0) return null;
  return createOrganization(db, "Default organization");
}
