// Meter type, its queries and mutations.
import { archiveMeter, createMeter, updateMeter } from "../domain/meters.ts";
import { AGGREGATIONS, CONJUNCTIONS, OPERATORS } from "../domain/meter-filter.ts";
import { ConflictError, InvalidInputError, LimitExceededError, NotFoundError } from "../domain/errors.ts";
import { withRecordId } from "./inputs.ts";
import { builder, type Context } from "./builder.ts";
import { merchantOnly, orgId, sessionScope } from "./access.ts";
import { pageArgs } from "./pagination.ts";

/** The meters list's filter, shared by its page and its totalCount. */
const metersWhere = (ctx: Context, args: { includeArchived?: boolean | null }) => ({
  organizationId: orgId(ctx),
  ...(args.includeArchived ? {} : { archivedAt: null }),
  ...sessionScope(ctx).meter,
});

export const AggregationFuncEnum = builder.enumType("AggregationFunc", {
  description: "COUNT counts matching events; SUM/MAX/MIN/AVG aggregate a numeric metadata property (non-numeric values are ignored); UNIQUE counts distinct values.",
  values: AGGREGATIONS,
});
const FilterOperatorEnum = builder.enumType("FilterOperator", {
  description: "GT/GTE/LT/LTE compare numbers; LIKE/NOT_LIKE are literal, case-sensitive substring tests on strings (no wildcards); EQ/NE compare values of the same type. A missing property or a value of another type never matches.",
  values: OPERATORS,
});
const ConjunctionEnum = builder.enumType("FilterConjunction", { values: CONJUNCTIONS });
const NegativeValuesEnum = builder.enumType("NegativeValues", {
  description: "What a meter does with an event whose aggregated value is negative.",
  values: {
    REJECT: { description: "Refuse the event, and with it the whole batch (BAD_USER_INPUT naming events.N.metadata.<key>). The default, and the only choice for MAX, MIN and AVG" },
    CREDIT: {
      description:
        "SUM meters only: the negative part becomes credits — a grant with source NEGATIVE_USAGE per customer and meter per transaction, and its GRANT ledger entry — and never reduces consumedUnits",
    },
  } as const,
});

const MeterAggregation = builder.objectRef<{ func: string; property: string | null }>("MeterAggregation").implement({
  fields: (t) => ({
    func: t.field({ type: AggregationFuncEnum, resolve: (a) => a.func as (typeof AGGREGATIONS)[number] }),
    property: t.exposeString("property", { nullable: true }),
  }),
});

export const MeterObject = builder.prismaObject("Meter", {
  description: "What usage counts and how. Each meter has its own balance per customer; units never mix across meters.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    filter: t.field({
      type: "JSON",
      nullable: true,
      description: "{conjunction, clauses: [{property, operator, value} | nested filter]}; null for customer sessions",
      resolve: (m, _args, ctx) => merchantOnly(ctx, m.filter, null),
    }),
    aggregation: t.field({
      type: MeterAggregation,
      select: { aggregationFunc: true, aggregationProperty: true },
      resolve: (m) => ({ func: m.aggregationFunc, property: m.aggregationProperty }),
    }),
    negativeValues: t.field({ type: NegativeValuesEnum, resolve: (m) => (m.negativeValues === "CREDIT" ? "CREDIT" : "REJECT") }),
    archivedAt: t.expose("archivedAt", { type: "DateTime", nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

// Recursive input: a clause may hold a nested filter. The domain validates the shape (parseMeterFilter).
const MeterFilterInput = builder.inputRef<{ conjunction: (typeof CONJUNCTIONS)[number]; clauses: object[] }>("MeterFilterInput");
const MeterFilterClauseInput = builder.inputType("MeterFilterClauseInput", {
  description: "Either a condition (property, operator, value) or a nested filter.",
  fields: (t) => ({
    property: t.string({ description: "`name` (the event name) or a metadata key, optionally written metadata.<key>" }),
    operator: t.field({ type: FilterOperatorEnum }),
    value: t.field({ type: "JSON", description: "A string, number or boolean" }),
    filter: t.field({ type: MeterFilterInput }),
  }),
});
MeterFilterInput.implement({
  fields: (t) => ({
    conjunction: t.field({ type: ConjunctionEnum, required: true }),
    clauses: t.field({ type: [MeterFilterClauseInput], required: true }),
  }),
});

const MeterAggregationInput = builder.inputType("MeterAggregationInput", {
  fields: (t) => ({
    func: t.field({ type: AggregationFuncEnum, required: true }),
    property: t.string({ description: "The metadata property aggregated; omit for COUNT" }),
  }),
});

const CreateMeterInput = builder.inputType("CreateMeterInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    filter: t.field({ type: MeterFilterInput, required: true }),
    aggregation: t.field({ type: MeterAggregationInput, required: true }),
    negativeValues: t.field({ type: NegativeValuesEnum, description: "Default REJECT" }),
  }),
});

