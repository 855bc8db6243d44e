// Orders and subscriptions: purchases, cycles, cancellation and refunds, reading them back; what a customer is
// entitled to.
import type { StoredBalance } from "../domain/balance-view.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { createOrder, refundOrder, type OrderStatus } from "../domain/orders.ts";
import { meteredPrices, overageAmount, overageUnits, type MeteredPrice } from "../domain/overage.ts";
import { cancelSubscription, renewSubscription, type CancelOptions, type SubscriptionStatus } from "../domain/subscriptions.ts";
import { grantOpen } from "../domain/rules.ts";
import { builder, type Context } from "./builder.ts";
import { listScopeCustomer, merchantOnly, orgId, ownRows } from "./access.ts";
import { withRecordId } from "./inputs.ts";
import { sharedFilter, totalCountField, pageArgs } from "./pagination.ts";
import { CustomerMeterObject } from "./balance.ts";
import { CustomerObject } from "./customer.ts";
import { CustomerState } from "./customer-state.ts";

const OrderStatusEnum = builder.enumType("OrderStatus", {
  values: {
    PAID: { description: "Paid: its credits were granted" },
    REFUNDED: { description: "refundOrder: what remained of its credits left the balance" },
  } satisfies Record<OrderStatus, { description: string }>,
});

const SubscriptionStatusEnum = builder.enumType("CustomerSubscriptionStatus", {
  values: {
    ACTIVE: { description: "Running; renews at currentPeriodEnd unless cancelAtPeriodEnd" },
    CANCELED: { description: "Ended (at endedAt): cancelled now, or at the end of the period it was cancelled in" },
  } satisfies Record<SubscriptionStatus, { description: string }>,
});

const OrderObject = builder.prismaObject("Order", {
  description: "A paid purchase: the first order of a product, or a subscription's renewal.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    product: t.relation("product"),
    subscription: t.relation("subscription", { nullable: true, description: "The subscription the order started or renewed" }),
    status: t.field({ type: OrderStatusEnum, select: { status: true }, resolve: (o) => o.status as OrderStatus }),
    amount: t.expose("amount", {
      type: "Decimal",
      nullable: true,
      description: "What was paid, in minor currency units: the product's FIXED price when the order was made; null for a product without one",
    }),
    currency: t.exposeString("currency", { nullable: true, description: "The ISO code of amount's currency" }),
    idempotencyKey: t.string({ nullable: true, description: "The key the merchant's call gave; null for a customer session", select: { idempotencyKey: true }, resolve: (r, _args, ctx) => merchantOnly(ctx, r.idempotencyKey, null) }),
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
    status: t.field({ type: SubscriptionStatusEnum, select: { status: true }, resolve: (s) => s.status as SubscriptionStatus }),
    currentPeriodStart: t.expose("currentPeriodStart", { type: "DateTime" }),
    currentPeriodEnd: t.expose("currentPeriodEnd", {
      type: "DateTime",
      description: "The current cycle's end: when an ACTIVE subscription without cancelAtPeriodEnd renews (\"renews on\"), or one with it ends",
    }),
    cancelAtPeriodEnd: t.exposeBoolean("cancelAtPeriodEnd"),
    canceledAt: t.expose("canceledAt", { type: "DateTime", nullable: true }),
    endedAt: t.expose("endedAt", { type: "DateTime", nullable: true }),
  }),
});

// One connection type per item, shared by the root lists and Customer's: clients need one fragment for both.
const OrderConnection = builder.connectionObject({ type: OrderObject, name: "OrderConnection", fields: totalCountField }, { name: "OrderEdge" });
const SubscriptionConnection = builder.connectionObject(
  { type: SubscriptionObject, name: "CustomerSubscriptionConnection", fields: totalCountField },
  { name: "CustomerSubscriptionEdge" },
);

// Newest first everywhere (ids follow creation order). Cursors are ids: rows added while a client pages come
// before its first page and never shift the later ones.
const newestFirst = { id: "desc" } as const;

type ListArgs = { customerId?: string | number | null; externalCustomerId?: string | null; productId?: string | number | null };

