// Yoga plugins that bound what one operation may ask for, and what kind of request may carry it:
// - graphql-armor: tokens (the parser stops counting at the limit, which also bounds its recursion), depth,
//   aliases, directives and cost. They hook Yoga's envelop parse/validate, so they apply to WebSocket
//   operations too (src/server.ts parses and validates those through `yoga.getEnveloped`).
// - CSRF: Yoga's useCSRFPrevention, and only JSON (or application/graphql) POST bodies.
// - A malformed JSON body is a 400 that does not repeat the body.
// - A body without a declared length (chunked) is counted as it is read: 413 past the limit.
// - CORS from an allow-list, never with credentials.
import { EnvelopArmorPlugin } from "@escape.tech/graphql-armor";
import type { GraphQLArmorRejectCallback } from "@escape.tech/graphql-armor-types";
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import {
  GraphQLError,
  Kind,
  getNamedType,
  isObjectType,
  isInterfaceType,
  valueFromASTUntyped,
  type ArgumentNode,
  type DocumentNode,
  type ExecutionArgs,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLSchema,
  type SelectionSetNode,
} from "graphql";
import type { CORSOptions, Plugin } from "graphql-yoga";
import type { Limits } from "../limits.ts";
import { DEFAULT_PAGE_SIZE, isConnection } from "../schema/pagination.ts";

/** The header a GET (or any request with a CORS-safelisted content type) must carry. */
export const CSRF_HEADER = "x-graphql-yoga-csrf";

const LIMIT_EXCEEDED = "LIMIT_EXCEEDED";

function limitError(message: string): GraphQLError {
  return new GraphQLError(message.replace(/^Syntax Error: /, ""), { extensions: { code: LIMIT_EXCEEDED, http: { status: 400 } } });
}

/** Validation rules report into the validation context (one error per rule); the token limit must throw. */
const reportToValidation: GraphQLArmorRejectCallback = (ctx, error) => ctx?.reportError(limitError(error.message));
const throwFromParser: GraphQLArmorRejectCallback = (_ctx, error) => {
  throw limitError(error.message);
};

export function operationLimitPlugins(limits: Limits): Plugin[] {
  const validation = { propagateOnRejection: false, onReject: [reportToValidation] };
  return [
    EnvelopArmorPlugin({
      maxTokens: { n: limits.maxTokens, propagateOnRejection: false, onReject: [throwFromParser] },
      maxDepth: { n: limits.maxDepth, ...validation },
      maxAliases: { n: limits.maxAliases, ...validation },
      maxDirectives: { n: limits.maxDirectives, ...validation },
      costLimit: { maxCost: limits.maxCost, ...validation },
      // "Did you mean …" suggestions stay: the schema is public (introspection is on).
      blockFieldSuggestion: { enabled: false },
    }) as Plugin,
    useExecutionCost(limits.maxCost),
  ];
}

// graphql-armor's cost formula (its defaults): a leaf costs 1; a field with a selection 2 plus 1.5 × each
// child's cost, times its page size; a fragment spread 1 plus 1.5 × the fragment's cost; __schema nothing.
const SCALAR_COST = 1;
const OBJECT_COST = 2;
const DEPTH_FACTOR = 1.5;
/**
 * The least an `events` list filtered by `meterId` costs, whatever its page size: it reads stored events until
 * its page is full or it has read 20,000 of them (MAX_SCANNED in src/domain/events.ts), up to half a second of
 * the server's time even for a page of one, about what a page of 100 costs. Five such lists fit the default
 * GRAPHQL_MAX_COST; a page of 500 (the export size) costs what its page does.
 */
export const EVENTS_SCAN_COST = 4_000;
const type = (field: GraphQLField<unknown, unknown>) => getNamedType(field.type).name;

/**
 * An operation's cost as graphql-armor computes it, with the page sizes a request really asks for. Armor's
 * rule runs at validation, before variables are known, and multiplies by `first`/`last` only when written as
 * a number: `first: $n`, or a connection given no `first` at all (a page of DEFAULT_PAGE_SIZE), counted 1, so
 * a query nesting connections through variables passed any cost limit. Here a variable counts as its value
 * and an omitted page size on a connection (a field with `first` and `after`) as the default.
 */
export function operationCost(schema: GraphQLSchema, document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined): number {
  return costOf(schema, document, operationName, variables).cost;
}