const UpdateMeterInput = builder.inputType("UpdateMeterInput", {
  description: "The name can always change; filter, aggregation and negativeValues only until the meter has counted events.",
  fields: (t) => ({
    id: t.id({ description: "The meter to change" }),
    name: t.string(),
    filter: t.field({ type: MeterFilterInput }),
    aggregation: t.field({ type: MeterAggregationInput }),
    negativeValues: t.field({ type: NegativeValuesEnum }),
  }),
});

/** GraphQL gives absent nested fields as undefined/null; the domain validator wants plain JSON. */
function stripNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripNulls);
  if (value && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [k, stripNulls(v)]));
  }
  return value;
}

builder.queryFields((t) => ({
  meter: t.prismaField({
    type: "Meter",
    nullable: true,
    description: "A meter by id. A customer session sees only meters it has a balance on.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) =>
      ctx.db.meter.findFirst({ ...query, where: { id: String(id), organizationId: orgId(ctx), ...sessionScope(ctx).meter } }),
  }),
  meters: t.prismaConnection(
    {
      type: "Meter",
      cursor: "id",
      description: "The organization's meters; for a customer session, only those it has a balance on (credits or usage).",
      authScopes: { authenticated: true },
      args: { includeArchived: t.arg.boolean({ description: "Also list archived meters (default false)" }) },
      totalCount: (_root, args, ctx) => ctx.db.meter.count({ where: metersWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.meter.findMany(await pageArgs(query, metersWhere(ctx, args), [{ id: "asc" }])),
    },
    { name: "MeterConnection" },
    { name: "MeterEdge" },
  ),
}));

builder.mutationFields((t) => ({
  createMeter: t.prismaField({
    type: "Meter",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, LimitExceededError] },
    args: { input: t.arg({ type: CreateMeterInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const meter = await createMeter(ctx.db, orgId(ctx), stripNulls(input) as never, ctx.meterLimits);
      return ctx.db.meter.findUniqueOrThrow({ ...query, where: { id: meter.id } });
    },
  }),
  updateMeter: t.prismaField({
    type: "Meter",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError, LimitExceededError] },
    args: {
      id: t.arg.id({ deprecationReason: "Give input.id (removed in the next release)" }),
      input: t.arg({ type: UpdateMeterInput, required: true }),
    },
    resolve: async (query, _root, { id: argId, input: { id: inputId, ...input } }, ctx) => {
      const meter = await withRecordId(argId, inputId, (id) => updateMeter(ctx.db, orgId(ctx), id, stripNulls(input) as never, ctx.meterLimits));
      return ctx.db.meter.findUniqueOrThrow({ ...query, where: { id: meter.id } });
    },
  }),
  archiveMeter: t.prismaField({
    type: "Meter",
    description: "Stop counting new events on the meter. Its balances stay readable.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const meter = await archiveMeter(ctx.db, orgId(ctx), String(id));
      return ctx.db.meter.findUniqueOrThrow({ ...query, where: { id: meter.id } });
    },
  }),
}));
