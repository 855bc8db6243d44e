// Usage events: ingestion and reading them back.
import { ConflictError, InsufficientCreditsError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { ingestEvents, MAX_BATCH_SIZE, type EventInput, type IngestResult } from "../domain/ingestion.ts";
import { listEvents, MAX_EVENTS_PAGE_SIZE } from "../domain/events.ts";
import { builder } from "./builder.ts";
import { DEFAULT_PAGE_SIZE } from "./pagination.ts";
import { assertSessionMeter, listScopeCustomer, orgId } from "./access.ts";
import { CustomerObject } from "./customer.ts";
import { givenInput, underInput } from "./inputs.ts";

export const EventObject = builder.prismaObject("Event", {
  description: "A usage event as ingested. Immutable.",
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name"),
    // Event has no foreign keys (prisma/models.prisma); Prisma batches the findUnique calls of one tick.
    customer: t.field({
      type: CustomerObject,
      nullable: true,
      description: "Null while its externalCustomerId matches no customer",
      resolve: (e, _args, ctx) => (e.customerId ? ctx.db.customer.findUnique({ where: { id: e.customerId } }) : null),
    }),
    externalCustomerId: t.exposeString("externalCustomerId", { nullable: true }),
    externalId: t.exposeString("externalId", { nullable: true }),
    timestamp: t.expose("timestamp", { type: "DateTime" }),
    metadata: t.expose("metadata", { type: "JSON" }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the service stored it" }),
  }),
});

const EventInput = builder.inputType("EventInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    customerId: t.id(),
    externalCustomerId: t.string({ description: "May name a customer that does not exist yet: the event counts once it does" }),
    externalId: t.string({ description: "Idempotency key, unique per organization forever: a repeat is counted as a duplicate and changes nothing" }),
    timestamp: t.field({ type: "DateTime", description: "Default now; at most 60 s in the future" }),
    metadata: t.field({ type: "JSON", description: "Flat object of string, number or boolean values" }),
  }),
});

const IngestEventsResult = builder.objectRef<IngestResult>("IngestSummary").implement({
  fields: (t) => ({
    inserted: t.exposeInt("inserted"),
    duplicates: t.exposeInt("duplicates", { description: "Events whose externalId was already stored (or repeated in the batch)" }),
    creditedUnits: t.expose("creditedUnits", {
      type: "Decimal",
      description: "Units credited back by negative values on CREDIT meters (grants with source NEGATIVE_USAGE), for events of customers that exist",
    }),
    ignoredValues: t.exposeInt("ignoredValues", {
      description: "Values a numeric meter (SUM, MAX, MIN, AVG) ignored because they are not numbers (a non-numeric string, a boolean), one per event and meter. STRICT mode refuses them instead",
    }),
  }),
});

const IngestMode = builder.enumType("IngestMode", {
  values: {
    STANDARD: { description: "Record all usage: past zero it is billable overage, or on a credits-only meter a negative balance that authorizations then refuse" },
    STRICT: {
      description:
        "Reject the whole batch (InsufficientCreditsError) if it would take a credits-only balance below what is available (credits from the batch's negative values on CREDIT meters count), and (InvalidInputError) if a numeric meter would ignore a value that is not a number",
    },
  } as const,
});

const IngestEventsInput = builder.inputType("IngestEventsInput", {
  fields: (t) => ({
    events: t.field({ type: [EventInput], required: true }),
    mode: t.field({ type: IngestMode, description: "Default STANDARD" }),
  }),
});

const LOOSE = "Give these in `input` (removed in the next release)";

builder.mutationFields((t) => ({
  ingestEvents: t.field({
    type: IngestEventsResult,
    description: `Store and count a batch of up to ${MAX_BATCH_SIZE} events, all or nothing. Balances are current when this returns, and subscribers are notified.`,
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError, InsufficientCreditsError, ConflictError] },
    args: {
      input: t.arg({ type: IngestEventsInput }),
      events: t.arg({ type: [EventInput], deprecationReason: LOOSE }),
      mode: t.arg({ type: IngestMode, deprecationReason: LOOSE }),
    },
    resolve: (_root, { input, ...loose }, ctx) => {
      const given = givenInput(input, loose, ["events"]);
      const { events, mode } = given.input;
      return underInput(given, () =>
        ingestEvents(
          ctx.db,
          ctx.notify,
          orgId(ctx),
          // graphql-js's ID scalar gives strings (a number given is turned into one): the coerced events go on
          // as they are, not copied one by one
          events as EventInput[],
          ctx.now(),
          mode ?? "STANDARD",
        ),
      );
    },
  }),
}));

builder.queryFields((t) => ({
  events: t.connection(
    {
      type: EventObject,
      description:
        "Events, oldest first, filtered by customer, meter (events its filter matches), name and time range [from, to). Pages forward only (first, after). No totalCount: a meter filter is evaluated in the service, so counting would scan every event.",
      authScopes: { authenticated: true },
      extensions: { maxPageSize: MAX_EVENTS_PAGE_SIZE },
      args: {
        customerId: t.arg.id(),
        externalCustomerId: t.arg.string(),
        meterId: t.arg.id(),
        name: t.arg.string(),
        from: t.arg({ type: "DateTime" }),
        to: t.arg({ type: "DateTime" }),
      },
      resolve: async (_root, args, ctx) => {
        if (args.last != null) throw new InvalidInputError("events page forward only: use first and after", "last");
        if (args.before != null) throw new InvalidInputError("events page forward only: use first and after", "before");
        const customer = await listScopeCustomer(ctx, args);
        await assertSessionMeter(ctx, args.meterId == null ? null : String(args.meterId));
        return listEvents(ctx.db, orgId(ctx), {
          customerId: customer?.id,
          meterId: args.meterId == null ? undefined : String(args.meterId),
          name: args.name ?? undefined,
          from: args.from ?? undefined,
          to: args.to ?? undefined,
        }, { first: args.first ?? DEFAULT_PAGE_SIZE, after: args.after ?? undefined });
      },
    },
    { name: "EventConnection" },
    { name: "EventEdge" },
  ),
}));
