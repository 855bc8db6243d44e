// Meter definitions as pure functions: validating a filter and an aggregation when a meter is created, and
// deciding per event whether it matches and what value it contributes. No database here; ingestion calls
// these on every event, so they stay allocation-light.
import { InvalidInputError } from "./errors.ts";
import { DecimalFormatError, parseUnits } from "./units.ts";

export const OPERATORS = ["EQ", "NE", "GT", "GTE", "LT", "LTE", "LIKE", "NOT_LIKE"] as const;
export const CONJUNCTIONS = ["AND", "OR"] as const;
export const AGGREGATIONS = ["COUNT", "SUM", "MAX", "MIN", "AVG", "UNIQUE"] as const;

export type Operator = (typeof OPERATORS)[number];
export type Conjunction = (typeof CONJUNCTIONS)[number];
export type AggregationFunc = (typeof AGGREGATIONS)[number];
export type Scalar = string | number | boolean;

export interface FilterClause {
  property: string;
  operator: Operator;
  value: Scalar;
}
export interface MeterFilter {
  conjunction: Conjunction;
  clauses: (FilterClause | MeterFilter)[];
}
export interface Aggregation {
  func: AggregationFunc;
  /** Metadata property aggregated; null for COUNT. */
  property: string | null;
}

/** What a matcher needs of an event. */
export interface EventLike {
  name: string;
  metadata: Record<string, Scalar>;
}

const MAX_DEPTH = 5;
/** Most clauses (conditions and nested filters) in one meter's filter. */
export const MAX_CLAUSES = 100;
/**
 * Longest LIKE/NOT_LIKE text: a substring test costs up to the pattern length × the value length (metadata
 * strings are at most 1000 characters), on every event the clause sees.
 */
export const MAX_LIKE_LENGTH = 100;
/** Longest string a clause compares with EQ/NE (metadata strings are at most 1000 characters). */
const MAX_VALUE_LENGTH = 1000;
const NUMERIC_OPERATORS: ReadonlySet<Operator> = new Set(["GT", "GTE", "LT", "LTE"]);
const STRING_OPERATORS: ReadonlySet<Operator> = new Set(["LIKE", "NOT_LIKE"]);

export function isNestedFilter(clause: FilterClause | MeterFilter): clause is MeterFilter {
  return "clauses" in clause;
}

/**
 * What a property names on an event, the one definition of the path rule: `name` is the event name (null
 * here); anything else is a metadata key, with an optional `metadata.` prefix (so `metadata.name` reaches a
 * metadata key called "name"). Metadata is flat, so a dotted path is one key ("model.version").
 */
export function metadataKeyOf(property: string): string | null {
  if (property === "name") return null;
  return property.startsWith("metadata.") ? property.slice("metadata.".length) : property;
}

/** Where a property sits in an event input, for error fields: `name` or `metadata.<key>`. */
export function propertyField(property: string): string {
  const key = metadataKeyOf(property);
  return key === null ? "name" : `metadata.${key}`;
}

/** The value a property names on an event (see `metadataKeyOf`). */
export function propertyValue(event: EventLike, property: string): Scalar | undefined {
  const key = metadataKeyOf(property);
  if (key === null) return event.name;
  return Object.prototype.hasOwnProperty.call(event.metadata, key) ? event.metadata[key] : undefined;
}

/** Plain decimal text a numeric string must be to count as a number ("12.5", "-3", "+0.25"). */
const DECIMAL_TEXT = /^\s*[+-]?\d+(\.\d+)?\s*$/;

/**
 * Exact micro-units of a metadata value: a number, or a string of plain decimal text ("12.5" counts as 12.5,
 * parsed exactly, never through a float). Null when the value is neither (a non-numeric string, a boolean,
 * missing). Throws DecimalFormatError for values with more than 6 decimals, out of range, or numbers with
 * more digits than a JSON number carries exactly (see `unrepresentableNumber`).
 */
export function numericValue(value: Scalar | undefined): bigint | null {
  if (typeof value === "string") return DECIMAL_TEXT.test(value) ? parseUnits(value) : null;
  if (typeof value !== "number") return null;
  if (!Number.isFinite(value)) throw new DecimalFormatError("must be a finite number");
  // Integers beyond 2^53 go through their text too, so they are reported as too large, not as floats.
  const text = numberText(value);
  const units = parseUnits(text);
  const inexact = inexactNumber(value);
  if (inexact) throw new DecimalFormatError(inexact);
  return units;
}

/** Most significant digits a JSON number is accepted with: a double carries any 15-digit decimal exactly. */
export const MAX_NUMBER_DIGITS = 15;

/**
 * Why a JSON number may not be what the client wrote: more than 15 significant digits (a double carries 15
 * exactly, not more). Null when it is safe. The client should send such a value as a numeric string.
 */