/** operationCost, and whether a variable's value entered it (if not, the same document always costs the same). */
function costOf(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
): { cost: number; byVariables: boolean } {
  let byVariables = false;
  const fragments = new Map<string, FragmentDefinitionNode>();
  const operations = [];
  for (const d of document.definitions) {
    if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    else if (d.kind === Kind.OPERATION_DEFINITION) operations.push(d);
  }
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations[0];
  if (!operation) return { cost: 0, byVariables };
  const root = operation.operation === "query" ? schema.getQueryType() : operation.operation === "mutation" ? schema.getMutationType() : schema.getSubscriptionType();
  if (!root) return { cost: 0, byVariables };
  const fragmentCosts = new Map<string, number>();
  // A variable the request leaves out takes its definition's default (`query($n: Int = 100)`).
  const defaults = new Map((operation.variableDefinitions ?? []).map((d) => [d.variable.name.value, d.defaultValue ? valueFromASTUntyped(d.defaultValue) : undefined]));
  const variableValue = (name: string): unknown => (variables && variables[name] !== undefined ? variables[name] : defaults.get(name));
  // `events` filtered by meterId reads stored events until its page is full, up to MAX_SCANNED of them
  // (src/domain/events.ts), whatever its page size: such a field costs at least EVENTS_SCAN_COST.
  const scansEvents = (field: GraphQLField<unknown, unknown> | undefined, args: readonly ArgumentNode[]): boolean => {
    if (field?.name !== "events" || type(field) !== "EventConnection") return false;
    const meter = args.find((a) => a.name.value === "meterId")?.value;
    if (!meter || meter.kind === Kind.NULL) return false;
    if (meter.kind !== Kind.VARIABLE) return true;
    byVariables = true;
    return variableValue(meter.name.value) != null;
  };

  const pageSize = (field: GraphQLField<unknown, unknown> | undefined, args: readonly ArgumentNode[]): number => {
    const given = args.find((a) => a.name.value === "first" || a.name.value === "last");
    let size: number | null = null;
    if (given?.value.kind === Kind.INT) size = Number.parseInt(given.value.value, 10);
    else if (given?.value.kind === Kind.VARIABLE) {
      byVariables = true;
      const value = variableValue(given.value.name.value);
      if (typeof value === "number" && Number.isFinite(value)) size = value;
    }
    const connection = field ? isConnection((name) => field.args.some((a) => a.name === name)) : false;
    return Math.max(size ?? (connection ? DEFAULT_PAGE_SIZE : 1), 1);
  };

  const selectionCost = (set: SelectionSetNode, type: GraphQLCompositeType | null): number => {
    let cost = 0;
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) {
        if (s.name.value === "__schema") continue;
        const field = type && (isObjectType(type) || isInterfaceType(type)) ? type.getFields()[s.name.value] : undefined;
        if (!s.selectionSet) {
          cost += DEPTH_FACTOR * SCALAR_COST;
          continue;
        }
        const child = field ? (getNamedType(field.type) as GraphQLCompositeType) : null;
        const listed = DEPTH_FACTOR * (OBJECT_COST + selectionCost(s.selectionSet, child)) * pageSize(field, s.arguments ?? []);
        // (Query.events is a root field, whose cost is divided by DEPTH_FACTOR below)
        cost += scansEvents(field, s.arguments ?? []) ? Math.max(listed, DEPTH_FACTOR * EVENTS_SCAN_COST) : listed;
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        const within = s.typeCondition ? (schema.getType(s.typeCondition.name.value) as GraphQLCompositeType | undefined) ?? null : type;
        cost += DEPTH_FACTOR * (OBJECT_COST + selectionCost(s.selectionSet, within));
      } else {
        const name = s.name.value;
        let fragmentCost = fragmentCosts.get(name);
        if (fragmentCost === undefined) {
          const fragment = fragments.get(name);
          fragmentCosts.set(name, 0); // a cycle (validation refuses those) counts nothing
          const within = fragment ? ((schema.getType(fragment.typeCondition.name.value) as GraphQLCompositeType | undefined) ?? null) : null;
          fragmentCost = fragment ? OBJECT_COST + selectionCost(fragment.selectionSet, within) : 0;
          fragmentCosts.set(name, fragmentCost);
        }
        cost += DEPTH_FACTOR * (SCALAR_COST + DEPTH_FACTOR * fragmentCost);
      }
    }
    return cost;
  };
  // the operation's own selections are counted without the depth factor, as armor does
  const cost = selectionCost(operation.selectionSet, root) / DEPTH_FACTOR;
  return { cost, byVariables };
}

/**
 * The cost limit again at execution, with the request's variables (see operationCost). Yoga reuses the parsed
 * document of a query text it has seen, so a document whose cost no variable enters is costed once.
 */
