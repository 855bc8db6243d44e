import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../src/domain/errors.ts";
import {
  clauseMatches,
  compareNumbers,
  contribution,
  filterMatches,
  numberText,
  numericValue,
  parseAggregation,
  parseMeterFilter,
  propertyValue,
  unrepresentableNumber,
  clauseCount,
  inexactNumber,
  MAX_LIKE_LENGTH,
  type EventLike,
  type FilterClause,
  type MeterFilter,
  type Operator,
  type Scalar,
} from "../src/domain/meter-filter.ts";
import { DecimalFormatError, formatUnits, MAX_UNITS, UNIT_SCALE } from "../src/domain/units.ts";

/** The largest whole number accepted as units (read from units.ts, which owns the limit). */
const MAX_WHOLE = Number(MAX_UNITS / UNIT_SCALE);

// ---- helpers -----------------------------------------------------------------------------------------

function event(metadata: Record<string, Scalar> = {}, name = "llm.call"): EventLike {
  return { name, metadata };
}

function clause(property: string, operator: Operator, value: Scalar): FilterClause {
  return { property, operator, value };
}

/** Does a single clause `x <operator> value` match an event whose metadata key `x` is `actual`? */
function matchesX(operator: Operator, value: Scalar, actual: Scalar): boolean {
  return clauseMatches(clause("x", operator, value), event({ x: actual }));
}

/** Run `fn`, expect an InvalidInputError, and return the `field` path it names. */
function invalidField(fn: () => unknown): string | null {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidInputError);
  return (caught as InvalidInputError).field;
}

/** A filter nested `levels` deep (the outermost filter is level 1); the innermost holds one clause. */
function nestedFilter(levels: number): unknown {
  let filter: unknown = { conjunction: "AND", clauses: [{ property: "x", operator: "EQ", value: 1 }] };
  for (let i = 1; i < levels; i++) filter = { conjunction: "AND", clauses: [{ filter }] };
  return filter;
}

function clauses(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => ({ property: `k${i}`, operator: "EQ", value: i }));
}

function units(result: ReturnType<typeof contribution>): string | null {
  if (result === null) return null;
  if (!("units" in result)) throw new Error(`expected units, got ${JSON.stringify(result)}`);
  return formatUnits(result.units);
}

function distinct(result: ReturnType<typeof contribution>): string | null {
  if (result === null) return null;
  if (!("distinct" in result)) throw new Error("expected a distinct key, got units");
  return result.distinct;
}

// ---- operators -----------------------------------------------------------------------------------------

describe("clause operators", () => {
  describe("EQ", () => {
    it("matches an equal string", () => {
      expect(matchesX("EQ", "gpt-4", "gpt-4")).toBe(true);
    });

    it("does not match a different string", () => {
      expect(matchesX("EQ", "gpt-4", "gpt-3.5")).toBe(false);
    });

    it("compares strings case-sensitively", () => {
      expect(matchesX("EQ", "GPT-4", "gpt-4")).toBe(false);
    });

    it("matches an equal number", () => {
      expect(matchesX("EQ", 42, 42)).toBe(true);
    });

    it("does not match a different number", () => {
      expect(matchesX("EQ", 42, 43)).toBe(false);
    });

    it("matches an equal boolean", () => {
      expect(matchesX("EQ", true, true)).toBe(true);
      expect(matchesX("EQ", false, false)).toBe(true);
    });

    it("does not match the opposite boolean", () => {
      expect(matchesX("EQ", true, false)).toBe(false);
    });

    it("matches the empty string only against the empty string", () => {
      expect(matchesX("EQ", "", "")).toBe(true);
      expect(matchesX("EQ", "", "a")).toBe(false);
    });
  });

  describe("NE", () => {
    it("matches a different string", () => {
      expect(matchesX("NE", "gpt-4", "gpt-3.5")).toBe(true);
    });

    it("does not match an equal string", () => {
      expect(matchesX("NE", "gpt-4", "gpt-4")).toBe(false);
    });

    it("matches a different number", () => {
      expect(matchesX("NE", 1, 2)).toBe(true);
    });

    it("does not match an equal number", () => {
      expect(matchesX("NE", 1, 1)).toBe(false);
    });

    it("matches the opposite boolean and not the same one", () => {
      expect(matchesX("NE", true, false)).toBe(true);
      expect(matchesX("NE", true, true)).toBe(false);
    });
  });

  describe("GT", () => {
    it("matches a larger value", () => {
      expect(matchesX("GT", 10, 11)).toBe(true);
    });

    it("does not match an equal value", () => {
      expect(matchesX("GT", 10, 10)).toBe(false);
    });

    it("does not match a smaller value", () => {
      expect(matchesX("GT", 10, 9)).toBe(false);
    });
  });

  describe("GTE", () => {
    it("matches a larger value", () => {
      expect(matchesX("GTE", 10, 11)).toBe(true);
    });

    it("matches an equal value", () => {
      expect(matchesX("GTE", 10, 10)).toBe(true);
    });

    it("does not match a smaller value", () => {
      expect(matchesX("GTE", 10, 9.999999)).toBe(false);
    });
  });

  describe("LT", () => {
    it("matches a smaller value", () => {
      expect(matchesX("LT", 10, 9)).toBe(true);
    });

    it("does not match an equal value", () => {
      expect(matchesX("LT", 10, 10)).toBe(false);
    });

    it("does not match a larger value", () => {
      expect(matchesX("LT", 10, 11)).toBe(false);
    });
  });

  describe("LTE", () => {
    it("matches a smaller value", () => {
      expect(matchesX("LTE", 10, 9)).toBe(true);
    });

    it("matches an equal value", () => {
      expect(matchesX("LTE", 10, 10)).toBe(true);
    });

    it("does not match a larger value", () => {
      expect(matchesX("LTE", 10, 10.000001)).toBe(false);
    });
  });

  describe("LIKE", () => {
    it("matches a string containing the value", () => {
      expect(matchesX("LIKE", "gpt", "openai/gpt-4o")).toBe(true);
    });

    it("matches a string equal to the value", () => {
      expect(matchesX("LIKE", "gpt-4", "gpt-4")).toBe(true);
    });

    it("does not match a string that does not contain the value", () => {
      expect(matchesX("LIKE", "claude", "gpt-4")).toBe(false);
    });

    it("matches every string when the value is empty", () => {
      expect(matchesX("LIKE", "", "anything")).toBe(true);
      expect(matchesX("LIKE", "", "")).toBe(true);
    });
  });

  describe("NOT_LIKE", () => {
    it("matches a string that does not contain the value", () => {
      expect(matchesX("NOT_LIKE", "claude", "gpt-4")).toBe(true);
    });

    it("does not match a string containing the value", () => {
      expect(matchesX("NOT_LIKE", "gpt", "openai/gpt-4o")).toBe(false);
    });

    it("matches no string when the value is empty", () => {
      expect(matchesX("NOT_LIKE", "", "anything")).toBe(false);
    });
  });
});

