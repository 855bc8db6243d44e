// How resolvers learn the caller's organization and which customer they may read.
import { GraphQLError } from "graphql";
import type { Customer } from "../generated/prisma-postgresql/client.ts";
import { assertCanReadCustomer } from "../domain/auth.ts";
import { customerLookup, resolveCustomerRef, type CustomerRef } from "../domain/customers.ts";
import { NotFoundError } from "../domain/errors.ts";
import type { Context } from "./builder.ts";

/** The caller's organization. Fields are scope-guarded, so a missing principal here is a schema bug. */
export function orgId(ctx: Context): string {
  if (!ctx.principal) throw new GraphQLError("An access token is required", { extensions: { code: "UNAUTHENTICATED" } });
  return ctx.principal.organizationId;
}

/** GraphQL's `customerId: ID, externalCustomerId: String` arguments as a CustomerRef. */
export function refArgs(args: { customerId?: string | number | null; externalCustomerId?: string | null }): CustomerRef {
  return { customerId: args.customerId == null ? null : String(args.customerId), externalCustomerId: args.externalCustomerId ?? null };
}

/**
 * The customer a list is scoped to: the one named, a customer session's own when none is named, or none
 * (an admin listing across the organization).
 */
export async function listScopeCustomer(ctx: Context, args: Parameters<typeof refArgs>[0]): Promise<Customer | null> {
  const named = args.customerId || args.externalCustomerId || ctx.principal?.kind === "customer";
  return named ? readableCustomer(ctx, refArgs(args)) : null;
}

/**
 * The customer a read addresses. A customer session that names no customer reads itself and may not name
 * another one (FORBIDDEN); an admin must name one.
 */
export async function readableCustomer(ctx: Context, ref: CustomerRef, prefix = ""): Promise<Customer> {
  const named = effectiveRef(ctx, ref);
  const customer = await resolveCustomerRef(ctx.db, orgId(ctx), named, prefix);
  assertReadable(ctx, customer.id, customerLookup(named, prefix).field);
  return customer;
}

/** The customer a read addresses as named: a customer session that names none addresses itself. */
export function effectiveRef(ctx: Context, ref: CustomerRef): CustomerRef {
  const named = Boolean(ref.customerId || ref.externalCustomerId);
  return !named && ctx.principal?.kind === "customer" ? { customerId: ctx.principal.customerId } : ref;
}

/** FORBIDDEN (naming `field`) unless the caller may read this customer (an admin: any of its organization's). */
export function assertReadable(ctx: Context, customerId: string, field: string): void {
  if (ctx.principal) assertCanReadCustomer(ctx.principal, customerId, field);
}

/**
 * Where a row that belongs to one customer (an order, a subscription) may be read by id: in the caller's
 * organization and, for a customer session, of its own customer. Anything else reads as if it did not exist.
 */
export function ownRows(ctx: Context): { organizationId: string; customerId?: string } {
  const principal = ctx.principal;
  return principal?.kind === "customer" ? { organizationId: principal.organizationId, customerId: principal.customerId } : { organizationId: orgId(ctx) };
}

/**
 * What a customer session may see of the organization's catalog: only what concerns its customer. Admins
 * see everything (these are empty conditions for them).
 *   meters:   those the customer has a balance row on (credits granted or usage counted)
 *   products: those the customer ordered or is (or was) subscribed to
 *   benefits: those of such products, and those the customer was granted credits from
 * Anything else reads as if it did not exist (null, or absent from lists).
 */
export function sessionScope(ctx: Context) {
  const principal = ctx.principal;
  if (principal?.kind !== "customer") return { meter: {}, product: {}, benefit: {} };
  const customerId = principal.customerId;
  const product = { OR: [{ orders: { some: { customerId } } }, { subscriptions: { some: { customerId } } }] };
  return {
    meter: { customerMeters: { some: { customerId } } },
    product,
    benefit: { OR: [{ products: { some: { product } } }, { creditGrants: { some: { customerId } } }] },
  };
}

/**
 * A meter argument a customer session may use: one it has a balance on (else NOT_FOUND, as if the meter did
 * not exist). Admins are not checked here.
 */
export async function assertSessionMeter(ctx: Context, meterId: string | null | undefined, field = "meterId"): Promise<void> {
  if (!meterId || ctx.principal?.kind !== "customer") return;
  const visible = await ctx.db.meter.findFirst({ where: { id: meterId, organizationId: orgId(ctx), ...sessionScope(ctx).meter }, select: { id: true } });
  if (!visible) throw new NotFoundError("No such meter", field);
}

/**
 * A meter argument of a customer's balance reads (ledger, grants, balanceAt): one of the caller's organization
 * (for a customer session, one it has a balance on: assertSessionMeter), else NOT_FOUND, as the README's error
 * table says of an id addressing nothing the caller may read. An empty list or a 0 would pass a mistyped id off
 * as a meter without history.
 */
export async function assertReadableMeter(ctx: Context, meterId: string, field = "meterId"): Promise<void> {
  if (ctx.principal?.kind === "customer") return assertSessionMeter(ctx, meterId, field);
  const meter = await ctx.loaders.meter.load(meterId);
  if (!meter || meter.organizationId !== orgId(ctx)) throw new NotFoundError("No such meter", field);
}

/**
 * What the merchant keeps about a record for itself (a meter's filter, a customer's metadata, the idempotency
 * keys of its own calls): an admin reads it as it is, anyone else (a customer session) as `hidden`.
 */
export function merchantOnly<T, H>(ctx: Context, value: T, hidden: H): T | H {
  return ctx.principal?.kind === "admin" ? value : hidden;
}
