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
 * ADMIN_TOKEN bootstrap: make sure some organization accepts `secret` as an admin token. If none does yet, it
 * becomes an admin token of the only organization there is (one set up by a first start without ADMIN_TOKEN, or
 * whose ADMIN_TOKEN is being replaced), or, in an empty database, of a new "Default organization". With several
 * organizations and none holding it, which one it is for cannot be guessed: the start is refused (mint a token
 * of the right one with `npm run cli -- token create <orgId>`). Safe when several nodes start at once (the hash
 * is unique).
 */
export async function ensureAdminTokenOrganization(db: Db, secret: string): Promise<{ id: string; created: boolean; attached?: boolean; revoked?: boolean }> {
  const tokenHash = hashToken(secret);
  const existing = await db.accessToken.findUnique({ where: { tokenHash }, select: { organizationId: true, kind: true, revokedAt: true } });
  if (existing) {
    if (existing.kind !== "ADMIN") throw new Error("ADMIN_TOKEN matches a customer session token; choose another secret");
    // A revoked ADMIN_TOKEN stays revoked: restarting with it does not bring it back.
    return { id: existing.organizationId, created: false, revoked: existing.revokedAt !== null };
  }
  const token = { kind: "ADMIN", tokenHash, prefix: secret.slice(0, 6), name: "ADMIN_TOKEN" };
  try {
    const organizations = await db.organization.findMany({ select: { id: true }, take: 2 });
    if (organizations.length > 1) {
      throw new Error("ADMIN_TOKEN is no token of any organization in this database, which has several: set it to one of their admin tokens, or mint one with npm run cli -- token create <orgId>");
    }
    if (organizations.length === 1) {
      await db.accessToken.create({ data: { ...token, organizationId: organizations[0].id } });
      return { id: organizations[0].id, created: false, attached: true };
    }
    const org = await db.organization.create({ data: { name: "Default organization", accessTokens: { create: token } }, select: { id: true } });
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