/** What a list of sold things covers: one customer's (see listScopeCustomer) or the organization's, optionally of one product. */
async function listWhere(ctx: Context, args: ListArgs) {
  const customer = await listScopeCustomer(ctx, args);
  return {
    organizationId: orgId(ctx),
    ...(customer ? { customerId: customer.id } : {}),
    ...(args.productId ? { productId: String(args.productId) } : {}),
  };
}
const ordersWhere = sharedFilter(listWhere);
const subscriptionsWhere = sharedFilter(async (ctx: Context, args: ListArgs & { status?: SubscriptionStatus | null }) => ({
  ...(await listWhere(ctx, args)),
  ...(args.status ? { status: args.status } : {}),
}));

builder.queryFields((t) => ({
  order: t.prismaField({
    type: OrderObject,
    nullable: true,
    description: "One order. A customer session reads only its customer's: another customer's is null.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => ctx.db.order.findFirst({ ...query, where: { id: String(id), ...ownRows(ctx) } }),
  }),
  orders: t.prismaConnection(
    {
      type: OrderObject,
      cursor: "id",
      description: "Orders (first orders and renewals, refunded ones included), newest first: for one customer (a customer session sees its own) or, for an admin, the whole organization; optionally of one product.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), productId: t.arg.id() },
      totalCount: async (_root, args, ctx) => ctx.db.order.count({ where: await ordersWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.order.findMany(await pageArgs(query, await ordersWhere(ctx, args), [newestFirst])),
    },
    OrderConnection,
  ),
  customerSubscription: t.prismaField({
    type: SubscriptionObject,
    nullable: true,
    description: "One subscription, ended ones included. A customer session reads only its customer's: another customer's is null.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => ctx.db.subscription.findFirst({ ...query, where: { id: String(id), ...ownRows(ctx) } }),
  }),
  customerSubscriptions: t.prismaConnection(
    {
      type: SubscriptionObject,
      cursor: "id",
      description: "Subscriptions, cancelled and ended ones included, newest first: for one customer (a customer session sees its own) or, for an admin, the whole organization; optionally of one product and in one status.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), productId: t.arg.id(), status: t.arg({ type: SubscriptionStatusEnum }) },
      totalCount: async (_root, args, ctx) => ctx.db.subscription.count({ where: await subscriptionsWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.subscription.findMany(await pageArgs(query, await subscriptionsWhere(ctx, args), [newestFirst])),
    },
    SubscriptionConnection,
  ),
}));

// Reachable only through a Customer the caller may read (a customer session: its own).
builder.prismaObjectFields(CustomerObject, (t) => ({
  orders: t.relatedConnection(
    "orders",
    { cursor: "id", totalCount: true, description: "The customer's orders, newest first.", query: { orderBy: newestFirst } },
    OrderConnection,
  ),
  subscriptions: t.relatedConnection(
    "subscriptions",
    { cursor: "id", totalCount: true, description: "The customer's subscriptions, cancelled and ended ones included, newest first.", query: { orderBy: newestFirst } },
    SubscriptionConnection,
  ),
}));

const CreateOrderInput = builder.inputType("CreateOrderInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    productId: t.id({ required: true }),
    idempotencyKey: t.string({ description: "The same key again returns the first order and grants nothing more" }),
  }),
});

const CancelSubscriptionInput = builder.inputType("CancelSubscriptionInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    atPeriodEnd: t.boolean({ description: "Default true: keep the cycle paid for, stop renewing. false: end now" }),
    revokeCredits: t.boolean({
      description: "Default false. With atPeriodEnd false: also remove every credit the subscription granted that remains, rollover included (REVOKE)",
    }),
  }),
});

/**
 * The subscription and options of either form of cancelSubscription. Both cancel at period end by default; the
 * deprecated loose form's explicit `atPeriodEnd: false` keeps its old meaning (ends now and revokes the credits).
 */
