// Input errors graphql-js raises before any resolver runs — a literal or a variable of the wrong type, a
// scalar's refusal (Decimal, DateTime, JSON, ID), a missing required value — answered like the service's own:
// extensions.code BAD_USER_INPUT and extensions.field the input's path, written as typed errors write it
// (`input.units`, `events.3.timestamp`; a variable's path starts with its name). Only failed requests pay:
// the paths are worked out after validation or variable coercion has failed, never on the way to success.
import {
  GraphQLError,
  Kind,
  coerceInputValue,
  isInputType,
  typeFromAST,
  visit,
  type ASTNode,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type ValueNode,
  type VariableDefinitionNode,
} from "graphql";
import type { Plugin } from "graphql-yoga";

/** The same error, answered as a client's input mistake at `field`. */
function asInputError(error: GraphQLError, field: string | undefined): GraphQLError {
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    // No originalError: Yoga masks an error caused (at any depth) by a plain Error, such as a scalar's refusal.
    extensions: { ...error.extensions, code: "BAD_USER_INPUT", ...(field ? { field } : {}) },
  });
}

/** Every literal of the document (and each object field of one) with its argument path (`input.units`). */
function literalPaths(document: DocumentNode): Map<ASTNode, string> {
  const paths = new Map<ASTNode, string>();
  const walk = (node: ValueNode, path: string) => {
    paths.set(node, path);
    if (node.kind === Kind.LIST) node.values.forEach((item, i) => walk(item, `${path}.${i}`));
    if (node.kind === Kind.OBJECT) {
      for (const field of node.fields) {
        paths.set(field, `${path}.${field.name.value}`);
        walk(field.value, `${path}.${field.name.value}`);
      }
    }
  };
  visit(document, {
    Argument: (arg) => walk(arg.value, arg.name.value),
    VariableDefinition: (def) => (def.defaultValue ? walk(def.defaultValue, def.variable.name.value) : undefined),
  });
  return paths;
}

// What graphql-js's own messages say about a value that is missing rather than wrong.
const MISSING_ARGUMENT = /argument "([^"]+)" of type "[^"]+" is required/;
const MISSING_INPUT_FIELD = /^Field "(?:\w+\.)?(\w+)" of required type "[^"]+" was not provided/;
const TOO_MANY_ERRORS = /^Too many errors processing variables/;

/** A validation error about an input value, with its field; other validation errors unchanged. */
function locateLiteralErrors(document: DocumentNode, errors: readonly GraphQLError[]): GraphQLError[] {
  let paths: Map<ASTNode, string> | undefined;
  return errors.map((error) => {
    const node = error.nodes?.[0];
    const argument = MISSING_ARGUMENT.exec(error.message)?.[1];
    if (argument) return asInputError(error, argument);
    paths ??= literalPaths(document);
    const path = node ? paths.get(node) : undefined;
    if (path === undefined) return error;
    const missing = MISSING_INPUT_FIELD.exec(error.message)?.[1];
    return asInputError(error, missing ? `${path}.${missing}` : path);
  });
}

/** Thrown from coerceInputValue's error callback to stop it once the paths asked for are known. */
const ENOUGH = Symbol("enough paths");

/**
 * The first `wanted` paths coercion refuses in one variable's value, in the order graphql-js reports them.
 * It stops there: graphql-js gives up after 50 errors, and a list of a million bad items must not cost a
 * million errors a second time.
 */
function variableErrorPaths(schema: GraphQLSchema, definition: VariableDefinitionNode, value: unknown, wanted: number): string[] {
  const name = definition.variable.name.value;
  const type = typeFromAST(schema, definition.type);
  if (value == null || !type || !isInputType(type)) return [name];
  const paths: string[] = [];
  try {
    coerceInputValue(value, type, (path, _value, error) => {
      const missing = MISSING_INPUT_FIELD.exec(error.message)?.[1];
      paths.push([name, ...path, ...(missing ? [missing] : [])].join("."));
      if (paths.length >= wanted) throw ENOUGH;
    });
  } catch (err) {
    if (err !== ENOUGH) throw err;
  }
  return paths;
}

/** Variable coercion errors (they point at the variable's definition), each with its value's path. */
function locateVariableErrors(schema: GraphQLSchema, variables: Record<string, unknown> | null | undefined, errors: readonly GraphQLError[]): GraphQLError[] {
  const reported = new Map<ASTNode, number>();
  for (const error of errors) {
    const node = error.nodes?.[0];
    if (!error.path && node?.kind === Kind.VARIABLE_DEFINITION) reported.set(node, (reported.get(node) ?? 0) + 1);
  }
  const pending = new Map<VariableDefinitionNode, string[]>();
  return errors.map((error) => {
    const node = error.nodes?.[0];
    // graphql-js's last word when it gives up (it names no variable)
    if (!node && !error.path && TOO_MANY_ERRORS.test(error.message)) return asInputError(error, undefined);
    if (error.path || node?.kind !== Kind.VARIABLE_DEFINITION) return error;
    let paths = pending.get(node);
    if (!paths) pending.set(node, (paths = variableErrorPaths(schema, node, variables?.[node.variable.name.value], reported.get(node)!)));
    return asInputError(error, paths.shift() ?? node.variable.name.value);
  });
}

function isExecutionResult(value: unknown): value is ExecutionResult {
  return typeof value === "object" && value !== null && !(Symbol.asyncIterator in value) && "errors" in value;
}

/** The Yoga plugin: input errors raised by validation and by variable coercion carry code and field. */
export function useInputErrorFields(): Plugin {
  const onResult =
    (schema: GraphQLSchema, variables: Record<string, unknown> | null | undefined) =>
    ({ result, setResult }: { result: unknown; setResult: (r: ExecutionResult) => void }) => {
      if (isExecutionResult(result) && result.errors?.length && result.data == null) {
        setResult({ ...result, errors: locateVariableErrors(schema, variables, result.errors) });
      }
    };
  return {
    onValidate: ({ params }) =>
      ({ result, setResult }) => {
        if (result.length) setResult(locateLiteralErrors(params.documentAST, result as readonly GraphQLError[]));
      },
    onExecute: ({ args }) => ({ onExecuteDone: onResult(args.schema, args.variableValues as Record<string, unknown> | undefined) as never }),
    onSubscribe: ({ args }) => ({ onSubscribeResult: onResult(args.schema, args.variableValues as Record<string, unknown> | undefined) as never }),
  };
}