function useExecutionCost(maxCost: number): Plugin {
  const fixed = new WeakMap<DocumentNode, Map<string, number>>();
  const check = (args: ExecutionArgs, stop: (result: { errors: GraphQLError[] }) => void) => {
    const name = args.operationName ?? "";
    let cost = fixed.get(args.document)?.get(name);
    if (cost === undefined) {
      const found = costOf(args.schema, args.document, args.operationName, args.variableValues as Record<string, unknown> | undefined);
      cost = found.cost;
      if (!found.byVariables) {
        let costs = fixed.get(args.document);
        if (!costs) fixed.set(args.document, (costs = new Map()));
        costs.set(name, cost);
      }
    }
    if (cost > maxCost) stop({ errors: [limitError(`Query Cost limit of ${maxCost} exceeded, found ${Math.round(cost)}.`)] });
  };
  return {
    onExecute: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution as never),
    onSubscribe: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution as never),
  };
}

const ACCEPTED_BODY_TYPES = ["application/json", "application/graphql+json", "application/graphql"];

/**
 * CSRF prevention and JSON-only POST bodies; a malformed JSON body answered without echoing it; a chunked body
 * counted against `maxBodyBytes`.
 */
export function requestShapePlugins(maxBodyBytes: number): Plugin[] {
  return [
    useCSRFPrevention({ requestHeaders: [CSRF_HEADER] }),
    {
      onRequestParse({ request, requestParser, setRequestParser }) {
        if (request.method !== "POST") return;
        const type = (request.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
        if (!ACCEPTED_BODY_TYPES.includes(type)) {
          throw new GraphQLError("POST bodies must be JSON: send content-type: application/json.", {
            extensions: { code: "BAD_REQUEST", http: { status: 415 } },
          });
        }
        if (!requestParser) return;
        setRequestParser(async (req) => {
          try {
            return await requestParser(req);
          } catch (err) {
            // Yoga's JSON parser copies the parser's message (which quotes the body) into the error.
            if (err instanceof GraphQLError && err.extensions?.originalError) {
              throw new GraphQLError("POST body is not valid JSON.", { extensions: { code: "BAD_REQUEST", http: { status: 400 } } });
            }
            throw err;
          }
        });
      },
    },
    // After the JSON parser's wrapper above: the limit is applied before it reads.
    undeclaredBodyLimit(maxBodyBytes),
  ];
}

function bodyTooLarge(limit: number): GraphQLError {
  return new GraphQLError(`Request body is larger than the limit of ${limit} bytes.`, { extensions: { code: "REQUEST_ENTITY_TOO_LARGE", http: { status: 413 } } });
}

/**
 * The body limit for a body sent without a declared length (chunked): read here, counting, and refused with 413
 * past `maxBytes`. A declared length needs no counting: src/http/guard.ts refused one over the limit before
 * Yoga, and node:http never hands on more body than the request declared. Yoga's own maxRequestBodySize (off:
 * src/http/limits.ts) pipes every body through a counting stream, declared length or not (a TransformStream,
 * a stream pipeline, an AbortController per request): without it a customerMeter read took about half the
 * CPU (same process, alternating runs: 865 → 471 µs per request).
 */
function undeclaredBodyLimit(maxBytes: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      if (!requestParser || request.headers.get("content-length") !== null) return;
      setRequestParser(async (req) => {
        if (!req.body) return requestParser(req);
        const reader = req.body.getReader();
        const chunks: Uint8Array[] = [];
        let size = 0;
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
          size += chunk.value.byteLength;
          if (size > maxBytes) {
            await reader.cancel().catch(() => {});
            throw bodyTooLarge(maxBytes);
          }
          chunks.push(chunk.value);
        }
        return requestParser(new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body: Buffer.concat(chunks) }));
      });
    },
  };
}

/** Yoga's `cors` option: only listed origins get CORS headers (`*`: any origin), never with credentials. */
export function corsFromAllowList(origins: readonly string[]): false | ((request: Request) => CORSOptions | false) {
  if (origins.length === 0) return false;
  const any = origins.includes("*");
  return (request) => {
    const origin = request.headers.get("origin");
    if (!origin || (!any && !origins.includes(origin))) return false;
    return {
      origin: any ? "*" : [origin],
      credentials: false,
      methods: ["GET", "POST", "OPTIONS"],
      allowedHeaders: ["authorization", "content-type", CSRF_HEADER],
      maxAge: 600,
    };
  };
}