describe("LIKE is a literal, case-sensitive substring match", () => {
  it("is case-sensitive", () => {
    expect(matchesX("LIKE", "GPT", "gpt-4")).toBe(false);
    expect(matchesX("NOT_LIKE", "GPT", "gpt-4")).toBe(true);
  });

  it("gives % no wildcard meaning", () => {
    expect(matchesX("LIKE", "gpt%", "gpt-4")).toBe(false);
    expect(matchesX("LIKE", "%4", "gpt-4")).toBe(false);
  });

  it("gives _ no wildcard meaning", () => {
    expect(matchesX("LIKE", "a_c", "abc")).toBe(false);
    expect(matchesX("LIKE", "a_c", "xa_cx")).toBe(true);
  });

  it("matches a lone % only in strings containing %", () => {
    expect(matchesX("LIKE", "%", "gpt-4")).toBe(false);
    expect(matchesX("LIKE", "%", "")).toBe(false);
    expect(matchesX("LIKE", "%", "100%")).toBe(true);
  });

  it("gives regular-expression characters no special meaning", () => {
    expect(matchesX("LIKE", "gpt.4", "gpt-4")).toBe(false);
    expect(matchesX("LIKE", ".*", "gpt-4")).toBe(false);
    expect(matchesX("LIKE", "(4)", "gpt(4)")).toBe(true);
  });

  it("excludes a literal % with NOT_LIKE", () => {
    expect(matchesX("NOT_LIKE", "gpt%", "gpt-4")).toBe(true);
    expect(matchesX("NOT_LIKE", "gpt%", "gpt%")).toBe(false);
  });
});

// ---- types and missing properties ----------------------------------------------------------------------

describe("a value of the wrong type never matches", () => {
  it("EQ 5 does not match the string \"5\"", () => {
    expect(matchesX("EQ", 5, "5")).toBe(false);
  });

  // NE is not simply "not EQ": a type mismatch makes the clause inapplicable, not unequal.
  it("NE 5 does not match the string \"5\" either", () => {
    expect(matchesX("NE", 5, "5")).toBe(false);
  });

  it("EQ \"5\" does not match the number 5, nor does NE", () => {
    expect(matchesX("EQ", "5", 5)).toBe(false);
    expect(matchesX("NE", "5", 5)).toBe(false);
  });

  it("EQ true does not match the string \"true\"", () => {
    expect(matchesX("EQ", true, "true")).toBe(false);
    expect(matchesX("NE", true, "true")).toBe(false);
  });

  it("EQ 1 does not match the boolean true", () => {
    expect(matchesX("EQ", 1, true)).toBe(false);
    expect(matchesX("NE", 1, true)).toBe(false);
  });

  it("LIKE does not match a number value", () => {
    expect(matchesX("LIKE", "4", 42)).toBe(false);
  });

  it("NOT_LIKE does not match a number value", () => {
    expect(matchesX("NOT_LIKE", "x", 42)).toBe(false);
  });

  it("LIKE does not match a boolean value", () => {
    expect(matchesX("LIKE", "tr", true)).toBe(false);
    expect(matchesX("NOT_LIKE", "x", true)).toBe(false);
  });

  it("numeric comparisons do not match a string value", () => {
    for (const op of ["GT", "GTE", "LT", "LTE"] as const) {
      expect(matchesX(op, 5, "10"), op).toBe(false);
      expect(matchesX(op, 5, "5"), op).toBe(false);
    }
  });

  it("numeric comparisons do not match a boolean value", () => {
    for (const op of ["GT", "GTE", "LT", "LTE"] as const) {
      expect(matchesX(op, 0, true), op).toBe(false);
    }
  });
});

describe("a missing property never matches", () => {
  const cases: [Operator, Scalar][] = [
    ["EQ", "a"],
    ["NE", "a"],
    ["NE", 1],
    ["NE", false],
    ["GT", 0],
    ["GTE", 0],
    ["LT", 0],
    ["LTE", 0],
    ["LIKE", ""],
    ["NOT_LIKE", "a"],
  ];
  for (const [op, value] of cases) {
    it(`${op} ${JSON.stringify(value)} does not match an event without the property`, () => {
      expect(clauseMatches(clause("x", op, value), event({ y: value }))).toBe(false);
    });
  }

  it("does not treat inherited object members as metadata", () => {
    expect(clauseMatches(clause("toString", "NE", "x"), event())).toBe(false);
    expect(propertyValue(event(), "constructor")).toBeUndefined();
    expect(propertyValue(event(), "metadata.__proto__")).toBeUndefined();
  });
});

