// The ledger and grants of a balance: history, balance at an instant, what expires soon, voids.
import { NotFoundError } from "../domain/errors.ts";
import { voidCreditGrant } from "../domain/grants.ts";
import { balanceAt, expiringGrants, meterHistory } from "../domain/ledger.ts";
import { builder, type Context } from "./builder.ts";
import { assertReadableMeter, merchantOnly, orgId, readableCustomer, refArgs } from "./access.ts";
import { publicDescription } from "../domain/authorization.ts";
import { sharedFilter, totalCountField, pageArgs } from "./pagination.ts";
import { CreditGrantObject } from "./grant.ts";
import { EventObject } from "./event.ts";
import { MeterObject } from "./meter.ts";

const LEDGER_ENTRY_KINDS = ["GRANT", "USAGE", "EXPIRY", "VOID", "RESET", "REVOKE", "REFUND"] as const;
type LedgerEntryKind = (typeof LEDGER_ENTRY_KINDS)[number];

const LedgerEntryKindEnum = builder.enumType("LedgerEntryKind", {
  description:
    "What changed the balance: GRANT (credits arrived), USAGE (events, authorizations, commits), EXPIRY (an unused remainder at expiresAt), VOID (voidCreditGrant), RESET (a cycle's remainder at an early renewal), REVOKE (a subscription cancelled now), REFUND (refundOrder). The JSON values are the strings this field always had.",
  values: LEDGER_ENTRY_KINDS,
});

builder.prismaObject("LedgerEntry", {
  description: "One change to a balance. Append-only.",
  fields: (t) => ({
    id: t.exposeID("id"),
    kind: t.field({ type: LedgerEntryKindEnum, select: { kind: true }, resolve: (e) => e.kind as LedgerEntryKind }),
    units: t.expose("units", { type: "Decimal", description: "The change to the balance (negative for usage and removals)" }),
    balanceAfter: t.expose("balanceAfter", { type: "Decimal" }),
    occurredAt: t.expose("occurredAt", { type: "DateTime" }),
    // LedgerEntry has no foreign keys (prisma/models.prisma); Prisma batches the findUnique calls of one tick.
    meter: t.field({ type: MeterObject, resolve: (e, _args, ctx) => ctx.db.meter.findUniqueOrThrow({ where: { id: e.meterId } }) }),
    grant: t.field({
      type: CreditGrantObject,
      nullable: true,
      resolve: (e, _args, ctx) => (e.grantId ? ctx.db.creditGrant.findUnique({ where: { id: e.grantId } }) : null),
    }),
    event: t.field({
      type: EventObject,
      nullable: true,
      description: "USAGE: the last event the entry covers",
      resolve: (e, _args, ctx) => (e.eventId ? ctx.db.event.findUnique({ where: { id: e.eventId } }) : null),
    }),
    eventCount: t.exposeInt("eventCount", { description: "USAGE: how many events the entry covers" }),
    description: t.string({
      nullable: true,
      description: "What the entry is for; for a customer session, without the merchant's idempotency key (an authorizeUsage entry names it)",
      select: { description: true, kind: true },
      resolve: (e, _args, ctx) => merchantOnly(ctx, e.description, publicDescription(e.kind, e.description)),
    }),
    ratedMeter: t.field({
      type: MeterObject,
      nullable: true,
      description: "A credit system's USAGE: the rated meter the draw came from",
      resolve: (e, _args, ctx) => (e.ratedMeterId ? ctx.db.meter.findUnique({ where: { id: e.ratedMeterId } }) : null),
    }),
    creditsPerUnit: t.expose("creditsPerUnit", { type: "Decimal", nullable: true, description: "A credit system's USAGE: the rate the draw was made at" }),
    ratedUnits: t.expose("ratedUnits", {
      type: "Decimal",
      nullable: true,
      description:
        "A credit system's USAGE that is also its rated meter's: the units counted on the rated meter. The rated meter's own ledger lists this entry (it writes none of its own for that usage).",
    }),
    ratedBalanceAfter: t.expose("ratedBalanceAfter", { type: "Decimal", nullable: true, description: "With ratedUnits: the rated meter's balance after them" }),
  }),
});

type BalanceListArgs = { customerId?: string | number | null; externalCustomerId?: string | null; meterId?: string | number | null };

/** The customer (one the caller may read) and the meter (one it may read, or none) a balance read names. */
async function readableBalance(ctx: Context, args: BalanceListArgs): Promise<{ customerId: string; meterId: string | null }> {
  const customer = await readableCustomer(ctx, refArgs(args));
  const meterId = args.meterId ? String(args.meterId) : null;
  if (meterId) await assertReadableMeter(ctx, meterId);
  return { customerId: customer.id, meterId };
}

