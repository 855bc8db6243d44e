// One pagination rule for every list (README "Pagination"): a Pothos plugin that checks `first`/`last` on every
// connection field before its resolver runs, so no list can clamp silently or forget the check.
//
// A connection field is one with Relay's arguments (`first`, `after`). Its maximum is MAX_PAGE_SIZE unless the
// field declares its own in `extensions: { maxPageSize }`; above it, or below 0, the request is refused with a
// top-level BAD_USER_INPUT naming the argument. Pothos's own clamp (maxConnectionSize) is set to the same
// maximum, so it never trims a page the rule allowed.
import SchemaBuilder, { BasePlugin, PothosValidationError, type PothosOutputFieldConfig, type SchemaTypes } from "@pothos/core";
import type { GraphQLFieldResolver } from "graphql";
import { InvalidInputError } from "../domain/errors.ts";

/** The largest `first`/`last` of a connection that declares no maximum of its own. */
export const MAX_PAGE_SIZE = 100;
/** The page size when neither `first` nor `last` is given. */
export const DEFAULT_PAGE_SIZE = 20;

const PAGE_ARGS = ["first", "last"] as const;

/** Is a field with these argument names a connection field (Relay's `first` and `after`)? */
export const isConnection = (hasArg: (name: string) => boolean): boolean => hasArg("first") && hasArg("after");

/** The maximum page size of a connection field (its `maxPageSize` extension, else MAX_PAGE_SIZE); null for other fields. */
export function pageSizeLimit(fieldConfig: { args: object; extensions?: Readonly<Record<string, unknown>> | null }): number | null {
  if (!isConnection((name) => name in fieldConfig.args)) return null;
  const declared = fieldConfig.extensions?.maxPageSize;
  return typeof declared === "number" ? declared : MAX_PAGE_SIZE;
}

interface PageArgs {
  first?: number | null;
  last?: number | null;
  after?: string | null;
  before?: string | null;
}

/**
 * Refuses a page size outside 0…max (the client asked for something this list does not give) and the
 * arguments that do not go together: a page runs forward from `after` (with `first`) or backward from `before`
 * (with `last`).
 */
export function checkPageSize(args: PageArgs, max: number): void {
  for (const name of PAGE_ARGS) {
    const size = args[name];
    if (size != null && (size < 0 || size > max)) throw new InvalidInputError(`must be between 0 and ${max} (the most this list returns at once)`, name);
  }
  if (args.before != null && args.after != null) throw new InvalidInputError("cannot be given with `after`: a page runs one way from one cursor", "before");
  if (args.before != null && args.first != null) throw new InvalidInputError("goes with `last` (the items before it), not `first`", "before");
  if (args.after != null && args.last != null) throw new InvalidInputError("goes with `first` (the items after it), not `last`", "after");
}

/** Pothos's cursor errors (a cursor it cannot decode) as BAD_USER_INPUT on the argument that carried it. */
function cursorError(error: unknown, args: PageArgs): unknown {
  if (!(error instanceof PothosValidationError) || !/cursor/i.test(error.message)) return error;
  return new InvalidInputError("is not a cursor of this list", args.after != null ? "after" : "before");
}

declare global {
  export namespace PothosSchemaTypes {
    interface Plugins<Types extends SchemaTypes> {
      pageSize: PageSizePlugin<Types>;
    }
  }
}

export class PageSizePlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override onOutputFieldConfig(fieldConfig: PothosOutputFieldConfig<Types>): PothosOutputFieldConfig<Types> {
    const max = pageSizeLimit(fieldConfig);
    if (max === null) return fieldConfig;
    // The maximum is part of the schema a client reads, beside the arguments it bounds.
    const args = { ...fieldConfig.args };
    for (const name of PAGE_ARGS) {
      if (args[name]) args[name] = { ...args[name], description: `At most ${max}; default ${DEFAULT_PAGE_SIZE}` };
    }
    // A relation's connection (relatedConnection) is planned into its parent's query before its own resolver
    // runs, and Pothos checks the arguments there too; the rule comes first in that plan as well.
    const select = fieldConfig.extensions?.pothosPrismaSelect;
    const extensions =
      typeof select === "function"
        ? {
            ...fieldConfig.extensions,
            pothosPrismaSelect: (pageArgs: PageArgs, ...rest: unknown[]) => {
              checkPageSize(pageArgs, max);
              try {
                return (select as (...all: unknown[]) => unknown)(pageArgs, ...rest);
              } catch (error) {
                throw cursorError(error, pageArgs);
              }
            },
          }
        : fieldConfig.extensions;
    return { ...fieldConfig, args, extensions };
  }

  override wrapResolve(
    resolver: GraphQLFieldResolver<unknown, Types["Context"], object>,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types["Context"], object> {
    const max = pageSizeLimit(fieldConfig);
    if (max === null) return resolver;
    return async (parent, args, context, info) => {
      checkPageSize(args, max);
      try {
        return await resolver(parent, args, context, info);
      } catch (error) {
        throw cursorError(error, args);
      }
    };
  }
}