// ---- property paths ---------------------------------------------------------------------------------

describe("property paths", () => {
  const e = event({ x: 1, name: "meta-name", "model.version": "4o", "metadata.y": "literal" }, "llm.call");

  it("reads the event name for property \"name\"", () => {
    expect(propertyValue(e, "name")).toBe("llm.call");
  });

  it("reads a metadata key for a bare property", () => {
    expect(propertyValue(e, "x")).toBe(1);
  });

  it("reads the same metadata key with a metadata. prefix", () => {
    expect(propertyValue(e, "metadata.x")).toBe(1);
  });

  it("reaches a metadata key called \"name\" through metadata.name", () => {
    expect(propertyValue(e, "metadata.name")).toBe("meta-name");
  });

  it("looks up a dotted path as one flat key", () => {
    expect(propertyValue(e, "model.version")).toBe("4o");
    expect(propertyValue(e, "metadata.model.version")).toBe("4o");
  });

  it("strips the metadata. prefix only once", () => {
    expect(propertyValue(e, "metadata.metadata.y")).toBe("literal");
    expect(propertyValue(e, "metadata.y")).toBeUndefined();
  });

  it("returns undefined for a missing key", () => {
    expect(propertyValue(e, "missing")).toBeUndefined();
    expect(propertyValue(e, "metadata.missing")).toBeUndefined();
  });

  it("matches clauses on the event name", () => {
    expect(clauseMatches(clause("name", "EQ", "llm.call"), e)).toBe(true);
    expect(clauseMatches(clause("name", "LIKE", "llm."), e)).toBe(true);
    expect(clauseMatches(clause("name", "EQ", "meta-name"), e)).toBe(false);
  });

  it("matches clauses on a metadata key called name", () => {
    expect(clauseMatches(clause("metadata.name", "EQ", "meta-name"), e)).toBe(true);
  });
});

// ---- exact numbers ------------------------------------------------------------------------------------

describe("exact number comparison", () => {
  it("treats 0.1 + 0.2 as a number distinct from and greater than 0.3", () => {
    expect(matchesX("GT", 0.3, 0.1 + 0.2)).toBe(true);
    expect(matchesX("EQ", 0.3, 0.1 + 0.2)).toBe(false);
    expect(matchesX("NE", 0.3, 0.1 + 0.2)).toBe(true);
  });

  it("matches 0.3 EQ 0.3 and not GT", () => {
    expect(matchesX("EQ", 0.3, 0.3)).toBe(true);
    expect(matchesX("GT", 0.3, 0.3)).toBe(false);
  });

  it("treats 1 and 1.0 as equal", () => {
    expect(matchesX("EQ", 1, 1.0)).toBe(true);
    expect(compareNumbers(1, 1.0)).toBe(0);
  });

  it("treats 0 and -0 as equal", () => {
    expect(compareNumbers(0, -0)).toBe(0);
    expect(matchesX("EQ", 0, -0)).toBe(true);
  });

  it("orders very small numbers", () => {
    expect(matchesX("GT", 0, 1e-7)).toBe(true);
    expect(matchesX("LT", 1e-6, 1e-7)).toBe(true);
    expect(compareNumbers(1e-7, 2e-7)).toBe(-1);
    expect(compareNumbers(5e-324, 0)).toBe(1);
  });

  it("orders very large numbers", () => {
    expect(matchesX("GT", 1e20, 1e21)).toBe(true);
    expect(matchesX("EQ", 1e21, 1e21)).toBe(true);
    expect(compareNumbers(1e21, 1.5e21)).toBe(-1);
  });

  it("compares numbers across the exponent boundary", () => {
    expect(compareNumbers(999999999999999900000, 1e21)).toBe(-1);
    expect(compareNumbers(0.000001, 1e-7)).toBe(1);
  });

  it("orders negative numbers", () => {
    expect(matchesX("LT", 0, -0.5)).toBe(true);
    expect(matchesX("GT", -2, -1.5)).toBe(true);
    expect(matchesX("LT", -2, -1.5)).toBe(false);
    expect(matchesX("LTE", -1.5, -1.5)).toBe(true);
    expect(compareNumbers(-1e-7, 0)).toBe(-1);
    expect(compareNumbers(-1e21, -1e20)).toBe(-1);
  });

  it("compares numbers with different numbers of decimals", () => {
    expect(compareNumbers(1.25, 1.3)).toBe(-1);
    expect(compareNumbers(10, 9.999999999)).toBe(1);
  });

  it("returns -1, 0 or 1", () => {
    expect(compareNumbers(1, 2)).toBe(-1);
    expect(compareNumbers(2, 2)).toBe(0);
    expect(compareNumbers(3, 2)).toBe(1);
  });
});

describe("numberText", () => {
  it("keeps plain decimals as they are", () => {
    expect(numberText(12.5)).toBe("12.5");
    expect(numberText(42)).toBe("42");
    expect(numberText(-0.25)).toBe("-0.25");
    expect(numberText(0.30000000000000004)).toBe("0.30000000000000004");
  });

  it("expands a small exponent to a plain decimal", () => {
    expect(numberText(1e-7)).toBe("0.0000001");
    expect(numberText(1.5e-7)).toBe("0.00000015");
    expect(numberText(1.234e-10)).toBe("0.0000000001234");
  });

  it("expands a large exponent to a plain integer", () => {
    expect(numberText(1e21)).toBe("1000000000000000000000");
    expect(numberText(1.5e21)).toBe("1500000000000000000000");
  });

  it("expands exponents of negative numbers", () => {
    expect(numberText(-1e-7)).toBe("-0.0000001");
    expect(numberText(-1e21)).toBe("-1000000000000000000000");
  });

  it("writes -0 as 0", () => {
    expect(numberText(-0)).toBe("0");
  });

  it("never contains an exponent", () => {
    for (const n of [5e-324, 1.7976931348623157e308, 1e-7, 1e21, -2.5e-9]) {
      expect(numberText(n), String(n)).toMatch(/^-?\d+(\.\d+)?$/);
    }
  });
});

