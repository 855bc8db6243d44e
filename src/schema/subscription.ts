// Orders and subscriptions: purchases, cycles, cancellation and refunds; what a customer is entitled to.
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { createOrder, refundOrder } from "../domain/orders.ts";
import { meteredPrices, overageAmount, overageUnits, type MeteredPrice } from "../domain/overage.ts";
import { cancelSubscription, renewSubscription } from "../domain/subscriptions.ts";
import { grantOpen } from "../domain/rules.ts";
import { builder, type Context } from "./builder.ts";
import { orgId } from "./access.ts";
import { CustomerMeterObject } from "./balance.ts";
import { CustomerState } from "./customer-state.ts";

builder.prismaObject("Order", {
  description: "A paid purchase: the first order of a product, or a subscription's renewal.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    product: t.relation("product"),
    subscription: t.relation("subscription", { nullable: true }),
    status: t.exposeString("status", { description: "PAID | REFUNDED" }),
    idempotencyKey: t.exposeString("idempotencyKey", { nullable: true }),
    refundedAt: t.expose("refundedAt", { type: "DateTime", nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

// Named CustomerSubscription: `Subscription` is GraphQL's root type for live operations.
const SubscriptionObject = builder.prismaObject("Subscription", {
  name: "CustomerSubscription",
  description: "A customer's subscription to a recurring product.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    product: t.relation("product"),
    status: t.exposeString("status", { description: "ACTIVE | CANCELED" }),
    currentPeriodStart: t.expose("currentPeriodStart", { type: "DateTime" }),
    currentPeriodEnd: t.expose("currentPeriodEnd", { type: "DateTime" }),
    cancelAtPeriodEnd: t.exposeBoolean("cancelAtPeriodEnd"),
    canceledAt: t.expose("canceledAt", { type: "DateTime", nullable: true }),
    endedAt: t.expose("endedAt", { type: "DateTime", nullable: true }),
  }),
});

const CreateOrderInput = builder.inputType("CreateOrderInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    productId: t.id({ required: true }),
    idempotencyKey: t.string({ description: "The same key again returns the first order and grants nothing more" }),
  }),
});

builder.mutationFields((t) => ({
  createOrder: t.prismaField({
    type: "Order",
    description: "Record a paid purchase: a one-time product grants its credits (packs stack); a recurring product starts a subscription and grants the first cycle.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: { input: t.arg({ type: CreateOrderInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const order = await createOrder(ctx.db, ctx.notify, orgId(ctx), {
        ...input,
        customerId: input.customerId == null ? null : String(input.customerId),
        productId: String(input.productId),
      }, ctx.now());
      return ctx.db.order.findUniqueOrThrow({ ...query, where: { id: order.id } });
    },
  }),
  refundOrder: t.prismaField({
    type: "Order",
    description: "What remains of the order's credits leaves the balance.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const order = await refundOrder(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now());
      return ctx.db.order.findUniqueOrThrow({ ...query, where: { id: order.id } });
    },
  }),
  cancelSubscription: t.prismaField({
    type: SubscriptionObject,
    description: "atPeriodEnd: keep this cycle, stop renewing. Otherwise now: it ends and its remaining credits are revoked.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }), atPeriodEnd: t.arg.boolean({ description: "Default false" }) },
    resolve: async (query, _root, { id, atPeriodEnd }, ctx) => {
      const sub = await cancelSubscription(ctx.db, ctx.notify, orgId(ctx), String(id), atPeriodEnd ?? false, ctx.now());
      return ctx.db.subscription.findUniqueOrThrow({ ...query, where: { id: sub.id } });
    },
  }),
  renewSubscription: t.prismaField({
    type: SubscriptionObject,
    description: "Start the next cycle now (for merchants whose payment system confirms renewals; see RENEWAL_MODE).",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const sub = await renewSubscription(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now());
      return ctx.db.subscription.findUniqueOrThrow({ ...query, where: { id: sub.id } });
    },
  }),
}));

builder.objectFields(CustomerState, (t) => ({
  activeSubscriptions: t.prismaField({
    type: [SubscriptionObject],
    resolve: (query, state, _args, ctx) =>
      ctx.db.subscription.findMany({ ...query, where: { customerId: state.customer.id, status: "ACTIVE" }, orderBy: { createdAt: "asc" } }),
  }),
  grantedBenefits: t.prismaField({
    type: ["Benefit"],
    description: "Benefits whose credits the customer currently holds (live grants from orders and subscriptions).",
    resolve: (query, state, _args, ctx) =>
      ctx.db.benefit.findMany({
        ...query,
        where: { creditGrants: { some: { customerId: state.customer.id, ...grantOpen.where } } },
        orderBy: { createdAt: "asc" },
      }),
  }),
}));

// CustomerMeter rows are loaded whole (no select on the type), so balance and ids are always there.
// Metered prices are read once per customer per request, however many balances are shown.
const priceCache = new WeakMap<Context, Map<string, Promise<Map<string, MeteredPrice>>>>();
function meteredPriceFor(ctx: Context, customerId: string, meterId: string): Promise<MeteredPrice | undefined> {
  let perCustomer = priceCache.get(ctx);
  if (!perCustomer) priceCache.set(ctx, (perCustomer = new Map()));
  let prices = perCustomer.get(customerId);
  if (!prices) perCustomer.set(customerId, (prices = meteredPrices(ctx.db, customerId)));
  return prices.then((p) => p.get(meterId));
}

builder.objectFields(CustomerMeterObject, (t) => ({
  overageUnits: t.field({
    type: "Decimal",
    description: "Units used beyond credits (the negative part of the balance).",
    resolve: async (cm, _args, ctx) => overageUnits((await ctx.balanceView(cm)).balance),
  }),
  overageAmount: t.field({
    type: "Decimal",
    nullable: true,
    description: "overageUnits × the unit amount of the customer's active metered price on this meter, capped (minor currency units); null when the meter is credits-only for the customer.",
    resolve: async (cm, _args, ctx) => {
      const price = await meteredPriceFor(ctx, cm.customerId, cm.meterId);
      return price ? overageAmount(overageUnits((await ctx.balanceView(cm)).balance), price) : null;
    },
  }),
}));