/** The plugin's name, for the builder's `plugins` list (the way Pothos's own plugins export theirs). */
export const pageSizePlugin = "pageSize";
SchemaBuilder.registerPlugin(pageSizePlugin, PageSizePlugin);

/**
 * A list's filter computed once per field execution and shared by its page and its `totalCount` (Pothos calls
 * both with the same arguments object), so a customer lookup behind the filter runs once.
 */
export function sharedFilter<C, A extends object, W>(build: (ctx: C, args: A) => Promise<W> | W): (ctx: C, args: A) => Promise<W> {
  const built = new WeakMap<A, Promise<W>>();
  return (ctx, args) => {
    let where = built.get(args);
    if (!where) built.set(args, (where = Promise.resolve(build(ctx, args))));
    return where;
  };
}

/**
 * `totalCount` for a connection type declared once with builder.connectionObject and shared by several fields
 * (Pothos adds it by itself only to the types it makes per field). Each field supplies the count: a function
 * its list runs only when the field is selected (prismaConnection's `totalCount`), or the number its parent
 * query loaded (relatedConnection's `totalCount: true`).
 */
export function totalCountField<Field>(t: { int: (options: TotalCountOptions) => Field }): { totalCount: Field } {
  return {
    totalCount: t.int({
      description: "How many items the list has in all, with the same filter (one COUNT)",
      extensions: { pothosPrismaTotalCount: true },
      resolve: (connection) => {
        const count = (connection as { totalCount?: number | (() => number | Promise<number>) }).totalCount;
        return typeof count === "function" ? count() : (count ?? 0);
      },
    }),
  };
}

interface TotalCountOptions {
  description: string;
  extensions: Record<string, unknown>;
  resolve: (connection: unknown) => number | Promise<number>;
}

/** One key of a list's order: a column and its direction (a list's last key is `id`, which makes it total). */
export type OrderKey = Readonly<Partial<Record<string, "asc" | "desc">>>;

/** What a Pothos Prisma connection hands its resolver for the page (`cursor` + `skip` when a cursor was given). */
interface ConnectionQuery {
  cursor?: Readonly<Record<string, unknown>>;
  skip?: number;
  take?: number;
}

/**
 * A page's findMany arguments from the connection's `query`, the list's filter and its order, positioned by the
 * cursor's place in the order rather than by the cursor's row. Prisma's own cursor (`cursor` + `skip: 1`) starts
 * at the cursor's row and skips it: when that row had left the list between two pages (a customer deleted, a
 * meter archived, a hold released, a grant used up, an endpoint removed), the next page skipped a row that was
 * still there, or came back empty. Here the page is the rows after (`after`) or before (`before`, a negative
 * take) the cursor's values in the order, with the filter, whatever became of the cursor's row.
 *
 * A list ordered by `id` alone reads the position from the cursor itself. Any other order needs the cursor's
 * row for its values: `cursorRow` reads it among the rows the caller may read (whether or not it is still in
 * the list); a cursor naming no such row is BAD_USER_INPUT on the argument that carried it.
 */
export async function pageArgs<Q extends ConnectionQuery, W>(
  query: Q,
  where: W,
  orderBy: OrderKey[],
  cursorRow?: (id: string) => Promise<Record<string, unknown> | null>,
): Promise<Omit<Q, "cursor" | "skip"> & { where: W; orderBy: OrderKey[] }> {
  const { cursor, skip: _skip, ...rest } = query;
  if (!cursor) return { ...rest, where, orderBy };
  const backward = (query.take ?? 0) < 0;
  const argument = backward ? "before" : "after";
  const id = cursor.id;
  if (typeof id !== "string") throw new InvalidInputError("is not a cursor of this list", argument);
  const keys = orderBy.map((k) => Object.entries(k).find(([, direction]) => direction !== undefined) as [string, "asc" | "desc"]);
  let values: Record<string, unknown> = { id };
  if (keys.length !== 1 || keys[0][0] !== "id") {
    if (!cursorRow) throw new Error("pageArgs: a list not ordered by id alone needs cursorRow");
    const row = await cursorRow(id);
    if (!row) throw new InvalidInputError("names no item this list can show", argument);
    values = { ...row, id };
  }
  // (k1 beyond v1) OR (k1 = v1 AND k2 beyond v2) OR …, "beyond" in the order's direction, reversed for `before`
  for (const [column] of keys) if (values[column] == null) throw new Error(`pageArgs: the order's column "${column}" is null at the cursor`);
  const beyond = keys.map(([column, direction], i) => {
    const condition: Record<string, unknown> = {};
    for (const [earlier] of keys.slice(0, i)) condition[earlier] = values[earlier];
    condition[column] = { [(direction === "asc") !== backward ? "gt" : "lt"]: values[column] };
    return condition;
  });
  return { ...rest, where: { AND: [where, { OR: beyond }] } as W, orderBy };
}