// ---- nested filters ---------------------------------------------------------------------------------------

describe("filters", () => {
  const gpt4Big = event({ model: "gpt-4", tokens: 5000, region: "eu" });
  const gpt4Small = event({ model: "gpt-4", tokens: 10, region: "us" });
  const claudeBig = event({ model: "claude", tokens: 5000, region: "us" });

  it("matches everything with an empty AND", () => {
    expect(filterMatches({ conjunction: "AND", clauses: [] }, gpt4Big)).toBe(true);
    expect(filterMatches({ conjunction: "AND", clauses: [] }, event())).toBe(true);
  });

  it("matches nothing with an empty OR", () => {
    expect(filterMatches({ conjunction: "OR", clauses: [] }, gpt4Big)).toBe(false);
  });

  it("requires every clause of an AND to match", () => {
    const f: MeterFilter = { conjunction: "AND", clauses: [clause("model", "EQ", "gpt-4"), clause("tokens", "GT", 1000)] };
    expect(filterMatches(f, gpt4Big)).toBe(true);
    expect(filterMatches(f, gpt4Small)).toBe(false);
    expect(filterMatches(f, claudeBig)).toBe(false);
  });

  it("requires any clause of an OR to match", () => {
    const f: MeterFilter = { conjunction: "OR", clauses: [clause("model", "EQ", "claude"), clause("tokens", "LT", 100)] };
    expect(filterMatches(f, gpt4Big)).toBe(false);
    expect(filterMatches(f, gpt4Small)).toBe(true);
    expect(filterMatches(f, claudeBig)).toBe(true);
  });

  it("evaluates an AND of ORs", () => {
    // (model = gpt-4 OR model = claude) AND (region = eu OR tokens < 100)
    const f: MeterFilter = {
      conjunction: "AND",
      clauses: [
        { conjunction: "OR", clauses: [clause("model", "EQ", "gpt-4"), clause("model", "EQ", "claude")] },
        { conjunction: "OR", clauses: [clause("region", "EQ", "eu"), clause("tokens", "LT", 100)] },
      ],
    };
    expect(filterMatches(f, gpt4Big)).toBe(true);
    expect(filterMatches(f, gpt4Small)).toBe(true);
    expect(filterMatches(f, claudeBig)).toBe(false);
    expect(filterMatches(f, event({ model: "mistral", region: "eu" }))).toBe(false);
  });

  it("evaluates an OR of ANDs", () => {
    // (model = gpt-4 AND region = eu) OR (model = claude AND tokens >= 5000)
    const f: MeterFilter = {
      conjunction: "OR",
      clauses: [
        { conjunction: "AND", clauses: [clause("model", "EQ", "gpt-4"), clause("region", "EQ", "eu")] },
        { conjunction: "AND", clauses: [clause("model", "EQ", "claude"), clause("tokens", "GTE", 5000)] },
      ],
    };
    expect(filterMatches(f, gpt4Big)).toBe(true);
    expect(filterMatches(f, gpt4Small)).toBe(false);
    expect(filterMatches(f, claudeBig)).toBe(true);
  });

  it("evaluates filters nested several levels deep", () => {
    const f = parseMeterFilter({
      conjunction: "AND",
      clauses: [
        {
          conjunction: "OR",
          clauses: [
            { conjunction: "AND", clauses: [{ conjunction: "OR", clauses: [clause("region", "EQ", "eu")] }] },
            clause("model", "EQ", "claude"),
          ],
        },
      ],
    });
    expect(filterMatches(f, gpt4Big)).toBe(true);
    expect(filterMatches(f, claudeBig)).toBe(true);
    expect(filterMatches(f, gpt4Small)).toBe(false);
  });

  it("treats an empty nested OR as false and an empty nested AND as true", () => {
    const withEmptyOr: MeterFilter = { conjunction: "AND", clauses: [clause("model", "EQ", "gpt-4"), { conjunction: "OR", clauses: [] }] };
    const withEmptyAnd: MeterFilter = { conjunction: "OR", clauses: [clause("model", "EQ", "nope"), { conjunction: "AND", clauses: [] }] };
    expect(filterMatches(withEmptyOr, gpt4Big)).toBe(false);
    expect(filterMatches(withEmptyAnd, gpt4Big)).toBe(true);
  });

  it("does not match an AND whose clause names a missing property, even with NE", () => {
    const f: MeterFilter = { conjunction: "AND", clauses: [clause("model", "EQ", "gpt-4"), clause("customer", "NE", "acme")] };
    expect(filterMatches(f, gpt4Big)).toBe(false);
  });
});

// ---- parsing and validation ----------------------------------------------------------------------------------

