// Access tokens: listing (never secrets), minting admin tokens, revocation.
import { createAdminToken, revokeAccessToken } from "../domain/access-tokens.ts";
import { resolveCustomerRef } from "../domain/customers.ts";
import { InvalidInputError, NotFoundError } from "../domain/errors.ts";
import { builder, type Context } from "./builder.ts";
import { orgId, refArgs } from "./access.ts";
import { sharedFilter, pageArgs } from "./pagination.ts";
import { givenInput, underInput } from "./inputs.ts";

const AccessTokenKindEnum = builder.enumType("AccessTokenKind", {
  description: "ADMIN: everything within the organization. CUSTOMER_SESSION: reads one customer.",
  values: ["ADMIN", "CUSTOMER_SESSION"] as const,
});

export const AccessTokenObject = builder.prismaObject("AccessToken", {
  description: "A bearer credential of the organization. Its secret is shown once, at creation, and never stored.",
  fields: (t) => ({
    id: t.exposeID("id"),
    kind: t.field({ type: AccessTokenKindEnum, select: { kind: true }, resolve: (a) => a.kind as "ADMIN" | "CUSTOMER_SESSION" }),
    prefix: t.exposeString("prefix", { description: "The secret's first characters, to recognise it" }),
    name: t.exposeString("name", { nullable: true }),
    customer: t.relation("customer", { nullable: true, description: "A customer session's customer (also once deleted)" }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
    revokedAt: t.expose("revokedAt", { type: "DateTime", nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const CreatedAccessToken = builder.objectRef<{ token: string; id: string }>("CreatedAccessToken").implement({
  description: "A new token and its secret. The secret is shown this once.",
  fields: (t) => ({
    token: t.exposeString("token"),
    accessToken: t.prismaField({
      type: "AccessToken",
      resolve: (query, created, _args, ctx) => ctx.db.accessToken.findUniqueOrThrow({ ...query, where: { id: created.id } }),
    }),
  }),
});

/** The token list's filter, shared by its page and its totalCount. */
const accessTokensWhere = sharedFilter(async (ctx: Context, args: { kind?: string | null; customerId?: string | number | null; externalCustomerId?: string | null; active?: boolean | null }) => {
  const ref = refArgs(args);
  // by id: a plain filter, so a deleted customer's sessions can still be listed; by externalId: the live customer
  const customerId = ref.externalCustomerId ? (await resolveCustomerRef(ctx.db, orgId(ctx), ref)).id : ref.customerId;
  const now = ctx.now();
  const active = { revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] };
  const inactive = { OR: [{ revokedAt: { not: null } }, { expiresAt: { lte: now } }] };
  return {
    organizationId: orgId(ctx),
    ...(args.kind ? { kind: args.kind } : {}),
    ...(customerId ? { customerId: String(customerId) } : {}),
    ...(args.active == null ? {} : args.active ? active : inactive),
  };
});

builder.queryFields((t) => ({
  accessTokens: t.prismaConnection(
    {
      type: "AccessToken",
      cursor: "id",
      description: "The organization's tokens, oldest first, without their secrets.",
      authScopes: { admin: true },
      args: {
        kind: t.arg({ type: AccessTokenKindEnum }),
        customerId: t.arg.id({ description: "Only this customer's sessions (a deleted customer's too)" }),
        externalCustomerId: t.arg.string({ description: "Only the sessions of the customer with this externalId (give customerId or this, not both)" }),
        active: t.arg.boolean({ description: "true: only tokens neither revoked nor expired; false: only those that are" }),
      },
      totalCount: async (_root, args, ctx) => ctx.db.accessToken.count({ where: await accessTokensWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.accessToken.findMany(await pageArgs(query, await accessTokensWhere(ctx, args), [{ id: "asc" }])),
    },
    { name: "AccessTokenConnection" },
    { name: "AccessTokenEdge" },
  ),
}));

const CreateAccessTokenInput = builder.inputType("CreateAccessTokenInput", {
  fields: (t) => ({ name: t.string({ description: "A label for listings, up to 100 characters" }) }),
});

builder.mutationFields((t) => ({
  createAccessToken: t.field({
    type: CreatedAccessToken,
    description: "A new admin token of the organization (e.g. to rotate one). The secret is in the result, once.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError] },
    args: {
      input: t.arg({ type: CreateAccessTokenInput }),
      name: t.arg.string({ deprecationReason: "Give input.name (removed in the next release)" }),
    },
    resolve: async (_root, { input, ...loose }, ctx) => {
      const given = givenInput(input, loose, []);
      const { token, accessToken } = await underInput(given, () => createAdminToken(ctx.db, orgId(ctx), given.input.name));
      return { token, id: accessToken.id };
    },
  }),
  revokeAccessToken: t.prismaField({
    type: "AccessToken",
    description:
      "Revoke an admin token or a customer session of the organization, the caller's own token included (this request still completes). Every node refuses it within 5 s, and its WebSockets close within a second (4401). Revoking a revoked token returns it unchanged.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const token = await revokeAccessToken(ctx.db, ctx.notify, orgId(ctx), String(id), ctx.now());
      return ctx.db.accessToken.findUniqueOrThrow({ ...query, where: { id: token.id } });
    },
  }),
}));
