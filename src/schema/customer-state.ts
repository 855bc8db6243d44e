// CustomerState: everything about one customer in one read, and its live subscription.
import type { Customer } from "../generated/prisma-postgresql/client.ts";
import { builder } from "./builder.ts";
import { readableCustomer, refArgs } from "./access.ts";
import { CustomerObject } from "./customer.ts";

export interface CustomerStateShape {
  customer: Customer;
}

export const CustomerState = builder.objectRef<CustomerStateShape>("CustomerState").implement({
  description: "A customer with its balances and entitlements, readable in one call.",
  fields: (t) => ({
    customer: t.field({ type: CustomerObject, resolve: (s) => s.customer }),
  }),
});

builder.queryFields((t) => ({
  customerState: t.field({
    type: CustomerState,
    description: "A customer's whole state. A customer session may omit the customer to read itself.",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string() },
    resolve: async (_root, args, ctx) => ({
      customer: await readableCustomer(ctx, refArgs(args)),
    }),
  }),
}));

builder.subscriptionFields((t) => ({
  customerStateChanged: t.field({
    type: CustomerState,
    description: "Fires after every committed change to the customer or its balances, with the stored state.",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string() },
    subscribe: async (_root, args, ctx) => {
      const customer = await readableCustomer(ctx, refArgs(args));
      return ctx.pubsub.subscribe("customer:changed", customer.id);
    },
    // Re-read on every message: the payload is only a pointer, the database holds the truth.
    resolve: async (payload: { customerId: string }, _args, ctx) => ({
      // findFirst: not merged with other subscribers' reads of the same tick (see customerMeterUpdated)
      customer: await ctx.db.customer.findFirstOrThrow({ where: { id: payload.customerId } }),
    }),
  }),
}));
