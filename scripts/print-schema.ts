// The schema's committed prints, both made from the code and checked by test/schema.test.ts (stale = failing):
//   schema.graphql                  the sorted SDL: what clients and GraphQL Code Generator read
//   src/client/possible-types.json  Apollo Client's `possibleTypes` (which object types each union and
//                                   interface can be), from GraphQL Code Generator's fragment-matcher plugin
// `npm run schema:print` (and `npm run codegen`) writes them. The possible types are not among codegen.ts's
// outputs because `npm test` and CI regenerate those before testing, which would hide a stale committed file.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { plugin as fragmentMatcher } from "@graphql-codegen/fragment-matcher";
import { lexicographicSortSchema, printSchema } from "graphql";
import { schema } from "../src/schema/index.ts";

export const POSSIBLE_TYPES_FILE = "src/client/possible-types.json";

export const printedSchema = () => printSchema(lexicographicSortSchema(schema)) + "\n";

export async function printedPossibleTypes(): Promise<string> {
  const output = await fragmentMatcher(lexicographicSortSchema(schema), [], { apolloClientVersion: 3, deterministic: true }, { outputFile: POSSIBLE_TYPES_FILE });
  const text = typeof output === "string" ? output : output.content;
  return text.endsWith("\n") ? text : `${text}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync("schema.graphql", printedSchema());
  mkdirSync(path.dirname(POSSIBLE_TYPES_FILE), { recursive: true });
  writeFileSync(POSSIBLE_TYPES_FILE, await printedPossibleTypes());
  console.log(`wrote schema.graphql and ${POSSIBLE_TYPES_FILE}`);
}
