// Credit grants: the type and the admin grant mutation.
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { grantCredits } from "../domain/grants.ts";
import { builder } from "./builder.ts";
import { orgId } from "./access.ts";

export const CreditGrantObject = builder.prismaObject("CreditGrant", {
  description: "Credits given to a customer on one meter. Never edited: corrections are new ledger entries.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    meter: t.relation("meter"),
    units: t.expose("units", { type: "Decimal" }),
    remainingUnits: t.expose("remainingUnits", { type: "Decimal" }),
    priority: t.exposeInt("priority"),
    effectiveAt: t.expose("effectiveAt", { type: "DateTime" }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
    voidedAt: t.expose("voidedAt", { type: "DateTime", nullable: true }),
    expiredAt: t.expose("expiredAt", { type: "DateTime", nullable: true, description: "When its remainder left the balance (expiry, cycle reset, revoke or refund)" }),
    rollover: t.exposeBoolean("rollover"),
    source: t.exposeString("source", { description: "ADMIN | BENEFIT | EVENT" }),
    description: t.exposeString("description", { nullable: true }),
    idempotencyKey: t.exposeString("idempotencyKey", { nullable: true }),
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
