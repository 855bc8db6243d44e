// Customer type, its queries, mutations and portal sessions.
import { createCustomer, customerLookup, deleteCustomer, requireCustomer, resolveCustomerRef, updateCustomer } from "../domain/customers.ts";
import { createCustomerSession, portalUrl } from "../domain/sessions.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { builder, type Context } from "./builder.ts";
import { assertReadable, merchantOnly, orgId, readableCustomer, refArgs } from "./access.ts";
import { givenInput, underInput } from "./inputs.ts";
import { pageArgs } from "./pagination.ts";

/** The customers list's filter, shared by its page and its totalCount. */
const customersWhere = (ctx: Context, args: { email?: string | null }) => ({
  organizationId: orgId(ctx),
  deletedAt: null,
  ...(args.email ? { emailKey: args.email.trim().toLowerCase() } : {}),
});

export const CustomerObject = builder.prismaObject("Customer", {
  description: "A customer of the merchant: who credits are granted to and usage is counted for.",
  fields: (t) => ({
    id: t.exposeID("id"),
    email: t.exposeString("email", { nullable: true, description: "Null for a customer known only by the merchant's own id" }),
    name: t.exposeString("name", { nullable: true }),
    externalId: t.exposeString("externalId", { nullable: true, description: "The merchant's own id for this customer" }),
    metadata: t.field({
      type: "JSON",
      description: "The merchant's own data about the customer; {} for a customer session",
      select: { metadata: true },
      resolve: (c, _args, ctx) => merchantOnly(ctx, c.metadata, {}),
    }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
  }),
});

const CreateCustomerInput = builder.inputType("CreateCustomerInput", {
  fields: (t) => ({
    email: t.string({ description: "Optional; unique per organization when given, compared case-insensitively" }),
    name: t.string(),
    externalId: t.string({ description: "The merchant's own id, unique per organization" }),
    metadata: t.field({ type: "JSON", description: "Flat object of string, number or boolean values" }),
  }),
});

const UpdateCustomerInput = builder.inputType("UpdateCustomerInput", {
  description: "The customer to change (customerId or externalCustomerId), then what changes: omitted fields stay as they are; null clears email, name and externalId.",
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string({ description: "The customer's current externalId" }),
    email: t.string(),
    name: t.string(),
    externalId: t.string(),
    metadata: t.field({ type: "JSON" }),
  }),
});

const DeleteCustomerInput = builder.inputType("DeleteCustomerInput", {
  fields: (t) => ({ customerId: t.id(), externalCustomerId: t.string() }),
});

const CreateCustomerSessionInput = builder.inputType("CreateCustomerSessionInput", {
  fields: (t) => ({
    customerId: t.id(),
    externalCustomerId: t.string(),
    ttlSeconds: t.int({ description: "Lifetime, 60 s to 7 days; default one hour" }),
  }),
});

const LOOSE = "Give these in `input` (removed in the next release)";

/**
 * The customer a mutation addresses: a customerId | externalCustomerId pair (in its input), or the deprecated
 * bare `id` argument; exactly one way. NOT_FOUND names the argument used.
 */
async function addressedCustomer(ctx: Context, id: string | number | null | undefined, ref: Parameters<typeof refArgs>[0]) {
  const named = refArgs(ref);
  if (id == null) return resolveCustomerRef(ctx.db, orgId(ctx), named, "input");
  if (named.customerId || named.externalCustomerId) throw new InvalidInputError("give id or input.customerId / input.externalCustomerId, not both", "id");
  return requireCustomer(ctx.db, orgId(ctx), String(id), "id");
}

