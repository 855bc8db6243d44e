import { readFileSync } from "node:fs";
import { isAbstractType } from "graphql";
import { describe, expect, it } from "vitest";
import { POSSIBLE_TYPES_FILE, printedPossibleTypes, printedSchema } from "../scripts/print-schema.ts";
import { schema } from "../src/schema/index.ts";

// Clients and codegen read the committed prints; they must be what the code builds.
describe("committed prints of the schema (run `npm run codegen` after schema changes)", () => {
  it("schema.graphql matches the schema the code builds", () => {
    expect(readFileSync("schema.graphql", "utf8")).toBe(printedSchema());
  });

  it(`${POSSIBLE_TYPES_FILE} matches what the fragment-matcher plugin makes of it`, async () => {
    expect(readFileSync(POSSIBLE_TYPES_FILE, "utf8")).toBe(await printedPossibleTypes());
  });

  it(`${POSSIBLE_TYPES_FILE} names every union and interface with the object types it can be`, () => {
    const committed = JSON.parse(readFileSync(POSSIBLE_TYPES_FILE, "utf8")) as { possibleTypes: Record<string, string[]> };
    const expected: Record<string, string[]> = {};
    for (const type of Object.values(schema.getTypeMap())) {
      if (isAbstractType(type) && !type.name.startsWith("__")) expected[type.name] = schema.getPossibleTypes(type).map((t) => t.name).sort();
    }
    expect(Object.keys(expected)).toContain("Error"); // the interface every result union's errors implement
    expect(committed.possibleTypes).toEqual(expected);
  });
});