describe("parseMeterFilter", () => {
  it("returns a valid flat filter unchanged", () => {
    const raw = {
      conjunction: "AND",
      clauses: [
        { property: "model", operator: "LIKE", value: "gpt" },
        { property: "tokens", operator: "GTE", value: 100 },
        { property: "cached", operator: "EQ", value: false },
      ],
    };
    expect(parseMeterFilter(raw)).toEqual(raw);
  });

  it("accepts every operator with a value of a suitable type", () => {
    const raw = {
      conjunction: "OR",
      clauses: [
        { property: "a", operator: "EQ", value: "s" },
        { property: "a", operator: "EQ", value: 1 },
        { property: "a", operator: "EQ", value: true },
        { property: "a", operator: "NE", value: "s" },
        { property: "a", operator: "NE", value: 1.5 },
        { property: "a", operator: "NE", value: false },
        { property: "a", operator: "GT", value: 1 },
        { property: "a", operator: "GTE", value: -1 },
        { property: "a", operator: "LT", value: 0.1234567 },
        { property: "a", operator: "LTE", value: 1e21 },
        { property: "a", operator: "LIKE", value: "%" },
        { property: "a", operator: "NOT_LIKE", value: "" },
      ],
    };
    expect(parseMeterFilter(raw)).toEqual(raw);
  });

  it("accepts an empty list of clauses", () => {
    expect(parseMeterFilter({ conjunction: "OR", clauses: [] })).toEqual({ conjunction: "OR", clauses: [] });
  });

  it("accepts a nested filter given inline", () => {
    const raw = {
      conjunction: "AND",
      clauses: [{ conjunction: "OR", clauses: [{ property: "a", operator: "EQ", value: 1 }] }],
    };
    expect(parseMeterFilter(raw)).toEqual(raw);
  });

  it("unwraps a nested filter given as {filter: ...}", () => {
    const inner = { conjunction: "OR", clauses: [{ property: "a", operator: "EQ", value: 1 }] };
    expect(parseMeterFilter({ conjunction: "AND", clauses: [{ filter: inner }] })).toEqual({ conjunction: "AND", clauses: [inner] });
  });

  it("treats a clause with a null filter as a condition", () => {
    // GraphQL input objects send unset fields as null.
    const parsed = parseMeterFilter({ conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value: 1, filter: null }] });
    expect(parsed).toEqual({ conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value: 1 }] });
  });

  it("accepts a nested filter with a null property", () => {
    const inner = { conjunction: "AND", clauses: [] };
    const parsed = parseMeterFilter({ conjunction: "OR", clauses: [{ property: null, operator: null, value: null, filter: inner }] });
    expect(parsed).toEqual({ conjunction: "OR", clauses: [inner] });
  });

  it("trims property names", () => {
    const parsed = parseMeterFilter({ conjunction: "AND", clauses: [{ property: "  model ", operator: "EQ", value: "x" }] });
    expect(parsed.clauses[0]).toEqual({ property: "model", operator: "EQ", value: "x" });
  });

  it("drops unknown keys", () => {
    const parsed = parseMeterFilter({ conjunction: "AND", extra: 1, clauses: [{ property: "a", operator: "EQ", value: 1, note: "x" }] });
    expect(parsed).toEqual({ conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value: 1 }] });
  });

  it("returns a filter that evaluates as written", () => {
    const parsed = parseMeterFilter({
      conjunction: "OR",
      clauses: [
        { filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "llm.call" }, { property: "metadata.tokens", operator: "GT", value: 0 }] } },
        { property: "model", operator: "LIKE", value: "claude" },
      ],
    });
    expect(filterMatches(parsed, event({ tokens: 1 }))).toBe(true);
    expect(filterMatches(parsed, event({ tokens: 0 }))).toBe(false);
    expect(filterMatches(parsed, event({ model: "claude-3" }, "other"))).toBe(true);
  });

  it("accepts 5 levels of nesting", () => {
    expect(() => parseMeterFilter(nestedFilter(5))).not.toThrow();
  });

  it("accepts exactly 100 clauses", () => {
    expect(parseMeterFilter({ conjunction: "AND", clauses: clauses(100) }).clauses).toHaveLength(100);
  });

  it("uses the field path it is given", () => {
    expect(invalidField(() => parseMeterFilter({ conjunction: "X", clauses: [] }, "input.meters.2.filter"))).toBe("input.meters.2.filter.conjunction");
  });

  describe("rejects", () => {
    it("a filter that is not an object", () => {
      for (const raw of [null, undefined, "AND", 5, [], true]) {
        expect(invalidField(() => parseMeterFilter(raw)), JSON.stringify(raw)).toBe("input.filter");
      }
    });

    it("a missing or unknown conjunction", () => {
      expect(invalidField(() => parseMeterFilter({ clauses: [] }))).toBe("input.filter.conjunction");
      expect(invalidField(() => parseMeterFilter({ conjunction: "XOR", clauses: [] }))).toBe("input.filter.conjunction");
      expect(invalidField(() => parseMeterFilter({ conjunction: "and", clauses: [] }))).toBe("input.filter.conjunction");
    });

    it("clauses that are not a list", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND" }))).toBe("input.filter.clauses");
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: {} }))).toBe("input.filter.clauses");
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: "a" }))).toBe("input.filter.clauses");
    });

    it("a clause that is not an object", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [clauses(1)[0], "x"] }))).toBe("input.filter.clauses.1");
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [null] }))).toBe("input.filter.clauses.0");
    });

    it("an unknown operator", () => {
      const raw = { conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value: 1 }, { property: "a", operator: "CONTAINS", value: "x" }] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter.clauses.1.operator");
    });

    it("a missing or lower-case operator", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [{ property: "a", value: 1 }] }))).toBe("input.filter.clauses.0.operator");
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [{ property: "a", operator: "eq", value: 1 }] }))).toBe("input.filter.clauses.0.operator");
    });

    it("a missing, empty or blank property", () => {
      for (const property of [undefined, "", "   ", 5]) {
        const raw = { conjunction: "AND", clauses: [{ property, operator: "EQ", value: 1 }] };
        expect(invalidField(() => parseMeterFilter(raw)), String(property)).toBe("input.filter.clauses.0.property");
      }
    });

    it("a property longer than 200 characters", () => {
      const raw = { conjunction: "AND", clauses: [{ property: "p".repeat(201), operator: "EQ", value: 1 }] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter.clauses.0.property");
      expect(() => parseMeterFilter({ conjunction: "AND", clauses: [{ property: "p".repeat(200), operator: "EQ", value: 1 }] })).not.toThrow();
    });

    it("a numeric comparison with a string value", () => {
      const raw = { conjunction: "AND", clauses: [{ property: "tokens", operator: "GT", value: "100" }] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter.clauses.0.value");
    });

    it("a numeric comparison with a boolean value", () => {
      for (const operator of ["GT", "GTE", "LT", "LTE"]) {
        const raw = { conjunction: "AND", clauses: [{ property: "tokens", operator, value: true }] };
        expect(invalidField(() => parseMeterFilter(raw)), operator).toBe("input.filter.clauses.0.value");
      }
    });

    it("LIKE with a number value", () => {
      const raw = { conjunction: "AND", clauses: [{ property: "model", operator: "LIKE", value: 4 }] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter.clauses.0.value");
    });

    it("NOT_LIKE with a boolean value", () => {
      const raw = { conjunction: "AND", clauses: [{ property: "model", operator: "NOT_LIKE", value: false }] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter.clauses.0.value");
    });

    it("a value that is an object, a list, null or missing", () => {
      for (const value of [{ a: 1 }, [1], null, undefined]) {
        const raw = { conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value }] };
        expect(invalidField(() => parseMeterFilter(raw)), JSON.stringify(value)).toBe("input.filter.clauses.0.value");
      }
    });

    it("a value that is not a finite number", () => {
      for (const value of [Infinity, -Infinity, NaN]) {
        const raw = { conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value }] };
        expect(invalidField(() => parseMeterFilter(raw)), String(value)).toBe("input.filter.clauses.0.value");
      }
    });

    it("a bad clause inside a nested filter, naming its full path", () => {
      const inline = { conjunction: "AND", clauses: [clauses(1)[0], { conjunction: "OR", clauses: [{ property: "a", operator: "LIKE", value: 1 }] }] };
      expect(invalidField(() => parseMeterFilter(inline))).toBe("input.filter.clauses.1.clauses.0.value");
      const wrapped = { conjunction: "AND", clauses: [{ filter: { conjunction: "OR", clauses: [clauses(1)[0], { property: "a", operator: "BAD", value: 1 }] } }] };
      expect(invalidField(() => parseMeterFilter(wrapped))).toBe("input.filter.clauses.0.filter.clauses.1.operator");
    });

    it("a bad conjunction inside a nested filter", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [{ filter: { conjunction: "NOR", clauses: [] } }] }))).toBe(
        "input.filter.clauses.0.filter.conjunction",
      );
    });

    it("a nested filter that is not an object", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [{ filter: "x" }] }))).toBe("input.filter.clauses.0.filter");
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: [{ filter: [] }] }))).toBe("input.filter.clauses.0.filter");
    });

    it("nesting deeper than 5 levels", () => {
      // Level 6 is the `filter` of the only clause of level 5.
      const deepest = "input.filter" + ".clauses.0.filter".repeat(5);
      expect(invalidField(() => parseMeterFilter(nestedFilter(6)))).toBe(deepest);
    });

    it("nesting deeper than 5 levels given inline", () => {
      let raw: unknown = { conjunction: "OR", clauses: [] };
      for (let i = 1; i < 6; i++) raw = { conjunction: "AND", clauses: [raw] };
      expect(invalidField(() => parseMeterFilter(raw))).toBe("input.filter" + ".clauses.0".repeat(5));
    });

    it("more than 100 clauses, naming the first one over", () => {
      expect(invalidField(() => parseMeterFilter({ conjunction: "AND", clauses: clauses(101) }))).toBe("input.filter.clauses.100");
    });

    it("more than 100 clauses spread over nested filters", () => {
      const raw = {
        conjunction: "OR",
        clauses: [{ filter: { conjunction: "AND", clauses: clauses(50) } }, { filter: { conjunction: "AND", clauses: clauses(51) } }],
      };
      expect(invalidField(() => parseMeterFilter(raw))).toMatch(/^input\.filter\.clauses\.1\.filter\.clauses\.\d+$/);
    });

    it("a clause with both a property and a nested filter", () => {
      const wrapped = { conjunction: "AND", clauses: [{ property: "a", operator: "EQ", value: 1, filter: { conjunction: "AND", clauses: [] } }] };
      expect(invalidField(() => parseMeterFilter(wrapped))).toBe("input.filter.clauses.0");
      const inline = { conjunction: "AND", clauses: [clauses(1)[0], { property: "a", conjunction: "AND", clauses: [] }] };
      expect(invalidField(() => parseMeterFilter(inline))).toBe("input.filter.clauses.1");
    });
  });
});

