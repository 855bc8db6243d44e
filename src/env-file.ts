// `.env` for `npm start`, `npm run cli` and the migration scripts, read when this module is imported: import it
// first, so the variables are set before any other module reads the environment.
//   ENV_FILE unset        ./.env in the working directory (the project root under npm), when it exists
//   ENV_FILE=path         that file (relative to the working directory); an error if it does not exist
//   ENV_FILE= (empty)     no file
// Variables already set in the environment win over the file's, even when set to an empty value
// (process.loadEnvFile, Node ≥ 20.12).
import { existsSync } from "node:fs";
import path from "node:path";

function loadEnvFile(): string | null {
  const named = process.env.ENV_FILE?.trim();
  if (named === "") return null;
  const file = path.resolve(named ?? ".env");
  if (!existsSync(file)) {
    if (named === undefined) return null;
    throw new Error(`ENV_FILE names ${file}, which does not exist (unset ENV_FILE to read ./.env when present, or set it empty to read none)`);
  }
  process.loadEnvFile(file);
  return file;
}

/** The file whose variables were loaded, or null. A file that cannot be read ends the process with one line. */
export const envFile = (() => {
  try {
    return loadEnvFile();
  } catch (err) {
    console.error(`credits-ledger could not start: ${(err as Error).message}`);
    process.exit(1);
  }
})();
