// The real entry points as a user runs them: `npm start` (src/main.ts) and `npm run cli`.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { loadConfig } from "../src/config.ts";
import { DEFAULT_DATABASE_URL, pgConfig } from "../src/db/url.ts";
import { summarize } from "../scripts/migrate-status.ts";
import { authenticate } from "../src/domain/auth.ts";
import { gql, startServer, tsx } from "./support/process.ts";

const dir = mkdtempSync(path.join(tmpdir(), "credits-start-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
describe("npm start", () => {
  it("migrates a fresh database, honours ADMIN_TOKEN, serves GraphQL and /healthz, and stops cleanly on SIGTERM", async () => {
    const adminToken = "test-admin-token-0123456789";
    const server = startServer({ DATABASE_URL: `file:${path.join(dir, "a", "credits.db")}`, ADMIN_TOKEN: adminToken });
    const url = await server.ready;
    expect(server.output()).toContain("migrations applied");

    const health = await fetch(url.replace("/graphql", "/healthz"));
    expect(health.status).toBe(200);

    const created = await gql(url, adminToken, `mutation { createCustomer(input: {email: "a@example.com", externalId: "a1"}) { ... on Customer { id } } }`);
    const read = await gql(url, adminToken, `{ customer(externalId: "a1") { id email } }`);
    expect(read.data.customer).toEqual({ id: created.data.createCustomer.id, email: "a@example.com" });
    expect((await gql(url, null, `{ customer(externalId: "a1") { id } }`)).errors?.[0].extensions.code).toBe("UNAUTHENTICATED");

    // GraphiQL is served to browsers at the same path.
    const page = await fetch(url, { headers: { accept: "text/html" } });
    expect(await page.text()).toContain("GraphiQL");

    expect(await server.stop()).toBe(0);
    expect(server.output()).toContain('"msg":"stopped"');
  });

  it("without ADMIN_TOKEN prints an admin token on first start only", async () => {
    const env = { DATABASE_URL: `file:${path.join(dir, "b", "credits.db")}`, ADMIN_TOKEN: "" };
    const first = startServer(env);
    const url = await first.ready;
    const token = /crl_admin_[A-Za-z0-9_-]+/.exec(first.output())?.[0];
    expect(token).toBeDefined();
    expect((await gql(url, token!, `{ customers { edges { cursor } } }`)).data).toEqual({ customers: { edges: [] } });
    expect(await first.stop()).toBe(0);

    const second = startServer(env);
    const secondUrl = await second.ready;
    expect(second.output()).toContain("database schema up to date");
    expect(second.output()).not.toMatch(/crl_admin_/);
    await gql(secondUrl, token!, `mutation { createCustomer(input: { externalId: "kept" }) { ... on Customer { id } } }`);
    await second.stop();

    // ADMIN_TOKEN set later is an admin token of the same organization, not of a new, empty one
    const third = startServer({ ...env, ADMIN_TOKEN: "operator-chosen-token-0123456789" });
    const thirdUrl = await third.ready;
    expect(third.output()).toContain("ADMIN_TOKEN added as an admin token of the organization in this database");
    expect((await gql(thirdUrl, "operator-chosen-token-0123456789", `{ customers { totalCount } }`)).data).toEqual({ customers: { totalCount: 1 } });
    await third.stop();
  });

  it("a start that fails says why in one line and exits 1; nothing is created at a mistyped path", async () => {
    const bad = startServer({ DATABASE_URL: `file:${path.join(dir, "d", "credits.db")}`, PORT: "abc" });
    await expect(bad.ready).rejects.toThrow();
    expect(await bad.exited).toMatchObject({ code: 1 });
    expect(bad.output().trim().split("\n").filter((l) => !l.startsWith(">") && l.trim())).toEqual([expect.stringContaining('credits-ledger could not start: PORT must be a port number, got "abc"')]);
    const migrate = promisify(execFile)(tsx, ["scripts/migrate.ts", "status"], { env: { ...process.env, ENV_FILE: "", DATABASE_URL: `file:${path.join(dir, "typo", "credits.db")}` } });
    await expect(migrate).rejects.toMatchObject({ code: 1, stdout: expect.stringContaining("No database at") });
    const cli = promisify(execFile)(tsx, ["src/cli.ts", "token", "list", "x"], { env: { ...process.env, ENV_FILE: "", DATABASE_URL: `file:${path.join(dir, "typo", "credits.db")}` } });
    await expect(cli).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("no database at") });
    expect(existsSync(path.join(dir, "typo"))).toBe(false);
    // an unreachable database: one line, no stack
    const unreachable = startServer({ DATABASE_URL: "postgresql://postgres@127.0.0.1:1/none", WEBHOOK_SECRET_KEY_FILE: path.join(dir, "unreachable.key") });
    await expect(unreachable.ready).rejects.toThrow();
    expect(await unreachable.exited).toMatchObject({ code: 1 });
    const said = unreachable.output().trim().split("\n").filter((l) => l.trim() && !l.startsWith("{"));
    expect(said).toEqual([expect.stringMatching(/^credits-ledger could not start: cannot connect to the database: connect ECONNREFUSED 127\.0\.0\.1:1/)]);
  });

  it("a DATABASE_URL naming a file that is not a SQLite database: the start says what the driver said, in one line", async () => {
    const file = path.join(mkdtempSync(path.join(dir, "notadb-")), "credits.db");
    writeFileSync(file, "this is not a database\n".repeat(200));
    const start = startServer({ DATABASE_URL: `file:${file}`, WEBHOOK_SECRET_KEY_FILE: path.join(dir, "notadb.key") });
    await expect(start.ready).rejects.toThrow();
    expect(await start.exited).toMatchObject({ code: 1 });
    const said = start.output().trim().split("\n").filter((l) => l.trim() && !l.startsWith("{"));
    expect(said).toEqual([expect.stringMatching(/^credits-ledger could not start: applying migrations failed: .*file is not a database/)]);
  });

  it("a PostgreSQL address that takes the connection and never answers fails the start after the 30 s connect timeout, in one line", async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const start = startServer({ DATABASE_URL: `postgresql://postgres:pw@127.0.0.1:${port}/x`, WEBHOOK_SECRET_KEY_FILE: path.join(dir, "silent.key") }, "node", 50_000);
      await expect(start.ready).rejects.toThrow();
      expect(await start.exited).toMatchObject({ code: 1 });
      const said = start.output().trim().split("\n").filter((l) => l.trim() && !l.startsWith("{"));
      expect(said).toEqual([expect.stringMatching(/^credits-ledger could not start: cannot connect to the database: .*timeout/i)]);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  }, 60_000);

  it("the migrations read DATABASE_URL as the server's driver does: TLS, a Unix socket, an IPv6 literal, a password parameter", () => {
    expect(pgConfig("postgresql://app:pw@db.example.com:6543/ledger?sslmode=require")).toMatchObject({ host: "db.example.com", port: 6543, user: "app", password: "pw", database: "ledger", ssl: expect.anything() });
    expect(pgConfig("postgresql://postgres@/ledger?host=/var/run/postgresql&port=5433")).toMatchObject({ host: "/var/run/postgresql", port: 5433, database: "ledger" });
    expect(pgConfig("postgresql://postgres@[::1]:5432/ledger")).toMatchObject({ host: "::1", port: 5432 });
    expect(pgConfig("postgresql://postgres@db/ledger?password=s3cret")).toMatchObject({ password: "s3cret" });
    expect(pgConfig("postgresql://postgres@db/ledger")).toMatchObject({ connectionTimeoutMillis: 30_000 });
  });

  /** loadConfig's refusal of `env` (null: accepted) */
  const refused = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  };

  it("refuses a delay Node's timers cannot keep (they would fire after 1 ms) and a retention past the dates there are, naming the variable", () => {
    for (const name of ["SCHEDULER_INTERVAL_MS", "WEBHOOK_POLL_MS", "WEBHOOK_TIMEOUT_MS", "SHUTDOWN_GRACE_MS", "HTTP_REQUEST_TIMEOUT_MS"]) {
      expect(refused({ [name]: "2592000000" }), name).toContain(name);
      expect(refused({ [name]: "2147483647" }), name).toBeNull();
    }
    expect(refused({ WEBHOOK_RETENTION_DAYS: "999999999" })).toContain("WEBHOOK_RETENTION_DAYS");
    expect(refused({ WEBHOOK_RETRY_WINDOW_HOURS: "999999999" })).toContain("WEBHOOK_RETRY_WINDOW_HOURS");
    expect(loadConfig({ WEBHOOK_RETENTION_DAYS: "36500" }).webhooks.retentionMs).toBe(36_500 * 86_400_000);
  });

  it("refuses a REDIS_URL or PostgreSQL DATABASE_URL it cannot use, naming the variable, before anything is written", () => {
    expect(refused({ REDIS_URL: "http://127.0.0.1:6379" })).toMatch(/^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(refused({ REDIS_URL: "redis://127.0.0.1:notaport" })).toMatch(/^REDIS_URL must be/);
    // the value is never echoed: a password in it stays out of the logs, whatever it contains
    expect(refused({ REDIS_URL: "redis://:se/cr#et@cache.example.com:notaport" })).not.toMatch(/se\/cr|et@/);
    expect(refused({ REDIS_URL: "http://default:se-cret@cache.example.com:6379" })).not.toContain("se-cret");
    // what ioredis takes besides URLs: a socket path, host:port
    for (const ok of ["rediss://:s3cret@cache.example.com:6380", "redis://:pw@127.0.0.1:6379/2", "/var/run/redis/redis.sock", "cache.internal:6379"]) expect(refused({ REDIS_URL: ok }), ok).toBeNull();
    expect(refused({ DATABASE_URL: "postgresql://postgres@db:notaport/x" })).toMatch(/^DATABASE_URL is not a PostgreSQL URL node-postgres can read/);
    expect(refused({ DATABASE_URL: "postgresql://postgres:50%@db/x" })).toBeNull(); // node-postgres reads a stray % as itself
    expect(refused({ DATABASE_URL: "postgresql://postgres@db/x?sslmode=require" })).toBeNull();
  });

  it("a blank value means the default, for every variable", () => {
    const blank = loadConfig({ SQLITE_SYNCHRONOUS: " ", DATABASE_URL: "  ", REDIS_URL: " ", PORT: " " });
    expect(blank).toMatchObject({ sqliteSynchronous: "FULL", databaseUrl: DEFAULT_DATABASE_URL, redisUrl: undefined, port: 4000 });
  });

  it("through npm: builds dist/ and serves from it with node alone, migrations applied by the built migration process", async () => {
    const adminToken = "test-admin-token-0123456789";
    const server = startServer({ DATABASE_URL: `file:${path.join(dir, "d", "credits.db")}`, ADMIN_TOKEN: adminToken }, "npm");
    try {
      const url = await server.ready;
      expect(server.output()).toContain("migrations applied");
      const pid = Number(/"pid":(\d+)/.exec(server.output())?.[1]);
      const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      expect(command).toContain("dist/main.js");
      expect(command.join(" ")).not.toContain("tsx");
      expect((await gql(url, adminToken, `{ customers { edges { cursor } } }`)).data).toEqual({ customers: { edges: [] } });
    } finally {
      await server.stop();
    }
  });
});