const CustomerSession = builder.objectRef<{ id: string; token: string; expiresAt: Date; customerId: string }>("CustomerSession").implement({
  description: "A bearer token that can read only this customer. Shown once.",
  fields: (t) => ({
    id: t.exposeID("id", { description: "The session's AccessToken id (revokeAccessToken, accessTokens)" }),
    token: t.exposeString("token"),
    expiresAt: t.expose("expiresAt", { type: "DateTime" }),
    portalUrl: t.string({
      description: "The customer portal with this session: <PUBLIC_URL or this request's origin>/portal#token=…. The token is in the fragment, which browsers never send to a server.",
      resolve: (session, _args, ctx) => portalUrl(ctx.publicUrl(), session.token),
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
    description: "A customer by id or externalCustomerId (null if there is none). A customer session may omit both to read itself.",
    authScopes: { authenticated: true },
    args: {
      id: t.arg.id(),
      externalCustomerId: t.arg.string({ description: "The merchant's own id of the customer (its externalId)" }),
      externalId: t.arg.string({ deprecationReason: "Use externalCustomerId, the name every other field uses (removed in the next release)" }),
    },
    resolve: async (query, _root, args, ctx) => {
      const principal = ctx.principal!;
      if (args.externalId != null && args.externalCustomerId != null) throw new InvalidInputError("give externalCustomerId or externalId, not both", "externalId");
      const ref = { customerId: args.id == null ? null : String(args.id), externalCustomerId: args.externalCustomerId ?? args.externalId };
      if (!ref.customerId && !ref.externalCustomerId && principal.kind !== "customer") return null;
      const lookup = customerLookup(ref.customerId || ref.externalCustomerId ? ref : { customerId: principal.kind === "customer" ? principal.customerId : null });
      const named = lookup.field === "customerId" ? "id" : args.externalId != null ? "externalId" : "externalCustomerId";
      const where = { organizationId: principal.organizationId, deletedAt: null, [lookup.column]: lookup.value };
      const customer = await ctx.db.customer.findFirst({ ...query, where });
      if (customer) assertReadable(ctx, customer.id, named);
      return customer;
    },
  }),
  customers: t.prismaConnection({
    type: "Customer",
    cursor: "id",
    description: "The organization's customers, oldest first.",
    authScopes: { admin: true },
    args: { email: t.arg.string({ description: "Exact email, case-insensitive" }) },
    totalCount: (_root, args, ctx) => ctx.db.customer.count({ where: customersWhere(ctx, args) }),
    resolve: async (query, _root, args, ctx) => ctx.db.customer.findMany(await pageArgs(query, customersWhere(ctx, args), [{ id: "asc" }])),
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
    description: "Change a customer addressed by input.customerId or input.externalCustomerId.",
    errors: { types: [InvalidInputError, ConflictError, NotFoundError] },
    args: {
      id: t.arg.id({ deprecationReason: "Give input.customerId (or input.externalCustomerId) instead (removed in the next release)" }),
      input: t.arg({ type: UpdateCustomerInput, required: true }),
    },
    resolve: async (query, _root, { id, input }, ctx) => {
      const { customerId, externalCustomerId, ...patch } = input;
      const customer = await addressedCustomer(ctx, id, { customerId, externalCustomerId });
      const updated = await updateCustomer(ctx.db, ctx.notify, orgId(ctx), customer.id, patch);
      return ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: updated.id } });
    },
  }),
  deleteCustomer: t.prismaField({
    type: "Customer",
    description: "Soft delete: history stays, the customer disappears from reads, its email and externalId become free.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: {
      id: t.arg.id({ description: "The customer's id; or give input" }),
      input: t.arg({ type: DeleteCustomerInput, description: "The customer by customerId or externalCustomerId" }),
    },
    resolve: async (query, _root, { id, input }, ctx) => {
      if (id == null && !input) throw new InvalidInputError("give id or input", "id");
      const customer = await addressedCustomer(ctx, id, input ?? {});
      const deleted = await deleteCustomer(ctx.db, ctx.notify, orgId(ctx), customer.id);
      return ctx.db.customer.findUniqueOrThrow({ ...query, where: { id: deleted.id } });
    },
  }),
  createCustomerSession: t.field({
    type: CustomerSession,
    description: "A read-only token for one customer (customer portal, live balance widgets).",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: {
      input: t.arg({ type: CreateCustomerSessionInput }),
      customerId: t.arg.id({ deprecationReason: LOOSE }),
      externalCustomerId: t.arg.string({ deprecationReason: LOOSE }),
      ttlSeconds: t.arg.int({ deprecationReason: LOOSE }),
    },
    resolve: async (_root, { input, ...loose }, ctx) => {
      const given = givenInput(input, loose, []);
      return underInput(given, async () => {
        const customer = await readableCustomer(ctx, refArgs(given.input));
        const session = await createCustomerSession(ctx.db, orgId(ctx), customer.id, given.input.ttlSeconds ?? undefined, ctx.now());
        return { ...session, customerId: customer.id };
      });
    },
  }),
}));
