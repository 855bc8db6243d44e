// `npm run test:postgres` (scripts/test-postgres.sh, pg-start.sh, pg-stop.sh, redis-*.sh): throw-away servers in
// a fresh temporary folder on free ports, and only what the run created is deleted. Needs Debian's postgresql
// and redis-server; runs where no TEST_DATABASE_URL is set (the scripts are the same whichever engine the
// surrounding suite uses, and the PostgreSQL pass would run them a second time).
import { execFile, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const hasServers = spawnSync("bash", ["-c", "ls /usr/lib/postgresql/*/bin/initdb && command -v redis-server"]).status === 0;
const dir = mkdtempSync(path.join(tmpdir(), "credits-scripts-"));
chmodSync(dir, 0o755); // run as root, PostgreSQL runs as the postgres user, which must reach the data folder
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The environment without any of the overrides, as a developer who set none has it. */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ["TEST_DATABASE_URL", "REDIS_URL", "PGDATA", "PGPORT", "REDIS_PORT", "FORCE_COLOR"]) delete env[name];
  return { ...env, ...extra };
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer().once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe.skipIf(!hasServers || !!process.env.TEST_DATABASE_URL)("npm run test:postgres", () => {
  it("runs on a fresh temporary folder and free ports, and leaves nothing behind", async () => {
    const temp = path.join(dir, "tmp");
    rmSync(temp, { recursive: true, force: true });
    mkdirSync(temp, { mode: 0o755 });
    const { stdout } = await promisify(execFile)("bash", ["scripts/test-postgres.sh", "test/graphiql.test.ts"], {
      env: plainEnv({ TMPDIR: temp, NO_COLOR: "1" }),
      maxBuffer: 16 * 1024 * 1024,
    });
    const folder = /PostgreSQL in (\S+)/.exec(stdout)?.[1];
    const [, pgPort, redisPort] = /database postgresql:\/\/postgres@127\.0\.0\.1:(\d+)\/credits_test, pub\/sub redis:\/\/127\.0\.0\.1:(\d+)/.exec(stdout) ?? [];
    expect(folder?.startsWith(`${temp}/credits-test-pg.`)).toBe(true); // mktemp's folder under TMPDIR
    expect(stdout).toMatch(/Tests +3 passed/); // the suite ran on them
    // Ports the kernel handed out, not the fixed ones CI and the bench use.
    expect([pgPort, redisPort].every((p) => Number(p) > 0)).toBe(true);
    expect(pgPort).not.toBe("54329");
    expect(redisPort).not.toBe("6390");
    // Everything it made is gone, the servers too.
    expect(readdirSync(temp).filter((name) => name.startsWith("credits-test-pg."))).toEqual([]); // (jiti caches there too)
    expect(existsSync(`/tmp/credits-redis-${redisPort}.pid`)).toBe(false);
    expect(existsSync(`/tmp/credits-redis-${redisPort}.log`)).toBe(false);
    expect(await portIsFree(Number(pgPort))).toBe(true);
    expect(await portIsFree(Number(redisPort))).toBe(true);
  });

  it("refuses a PGDATA it did not make and leaves it as it was", async () => {
    const foreign = path.join(dir, "someone-elses-data");
    mkdirSync(foreign);
    writeFileSync(path.join(foreign, "keep.txt"), "precious");
    const start = spawnSync("bash", ["scripts/pg-start.sh", "credits_test"], { env: plainEnv({ PGDATA: foreign, PGPORT: "1" }), encoding: "utf8" });
    expect(start.status).toBe(1);
    expect(start.stderr).toContain("is not a throw-away cluster of this script; it is left alone");
    const stop = spawnSync("bash", ["scripts/pg-stop.sh"], { env: plainEnv({ PGDATA: foreign }), encoding: "utf8" });
    expect(stop.status).toBe(0);
    expect(readdirSync(foreign)).toEqual(["keep.txt"]);
    expect(readFileSync(path.join(foreign, "keep.txt"), "utf8")).toBe("precious");
  });
});