describe("parseAggregation", () => {
  it("accepts COUNT without a property", () => {
    expect(parseAggregation({ func: "COUNT" })).toEqual({ func: "COUNT", property: null });
    expect(parseAggregation({ func: "COUNT", property: null })).toEqual({ func: "COUNT", property: null });
  });

  it("accepts SUM, MAX, MIN, AVG and UNIQUE with a property", () => {
    for (const func of ["SUM", "MAX", "MIN", "AVG", "UNIQUE"] as const) {
      expect(parseAggregation({ func, property: "tokens" })).toEqual({ func, property: "tokens" });
    }
  });

  it("trims the property", () => {
    expect(parseAggregation({ func: "SUM", property: " metadata.tokens " })).toEqual({ func: "SUM", property: "metadata.tokens" });
  });

  it("rejects an unknown function", () => {
    expect(invalidField(() => parseAggregation({ func: "MEDIAN", property: "x" }))).toBe("input.aggregation.func");
    expect(invalidField(() => parseAggregation({ func: "count" }))).toBe("input.aggregation.func");
  });

  it("rejects COUNT with a property", () => {
    expect(invalidField(() => parseAggregation({ func: "COUNT", property: "tokens" }))).toBe("input.aggregation.property");
  });

  it("rejects SUM without a property", () => {
    expect(invalidField(() => parseAggregation({ func: "SUM" }))).toBe("input.aggregation.property");
    expect(invalidField(() => parseAggregation({ func: "SUM", property: null }))).toBe("input.aggregation.property");
  });

  it("rejects a blank property for a function that needs one", () => {
    for (const func of ["SUM", "MAX", "MIN", "AVG", "UNIQUE"]) {
      expect(invalidField(() => parseAggregation({ func, property: "  " })), func).toBe("input.aggregation.property");
    }
  });

  it("uses the field path it is given", () => {
    expect(invalidField(() => parseAggregation({ func: "AVG" }, "input.meter.aggregation"))).toBe("input.meter.aggregation.property");
  });
});

