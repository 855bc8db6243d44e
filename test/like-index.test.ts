// The LIKE index answers exactly as `includes` does, clause by clause, for any patterns and texts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LikeIndex, worthIndexing } from "../src/domain/like-index.ts";
import { filterMatches, parseMeterFilter, type MeterFilter } from "../src/domain/meter-filter.ts";

// A small alphabet makes overlaps, repeats and patterns inside patterns common.
const text = (max: number) => fc.string({ unit: fc.constantFrom("a", "b", "c", "é", "\u{1F600}"), maxLength: max });
const property = fc.constantFrom("model", "metadata.model", "name", "metadata.name", "other");
const clause = fc.record({ property, operator: fc.constantFrom("LIKE", "NOT_LIKE"), value: text(6) });

function filterOf(clauses: { property: string; operator: string; value: string }[], conjunction: "AND" | "OR"): MeterFilter {
  // half of them nested one level down
  const half = Math.floor(clauses.length / 2);
  return parseMeterFilter({ conjunction, clauses: [...clauses.slice(0, half), { filter: { conjunction: conjunction === "AND" ? "OR" : "AND", clauses: clauses.slice(half) } }] });
}

describe("LikeIndex", () => {
  it("matches every clause exactly as includes does", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.array(clause, { minLength: 1, maxLength: 12 }), fc.constantFrom("AND" as const, "OR" as const)), { minLength: 1, maxLength: 6 }),
        fc.array(fc.record({ name: text(20), model: text(40), other: text(10) }), { minLength: 1, maxLength: 8 }),
        (meters, events) => {
          const filters = meters.map(([clauses, conjunction]) => filterOf(clauses, conjunction));
          const index = new LikeIndex(filters);
          for (const e of events) {
            const event = { name: e.name, metadata: { model: e.model, name: e.model.slice(1), other: e.other } };
            const contains = index.forEvent();
            for (const f of filters) expect(filterMatches(f, event, contains)).toBe(filterMatches(f, event));
            // and clause by clause, in any order, on the same event (a clause is always asked about its own property's text)
            for (const f of filters) {
              for (const c of f.clauses) {
                if ("clauses" in c || (c.property !== "model" && c.property !== "metadata.model")) continue;
                expect(contains(c, event.metadata.model)).toBe(event.metadata.model.includes(String(c.value)));
              }
            }
          }
        },
      ),
      { numRuns: 300, seed: 20261202 },
    );
  });

  it("finds a pattern at the very start and end, inside another, and repeated", () => {
    const filters = ["ab", "b", "abab", "ba", "babab", "c"].map((value) => parseMeterFilter({ conjunction: "AND", clauses: [{ property: "m", operator: "LIKE", value }] }));
    const index = new LikeIndex(filters);
    const contains = index.forEvent();
    const event = { name: "e", metadata: { m: "ababab" } };
    expect(filters.map((f) => filterMatches(f, event, contains))).toEqual([true, true, true, true, true, false]);
  });

  // UTF-16 code units, as `includes` sees them, not grapheme clusters: the reason modern-ahocorasick
  // (which matches whole graphemes) was not used, see the top of src/domain/like-index.ts.
  it("matches inside grapheme clusters and surrogate pairs as includes does", () => {
    const cases: [pattern: string, text: string, found: boolean][] = [
      ["\r", "a\r\nb", true], ["\n", "a\r\nb", true], ["\r\r", "a\r\nb", false], // CR LF is one grapheme
      ["e", "cafe\u0301", true], ["\u0301", "cafe\u0301", true], ["E", "cafe\u0301", false], // combining acute accent
      ["ab", "ab\u0301c", true],
      ["\u{1F469}", "\u{1F469}\u200D\u{1F4BB}", true], // ZWJ sequence
      ["\u{1F1F7}\u{1F1E9}", "\u{1F1EB}\u{1F1F7}\u{1F1E9}\u{1F1EA}", true], // across two flags
      ["\uD83D", "x\u{1F600}y", true], ["\uDE00y", "x\u{1F600}y", true], ["\u{1F600}", "x\u{1F600}y", true], // surrogate halves
    ];
    for (const [value, t, found] of cases) expect(t.includes(value)).toBe(found);
    const filters = cases.map(([value]) => parseMeterFilter({ conjunction: "AND", clauses: [{ property: "m", operator: "LIKE", value }] }));
    const index = new LikeIndex(filters);
    for (const m of new Set(cases.map(([, t]) => t))) {
      const contains = index.forEvent();
      const event = { name: "e", metadata: { m } };
      expect(filters.map((f) => filterMatches(f, event, contains))).toEqual(cases.map(([value]) => m.includes(value)));
    }
  });

  it("is built only where testing each clause would cost more", () => {
    const many = [parseMeterFilter({ conjunction: "OR", clauses: Array.from({ length: 100 }, (_, i) => ({ property: "m", operator: "LIKE", value: `v${i}` })) })];
    expect(worthIndexing(10, many)).toBe(false);
    expect(worthIndexing(10_000, many)).toBe(true);
  });
});
