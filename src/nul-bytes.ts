// NUL characters (U+0000) are refused in every string a request carries: PostgreSQL cannot store them in
// text at all and SQLite cuts C strings at them, so "a\u0000x" would come back as "a" and two customers could
// become indistinguishable. Checked once at the edge, before execution, for HTTP and WebSocket alike (both run
// through Yoga's envelop): the variables (values and object keys, e.g. metadata keys) and the string literals
// of the document. A hit answers the request with one GraphQL error, extensions.code BAD_USER_INPUT and
// extensions.field naming the variable path (`events.3.metadata.user`) or argument path (`input.email`).
import { GraphQLError, Kind, visit, type DocumentNode, type ValueNode } from "graphql";
import type { Plugin } from "graphql-yoga";

const NUL = "\u0000";

/** Printable path segment: a NUL inside an object key is shown escaped. */
const segment = (key: string | number) => String(key).replaceAll(NUL, "\\u0000");

/** The path of the first string (or object key) holding a NUL in a JSON-like value, or null. */
export function nulInValue(value: unknown, path: string): string | null {
  // Iterative: variables are client-controlled and may nest deeper than the call stack.
  const stack: [unknown, string][] = [[value, path]];
  while (stack.length) {
    const [v, at] = stack.pop()!;
    if (typeof v === "string") {
      if (v.includes(NUL)) return at;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}.${i}`]);
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, child] = entries[i];
        if (k.includes(NUL)) return `${at}.${segment(k)}`;
        stack.push([child, `${at}.${k}`]);
      }
    }
  }
  return null;
}

function nulInLiteral(node: ValueNode, path: string): string | null {
  switch (node.kind) {
    case Kind.STRING:
      return node.value.includes(NUL) ? path : null;
    case Kind.LIST:
      for (const [i, item] of node.values.entries()) {
        const found = nulInLiteral(item, `${path}.${i}`);
        if (found) return found;
      }
      return null;
    case Kind.OBJECT:
      for (const field of node.fields) {
        const found = nulInLiteral(field.value, `${path}.${field.name.value}`);
        if (found) return found;
      }
      return null;
    default:
      return null;
  }
}

/** The first input path holding a NUL: a variable's, else a literal argument's (or default value's). */
export function nulField(document: DocumentNode, variables: Record<string, unknown> | null | undefined): string | null {
  if (variables) {
    for (const [name, value] of Object.entries(variables)) {
      if (name.includes(NUL)) return segment(name);
      const found = nulInValue(value, name);
      if (found) return found;
    }
  }
  let found: string | null = null;
  visit(document, {
    Argument(node) {
      found ??= nulInLiteral(node.value, node.name.value);
      return false;
    },
    VariableDefinition(node) {
      if (node.defaultValue) found ??= nulInLiteral(node.defaultValue, node.variable.name.value);
      return false;
    },
  });
  return found;
}

function refusal(field: string): GraphQLError {
  return new GraphQLError(`${field} must not contain NUL characters (U+0000)`, { extensions: { code: "BAD_USER_INPUT", field } });
}

/** The Yoga plugin: refuse an operation whose input holds a NUL character before it executes. */
export function useNoNulCharacters(): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const field = nulField(args.document, args.variableValues as Record<string, unknown> | undefined);
      if (field) setResultAndStopExecution({ errors: [refusal(field)] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const field = nulField(args.document, args.variableValues as Record<string, unknown> | undefined);
      if (field) setResultAndStopExecution({ errors: [refusal(field)] });
    },
  };
}