// ---- contributions --------------------------------------------------------------------------------------------

describe("contribution", () => {
  const count = { func: "COUNT", property: null } as const;

  it("COUNT contributes exactly one unit", () => {
    expect(contribution(count, event({ tokens: 12.5 }))).toEqual({ units: 1_000_000n });
  });

  it("COUNT contributes one unit even for an event without metadata", () => {
    expect(units(contribution(count, event()))).toBe("1");
  });

  for (const func of ["SUM", "MAX", "MIN", "AVG"] as const) {
    describe(func, () => {
      const agg = { func, property: "tokens" };

      it("contributes the exact micro-units of a numeric property", () => {
        expect(contribution(agg, event({ tokens: 12.5 }))).toEqual({ units: 12_500_000n });
      });

      it("contributes integers, negatives and six decimals exactly", () => {
        expect(units(contribution(agg, event({ tokens: 1500 })))).toBe("1500");
        expect(units(contribution(agg, event({ tokens: -0.25 })))).toBe("-0.25");
        expect(units(contribution(agg, event({ tokens: 0.000001 })))).toBe("0.000001");
        expect(units(contribution(agg, event({ tokens: 0 })))).toBe("0");
      });

      it("ignores an event without the property", () => {
        expect(contribution(agg, event({ other: 1 }))).toBeNull();
      });

      it("counts a numeric string exactly, as decimal text", () => {
        expect(contribution(agg, event({ tokens: "12" }))).toEqual({ units: 12_000_000n });
        expect(units(contribution(agg, event({ tokens: "12.5" })))).toBe("12.5");
        expect(units(contribution(agg, event({ tokens: "-0.000001" })))).toBe("-0.000001");
        expect(units(contribution(agg, event({ tokens: "1234567.123456" })))).toBe("1234567.123456");
      });

      it("ignores a string that is not plain decimal text", () => {
        for (const tokens of ["lots", "", "1e5", "12,5", "0x10", "1.2.3", "Infinity"]) expect(contribution(agg, event({ tokens })), tokens).toBeNull();
      });

      it("throws for a numeric string with more than six decimals", () => {
        expect(() => contribution(agg, event({ tokens: "0.1234567" }))).toThrow(DecimalFormatError);
      });

      it("ignores a boolean", () => {
        expect(contribution(agg, event({ tokens: true }))).toBeNull();
      });
    });
  }

  it("SUM reads a property with the metadata. prefix", () => {
    expect(units(contribution({ func: "SUM", property: "metadata.tokens" }, event({ tokens: 3 })))).toBe("3");
  });

  it("SUM over the event name contributes nothing", () => {
    expect(contribution({ func: "SUM", property: "name" }, event({}, "42"))).toBeNull();
  });

  it("SUM throws for a number with more than six decimals", () => {
    expect(() => contribution({ func: "SUM", property: "x" }, event({ x: 0.1 + 0.2 }))).toThrow(DecimalFormatError);
  });

  describe("UNIQUE", () => {
    const unique = { func: "UNIQUE", property: "user" } as const;

    it("gives equal keys for equal strings", () => {
      expect(distinct(contribution(unique, event({ user: "u1" })))).toBe(distinct(contribution(unique, event({ user: "u1" }))));
    });

    it("gives different keys for different strings", () => {
      expect(distinct(contribution(unique, event({ user: "u1" })))).not.toBe(distinct(contribution(unique, event({ user: "u2" }))));
    });

    it("gives different keys for the string \"1\" and the number 1", () => {
      expect(distinct(contribution(unique, event({ user: "1" })))).not.toBe(distinct(contribution(unique, event({ user: 1 }))));
    });

    it("gives different keys for the string \"true\" and the boolean true", () => {
      expect(distinct(contribution(unique, event({ user: "true" })))).not.toBe(distinct(contribution(unique, event({ user: true }))));
    });

    it("gives equal keys for equal numbers however written", () => {
      expect(distinct(contribution(unique, event({ user: 1 })))).toBe(distinct(contribution(unique, event({ user: 1.0 }))));
      expect(distinct(contribution(unique, event({ user: 0 })))).toBe(distinct(contribution(unique, event({ user: -0 }))));
    });

    it("gives different keys for different numbers", () => {
      expect(distinct(contribution(unique, event({ user: 0.3 })))).not.toBe(distinct(contribution(unique, event({ user: 0.1 + 0.2 }))));
    });

    it("gives equal keys for equal booleans and different keys for different ones", () => {
      expect(distinct(contribution(unique, event({ user: true })))).toBe(distinct(contribution(unique, event({ user: true }))));
      expect(distinct(contribution(unique, event({ user: true })))).not.toBe(distinct(contribution(unique, event({ user: false }))));
    });

    it("counts numbers with more than six decimals without throwing", () => {
      // UNIQUE uses the value as an identity, not a quantity.
      expect(distinct(contribution(unique, event({ user: 1e-7 })))).toEqual(expect.any(String));
    });

    it("ignores an event without the property", () => {
      expect(contribution(unique, event({ other: "u1" }))).toBeNull();
    });

    it("counts distinct event names for property \"name\"", () => {
      const byName = { func: "UNIQUE", property: "name" } as const;
      expect(distinct(contribution(byName, event({}, "a")))).not.toBe(distinct(contribution(byName, event({}, "b"))));
      expect(distinct(contribution(byName, event({ name: "x" }, "a")))).toBe(distinct(contribution(byName, event({ name: "y" }, "a"))));
    });
  });
});