export function inexactNumber(value: number): string | null {
  if (!Number.isFinite(value)) return null;
  const digits = numberText(value).replace(/[-.]/g, "").replace(/^0+/, "").replace(/0+$/, "");
  if (digits.length <= MAX_NUMBER_DIGITS) return null;
  return `has more than ${MAX_NUMBER_DIGITS} significant digits, which a JSON number does not carry exactly: send it as a numeric string (e.g. "${numberText(value)}")`;
}

/** A finite JS number as plain decimal text (no exponent), as the client wrote it up to 15 significant digits. */
export function numberText(value: number): string {
  const text = String(value);
  if (!/e/i.test(text)) return text;
  // 1e-7 and 1e21 style: expand without going through floats again.
  const [mantissa, expText] = text.toLowerCase().split("e");
  const exp = Number(expText);
  const negative = mantissa.startsWith("-");
  const [intPart, fracPart = ""] = mantissa.replace("-", "").split(".");
  const digits = intPart + fracPart;
  const point = intPart.length + exp;
  let out: string;
  if (point <= 0) out = `0.${"0".repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  return (negative ? "-" : "") + out;
}

/** Check that a metadata number is usable as exact units; returns a reason when it is not. */
export function unrepresentableNumber(value: number): string | null {
  if (!Number.isFinite(value)) return "must be a finite number";
  try {
    numericValue(value);
    return null;
  } catch (err) {
    if (err instanceof DecimalFormatError) return `number ${err.message}`;
    throw err;
  }
}

/** Exact comparison of two finite JS numbers by their decimal text (any number of digits). */
export function compareNumbers(a: number, b: number): number {
  const [ta, tb] = [numberText(a), numberText(b)];
  const scale = Math.max(ta.split(".")[1]?.length ?? 0, tb.split(".")[1]?.length ?? 0);
  const scaled = (t: string) => {
    const negative = t.startsWith("-");
    const [i, f = ""] = t.replace("-", "").split(".");
    const v = BigInt(i + f.padEnd(scale, "0"));
    return negative ? -v : v;
  };
  const [x, y] = [scaled(ta), scaled(tb)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Does `text` contain the clause's (string) value? `includes`, or an index answering many clauses at once. */
export type Contains = (clause: FilterClause, text: string) => boolean;
const includes: Contains = (clause, text) => text.includes(clause.value as string);

/** One clause against one event. A missing property or a value of the wrong type never matches. */
export function clauseMatches(clause: FilterClause, event: EventLike, contains: Contains = includes): boolean {
  const actual = propertyValue(event, clause.property);
  if (actual === undefined || typeof actual !== typeof clause.value) return false;
  switch (clause.operator) {
    case "EQ":
    case "NE": {
      const equal = typeof actual === "number" ? compareNumbers(actual, clause.value as number) === 0 : actual === clause.value;
      return clause.operator === "EQ" ? equal : !equal;
    }
    case "LIKE":
      return contains(clause, actual as string);
    case "NOT_LIKE":
      return !contains(clause, actual as string);
    default: {
      const cmp = compareNumbers(actual as number, clause.value as number);
      if (clause.operator === "GT") return cmp > 0;
      if (clause.operator === "GTE") return cmp >= 0;
      if (clause.operator === "LT") return cmp < 0;
      return cmp <= 0;
    }
  }
}

/** Does the event match the filter? An empty AND matches everything; an empty OR matches nothing. */
export function filterMatches(filter: MeterFilter, event: EventLike, contains: Contains = includes): boolean {
  // Index loops: this runs for every meter of every event ingested, and an array iterator allocated per loop
  // was about a tenth of ingestion's garbage.
  const { clauses } = filter;
  const all = filter.conjunction === "AND";
  for (let i = 0; i < clauses.length; i++) {
    const c = clauses[i];
    if ((isNestedFilter(c) ? filterMatches(c, event, contains) : clauseMatches(c, event, contains)) !== all) return !all;
  }
  return all;
}

/**
 * What the event contributes to the aggregation: COUNT → 1 unit; SUM/MAX/MIN/AVG → the property's number
 * (null = ignored: missing or non-numeric); UNIQUE → the property's value as text (null = ignored).
 */
export function contribution(agg: Aggregation, event: EventLike): { units: bigint } | { distinct: string } | null {
  if (agg.func === "COUNT") return { units: 1_000_000n };
  const value = propertyValue(event, agg.property!);
  if (agg.func === "UNIQUE") {
    if (value === undefined) return null;
    // Typed, so the string "1" and the number 1 are different values.
    return { distinct: `${typeof value === "string" ? "s" : typeof value === "number" ? "n" : "b"}:${typeof value === "number" ? numberText(value) : String(value)}` };
  }
  // Event names are not quantities, whatever they look like.
  if (agg.property === "name") return null;
  const units = numericValue(value);
  return units === null ? null : { units };
}

// ---- validation at meter creation ------------------------------------------------------------------

function asRecord(value: unknown, field: string): Record<string, unknown> {
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new InvalidInputError("must be an object", field);
  return value as Record<string, unknown>;
}

function checkProperty(value: unknown, field: string): string {
  if (typeof value !== "string" || !value.trim()) throw new InvalidInputError("must be a non-empty string", field);
  if (value.length > 200) throw new InvalidInputError("must be at most 200 characters", field);
  return value.trim();
}

function checkClause(raw: Record<string, unknown>, field: string): FilterClause {
  const property = checkProperty(raw.property, `${field}.property`);
  const operator = raw.operator;
  if (typeof operator !== "string" || !(OPERATORS as readonly string[]).includes(operator)) {
    throw new InvalidInputError(`must be one of ${OPERATORS.join(", ")}`, `${field}.operator`);
  }
  const value = raw.value;
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
    throw new InvalidInputError("must be a string, number or boolean", `${field}.value`);
  }
  const op = operator as Operator;
  if (NUMERIC_OPERATORS.has(op) && typeof value !== "number") throw new InvalidInputError(`${op} compares numbers: value must be a number`, `${field}.value`);
  if (STRING_OPERATORS.has(op) && typeof value !== "string") throw new InvalidInputError(`${op} matches text: value must be a string`, `${field}.value`);
  if (typeof value === "number" && !Number.isFinite(value)) throw new InvalidInputError("must be a finite number", `${field}.value`);
  if (typeof value === "number" && inexactNumber(value)) throw new InvalidInputError(inexactNumber(value)!, `${field}.value`);
  if (STRING_OPERATORS.has(op) && (value as string).length > MAX_LIKE_LENGTH) {
    throw new InvalidInputError(`${op} matches at most ${MAX_LIKE_LENGTH} characters`, `${field}.value`);
  }
  if (typeof value === "string" && value.length > MAX_VALUE_LENGTH) throw new InvalidInputError(`must be at most ${MAX_VALUE_LENGTH} characters`, `${field}.value`);
  return { property, operator: op, value };
}

function checkFilter(raw: unknown, field: string, depth: number, count: { n: number }): MeterFilter {
  const obj = asRecord(raw, field);
  if (depth > MAX_DEPTH) throw new InvalidInputError(`filters nest at most ${MAX_DEPTH} levels`, field);
  const conjunction = obj.conjunction;
  if (conjunction !== "AND" && conjunction !== "OR") throw new InvalidInputError("must be AND or OR", `${field}.conjunction`);
  if (!Array.isArray(obj.clauses)) throw new InvalidInputError("must be a list", `${field}.clauses`);
  const clauses = obj.clauses.map((c, i) => {
    const at = `${field}.clauses.${i}`;
    if (++count.n > MAX_CLAUSES) throw new InvalidInputError(`a filter has at most ${MAX_CLAUSES} clauses`, at);
    const clause = asRecord(c, at);
    // A clause is either a condition or a nested filter (given as `filter` or inline).
    const nested = clause.filter ?? ("clauses" in clause ? clause : undefined);
    if (nested !== undefined && nested !== null) {
      if (clause.property !== undefined && clause.property !== null) {
        throw new InvalidInputError("give either a condition (property, operator, value) or a nested filter, not both", at);
      }
      return checkFilter(nested, clause.filter ? `${at}.filter` : at, depth + 1, count);
    }
    return checkClause(clause, at);
  });
  return { conjunction, clauses };
}

/** Clauses of a (validated or stored) filter, nested filters counted as clauses too, as parseMeterFilter counts them. */
export function clauseCount(filter: MeterFilter): number {
  let n = 0;
  for (const c of filter.clauses ?? []) n += 1 + (isNestedFilter(c) ? clauseCount(c) : 0);
  return n;
}

/** Validate a filter as given by a client; typed errors name the offending path under `field`. */
export function parseMeterFilter(raw: unknown, field = "input.filter"): MeterFilter {
  return checkFilter(raw, field, 1, { n: 0 });
}

export function parseAggregation(raw: { func: string; property?: string | null }, field = "input.aggregation"): Aggregation {
  if (!(AGGREGATIONS as readonly string[]).includes(raw.func)) throw new InvalidInputError(`must be one of ${AGGREGATIONS.join(", ")}`, `${field}.func`);
  const func = raw.func as AggregationFunc;
  if (func === "COUNT") {
    if (raw.property) throw new InvalidInputError("COUNT counts events and takes no property", `${field}.property`);
    return { func, property: null };
  }
  return { func, property: checkProperty(raw.property, `${field}.property`) };
}
