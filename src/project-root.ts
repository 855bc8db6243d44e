// The project's folder (the one holding package.json), found from this module's own location: src/ when the
// service runs from TypeScript (tests, `npm run dev`, the CLI), dist/ when it runs the build (`npm start`,
// scripts/build.ts), whose bundles no longer sit at their source's depth.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const projectRoot = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** True when this code runs from the build in dist/ (plain JavaScript), false when it runs from src/ through tsx. */
export const runsBuilt = !import.meta.url.endsWith(".ts");
