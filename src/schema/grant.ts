// Credit grants: the type and the admin grant mutation.
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { grantCredits } from "../domain/grants.ts";
import type { CreditGrant } from "../generated/prisma-postgresql/client.ts";
import { grantDue } from "../domain/rules.ts";
import { builder, type Context } from "./builder.ts";
import { merchantOnly, orgId } from "./access.ts";

type GrantState = Pick<CreditGrant, "remainingUnits" | "creditedAt" | "expiredAt">;

/** The grant as of now: one that time has changed since its balance was last written reads as it will be recorded. */
async function settledGrant(ctx: Context, g: CreditGrant): Promise<GrantState> {
  if (!grantDue.test(g, ctx.now())) return g;
  const row = await ctx.db.customerMeter.findUnique({ where: { customerId_meterId: { customerId: g.customerId, meterId: g.meterId } } });
  if (!row) return g;
  const view = await ctx.balanceView(row);
  const settled = view.settled.get(g.id);
  return {
    remainingUnits: view.remaining.get(g.id) ?? g.remainingUnits,
    creditedAt: settled?.creditedAt ?? g.creditedAt,
    expiredAt: settled?.expiredAt ?? g.expiredAt,
  };
}

const CREDIT_GRANT_SOURCES = ["ADMIN", "BENEFIT", "NEGATIVE_USAGE"] as const;
type CreditGrantSource = (typeof CREDIT_GRANT_SOURCES)[number];

const CreditGrantSourceEnum = builder.enumType("CreditGrantSource", {
  description: "Where a grant came from: ADMIN (grantCredits), BENEFIT (an order or a subscription cycle), NEGATIVE_USAGE (negative values on a CREDIT meter). The JSON values are the strings this field always had.",
  values: CREDIT_GRANT_SOURCES,
});

export const CreditGrantObject = builder.prismaObject("CreditGrant", {
  description: "Credits given to a customer on one meter. Never edited: corrections are new ledger entries.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    meter: t.relation("meter"),
    units: t.expose("units", { type: "Decimal" }),
    remainingUnits: t.field({
      type: "Decimal",
      description: "What is left to use, as of now (0 once expired, even before the scheduler records it)",
      resolve: async (g, _args, ctx) => (await settledGrant(ctx, g)).remainingUnits,
    }),
    priority: t.exposeInt("priority"),
    effectiveAt: t.expose("effectiveAt", { type: "DateTime", description: "When the units enter the balance" }),
    creditedAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the units entered the balance; null while effectiveAt is ahead",
      resolve: async (g, _args, ctx) => (await settledGrant(ctx, g)).creditedAt,
    }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
    voidedAt: t.expose("voidedAt", { type: "DateTime", nullable: true }),
    expiredAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When its remainder left the balance (expiry, cycle reset, revoke or refund)",
      resolve: async (g, _args, ctx) => (await settledGrant(ctx, g)).expiredAt,
    }),
    rollover: t.exposeBoolean("rollover"),
    source: t.field({ type: CreditGrantSourceEnum, select: { source: true }, resolve: (g) => g.source as CreditGrantSource }),
    description: t.exposeString("description", { nullable: true }),
    idempotencyKey: t.string({ nullable: true, description: "The key the merchant's call gave; null for a customer session", select: { idempotencyKey: true }, resolve: (r, _args, ctx) => merchantOnly(ctx, r.idempotencyKey, null) }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const GrantCreditsInput = builder.inputType("GrantCreditsInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    meterId: t.id({ required: true }),
    units: t.field({ type: "Decimal", required: true, description: "Greater than 0" }),
    idempotencyKey: t.string({ description: "The same key again returns the first grant and changes nothing" }),
    description: t.string(),
    priority: t.int({ description: "Lower burns first; 0 to 1000, default 10" }),
    effectiveAt: t.field({ type: "DateTime", description: "When the units enter the balance: now (default) or later; a grant cannot be backdated" }),
    expiresAt: t.field({ type: "DateTime", description: "The unused remainder leaves the balance at this instant (exclusive: usage at expiresAt cannot use it)" }),
  }),
});

builder.mutationFields((t) => ({
  grantCredits: t.prismaField({
    type: "CreditGrant",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: { input: t.arg({ type: GrantCreditsInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const grant = await grantCredits(ctx.db, ctx.notify, orgId(ctx), {
        ...input,
        customerId: input.customerId == null ? null : String(input.customerId),
        meterId: String(input.meterId),
      }, ctx.now());
      return ctx.db.creditGrant.findUniqueOrThrow({ ...query, where: { id: grant.id } });
    },
  }),
}));
