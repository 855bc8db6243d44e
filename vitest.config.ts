import { createRequire } from "node:module";
import { defineConfig } from "vitest/config";

const require = createRequire(import.meta.url);

export default defineConfig({
  // graphql 16 ships CJS and ESM builds. Vite would give our files the ESM one while Yoga, loaded by Node,
  // gets the CJS one: two GraphQLError classes and failing instanceof checks. Use Node's choice everywhere.
  resolve: { alias: [{ find: /^graphql$/, replacement: require.resolve("graphql") }] },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 90_000, // generous: two workers share two cores with multi-process tests; a hang still fails
    hookTimeout: 60_000,
    // Each file gets its own database; two workers match the two cores of CI machines.
    maxWorkers: 2,
  },
});