describe("numericValue", () => {
  it("gives exact micro-units for integers and decimals", () => {
    expect(numericValue(12.5)).toBe(12_500_000n);
    expect(numericValue(7)).toBe(7_000_000n);
    expect(numericValue(-3.000001)).toBe(-3_000_001n);
    expect(formatUnits(numericValue(0.1)!)).toBe("0.1");
  });

  it("parses numeric strings exactly", () => {
    expect(numericValue("12")).toBe(12_000_000n);
    expect(numericValue("0.3")).toBe(300_000n);
    expect(numericValue("999999999999.999999")).toBe(MAX_UNITS - 1n);
  });

  it("throws DecimalFormatError for a number with more than 15 significant digits, suggesting a numeric string", () => {
    expect(() => numericValue(123456789012.3456)).toThrow(/numeric string/);
    expect(numericValue("123456789012.3456")).toBe(123_456_789_012_345_600n);
    expect(numericValue(12345678901.2345)).toBe(12_345_678_901_234_500n); // 15 digits: a double carries it
  });

  it("returns null for anything that is not a number or decimal text", () => {
    expect(numericValue("twelve")).toBeNull();
    expect(numericValue(true)).toBeNull();
    expect(numericValue(undefined)).toBeNull();
  });

  it("throws DecimalFormatError for more than six decimals", () => {
    expect(() => numericValue(0.1234567)).toThrow(DecimalFormatError);
    expect(() => numericValue(0.1 + 0.2)).toThrow(DecimalFormatError);
    expect(() => numericValue(1e-7)).toThrow(DecimalFormatError);
  });

  it("accepts the largest magnitude and throws DecimalFormatError beyond it", () => {
    expect(numericValue(MAX_WHOLE)).toBe(MAX_UNITS);
    expect(numericValue(-MAX_WHOLE)).toBe(-MAX_UNITS);
    expect(() => numericValue(MAX_WHOLE + 1)).toThrow(DecimalFormatError);
    expect(() => numericValue(MAX_WHOLE + 0.5)).toThrow(DecimalFormatError);
    expect(() => numericValue(1e21)).toThrow(DecimalFormatError);
  });
});

describe("unrepresentableNumber", () => {
  it("returns null for fine numbers", () => {
    for (const n of [12.5, 0, -1, 0.000001, MAX_WHOLE]) {
      expect(unrepresentableNumber(n), String(n)).toBeNull();
    }
  });

  it("gives a reason for more than six decimals", () => {
    expect(unrepresentableNumber(0.1 + 0.2)).toMatch(/decimal places/);
    expect(unrepresentableNumber(1e-7)).toMatch(/decimal places/);
  });

  it("gives a reason for numbers out of range", () => {
    expect(unrepresentableNumber(MAX_WHOLE + 1)).toMatch(/too large/);
    expect(unrepresentableNumber(-(MAX_WHOLE + 1))).toMatch(/too large/);
  });

  // An integer beyond 2^53 is still an integer the client wrote; the reason should say it is out of range,
  // not that it must be "an integer or a decimal string".
  it("says an integer beyond the safe range is too large", () => {
    expect(unrepresentableNumber(1e21)).toMatch(/too large/);
    expect(unrepresentableNumber(2 ** 53)).toMatch(/too large/);
  });

  it("gives a reason for Infinity and NaN", () => {
    expect(unrepresentableNumber(Infinity)).toMatch(/finite/);
    expect(unrepresentableNumber(-Infinity)).toMatch(/finite/);
    expect(unrepresentableNumber(NaN)).toMatch(/finite/);
  });
});

describe("bounds on what a filter costs per event", () => {
  it("refuses a LIKE or NOT_LIKE text longer than the bound", () => {
    for (const operator of ["LIKE", "NOT_LIKE"]) {
      const filter = (value: string) => ({ conjunction: "AND", clauses: [{ property: "model", operator, value }] });
      expect(() => parseMeterFilter(filter("x".repeat(MAX_LIKE_LENGTH)))).not.toThrow();
      expect(invalidField(() => parseMeterFilter(filter("x".repeat(MAX_LIKE_LENGTH + 1))))).toBe("input.filter.clauses.0.value");
    }
  });

  it("refuses a number in a clause that a JSON number may not carry as written", () => {
    const filter = { conjunction: "AND", clauses: [{ property: "n", operator: "EQ", value: 1234567890.1234567 }] };
    expect(invalidField(() => parseMeterFilter(filter))).toBe("input.filter.clauses.0.value");
  });

  it("counts clauses as parseMeterFilter does, nested filters included", () => {
    const filter = parseMeterFilter({ conjunction: "AND", clauses: [...clauses(3), { filter: { conjunction: "OR", clauses: clauses(4) } }] });
    expect(clauseCount(filter)).toBe(8);
    expect(clauseCount(parseMeterFilter({ conjunction: "AND", clauses: [] }))).toBe(0);
  });
});

describe("inexactNumber", () => {
  it("accepts up to 15 significant digits and refuses more", () => {
    for (const n of [0, 1, -1, 0.1, 123456789012345, 0.000001, 1e21, 100000000000.5]) expect(inexactNumber(n), String(n)).toBeNull();
    for (const n of [1234567890123456, 0.1 + 0.2, 2 ** 53 + 2, 123456789012.3456]) expect(inexactNumber(n), String(n)).toMatch(/numeric string/);
  });
});
