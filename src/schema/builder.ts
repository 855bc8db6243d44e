// The Pothos builder: plugins, scalars, root types. Imports no schema file (see src/schema/index.ts).
//
// Plugin order matters; each wraps the resolvers of the ones after it:
//   Errors    outermost, so a typed domain error thrown anywhere below (auth included) becomes a union member
//   Relay     connections and PageInfo
//   ScopeAuth checks scopes before any resolver or Prisma query runs
//   PageSize  the pagination rule on every connection (first/last within the list's maximum), after auth
//   Prisma    prismaObject/prismaField with selection-aware queries (no per-row lookups)
import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import PrismaPlugin from "@pothos/plugin-prisma";
import RelayPlugin from "@pothos/plugin-relay";
import ScopeAuthPlugin from "@pothos/plugin-scope-auth";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, pageSizePlugin } from "./pagination.ts";
import { GraphQLError, Kind, type ValueNode } from "graphql";
import { ForbiddenError } from "../domain/errors.ts";
import type PrismaTypes from "../generated/pothos-prisma-types.ts";
import { getDatamodel } from "../generated/pothos-prisma-types.ts";
import type { Db } from "../db/client.ts";
import type { BalanceView, StoredBalance } from "../domain/balance-view.ts";
import type { Principal } from "../domain/auth.ts";
import { DecimalFormatError, formatUnits, parseUnits } from "../domain/units.ts";
import type { Loaders } from "./loaders.ts";
import type DataLoader from "dataloader";
import type { BalanceRow } from "../domain/balance-view.ts";
import type { MeterLimits } from "../domain/meters.ts";
import type { PubSub } from "../pubsub.ts";
import type { Notify } from "../domain/notify.ts";
import type { Logger } from "../log.ts";
import type { EndpointPolicy } from "../domain/webhooks.ts";

export interface Context {
  db: Db;
  pubsub: PubSub;
  /** Announces committed balance and customer changes (to pubsub). */
  notify: Notify;
  log: Logger;
  /** The service clock (controllable in tests). */
  now: () => Date;
  /** null when the request carried no token (only introspection and public fields then work). */
  principal: Principal | null;
  /** A balance row as of now (due grant expiries and activations folded in, holds counted); batched. */
  balanceView: (row: StoredBalance) => Promise<BalanceView>;
  /** Per-organization limits on meters (config: MAX_ACTIVE_METERS, MAX_FILTER_CLAUSES). */
  meterLimits: MeterLimits;
  /** Balance rows by (customer, meter), views primed; batched per tick across all requests and subscribers. */
  balanceRows: DataLoader<{ customerId: string; meterId: string }, BalanceRow | null, string>;
  /** Rows nested fields point at, batched per tick (src/schema/loaders.ts). */
  loaders: Loaders;
  /** What managing webhook endpoints needs of the node's settings (private networks allowed, the secrets' key). */
  webhooks: EndpointPolicy;
  /** Where browsers reach this service (PUBLIC_URL, else the request's own origin), without a trailing slash. */
  publicUrl: () => string;
}

export interface PothosTypes {
  PrismaTypes: PrismaTypes;
  Context: Context;
  AuthScopes: {
    /** an organization admin token */
    admin: boolean;
    /** any valid token: admin or customer session */
    authenticated: boolean;
  };
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    Decimal: { Input: bigint; Output: bigint };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
}

export const builder = new SchemaBuilder<PothosTypes>({
  plugins: [ErrorsPlugin, RelayPlugin, ScopeAuthPlugin, pageSizePlugin, PrismaPlugin],
  defaultFieldNullability: false,
  errors: {
    directResult: true,
    // A valid token that may not call a mutation is a typed member of every mutation's result union.
    defaultTypes: [ForbiddenError],
    // createCustomer → CreateCustomerResult = Customer | InvalidInputError | …
    defaultUnionOptions: { name: ({ fieldName }) => `${fieldName[0].toUpperCase()}${fieldName.slice(1)}Result` },
  },
  relay: { clientMutationId: "omit", cursorType: "String", nodeQueryOptions: false, nodesQueryOptions: false },
  scopeAuth: {
    authScopes: (ctx) => ({ admin: ctx.principal?.kind === "admin", authenticated: ctx.principal !== null }),
    // No token at all is UNAUTHENTICATED (a top-level error: no result union can help a client without a
    // credential); a valid token without the scope is FORBIDDEN: a union member where the field lists
    // ForbiddenError (every mutation), else a top-level error with that code (src/server.ts maskError).
    unauthorizedError: (_parent, ctx) =>
      ctx.principal
        ? new ForbiddenError("This token may not do this (an admin token is needed)")
        : new GraphQLError("An access token is required (Authorization: Bearer <token>)", { extensions: { code: "UNAUTHENTICATED" } }),
    authorizeOnSubscribe: true,
  },
  prisma: {
    client: (ctx) => ctx.db,
    dmmf: getDatamodel(),
    exposeDescriptions: true,
    filterConnectionTotalCount: true,
    // The same bounds as the pagination rule, so Pothos's own clamp never trims a page the rule allowed.
    maxConnectionSize: MAX_PAGE_SIZE,
    defaultConnectionSize: DEFAULT_PAGE_SIZE,
    onUnusedQuery: process.env.NODE_ENV === "production" ? null : "error",
  },
});

