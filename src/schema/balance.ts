// Balances: the CustomerMeter type, its reads, and the live subscriptions.
import { Repeater } from "graphql-yoga";
import { NotFoundError } from "../domain/errors.ts";
import type { StoredBalance } from "../domain/balance-view.ts";
import { builder, type Context } from "./builder.ts";
import { assertReadable, effectiveRef, listScopeCustomer, orgId, readableCustomer, refArgs } from "./access.ts";
import { customerLookup, noSuchCustomer } from "../domain/customers.ts";
import { readBalance, readBalancesOf } from "../domain/balance-view.ts";
import { CustomerState } from "./customer-state.ts";
import { CustomerObject } from "./customer.ts";
import { MeterObject } from "./meter.ts";
import { sharedFilter, pageArgs } from "./pagination.ts";

/** The balances list's filter, shared by its page and its totalCount. */
const customerMetersWhere = sharedFilter(
  async (ctx: Context, args: { customerId?: string | number | null; externalCustomerId?: string | null; meterId?: string | number | null }) => {
    const customer = await listScopeCustomer(ctx, args);
    return { organizationId: orgId(ctx), ...(customer ? { customerId: customer.id } : {}), ...(args.meterId ? { meterId: String(args.meterId) } : {}) };
  },
);

/** A resolver reading one figure of the row's view as of now (see src/domain/balance-view.ts). */
const fromView = (key: "creditedUnits" | "balance" | "heldUnits" | "availableUnits") => async (cm: StoredBalance, _args: unknown, ctx: Context) =>
  (await ctx.balanceView(cm))[key];

export const CustomerMeterObject = builder.prismaObject("CustomerMeter", {
  description: "One customer's balance on one meter. balance = creditedUnits − consumedUnits; negative = overage units.",
  fields: (t) => ({
    id: t.exposeID("id"),
    // Loaded per request for all rows at once: rows also come from the hot reads' own statements, which load
    // no relations (readBalance, readBalancesOf).
    customer: t.field({ type: CustomerObject, resolve: async (cm, _args, ctx) => (await ctx.loaders.customer.load(cm.customerId))! }),
    meter: t.field({ type: MeterObject, resolve: async (cm, _args, ctx) => (await ctx.loaders.meter.load(cm.meterId))! }),
    consumedUnits: t.expose("consumedUnits", { type: "Decimal", description: "Usage: what the meter's aggregation counts, plus authorized and committed units" }),
    creditedUnits: t.field({ type: "Decimal", description: "Credits granted, net of expiries, voids and revokes", resolve: fromView("creditedUnits") }),
    balance: t.field({ type: "Decimal", description: "As of now: credits that expired or took effect since the last write are counted even before the scheduler records them", resolve: fromView("balance") }),
    heldUnits: t.field({ type: "Decimal", description: "Held by live reservations (reserveUsage)", resolve: fromView("heldUnits") }),
    availableUnits: t.field({ type: "Decimal", description: "balance − heldUnits: what a credits-only authorization may still use", resolve: fromView("availableUnits") }),
    version: t.exposeInt("version", { description: "Increases with every change; lets clients drop out-of-order messages" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
  }),
});

builder.objectField(CustomerState, "meters", (t) =>
  t.field({
    type: [CustomerMeterObject],
    description: "Every meter the customer has a balance or usage on.",
    // One statement for the rows and their figures (readBalancesOf); a relation selected below is loaded by its
    // field, for all rows at once.
    resolve: (state, _args, ctx) => readBalancesOf(ctx.db, state.customer.id, ctx.now()),
  }),
);

builder.queryFields((t) => ({
  customerMeter: t.field({
    type: CustomerMeterObject,
    nullable: true,
    description: "One balance. Null when the customer has neither usage nor credits on the meter yet.",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id({ required: true }) },
    // One statement (src/domain/balance-view.ts readBalance): the customer, its row and what the row's figures
    // need as of now. Relations selected below it (customer, meter) are loaded by their own fields.
    resolve: async (_root, args, ctx) => {
      const lookup = customerLookup(effectiveRef(ctx, refArgs(args)));
      const found = await readBalance(ctx.db, orgId(ctx), lookup, String(args.meterId), ctx.now());
      if (!found) throw noSuchCustomer(lookup);
      assertReadable(ctx, found.customerId, lookup.field);
      return found.row;
    },
  }),
  customerMeters: t.prismaConnection(
    {
      type: "CustomerMeter",
      cursor: "id",
      description: "Balances, for one customer or (admin) the whole organization.",
      authScopes: { authenticated: true },
      args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
      totalCount: async (_root, args, ctx) => ctx.db.customerMeter.count({ where: await customerMetersWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.customerMeter.findMany(await pageArgs(query, await customerMetersWhere(ctx, args), [{ id: "asc" }])),
    },
    { name: "CustomerMeterConnection" },
    { name: "CustomerMeterEdge" },
  ),
}));

type BalanceMessage = { customerId: string; meterId: string; version: number };

builder.subscriptionFields((t) => ({
  customerMeterUpdated: t.field({
    type: CustomerMeterObject,
    description: "The stored balance after every committed change to this customer's balance on the meter (every meter when meterId is omitted).",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
    subscribe: async (_root, args, ctx) => {
      const customer = await readableCustomer(ctx, refArgs(args));
      const meterId = args.meterId ? String(args.meterId) : null;
      // A customer session's subscription to any meter id is taken: one it has no balance on yet pushes once
      // it has (a widget opened before the first usage), and NOT_FOUND for a made-up id alone would tell the
      // session which ids are the organization's meters. Pushes carry only the session's own balances.
      if (meterId && ctx.principal?.kind !== "customer" && !(await ctx.db.meter.findFirst({ where: { id: meterId, organizationId: orgId(ctx) }, select: { id: true } }))) {
        throw new NotFoundError("No such meter", "meterId");
      }
      // One message per customer per transaction; this subscription sends one per balance that moved.
      const messages = ctx.pubsub.subscribe("customer:changed", customer.id);
      return new Repeater<BalanceMessage>(async (push, stop) => {
        const it = messages[Symbol.asyncIterator]();
        stop.then(() => it.return?.());
        for (let r = await it.next(); !r.done; r = await it.next()) {
          for (const b of r.value.balances) if (!meterId || b.meterId === meterId) await push({ customerId: r.value.customerId, ...b });
        }
        stop();
      });
    },
    // The message is a pointer; the row read here is what the database holds now. All subscribers a commit
    // wakes read in one statement (balanceRowLoader; 500 rows per statement, within SQLite's parameter limit).
    resolve: async (payload: BalanceMessage, _args, ctx) => {
      const row = await ctx.balanceRows.load(payload);
      if (!row) throw new NotFoundError("This balance no longer exists", "customerId");
      return row;
    },
  }),
}));
