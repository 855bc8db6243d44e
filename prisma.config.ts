// Prisma CLI configuration. Used by `prisma generate` only: migrations are created and applied by our own
// WebAssembly schema-engine driver (src/db/schema-engine.ts), so no native engine is ever downloaded.
import { defineConfig } from "prisma/config";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";

// `prisma generate` does not need the native schema engine, but the CLI insists on locating one. Where none
// was installed (machines without Prisma's CDN), point it at a stub so it never tries to download.
const enginesDir = path.resolve("node_modules/@prisma/engines");
const hasRealEngine = existsSync(enginesDir) && readdirSync(enginesDir).some((f) => f.startsWith("schema-engine"));
if (!process.env.PRISMA_SCHEMA_ENGINE_BINARY && !hasRealEngine) {
  process.env.PRISMA_SCHEMA_ENGINE_BINARY = path.resolve("scripts/schema-engine-stub.sh");
}

const provider = process.env.DB_PROVIDER === "postgresql" ? "postgresql" : "sqlite";
export default defineConfig({
  schema: `prisma/${provider}`,
  migrations: { path: `prisma/${provider}/migrations` },
  datasource: { url: process.env.DATABASE_URL ?? "file:./data/credits.db" },
});
