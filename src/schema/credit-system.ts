// Credit systems: a pool meter fed by rated meters (src/domain/credit-systems.ts).
import { createCreditSystem, creditRates, MAX_CREATED_RATES, setCreditRate } from "../domain/credit-systems.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { builder } from "./builder.ts";
import { orgId, sessionScope } from "./access.ts";
import { MeterObject } from "./meter.ts";

const CreditRateObject = builder.prismaObject("CreditRate", {
  description: "What one unit of a rated meter draws from its credit system, from effectiveAt until the meter's next rate.",
  fields: (t) => ({
    meter: t.field({ type: MeterObject, resolve: (r, _args, ctx) => ctx.db.meter.findUniqueOrThrow({ where: { id: r.meterId } }) }),
    creditsPerUnit: t.expose("creditsPerUnit", { type: "Decimal", description: "Credits per unit (at most 6 decimals)" }),
    effectiveAt: t.expose("effectiveAt", { type: "DateTime" }),
  }),
});

builder.prismaObjectFields("Meter", (t) => ({
  creditSystem: t.exposeBoolean("creditSystem", { description: "This meter is a credit system: a pool its rated meters draw from (it counts no events itself)" }),
  creditSystemId: t.exposeID("creditPoolId", { nullable: true, description: "The credit system this meter's usage draws from, if it is rated" }),
  creditRates: t.field({
    type: [CreditRateObject],
    description: "A credit system's rates, per meter, oldest first (empty for other meters); a customer session sees those of the meters it has a balance on",
    resolve: async (m, _args, ctx) => {
      if (!m.creditSystem) return [];
      const rates = await creditRates(ctx.db, m.id);
      if (ctx.principal?.kind !== "customer" || !rates.length) return rates;
      // a rated meter the customer never used reads as if it did not exist, here as in meter(id)
      const ids = [...new Set(rates.map((r) => r.meterId))];
      const seen = await ctx.db.meter.findMany({ where: { id: { in: ids }, ...sessionScope(ctx).meter }, select: { id: true } });
      const visible = new Set(seen.map((v) => v.id));
      return rates.filter((r) => visible.has(r.meterId));
    },
  }),
}));

const CreditRateInput = builder.inputType("CreditRateInput", {
  fields: (t) => ({
    meterId: t.id({ required: true, description: "A COUNT or SUM meter that feeds no other credit system" }),
    creditsPerUnit: t.field({ type: "Decimal", required: true, description: "Greater than 0, at most 6 decimals" }),
  }),
});

const CreateCreditSystemInput = builder.inputType("CreateCreditSystemInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    rates: t.field({ type: [CreditRateInput], required: true, description: `At most ${MAX_CREATED_RATES} meters` }),
  }),
});

const SetCreditRateInput = builder.inputType("SetCreditRateInput", {
  fields: (t) => ({
    creditSystemId: t.id({ required: true }),
    meterId: t.id({ required: true }),
    creditsPerUnit: t.field({ type: "Decimal", required: true, description: "Greater than 0, at most 6 decimals" }),
    effectiveAt: t.field({ type: "DateTime", description: "From when (default now); usage timestamped earlier keeps its rate" }),
  }),
});

builder.mutationFields((t) => ({
  createCreditSystem: t.prismaField({
    type: "Meter",
    description: "A pool of credits (a Meter: every balance API takes its id) that usage on the rated meters draws from, units × creditsPerUnit.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: { input: t.arg({ type: CreateCreditSystemInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const rates = input.rates.map((r) => ({ meterId: String(r.meterId), creditsPerUnit: r.creditsPerUnit }));
      const pool = await createCreditSystem(ctx.db, orgId(ctx), { name: input.name, rates }, ctx.now());
      return ctx.db.meter.findUniqueOrThrow({ ...query, where: { id: pool.id } });
    },
  }),
  setCreditRate: t.prismaField({
    type: "Meter",
    description: "Change (or add) a meter's rate into a credit system from effectiveAt on. Answers the credit system.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: { input: t.arg({ type: SetCreditRateInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const pool = await setCreditRate(ctx.db, orgId(ctx), {
        creditSystemId: String(input.creditSystemId),
        meterId: String(input.meterId),
        creditsPerUnit: input.creditsPerUnit,
        effectiveAt: input.effectiveAt ?? null,
      }, ctx.now());
      return ctx.db.meter.findUniqueOrThrow({ ...query, where: { id: pool.id } });
    },
  }),
}));
