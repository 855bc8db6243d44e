// The service as separate processes: src/main.ts started the way a user (or a load balancer's node) starts it.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

export const tsx = path.resolve("node_modules/.bin/tsx");
/** tsx's loader and the entry point by absolute URL/path, so the process can run in another working directory. */
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const main = path.resolve("src/main.ts");

/**
 * Start src/main.ts as `npm start` does (node itself, TypeScript through tsx's loader), or through `npm start`
 * itself, and resolve with its URL once it serves; collects stdout. No .env is read (ENV_FILE empty) unless
 * `env` names one, so a developer's own .env never reaches a test; `cwd` runs it in another folder.
 */
export function startServer(env: Record<string, string | undefined>, via: "node" | "npm" = "node", readyWithinMs = 30_000, cwd?: string) {
  const [command, args] = via === "npm" ? ["npm", ["start", "--silent"]] : [process.execPath, ["--import", tsxLoader, main]];
  const child = spawn(command, args, { cwd, env: { ...process.env, HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", ENV_FILE: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), readyWithinMs);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const m = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${output}`)));
  });
  const stop = () =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode); // already gone
      child.once("exit", (code) => resolve(code));
      child.kill("SIGTERM");
    });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { ready, stop, exited, child, output: () => output };
}

export async function gql(url: string, token: string | null, query: string, variables?: object) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as { data?: any; errors?: any[] };
}
