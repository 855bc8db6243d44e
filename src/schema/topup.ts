// Auto top-up rules (src/domain/topups.ts): topup.requested when available credits fall below a line.
import { InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { removeAutoTopUp, setAutoTopUp } from "../domain/topups.ts";
import { builder } from "./builder.ts";
import { orgId, refArgs } from "./access.ts";
import { CustomerObject } from "./customer.ts";
import { MeterObject } from "./meter.ts";

const AutoTopUpObject = builder.prismaObject("AutoTopUp", {
  description: "Below belowUnits available, one topup.requested (webhook and balanceAlerts) asks for productId; at most maxPerMonth a calendar month (UTC).",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.field({ type: CustomerObject, resolve: async (a, _args, ctx) => (await ctx.loaders.customer.load(a.customerId))! }),
    meter: t.field({ type: MeterObject, resolve: async (a, _args, ctx) => (await ctx.loaders.meter.load(a.meterId))! }),
    belowUnits: t.expose("belowUnits", { type: "Decimal" }),
    productId: t.exposeID("productId"),
    maxPerMonth: t.exposeInt("maxPerMonth", { nullable: true }),
    armed: t.exposeBoolean("armed", { description: "Available is at or above belowUnits (or no request was made since): the next fall below asks" }),
  }),
});

const SetAutoTopUpInput = builder.inputType("SetAutoTopUpInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    meterId: t.id({ required: true, description: "A meter or a credit system" }),
    belowUnits: t.field({ type: "Decimal", required: true, description: "0 or more: a request when available units fall below it" }),
    productId: t.id({ required: true, description: "What the top-up buys (createOrder with the request's idempotencyKey)" }),
    maxPerMonth: t.int({ description: "At most this many requests a calendar month (UTC); default unlimited" }),
  }),
});

const RemoveAutoTopUpInput = builder.inputType("RemoveAutoTopUpInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    meterId: t.id({ required: true }),
  }),
});

builder.mutationFields((t) => ({
  setAutoTopUp: t.field({
    type: AutoTopUpObject,
    description: "Create or replace the customer's auto top-up on a meter (armed).",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: SetAutoTopUpInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      setAutoTopUp(ctx.db, orgId(ctx), {
        ...refArgs(input),
        meterId: String(input.meterId),
        belowUnits: input.belowUnits,
        productId: String(input.productId),
        maxPerMonth: input.maxPerMonth ?? null,
      }),
  }),
  removeAutoTopUp: t.field({
    type: AutoTopUpObject,
    description: "Remove the customer's auto top-up on a meter; answers it as it was.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: RemoveAutoTopUpInput, required: true }) },
    resolve: (_root, { input }, ctx) => removeAutoTopUp(ctx.db, orgId(ctx), { ...refArgs(input), meterId: String(input.meterId) }),
  }),
}));