function cancelArgs(args: {
  input?: { id: string | number; atPeriodEnd?: boolean | null; revokeCredits?: boolean | null } | null;
  id?: string | number | null;
  atPeriodEnd?: boolean | null;
}): [string, CancelOptions] {
  if (args.input && (args.id != null || args.atPeriodEnd != null)) throw new InvalidInputError("Give input, or the deprecated id and atPeriodEnd, not both", "id");
  if (args.input) {
    return [String(args.input.id), { atPeriodEnd: args.input.atPeriodEnd ?? true, revokeCredits: args.input.revokeCredits ?? false }];
  }
  if (args.id == null) throw new InvalidInputError("Name the subscription: input: { id }", "input");
  const atPeriodEnd = args.atPeriodEnd ?? true;
  return [String(args.id), { atPeriodEnd, revokeCredits: !atPeriodEnd }];
}

builder.mutationFields((t) => ({
  createOrder: t.prismaField({
    type: OrderObject,
    description: "Record a paid purchase: a one-time product grants its credits (packs stack); a recurring product starts a subscription and grants the first cycle. A second active subscription of the customer to the same product is a CONFLICT.",
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
    type: OrderObject,
    description:
      "What remains of the order's credits leaves the balance. Refunding a subscription's latest order (the current cycle's) also ends the subscription now; an older one only loses its own remaining credits.",
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
    description:
      "Cancel a subscription. By default at period end: the customer keeps the cycle paid for, it does not renew. `atPeriodEnd: false` ends it now; its credits stay unless `revokeCredits: true`.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: {
      input: t.arg({ type: CancelSubscriptionInput }),
      id: t.arg.id({ deprecationReason: "Use input: { id, atPeriodEnd, revokeCredits }" }),
      atPeriodEnd: t.arg.boolean({
        description: "With id only: default true (at period end); false keeps its old meaning, a cancellation now that revokes the subscription's remaining credits",
        deprecationReason: "Use input: { id, atPeriodEnd, revokeCredits } (atPeriodEnd defaults to true there)",
      }),
    },
    resolve: async (query, _root, args, ctx) => {
      const [id, options] = cancelArgs(args);
      // the input form's id is input.id (the deprecated bare argument keeps "id")
      const sub = await withRecordId(args.input ? null : id, args.input ? id : null, (subscriptionId) => cancelSubscription(ctx.db, ctx.notify, orgId(ctx), subscriptionId, options, ctx.now()));
      return ctx.db.subscription.findUniqueOrThrow({ ...query, where: { id: sub.id } });
    },
  }),
  renewSubscription: t.prismaField({
    type: SubscriptionObject,
    description: "Start the next cycle now (for merchants whose payment system confirms renewals; see RENEWAL_MODE).",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError, ConflictError] },
    args: {
      id: t.arg.id({ required: true }),
      idempotencyKey: t.arg.string({ description: "The renewal order's key (e.g. your payment's id): a retry with it renews nothing more. Used for another order: CONFLICT." }),
    },
    resolve: async (query, _root, { id, idempotencyKey }, ctx) => {
      const sub = await renewSubscription(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now(), idempotencyKey ?? null);
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

/**
 * A balance's overage: the negative part of its balance, except on a meter rated into a credit system, whose
 * usage the pool pays for (its own balance is only ever −consumed): any overage is the pool's.
 */
async function overageOf(ctx: Context, cm: { customerId: string; meterId: string } & StoredBalance): Promise<bigint> {
  const meter = await ctx.loaders.meter.load(cm.meterId);
  if (meter?.creditPoolId) return 0n;
  return overageUnits((await ctx.balanceView(cm)).balance);
}

builder.objectFields(CustomerMeterObject, (t) => ({
  overageUnits: t.field({
    type: "Decimal",
    description: "Units used beyond credits (the negative part of the balance). 0 on a meter rated into a credit system: its usage is paid from the pool, whose balance shows any overage.",
    resolve: (cm, _args, ctx) => overageOf(ctx, cm),
  }),
  overageAmount: t.field({
    type: "Decimal",
    nullable: true,
    description: "overageUnits × the unit amount of the customer's active metered price on this meter, capped (minor currency units); null when the meter is credits-only for the customer.",
    resolve: async (cm, _args, ctx) => {
      const price = await meteredPriceFor(ctx, cm.customerId, cm.meterId);
      return price ? overageAmount(await overageOf(ctx, cm), price) : null;
    },
  }),
}));
