// Catalog: benefits (credits on a meter), products and prices.
import { archiveProduct, createBenefit, createProduct, INTERVALS, MAX_PRODUCT_BENEFITS, MAX_PRODUCT_PRICES, updateProduct } from "../domain/catalog.ts";
import { InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { withRecordId } from "./inputs.ts";
import { builder, type Context } from "./builder.ts";
import { orgId, sessionScope } from "./access.ts";
import { pageArgs } from "./pagination.ts";

// Each list's filter, shared by its page and its totalCount.
const productsWhere = (ctx: Context, args: { includeArchived?: boolean | null }) => ({
  organizationId: orgId(ctx),
  ...(args.includeArchived ? {} : { archivedAt: null }),
  ...sessionScope(ctx).product,
});
const benefitsWhere = (ctx: Context) => ({ organizationId: orgId(ctx), archivedAt: null, ...sessionScope(ctx).benefit });

const IntervalEnum = builder.enumType("RecurringInterval", { values: INTERVALS });
const BenefitTypeEnum = builder.enumType("BenefitType", { values: ["METER_CREDITS"] as const });
const PriceTypeEnum = builder.enumType("PriceType", { values: ["FIXED", "METERED_UNIT"] as const });

const BenefitObject = builder.prismaObject("Benefit", {
  description: "Credits on one meter, granted once per order of a one-time product or at every cycle of a subscription.",
  fields: (t) => ({
    id: t.exposeID("id"),
    type: t.field({ type: BenefitTypeEnum, resolve: () => "METER_CREDITS" as const }),
    description: t.exposeString("description"),
    meter: t.relation("meter"),
    units: t.expose("units", { type: "Decimal" }),
    rollover: t.exposeBoolean("rollover", { description: "Unused units carry over to the next cycle (subscriptions)" }),
    expiresAfterDays: t.exposeInt("expiresAfterDays", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

builder.prismaObject("Price", {
  fields: (t) => ({
    id: t.exposeID("id"),
    type: t.field({ type: PriceTypeEnum, resolve: (p) => p.type as "FIXED" | "METERED_UNIT" }),
    currency: t.exposeString("currency"),
    amount: t.expose("amount", { type: "Decimal", nullable: true, description: "FIXED: minor currency units" }),
    meter: t.relation("meter", { nullable: true }),
    unitAmount: t.expose("unitAmount", { type: "Decimal", nullable: true, description: "METERED_UNIT: minor currency units per unit" }),
    capAmount: t.expose("capAmount", { type: "Decimal", nullable: true, description: "METERED_UNIT: most a period's overage can cost" }),
  }),
});

builder.prismaObject("Product", {
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    description: t.exposeString("description", { nullable: true }),
    recurringInterval: t.field({
      type: IntervalEnum,
      nullable: true,
      select: { recurringInterval: true },
      resolve: (p) => p.recurringInterval as "MONTH" | "YEAR" | null,
    }),
    recurringIntervalCount: t.exposeInt("recurringIntervalCount"),
    isRecurring: t.boolean({ select: { recurringInterval: true }, resolve: (p) => p.recurringInterval !== null }),
    prices: t.relation("prices"),
    benefits: t.field({
      type: [BenefitObject],
      select: { benefits: { orderBy: { position: "asc" }, select: { benefit: true } } },
      resolve: (p) => p.benefits.map((b) => b.benefit),
    }),
    archivedAt: t.expose("archivedAt", { type: "DateTime", nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const CreateBenefitInput = builder.inputType("CreateBenefitInput", {
  fields: (t) => ({
    type: t.field({ type: BenefitTypeEnum, required: true }),
    description: t.string({ required: true }),
    meterId: t.id({ required: true }),
    units: t.field({ type: "Decimal", required: true }),
    rollover: t.boolean({ description: "Default false" }),
    expiresAfterDays: t.int({ description: "Credits expire this many days after each grant" }),
  }),
});

const PriceInput = builder.inputType("PriceInput", {
  fields: (t) => ({
    type: t.field({ type: PriceTypeEnum, required: true }),
    currency: t.string({ description: "ISO code, default usd" }),
    amount: t.field({ type: "Decimal", description: "FIXED: minor currency units" }),
    meterId: t.id({ description: "METERED_UNIT: the meter billed" }),
    unitAmount: t.field({ type: "Decimal", description: "METERED_UNIT: minor currency units per unit, exact (e.g. \"0.025\")" }),
    capAmount: t.field({ type: "Decimal", description: "METERED_UNIT: optional cap per period" }),
  }),
});

const CreateProductInput = builder.inputType("CreateProductInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    description: t.string(),
    recurringInterval: t.field({ type: IntervalEnum, description: "Omit for a one-time product" }),
    recurringIntervalCount: t.int({ description: "Default 1" }),
    prices: t.field({ type: [PriceInput], description: `At most ${MAX_PRODUCT_PRICES}` }),
    benefitIds: t.idList({ description: `At most ${MAX_PRODUCT_BENEFITS}` }),
  }),
});

const UpdateProductInput = builder.inputType("UpdateProductInput", {
  description: "A new benefit list applies from the next grant; credits already granted never change.",
  fields: (t) => ({
    id: t.id({ description: "The product to change" }),
    name: t.string(),
    description: t.string(),
    benefitIds: t.idList({ description: `At most ${MAX_PRODUCT_BENEFITS}; replaces the product's benefits` }),
  }),
});

const ids = (list: (string | number)[] | null | undefined) => list?.map(String) ?? null;

builder.queryFields((t) => ({
  product: t.prismaField({
    type: "Product",
    nullable: true,
    description: "A product by id. A customer session sees only products it ordered or subscribed to.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) =>
      ctx.db.product.findFirst({ ...query, where: { id: String(id), organizationId: orgId(ctx), ...sessionScope(ctx).product } }),
  }),
  products: t.prismaConnection(
    {
      type: "Product",
      cursor: "id",
      description: "The organization's products; for a customer session, only those it ordered or subscribed to.",
      authScopes: { authenticated: true },
      args: { includeArchived: t.arg.boolean() },
      totalCount: (_root, args, ctx) => ctx.db.product.count({ where: productsWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.product.findMany(await pageArgs(query, productsWhere(ctx, args), [{ id: "asc" }])),
    },
    { name: "ProductConnection" },
    { name: "ProductEdge" },
  ),
  benefit: t.prismaField({
    type: "Benefit",
    nullable: true,
    description: "A benefit by id. A customer session sees only benefits of its products and those it was granted.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) =>
      ctx.db.benefit.findFirst({ ...query, where: { id: String(id), organizationId: orgId(ctx), ...sessionScope(ctx).benefit } }),
  }),
  benefits: t.prismaConnection(
    {
      type: "Benefit",
      cursor: "id",
      description: "The organization's benefits; for a customer session, only those of its products and those it was granted.",
      authScopes: { authenticated: true },
      totalCount: (_root, _args, ctx) => ctx.db.benefit.count({ where: benefitsWhere(ctx) }),
      resolve: async (query, _root, _args, ctx) => ctx.db.benefit.findMany(await pageArgs(query, benefitsWhere(ctx), [{ id: "asc" }])),
    },
    { name: "BenefitConnection" },
    { name: "BenefitEdge" },
  ),
}));

builder.mutationFields((t) => ({
  createBenefit: t.prismaField({
    type: "Benefit",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: CreateBenefitInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const benefit = await createBenefit(ctx.db, orgId(ctx), { ...input, meterId: String(input.meterId) });
      return ctx.db.benefit.findUniqueOrThrow({ ...query, where: { id: benefit.id } });
    },
  }),
  createProduct: t.prismaField({
    type: "Product",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: CreateProductInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const product = await createProduct(ctx.db, orgId(ctx), {
        ...input,
        prices: input.prices?.map((p) => ({ ...p, meterId: p.meterId == null ? null : String(p.meterId) })),
        benefitIds: ids(input.benefitIds),
      });
      return ctx.db.product.findUniqueOrThrow({ ...query, where: { id: product.id } });
    },
  }),
  updateProduct: t.prismaField({
    type: "Product",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: {
      id: t.arg.id({ deprecationReason: "Give input.id (removed in the next release)" }),
      input: t.arg({ type: UpdateProductInput, required: true }),
    },
    resolve: async (query, _root, { id: argId, input: { id: inputId, ...input } }, ctx) => {
      const product = await withRecordId(argId, inputId, (id) => updateProduct(ctx.db, orgId(ctx), id, { ...input, benefitIds: ids(input.benefitIds) }));
      return ctx.db.product.findUniqueOrThrow({ ...query, where: { id: product.id } });
    },
  }),
  archiveProduct: t.prismaField({
    type: "Product",
    description: "No new orders; existing subscriptions keep renewing.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const product = await archiveProduct(ctx.db, orgId(ctx), String(id));
      return ctx.db.product.findUniqueOrThrow({ ...query, where: { id: product.id } });
    },
  }),
}));
