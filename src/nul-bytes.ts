// NUL characters (U+0000) are refused in every string a request carries: PostgreSQL cannot store them in
// text at all and SQLite cuts C strings at them, so "a\u0000x" would come back as "a" and two customers could
// become indistinguishable. So are unpaired UTF-16 surrogates ("\ud800" alone), which no UTF-8 text holds:
// PostgreSQL's jsonb refuses them (an event's metadata failed as an internal error) while SQLite stored them. Checked once at the edge, before execution, for HTTP and WebSocket alike (both run
// through Yoga's envelop): the variables (values and object keys, e.g. metadata keys) and the string literals
// of the document. A hit answers the request with one GraphQL error, extensions.code BAD_USER_INPUT and
// extensions.field naming the variable path (`events.3.metadata.user`) or argument path (`input.email`).
import { GraphQLError, Kind, type ArgumentNode, type DirectiveNode, type DocumentNode, type SelectionSetNode, type ValueNode } from "graphql";
import type { Plugin } from "graphql-yoga";

const NUL = "\u0000";

/** A string no database column holds as given: a NUL, or a lone surrogate (not well-formed UTF-16). */
const unstorable = (s: string) => s.includes(NUL) || !(s as string & { isWellFormed(): boolean }).isWellFormed();

/** Printable path segment: a NUL inside an object key is shown escaped. */
const segment = (key: string | number) => String(key).replaceAll(NUL, "\\u0000");

/** Nesting beyond which the walk turns iterative: variables are client-controlled and may nest deeper than the stack. */
const RECURSION_DEPTH = 100;

/** Path segments (innermost first) of the first string or object key holding a NUL, or null. */
function find(v: unknown, depth: number): (string | number)[] | null {
  if (typeof v === "string") return unstorable(v) ? [] : null;
  if (v === null || typeof v !== "object") return null;
  if (depth > RECURSION_DEPTH) return findDeep(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const path = find(v[i], depth + 1);
      if (path) return (path.push(i), path);
    }
    return null;
  }
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    if (unstorable(k)) return [k];
    const path = find((v as Record<string, unknown>)[k], depth + 1);
    if (path) return (path.push(k), path);
  }
  return null;
}

/** `find` without recursion (slower: it builds every path); its whole path comes back as one segment. */
function findDeep(value: unknown): (string | number)[] | null {
  const stack: [unknown, string][] = [[value, ""]];
  while (stack.length) {
    const [v, at] = stack.pop()!;
    if (typeof v === "string") {
      if (unstorable(v)) return at ? [at.slice(1)] : [];
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}.${i}`]);
    } else if (v !== null && typeof v === "object") {
      for (const [k, child] of Object.entries(v).reverse()) {
        if (unstorable(k)) return [`${at}.${k}`.slice(1)];
        stack.push([child, `${at}.${k}`]);
      }
    }
  }
  return null;
}

/** The path (`events.3.metadata.user`) of the first string or object key holding a NUL in a JSON-like value, or null. */
export function nulInValue(value: unknown, path: string): string | null {
  const found = find(value, 0);
  if (!found) return null;
  return [path, ...found.reverse().map(segment)].join(".");
}

function nulInLiteral(node: ValueNode, path: string): string | null {
  switch (node.kind) {
    case Kind.STRING:
      return unstorable(node.value) ? path : null;
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

function nulInArguments(args: readonly ArgumentNode[] | undefined): string | null {
  for (const arg of args ?? []) {
    const found = nulInLiteral(arg.value, arg.name.value);
    if (found) return found;
  }
  return null;
}

function nulInDirectives(directives: readonly DirectiveNode[] | undefined): string | null {
  for (const d of directives ?? []) {
    const found = nulInArguments(d.arguments);
    if (found) return found;
  }
  return null;
}

function nulInSelections(set: SelectionSetNode | undefined): string | null {
  for (const sel of set?.selections ?? []) {
    const found =
      nulInDirectives(sel.directives) ??
      (sel.kind === Kind.FIELD ? (nulInArguments(sel.arguments) ?? nulInSelections(sel.selectionSet)) : sel.kind === Kind.INLINE_FRAGMENT ? nulInSelections(sel.selectionSet) : null);
    if (found) return found;
  }
  return null;
}

/** What nulInDocument found in each document: Yoga's parser cache hands out the same document for the same text. */
const literalNuls = new WeakMap<DocumentNode, string | null>();

/** The first input path holding a NUL: a variable's, else a literal argument's (or variable default's). */
export function nulField(document: DocumentNode, variables: Record<string, unknown> | null | undefined): string | null {
  if (variables) {
    for (const [name, value] of Object.entries(variables)) {
      if (unstorable(name)) return segment(name);
      const found = nulInValue(value, name);
      if (found) return found;
    }
  }
  let literal = literalNuls.get(document);
  if (literal === undefined) literalNuls.set(document, (literal = nulInDocument(document)));
  return literal;
}

/** The first literal argument (or variable default) holding a NUL. */
function nulInDocument(document: DocumentNode): string | null {
  // A direct walk of the definitions (graphql's generic visit() costs more than the rest of this check).
  for (const def of document.definitions) {
    if (def.kind !== Kind.OPERATION_DEFINITION && def.kind !== Kind.FRAGMENT_DEFINITION) continue;
    for (const v of def.variableDefinitions ?? []) {
      const found = (v.defaultValue ? nulInLiteral(v.defaultValue, v.variable.name.value) : null) ?? nulInDirectives(v.directives);
      if (found) return found;
    }
    const found = nulInDirectives(def.directives) ?? nulInSelections(def.selectionSet);
    if (found) return found;
  }
  return null;
}

function refusal(field: string): GraphQLError {
  return new GraphQLError(`${field} must not contain NUL characters (U+0000) or unpaired surrogates (half of a UTF-16 pair)`, { extensions: { code: "BAD_USER_INPUT", field } });
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
