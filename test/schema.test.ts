import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { printedSchema } from "../scripts/print-schema.ts";

// Clients and codegen read the committed SDL; it must be what the code builds.
it("schema.graphql matches the schema the code builds (run `npm run codegen` after schema changes)", () => {
  expect(readFileSync("schema.graphql", "utf8")).toBe(printedSchema());
});
