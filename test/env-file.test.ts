// `.env` at start (src/env-file.ts): ./.env in the working directory, or the file ENV_FILE names, or none when
// ENV_FILE is empty; variables already in the environment win. Each test runs `npm start`'s process in a
// temporary folder of its own, so no developer's .env is read or written.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gql, startServer } from "./support/process.ts";

const root = mkdtempSync(path.join(tmpdir(), "credits-env-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A folder under the test's temp folder with these files (name → lines). */
function folder(name: string, files: Record<string, string[]>): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, lines] of Object.entries(files)) writeFileSync(path.join(dir, file), `${lines.join("\n")}\n`);
  return dir;
}

const LIST = `{ customers { edges { cursor } } }`;

describe(".env at start", () => {
  it("reads ./.env from the working directory; variables set in the environment win", async () => {
    const token = "token-from-dotenv-0123456789";
    const database = path.join(root, "default", "from-dotenv.db");
    const dir = folder("default", { ".env": ["# a comment, as in .env.example", `DATABASE_URL=file:${database}`, `ADMIN_TOKEN="${token}"`, "PORT=1"] });
    const server = startServer({ ENV_FILE: undefined, PORT: "0" }, "node", 30_000, dir);
    try {
      const url = await server.ready; // on PORT=0 from the environment, not the file's 1
      expect(server.output()).toContain(`"envFile":"${path.join(dir, ".env")}"`);
      expect((await gql(url, token, LIST)).data).toEqual({ customers: { edges: [] } });
      expect(existsSync(database)).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it("reads the file ENV_FILE names instead of ./.env", async () => {
    const token = "token-from-named-file-0123456789";
    const dir = folder("named", {
      ".env": ["ADMIN_TOKEN=token-from-dot-env-not-read-0123"],
      "staging.env": [`DATABASE_URL=file:${path.join(root, "named", "staging.db")}`, `ADMIN_TOKEN=${token}`],
    });
    const server = startServer({ ENV_FILE: "staging.env" }, "node", 30_000, dir);
    try {
      const url = await server.ready;
      expect((await gql(url, token, LIST)).data).toEqual({ customers: { edges: [] } });
      expect((await gql(url, "token-from-dot-env-not-read-0123", LIST)).errors?.[0].extensions.code).toBe("UNAUTHENTICATED");
    } finally {
      await server.stop();
    }
  });

  it("reads no file when ENV_FILE is empty, and refuses to start when ENV_FILE names a missing file", async () => {
    const dir = folder("none", { ".env": ["PORT=1"] }); // would make the start fail if it were read
    const none = startServer({ ENV_FILE: "", DATABASE_URL: `file:${path.join(dir, "none.db")}` }, "node", 30_000, dir);
    try {
      await none.ready;
      expect(none.output()).not.toContain("envFile");
    } finally {
      await none.stop();
    }

    const missing = startServer({ ENV_FILE: "missing.env", DATABASE_URL: `file:${path.join(dir, "none.db")}` }, "node", 30_000, dir);
    await expect(missing.ready).rejects.toThrow(/ENV_FILE names .*missing\.env, which does not exist/);
    expect((await missing.exited).code).not.toBe(0);
  });
});
