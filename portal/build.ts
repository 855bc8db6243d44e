// Bundles the customer portal and the <credits-balance> widget (portal/src, TypeScript + Lit + graphql-ws) with
// esbuild into two self-contained classic scripts. `npm install` writes them to portal/dist/ (postinstall,
// `npm run build:portal`); the server serves those files, or, when they are missing or older than a source
// file (a checkout changed portal/src since), builds the same bundles in memory at its first portal request.
// Nothing is fetched at run time, so the pages work without internet.
import { readdirSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { projectRoot } from "../src/project-root.ts";

// From the project's folder: this module also runs bundled into the server's dist/ (the portal's first request).
export const PORTAL_DIR = path.join(projectRoot, "portal");
export const DIST_DIR = path.join(PORTAL_DIR, "dist");

/** The bundles, by the file name each is written and served under. */
export const BUNDLES = { "portal.js": "src/portal.ts", "widget.js": "src/widget.ts" } as const;
export type BundleName = keyof typeof BUNDLES;

/** Builds every bundle; `write` puts them in portal/dist/, otherwise they are only returned. */
export async function buildBundles(write: boolean): Promise<Record<BundleName, Buffer>> {
  const names = Object.keys(BUNDLES) as BundleName[];
  const result = await build({
    absWorkingDir: PORTAL_DIR,
    entryPoints: names.map((name) => ({ in: BUNDLES[name], out: name.replace(/\.js$/, "") })),
    outdir: DIST_DIR,
    bundle: true,
    minify: true,
    format: "iife", // classic scripts: a merchant's page includes the widget with a plain <script src>
    target: ["es2021", "chrome100", "firefox100", "safari15"],
    legalComments: "eof", // Lit's and graphql-ws's license notices stay in the bundle
    write,
    logLevel: "silent",
  });
  if (write) return readDist();
  const byName = new Map(result.outputFiles!.map((file) => [path.basename(file.path), Buffer.from(file.contents)]));
  return Object.fromEntries(names.map((name) => [name, byName.get(name)!])) as Record<BundleName, Buffer>;
}

/** The bundles in portal/dist/. */
export async function readDist(): Promise<Record<BundleName, Buffer>> {
  const names = Object.keys(BUNDLES) as BundleName[];
  const entries = await Promise.all(names.map(async (name) => [name, await readFile(path.join(DIST_DIR, name))] as const));
  return Object.fromEntries(entries) as Record<BundleName, Buffer>;
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** True when portal/dist/ holds every bundle and none is older than a source file or this script. */
export function distIsFresh(): boolean {
  const sources = Math.max(newestSource(path.join(PORTAL_DIR, "src")), statSync(path.join(PORTAL_DIR, "build.ts")).mtimeMs);
  try {
    return Object.keys(BUNDLES).every((name) => statSync(path.join(DIST_DIR, name)).mtimeMs >= sources);
  } catch {
    return false;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const bundles = await buildBundles(true);
  for (const [name, body] of Object.entries(bundles)) console.log(`portal/dist/${name}: ${body.length} bytes`);
}
