// One pagination rule for every list (README "Pagination"): a Pothos plugin that checks `first`/`last` on every
// connection field before its resolver runs, so no list can clamp silently or forget the check.
//
// A connection field is one with Relay's arguments (`first`, `after`). Its maximum is MAX_PAGE_SIZE unless the
// field declares its own in `extensions: { maxPageSize }`; above it, or below 0, the request is refused with a
// top-level BAD_USER_INPUT naming the argument. Pothos's own clamp (maxConnectionSize) is set to the same
// maximum, so it never trims a page the rule allowed.
import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from "@pothos/core";
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

/** Refuses a page size outside 0…max: the client asked for something this list does not give. */
export function checkPageSize(args: Partial<Record<(typeof PAGE_ARGS)[number], number | null>>, max: number): void {
  for (const name of PAGE_ARGS) {
    const size = args[name];
    if (size != null && (size < 0 || size > max)) throw new InvalidInputError(`must be between 0 and ${max} (the most this list returns at once)`, name);
  }
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
            pothosPrismaSelect: (pageArgs: Parameters<typeof checkPageSize>[0], ...rest: unknown[]) => {
              checkPageSize(pageArgs, max);
              return (select as (...all: unknown[]) => unknown)(pageArgs, ...rest);
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
    return (parent, args, context, info) => {
      checkPageSize(args, max);
      return resolver(parent, args, context, info);
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