/**
 * A scalar's refusal of an input value. Thrown as a plain Error so graphql-js attaches the literal or the
 * variable it came from; src/input-errors.ts then answers it as BAD_USER_INPUT naming the input's path.
 */
class ScalarInputError extends Error {}

builder.scalarType("DateTime", {
  description: "An instant as an ISO-8601 string, e.g. 2026-11-22T10:00:00.000Z",
  serialize: (value) => (value as Date).toISOString(),
  parseValue: (value) => {
    const date = typeof value === "string" ? instantOf(value) : null;
    if (!date) throw new ScalarInputError("DateTime must be an ISO-8601 instant with its offset, such as 2026-11-22T10:00:00Z or 2026-11-22T11:00:00+01:00");
    return date;
  },
});

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const daysIn = (year: number, month: number) => (month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : MONTH_DAYS[month - 1]);

/** The number the `n` ASCII digits of `text` at `at` write (the shape was checked). */
function digitsAt(text: string, at: number, n: number): number {
  let value = 0;
  for (let i = at; i < at + n; i++) value = value * 10 + text.charCodeAt(i) - 48;
  return value;
}

/**
 * An instant from ISO-8601 text that names one: a real calendar date and time of day (not February 30th,
 * which `Date` would roll over to March), and its offset from UTC (`Z` or `±hh:mm`; without one, `Date` reads
 * the text in the server's own time zone, so two nodes would read it differently). Fractions of a second past
 * the millisecond are dropped. Null when the text is not such an instant. Read digit by digit: every event's
 * timestamp passes here.
 */
export function instantOf(text: string): Date | null {
  if (!INSTANT.test(text)) return null;
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  const hour = digitsAt(text, 11, 2);
  const minute = digitsAt(text, 14, 2);
  let at = 16;
  let second = 0;
  let millis = 0;
  if (text.charCodeAt(at) === 58 /* : */) {
    second = digitsAt(text, at + 1, 2);
    at += 3;
    if (text.charCodeAt(at) === 46 /* . */) {
      let end = at + 1;
      while (end < text.length && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end++;
      const fraction = end - at - 1;
      millis = fraction >= 3 ? digitsAt(text, at + 1, 3) : digitsAt(text, at + 1, fraction) * (fraction === 1 ? 100 : 10);
      at = end;
    }
  }
  let offset = 0;
  const sign = text.charCodeAt(at);
  if (sign === 43 /* + */ || sign === 45 /* - */) {
    const offsetHours = digitsAt(text, at + 1, 2);
    const offsetMinutes = digitsAt(text, at + 4, 2);
    if (offsetHours > 23 || offsetMinutes > 59) return null;
    offset = (sign === 45 ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  }
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  // years 0–99 are taken by Date.UTC as 1900–1999
  if (year < 100 || day > daysIn(year, month)) return null;
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second, millis) - offset);
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * One rule for a Decimal however it arrives: a decimal string, or a number that is an integer. A number is
 * judged by its value, the same for a literal (`12`, `12.0`) as for a JSON variable (`12`, `12.0` parse to the
 * same number); a fractional number (`0.1`) is refused either way, since a JSON variable's `0.1` is a binary
 * float before it reaches the service and could not be taken exactly.
 */
function parseDecimal(value: unknown): bigint {
  try {
    if (typeof value === "string" || typeof value === "number") return parseUnits(value);
    throw new DecimalFormatError("must be a decimal string such as \"12.5\" or an integer");
  } catch (err) {
    if (err instanceof DecimalFormatError) throw new ScalarInputError(`Decimal ${err.message}`);
    throw err;
  }
}

builder.scalarType("Decimal", {
  description: `An exact decimal number of units, written as a string (e.g. "12.5"); inputs also accept an integer. Up to 6 decimal places.`,
  serialize: (value) => formatUnits(value as bigint),
  parseValue: parseDecimal,
  parseLiteral: (node) => {
    if (node.kind === Kind.STRING) return parseDecimal(node.value);
    // A number literal is taken as the value a JSON variable with the same text would have.
    if (node.kind === Kind.INT || node.kind === Kind.FLOAT) return parseDecimal(Number(node.value));
    throw new ScalarInputError("Decimal must be a string or an integer");
  },
});

function literalToJson(node: ValueNode, variables?: Record<string, unknown> | null): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.NULL:
      return null;
    case Kind.LIST:
      return node.values.map((v) => literalToJson(v, variables));
    case Kind.OBJECT:
      return Object.fromEntries(node.fields.map((f) => [f.name.value, literalToJson(f.value, variables)]));
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    default:
      throw new ScalarInputError("Unsupported JSON literal");
  }
}

builder.scalarType("JSON", {
  description: "Any JSON value",
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (node, variables) => literalToJson(node, variables),
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
