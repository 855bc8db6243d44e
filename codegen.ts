// GraphQL Code Generator: typed documents for the tests (and any TypeScript client) from the committed,
// printed schema.graphql. `npm run codegen` reprints the schema first; `npm test` only regenerates types.
// Apollo Client's possibleTypes (src/client/possible-types.json) come from the fragment-matcher plugin in
// scripts/print-schema.ts instead, so that regenerating here before tests cannot hide a stale committed file.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["test/**/*.ts", "!test/gql/**"],
  ignoreNoDocuments: true,
  importExtension: ".ts", // generated files import each other with .ts (tsconfig: nodenext + allowImportingTsExtensions)
  generates: {
    "test/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { DateTime: "string", Decimal: "string", JSON: "unknown" },
      },
    },
  },
};
export default config;
