// Print the schema as sorted SDL to schema.graphql (committed; test/schema.test.ts fails when it is stale).
import { writeFileSync } from "node:fs";
import { lexicographicSortSchema, printSchema } from "graphql";
import { schema } from "../src/schema/index.ts";

export const printedSchema = () => printSchema(lexicographicSortSchema(schema)) + "\n";

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync("schema.graphql", printedSchema());
  console.log("wrote schema.graphql");
}
