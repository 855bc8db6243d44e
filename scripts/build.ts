// Bundles the server (src/main.ts, and the process that applies migrations, src/db/migrate-deploy.ts) into
// plain JavaScript in dist/, which `npm start` runs with node alone: no TypeScript loader (tsx's thread and
// its esbuild service, about 33 MB) in the server's process. npm packages stay external (node_modules),
// lazily imported modules stay lazy (chunks of their own), and source maps let `--enable-source-maps` point
// stack traces at src/.
//
// `npm start` runs this first, every time (a few hundred ms), so a checkout that changed src/ never runs an
// old build; `npm install` runs it too. Files whose content is unchanged are not touched, changed ones are
// written to a temporary name and renamed (a server starting at the same moment reads either the old file or
// the new one, never half of one), and files a build no longer produces are removed.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const DIST_DIR = path.join(root, "dist");

/** Builds dist/ and returns the names of the files it changed. */
export async function buildServer(): Promise<string[]> {
  const result = await build({
    absWorkingDir: root,
    entryPoints: [
      { in: "src/main.ts", out: "main" },
      { in: "src/db/migrate-deploy.ts", out: "migrate-deploy" },
    ],
    outdir: DIST_DIR,
    bundle: true,
    splitting: true, // `await import(…)` of the project's own modules stays lazy (PostgreSQL's client, the portal build)
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    sourcesContent: false, // stack traces need only the positions; src/ is beside dist/
    chunkNames: "chunk-[hash]",
    write: false,
    logLevel: "warning",
  });
  mkdirSync(DIST_DIR, { recursive: true });
  const changed: string[] = [];
  const produced = new Set<string>();
  for (const file of result.outputFiles) {
    const name = path.basename(file.path);
    produced.add(name);
    if (sameContent(file.path, file.contents)) continue;
    const temporary = `${file.path}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(temporary, file.contents);
    renameSync(temporary, file.path);
    changed.push(name);
  }
  for (const name of readdirSync(DIST_DIR)) if (!produced.has(name) && !name.endsWith(".tmp")) rmSync(path.join(DIST_DIR, name), { force: true });
  return changed;
}

function sameContent(file: string, contents: Uint8Array): boolean {
  try {
    return Buffer.from(contents).equals(readFileSync(file));
  } catch {
    return false;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const changed = await buildServer();
  if (changed.length && process.argv.includes("--verbose")) console.log(`dist/: ${changed.join(", ")} written`);
}