describe("npm run cli -- org create", () => {
  it("prints a new organization's id and a working admin token", async () => {
    const databaseUrl = `file:${path.join(dir, "c", "credits.db")}`;
    const { stdout } = await promisify(execFile)(tsx, ["src/cli.ts", "org", "create", "Acme", "Inc"], { env: { ...process.env, ENV_FILE: "", DATABASE_URL: databaseUrl } });
    const id = /organization id: (\S+)/.exec(stdout)?.[1];
    const token = /admin token: +(\S+)/.exec(stdout)?.[1];
    expect(id).toBeDefined();
    const db = await createPrisma(databaseUrl);
    try {
      expect(await authenticate(db, token!)).toMatchObject({ kind: "admin", organizationId: id });
      expect((await db.organization.findUniqueOrThrow({ where: { id } })).name).toBe("Acme Inc");
    } finally {
      await db.$disconnect();
    }
  });

  it("explains its usage when called wrongly", async () => {
    const run = promisify(execFile)(tsx, ["src/cli.ts", "org"], { env: { ...process.env, ENV_FILE: "" } });
    await expect(run).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("usage: npm run cli -- org create <name>") });
  });

  it("an unreachable database is one error line and exit 1; a revocation Redis cannot announce is still stored, and said so", async () => {
    const cli = async (args: string[], env: Record<string, string>) =>
      promisify(execFile)(tsx, ["src/cli.ts", ...args], { env: { ...process.env, ENV_FILE: "", ...env } }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const unreachable = await cli(["org", "create", "Acme"], { DATABASE_URL: "postgresql://postgres:pw@127.0.0.1:1/x" });
    expect(unreachable).toMatchObject({ code: 1 });
    expect(unreachable.out.trim().split("\n")).toEqual([expect.stringMatching(/^error: cannot connect to the database: connect ECONNREFUSED/)]);

    const url = `file:${path.join(mkdtempSync(path.join(dir, "cli-")), "a.db")}`;
    const orgId = /organization id: (\S+)/.exec((await cli(["org", "create", "Acme"], { DATABASE_URL: url })).out)![1];
    const tokenId = (await cli(["token", "list", orgId], { DATABASE_URL: url })).out.trim().split("\n")[1].split("\t")[0];
    const nobody = net.createServer();
    await new Promise<void>((resolve) => nobody.listen(0, "127.0.0.1", resolve));
    const { port } = nobody.address() as net.AddressInfo;
    await new Promise((resolve) => nobody.close(resolve)); // a port nothing listens on
    const revoked = await cli(["token", "revoke", tokenId], { DATABASE_URL: url, REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(revoked).toMatchObject({ code: 0 });
    expect(revoked.out).toContain(`revoked ${tokenId}`);
    expect(revoked.out).toContain("warning: could not tell the running servers through Redis");
    expect(revoked.out).not.toMatch(/^\s+at /m);
    expect((await cli(["token", "list", orgId], { DATABASE_URL: url })).out.trim().split("\n")[1].split("\t")[6]).not.toBe("-");
  }, 60_000);

  it("the migration scripts take a blank DATABASE_URL as the default, and never print a database password", async () => {
    const script = async (args: string[], env: Record<string, string>) =>
      promisify(execFile)(tsx, ["scripts/migrate.ts", ...args], { env: { ...process.env, ENV_FILE: "", ...env } }).then(
        (r) => r.stdout + r.stderr,
        (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
      );
    const blank = await script(["status"], { DATABASE_URL: " " });
    expect(blank).not.toContain("DATABASE_URL must start with");
    expect(blank).toContain("data/credits.db");
    for (const url of ["postgresql://postgres:Pa@ss9Word@127.0.0.1:1/x", "postgresql://postgres@127.0.0.1:1/x?password=TopSecret123", "postgresql://postgres:Plain5ecret@127.0.0.1:1/x"]) {
      expect(summarize(url, "prisma/postgresql/migrations", [], null).database).toBe("postgresql://postgres:***@127.0.0.1:1/x");
    }
  });
});
