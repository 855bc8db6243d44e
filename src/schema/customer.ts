// Customer type, its queries, mutations and portal sessions.
import { createCustomer, deleteCustomer, updateCustomer } from "../domain/customers.ts";
import { createCustomerSession, portalUrl } from "../domain/sessions.ts";
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { builder } from "./builder.ts";
import { orgId, readableCustomer, refArgs } from "./access.ts";

export const CustomerObject = builder.prismaObject("Customer", {
  description: "A customer of the merchant: who credits are granted to and usage is counted for.",
  fields: (t) => ({
    id: t.exposeID("id"),
    email: t.exposeString("email"),
    name: t.exposeString("name", { nullable: true }),
    externalId: t.exposeString("externalId", { nullable: true, description: "The merchant's own id for this customer" }),
    metadata: t.expose("metadata", { type: "JSON" }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
  }),
});

const CreateCustomerInput = builder.inputType("CreateCustomerInput", {
  fields: (t) => ({
    email: t.string({ required: true, description: "Unique per organization, compared case-insensitively" }),
    name: t.string(),
    externalId: t.string({ description: "The merchant's own id, unique per organization" }),
    metadata: t.field({ type: "JSON", description: "Flat object of string, number or boolean values" }),
  }),
});

const UpdateCustomerInput = builder.inputType("UpdateCustomerInput", {
  description: "Omitted fields stay as they are; null clears name and externalId.",
  fields: (t) => ({
    email: t.string(),
    name: t.string(),
    externalId: t.string(),
    metadata: t.field({ type: "JSON" }),
  }),
});

const CustomerSession = builder.objectRef<{ id: string; token: string; expiresAt: Date; customerId: string }>("CustomerSession").implement({
  description: "A bearer token that can read only this customer. Shown once.",
  fields: (t) => ({
    id: t.exposeID("id", { description: "The session's AccessToken id (revokeAccessToken, accessTokens)" }),
    token: t.exposeString("token"),
    expiresAt: t.expose("expiresAt", { type: "DateTime" }),
    portalUrl: t.string({
      description: "The customer portal with this session: <PUBLIC_URL or this request's origin>/portal#token=…. The token is in the fragment, which browsers never send to a server.",
      resolve: (session, _args, ctx) => portalUrl(ctx.publicUrl, session.token),
    }),
    customer: t.prismaField({
      type: "Customer",
      resolve: (query, session, _args, ctx) => ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: session.customerId } }),
    }),
  }),
});

builder.queryFields((t) => ({
  customer: t.prismaField({
    type: "Customer",
    nullable: true,
    description: "A customer by id or externalId. A customer session may omit both to read itself.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id(), externalId: t.arg.string() },
    resolve: async (query, _root, args, ctx) => {
      const principal = ctx.principal!;
      const where = { organizationId: principal.organizationId, deletedAt: null };
      let customer;
      if (args.id) customer = await ctx.db.customer.findFirst({ ...query, where: { ...where, id: String(args.id) } });
      else if (args.externalId) customer = await ctx.db.customer.findFirst({ ...query, where: { ...where, externalId: args.externalId } });
      else if (principal.kind === "customer") customer = await ctx.db.customer.findFirst({ ...query, where: { ...where, id: principal.customerId } });
      else return null;
      if (customer && principal.kind === "customer" && customer.id !== principal.customerId) {
        throw new ForbiddenError("A customer session can only read its own customer");
      }
      return customer;
    },
  }),
  customers: t.prismaConnection({
    type: "Customer",
    cursor: "id",
    description: "The organization's customers, oldest first.",
    authScopes: { admin: true },
    args: { email: t.arg.string({ description: "Exact email, case-insensitive" }) },
    resolve: (query, _root, args, ctx) =>
      ctx.db.customer.findMany({
        ...query,
        where: { organizationId: orgId(ctx), deletedAt: null, ...(args.email ? { emailKey: args.email.trim().toLowerCase() } : {}) },
        orderBy: { id: "asc" },
      }),
  }, { name: "CustomerConnection" }, { name: "CustomerEdge" }),
}));

builder.mutationFields((t) => ({
  createCustomer: t.prismaField({
    type: "Customer",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError] },
    args: { input: t.arg({ type: CreateCustomerInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const created = await createCustomer(ctx.db, ctx.notify, orgId(ctx), input);
      return ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: created.id } });
    },
  }),
  updateCustomer: t.prismaField({
    type: "Customer",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateCustomerInput, required: true }) },
    resolve: async (query, _root, { id, input }, ctx) => {
      const updated = await updateCustomer(ctx.db, ctx.notify, orgId(ctx), String(id), input);
      return ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: updated.id } });
    },
  }),
  deleteCustomer: t.prismaField({
    type: "Customer",
    description: "Soft delete: history stays, the customer disappears from reads, its email and externalId become free.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const deleted = await deleteCustomer(ctx.db, ctx.notify, orgId(ctx), String(id));
      return ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: deleted.id } });
    },
  }),
  createCustomerSession: t.field({
    type: CustomerSession,
    description: "A read-only token for one customer (customer portal, live balance widgets).",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: {
      customerId: t.arg.id(),
      externalCustomerId: t.arg.string(),
      ttlSeconds: t.arg.int({ description: "Lifetime, 60 s to 7 days; default one hour" }),
    },
    resolve: async (_root, args, ctx) => {
      const customer = await readableCustomer(ctx, refArgs(args));
      const session = await createCustomerSession(ctx.db, orgId(ctx), customer.id, args.ttlSeconds ?? undefined, ctx.now());
      return { ...session, customerId: customer.id };
    },
  }),
}));