/** A readable customer's ledger, optionally of one meter (a rated meter's includes the pool draws that carry its usage). */
const ledgerWhere = sharedFilter(async (ctx: Context, args: BalanceListArgs) => {
  const { customerId, meterId } = await readableBalance(ctx, args);
  return { customerId, ...(meterId ? await meterHistory(ctx.db, meterId) : {}) };
});

/** A readable customer's grants, optionally of one meter: the filter shared by page and totalCount. */
const balanceListWhere = sharedFilter(async (ctx: Context, args: BalanceListArgs) => {
  const { customerId, meterId } = await readableBalance(ctx, args);
  return { customerId, ...(meterId ? { meterId } : {}) };
});

const expiringWhere = sharedFilter(async (ctx: Context, args: BalanceListArgs & { within: number }) => {
  const { customerId, meterId } = await readableBalance(ctx, args);
  return expiringGrants(customerId, meterId, ctx.now(), Math.max(0, args.within) * 1000);
});

// One connection type for both lists of grants: a client needs one fragment for them.
const CreditGrantConnection = builder.connectionObject(
  { type: CreditGrantObject, name: "CreditGrantConnection", fields: totalCountField },
  { name: "CreditGrantEdge" },
);

builder.queryFields((t) => ({
  ledger: t.prismaConnection(
    {
      type: "LedgerEntry",
      cursor: "id",
      description:
        "A customer's ledger in the order things happened (occurredAt), optionally for one meter. Within one balance that is also the order the entries were committed in: an entry is never dated before the one committed before it.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
      totalCount: async (_root, args, ctx) => ctx.db.ledgerEntry.count({ where: await ledgerWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => {
        const where = await ledgerWhere(ctx, args);
        // the cursor's entry is looked for in the list's customer's ledger: another customer's id is no cursor
        return ctx.db.ledgerEntry.findMany(
          await pageArgs(query, where, [{ occurredAt: "asc" }, { sequence: "asc" }, { id: "asc" }], (id) =>
            ctx.db.ledgerEntry.findFirst({ where: { id, organizationId: orgId(ctx), customerId: where.customerId }, select: { occurredAt: true, sequence: true } }),
          ),
        );
      },
    },
    { name: "LedgerEntryConnection" },
    { name: "LedgerEntryEdge" },
  ),
  creditGrants: t.prismaConnection(
    {
      type: "CreditGrant",
      cursor: "id",
      description: "A customer's credit grants with what remains of each, oldest first.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
      totalCount: async (_root, args, ctx) => ctx.db.creditGrant.count({ where: await balanceListWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.creditGrant.findMany(await pageArgs(query, await balanceListWhere(ctx, args), [{ id: "asc" }])),
    },
    CreditGrantConnection,
  ),
  balanceAt: t.field({
    type: "Decimal",
    description: "The balance at an instant, answered from the ledger (0 before the first entry).",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id({ required: true }), at: t.arg({ type: "DateTime", required: true }) },
    resolve: async (_root, args, ctx) => {
      const { customerId, meterId } = await readableBalance(ctx, args);
      return balanceAt(ctx.db, customerId, meterId!, args.at, ctx.now());
    },
  }),
  expiringCredits: t.prismaConnection(
    {
      type: CreditGrantObject,
      cursor: "id",
      description: "Grants with units left that expire within `within` seconds from now, soonest first. A connection: a customer can hold any number of grants.",
      authScopes: { authenticated: true },
      args: {
        customerId: t.arg.id(),
        externalCustomerId: t.arg.string(),
        meterId: t.arg.id(),
        within: t.arg.int({ required: true, description: "Seconds from now, e.g. 604800 for a week" }),
      },
      totalCount: async (_root, args, ctx) => ctx.db.creditGrant.count({ where: (await expiringWhere(ctx, args)).where }),
      resolve: async (query, _root, args, ctx) => {
        const { where, orderBy } = await expiringWhere(ctx, args);
        return ctx.db.creditGrant.findMany(
          await pageArgs(query, where, orderBy, (id) =>
            ctx.db.creditGrant.findFirst({ where: { id, organizationId: orgId(ctx), customerId: where.customerId }, select: { expiresAt: true } }),
          ),
        );
      },
    },
    CreditGrantConnection,
  ),
}));

builder.mutationFields((t) => ({
  voidCreditGrant: t.prismaField({
    type: "CreditGrant",
    description: "Remove what remains of a grant now; its history stays in the ledger.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const grant = await voidCreditGrant(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now());
      return ctx.db.creditGrant.findUniqueOrThrow({ ...query, where: { id: grant.id } });
    },
  }),
}));
