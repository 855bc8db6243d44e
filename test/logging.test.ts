// Logs (src/log.ts): a client's mistakes are logged at info, the service's faults at error (once, with their
// stack); JSON lines when stdout is not a terminal, readable lines on one.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { createRequire } from "node:module";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { chooseLogFormat } from "../src/log.ts";
import { startTestApp } from "./support/app.ts";
import { startServer } from "./support/process.ts";

const dir = mkdtempSync(path.join(tmpdir(), "credits-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Line = { level: number; msg: string; code?: string; field?: string; path?: (string | number)[]; err?: { stack: string } };

/** A logger at debug level whose lines the test reads. */
function capturedLogger() {
  const lines: Line[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Line);
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

async function post(url: string, token: string, query: string, variables?: object) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
  return (await res.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
}

const ERROR = 50;
const INFO = 30;

describe("log levels", () => {
  it("logs client errors at info and a fault of the service at error, once", async () => {
    const { log, lines } = capturedLogger();
    const t = await startTestApp({ log });
    try {
      // A domain error a query raises (Yoga reports it as an error it masked), a document that does not
      // validate, a variable of the wrong type.
      expect((await post(t.url, t.adminToken, `{ events(meterId: "no-such-meter") { edges { cursor } } }`)).errors?.[0].extensions?.code).toBe("NOT_FOUND");
      expect((await post(t.url, t.adminToken, `{ noSuchField }`)).errors?.[0].extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");
      expect((await post(t.url, t.adminToken, `query ($n: Int) { customers(first: $n) { edges { cursor } } }`, { n: "ten" })).errors).toHaveLength(1);
      expect(lines.filter((l) => l.level >= ERROR)).toEqual([]);
      expect(lines).toContainEqual(expect.objectContaining({ level: INFO, code: "NOT_FOUND", field: "meterId", path: ["events"], msg: "client error: No such meter" }));

      // The service's fault: its table is gone.
      await t.db.$executeRawUnsafe(`ALTER TABLE "Meter" RENAME TO "MeterGone"`);
      lines.length = 0;
      expect((await post(t.url, t.adminToken, `{ meters { edges { node { id } } } }`)).errors?.[0].message).toBe("Unexpected error.");
      const errors = lines.filter((l) => l.level >= ERROR);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ msg: "unexpected error", path: ["meters"] });
      expect(errors[0].err?.stack).toMatch(/Meter/); // the database's own words, for the operator
    } finally {
      await t.db.$executeRawUnsafe(`ALTER TABLE "MeterGone" RENAME TO "Meter"`).catch(() => {});
      await t.close();
    }
  });
});

describe("log format", () => {
  it("is LOG_FORMAT when set, otherwise pretty on a terminal when pino-pretty is installed and JSON elsewhere", () => {
    expect(chooseLogFormat(undefined, true, true)).toBe("pretty");
    expect(chooseLogFormat(undefined, false, true)).toBe("json");
    expect(chooseLogFormat(undefined, true, false)).toBe("json");
    expect(chooseLogFormat("json", true, true)).toBe("json");
    expect(chooseLogFormat("pretty", false, true)).toBe("pretty");
    expect(() => chooseLogFormat("yaml", true, true)).toThrow(/LOG_FORMAT must be json or pretty/);
  });

  it("writes JSON lines from npm start when stdout is a pipe", async () => {
    const server = startServer({ DATABASE_URL: `file:${path.join(dir, "json.db")}`, ADMIN_TOKEN: "log-test-admin-token-0123" });
    try {
      await server.ready;
      const lines = server.output().trim().split("\n");
      expect(lines.length).toBeGreaterThan(2);
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    } finally {
      await server.stop();
    }
  });

  it.skipIf(!hasScript())("writes readable lines from npm start on a terminal", async () => {
    // util-linux `script` runs the server on a pseudo-terminal, as a developer's shell does.
    const loader = createRequire(import.meta.url).resolve("tsx");
    const command = `exec ${process.execPath} --import ${loader} ${path.resolve("src/main.ts")}`;
    const child = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], {
      env: { ...process.env, ENV_FILE: "", HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", LOG_FORMAT: "", DATABASE_URL: `file:${path.join(dir, "tty.db")}`, ADMIN_TOKEN: "log-test-admin-token-0123" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    let pid: number | undefined;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const serving = await new Promise<RegExpExecArray>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "serving GraphQL" line:\n${output}`)), 30_000);
        child.stdout.on("data", (chunk) => {
          output += chunk;
          const found = /^(.*\((\d+)\).*serving GraphQL.*)$/m.exec(output); // pino-pretty shows the pid in the header
          if (!found) return;
          clearTimeout(timer);
          resolve(found);
        });
      });
      pid = Number(serving[2]);
      expect(serving[1]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] .*INFO.* \(\d+\): .*serving GraphQL/); // time, level, pid, message
      expect(output).not.toMatch(/^\{"level"/m);
    } finally {
      if (pid) process.kill(pid, "SIGTERM");
      child.kill("SIGKILL");
      await exited;
    }
  });
});

function hasScript(): boolean {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
