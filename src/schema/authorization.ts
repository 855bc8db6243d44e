// Usage authorization on the request path: authorizeUsage, reservations and their lifecycle.
import {
  asked,
  authorizeUsage,
  commitReservation,
  releaseReservation,
  reserveUsage,
  DEFAULT_HOLD_SECONDS,
  MAX_HOLD_SECONDS,
  type Authorization,
  type ReserveResult,
} from "../domain/authorization.ts";
import { ConflictError, InsufficientCreditsError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { givenInput, underInput } from "./inputs.ts";
import { holdLive, holdStatus } from "../domain/rules.ts";
import { builder, type Context, type PothosTypes } from "./builder.ts";
import { MeterObject } from "./meter.ts";
import { listScopeCustomer, merchantOnly, orgId } from "./access.ts";
import { sharedFilter, pageArgs } from "./pagination.ts";

// `code` is a String! like Error.code, so one selection `... on UsageAuthorization { code } ... on Error { code }`
// is valid GraphQL (fields of one name must have one type across a union's members).
const CODE_DESCRIPTION = "OK when allowed; INSUFFICIENT_CREDITS when refused (credits-only meter: the units exceed what is available, balance minus holds)";

const ReservationStatus = builder.enumType("ReservationStatus", {
  values: {
    HELD: { description: "Holding its units until expiresAt" },
    COMMITTED: { description: "Used: committedUnits left the balance (also an authorizeUsage record)" },
    RELEASED: { description: "Given back before expiry" },
    EXPIRED: { description: "Not committed in time; its units are available again" },
  } as const,
});

const ReservationObject = builder.prismaObject("Reservation", {
  description: "Units held by reserveUsage until committed, released or expired; or the record of an authorizeUsage made with an idempotencyKey.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.relation("customer"),
    meter: t.field({
      type: MeterObject,
      description: "The meter the units were reserved (or authorized) on",
      resolve: async (r, _args, ctx) => (await ctx.loaders.meter.load(asked(r).meterId))!,
    }),
    units: t.field({ type: "Decimal", description: "Held (or authorized), in the meter's units", resolve: (r) => asked(r).units }),
    committedUnits: t.expose("committedUnits", { type: "Decimal", nullable: true, description: "What the commit used, in the meter's units" }),
    creditSystem: t.field({
      type: MeterObject,
      nullable: true,
      description: "A hold on a rated meter: the credit system whose pool holds its credits",
      resolve: async (r, _args, ctx) => (r.ratedMeterId === null ? null : ctx.loaders.meter.load(r.meterId)),
    }),
    credits: t.field({
      type: "Decimal",
      nullable: true,
      description: "A hold on a rated meter: the credits held on the pool (units × creditsPerUnit, rounded to the micro-credit)",
      resolve: (r) => (r.ratedMeterId === null ? null : r.units),
    }),
    creditsPerUnit: t.expose("creditsPerUnit", {
      type: "Decimal",
      nullable: true,
      description: "A hold on a rated meter: the rate it was priced at, which its commit also draws at",
    }),
    status: t.field({ type: ReservationStatus, resolve: (r, _args, ctx) => holdStatus(r, ctx.now()) as typeof ReservationStatus.$inferType }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
    idempotencyKey: t.string({ nullable: true, description: "The key the merchant's call gave; null for a customer session", select: { idempotencyKey: true }, resolve: (r, _args, ctx) => merchantOnly(ctx, r.idempotencyKey, null) }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const UsageAuthorization = builder.objectRef<Authorization>("UsageAuthorization").implement({
  description: "The answer to authorizeUsage.",
  fields: (t) => ({
    allowed: t.exposeBoolean("allowed"),
    balance: t.expose("balance", { type: "Decimal", description: "After the deduction when allowed; as it stands when refused" }),
    code: t.exposeString("code", { description: CODE_DESCRIPTION }),
    replayed: t.exposeBoolean("replayed", { description: "The idempotencyKey was already authorized: nothing was deducted this time" }),
  }),
});

const UsageReservation = builder.objectRef<ReserveResult>("UsageReservation").implement({
  description: "The answer to reserveUsage.",
  fields: (t) => ({
    id: t.id({ nullable: true, description: "The reservation; null when refused", resolve: (r) => r.reservation?.id ?? null }),
    allowed: t.exposeBoolean("allowed"),
    expiresAt: t.field({ type: "DateTime", nullable: true, resolve: (r) => r.reservation?.expiresAt ?? null }),
    balance: t.expose("balance", { type: "Decimal", description: "The balance (a hold does not move it; it reduces availableUnits)" }),
    code: t.exposeString("code", { description: CODE_DESCRIPTION }),
    reservation: t.field({ type: ReservationObject, nullable: true, resolve: (r) => r.reservation }),
  }),
});

type InputFields = PothosSchemaTypes.InputFieldBuilder<PothosSchemaTypes.ExtendDefaultTypes<PothosTypes>, "InputObject">;

/** What authorizeUsage and reserveUsage both take. */
const usageFields = (t: InputFields) => ({
  customerId: t.id(),
  externalCustomerId: t.string(),
  meterId: t.id({ required: true }),
  units: t.field({ type: "Decimal", required: true, description: "Greater than 0" }),
  idempotencyKey: t.string({ description: "The same key again answers without deducting or holding again" }),
});

const AuthorizeUsageInput = builder.inputType("AuthorizeUsageInput", { fields: usageFields });

const ReserveUsageInput = builder.inputType("ReserveUsageInput", {
  fields: (t) => ({
    ...usageFields(t),
    ttlSeconds: t.int({ description: `How long the hold lasts: 1 to ${MAX_HOLD_SECONDS}, default ${DEFAULT_HOLD_SECONDS}` }),
  }),
});

const ref = <T extends { customerId?: string | number | null; meterId: string | number }>(input: T) => ({
  ...input,
  customerId: input.customerId == null ? null : String(input.customerId),
  meterId: String(input.meterId),
});

const CommitReservationInput = builder.inputType("CommitReservationInput", {
  fields: (t) => ({
    id: t.id({ required: true, description: "The reservation" }),
    units: t.field({ type: "Decimal", required: true, description: "Units used, 0 or more" }),
  }),
});

builder.mutationFields((t) => ({
  authorizeUsage: t.field({
    type: UsageAuthorization,
    description:
      "Check and deduct units in one step. Credits-only meter: refused (allowed false, INSUFFICIENT_CREDITS) if the units exceed what is available, and a refusal changes nothing. With a metered price the customer may go into billable overage, so it is always allowed.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError, ConflictError] },
    args: { input: t.arg({ type: AuthorizeUsageInput, required: true }) },
    resolve: (_root, { input }, ctx) => authorizeUsage(ctx.db, ctx.notify, orgId(ctx), ref(input), ctx.now()),
  }),
  reserveUsage: t.field({
    type: UsageReservation,
    description: "Hold units for a while: what is available shrinks, the balance does not move. Then commitReservation or releaseReservation; a hold not finished by expiresAt gives its units back by itself.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError, ConflictError] },
    args: { input: t.arg({ type: ReserveUsageInput, required: true }) },
    resolve: (_root, { input }, ctx) => reserveUsage(ctx.db, ctx.notify, orgId(ctx), ref(input), ctx.now()),
  }),
  commitReservation: t.prismaField({
    type: ReservationObject,
    description:
      "Use units of a live hold (any amount from 0): they leave the balance and the hold ends. Units beyond the hold must be available on a credits-only meter. Committing again with the same units answers the same reservation.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError, ConflictError, InsufficientCreditsError] },
    args: {
      input: t.arg({ type: CommitReservationInput }),
      id: t.arg.id({ deprecationReason: "Give input.id (removed in the next release)" }),
      units: t.arg({ type: "Decimal", deprecationReason: "Give input.units (removed in the next release)" }),
    },
    resolve: async (query, _root, { input, ...loose }, ctx) => {
      const given = givenInput(input, loose, ["id", "units"]);
      const { id, units } = given.input;
      const r = await underInput(given, () => commitReservation(ctx.db, ctx.notify, orgId(ctx), String(id), units, ctx.now()));
      return relationsAsked(query) ? ctx.db.reservation.findUniqueOrThrow({ ...query, where: { id: r.id } }) : r;
    },
  }),
  releaseReservation: t.prismaField({
    type: ReservationObject,
    description: "Give a live hold's units back now. Releasing again, or an expired hold, answers the reservation as it is.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError, ConflictError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const r = await releaseReservation(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now());
      return relationsAsked(query) ? ctx.db.reservation.findUniqueOrThrow({ ...query, where: { id: r.id } }) : r;
    },
  }),
}));

/**
 * Whether a prismaField's query loads relations (the selection reaches past the row's own columns). A commit or
 * release answers the row as its transaction wrote it; only a selection of its relations reads it again.
 */
function relationsAsked(query: { include?: object; select?: object }): boolean {
  return query.select !== undefined || Object.keys(query.include ?? {}).length > 0;
}

/** The reservations list's filter, shared by its page and its totalCount. */
const reservationsWhere = sharedFilter(
  async (ctx: Context, args: { customerId?: string | number | null; externalCustomerId?: string | null; meterId?: string | number | null; status?: string | null }) => {
    const customer = await listScopeCustomer(ctx, args);
    const now = ctx.now();
    // HELD past expiresAt reads as EXPIRED (the scheduler may not have marked it yet)
    const status =
      args.status === "HELD"
        ? holdLive.where(now)
        : args.status === "EXPIRED"
          ? { OR: [{ status: "EXPIRED" }, holdLive.lapsedWhere(now)] }
          : args.status
            ? { status: args.status }
            : {};
    // a meter's reservations include holds on it as a rated meter; a pool's, the holds its rated meters put on it
    const meter = args.meterId ? { OR: [{ meterId: String(args.meterId) }, { ratedMeterId: String(args.meterId) }] } : {};
    return { organizationId: orgId(ctx), ...(customer ? { customerId: customer.id } : {}), AND: [meter, status] };
  },
);

builder.queryFields((t) => ({
  reservations: t.prismaConnection(
    {
      type: ReservationObject,
      cursor: "id",
      description: "Reservations and authorization records, newest first: for one customer (a customer session sees its own) or, for an admin, the whole organization. `status: HELD` lists live holds only.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id(), status: t.arg({ type: ReservationStatus }) },
      totalCount: async (_root, args, ctx) => ctx.db.reservation.count({ where: await reservationsWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.reservation.findMany(await pageArgs(query, await reservationsWhere(ctx, args), [{ id: "desc" }])),
    },
    { name: "ReservationConnection" },
    { name: "ReservationEdge" },
  ),
  reservation: t.prismaField({
    type: ReservationObject,
    nullable: true,
    description: "One reservation (or authorization record) of this organization.",
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => ctx.db.reservation.findFirst({ ...query, where: { id: String(id), organizationId: orgId(ctx) } }),
  }),
}));
