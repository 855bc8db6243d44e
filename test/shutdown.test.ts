// SIGTERM to the process `npm start` created, while clients stream ingest batches: the node stops accepting,
// answers what it has in flight, and exits 0 within SHUTDOWN_GRACE_MS; what it acknowledged is stored, and
// no batch is stored in part. A request that outlives SHUTDOWN_GRACE_MS is cut off and the exit code is 1.
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { afterAll, describe, expect, it } from "vitest";
import { createPrisma } from "../src/db/client.ts";
import { freshDatabase } from "./support/app.ts";
import { gql, startServer } from "./support/process.ts";

const ADMIN = "shutdown-admin-token-0123456789";
const GRACE_MS = 10_000;
const BATCH = 200;
const WORKERS = 4;
const dir = mkdtempSync(path.join(tmpdir(), "credits-shutdown-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const INGEST = `mutation($events: [EventInput!]!) { ingestEvents(events: $events) { __typename ... on IngestSummary { inserted duplicates } ... on Error { code message } } }`;

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("npm start and SIGTERM", () => {
  it("during a stream of ingest batches: every acknowledged batch stored, none in part, port closed, exit 0 within the grace period", async () => {
    const database = await freshDatabase(dir);
    const server = startServer(
      { DATABASE_URL: database.url, ADMIN_TOKEN: ADMIN, SHUTDOWN_GRACE_MS: String(GRACE_MS), SCHEDULER_INTERVAL_MS: "60000" },
      "npm",
    );
    let nodePid = 0;
    try {
      const url = await server.ready;
      const port = Number(new URL(url).port);
      nodePid = Number(/"pid":(\d+)/.exec(server.output())?.[1]);
      expect(nodePid).toBeGreaterThan(0);

      const customerId = (await gql(url, ADMIN, `mutation { createCustomer(input: { email: "stop@example.com" }) { ... on Customer { id } } }`)).data.createCustomer.id;
      const meter = await gql(
        url,
        ADMIN,
        `mutation { createMeter(input: { name: "calls", filter: { conjunction: AND, clauses: [{ property: "name", operator: EQ, value: "call" }] }, aggregation: { func: COUNT } }) { ... on Meter { id } } }`,
      );
      const meterId = meter.data.createMeter.id;

      // A live subscription: its socket is closed with 1001 (going away), so clients reconnect elsewhere.
      let closedWith!: (code: number) => void;
      const closed = new Promise<number>((resolve) => (closedWith = resolve));
      let connected!: () => void;
      const isConnected = new Promise<void>((resolve) => (connected = resolve));
      const ws = createClient({
        url: url.replace("http", "ws"),
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
        connectionParams: { authorization: `Bearer ${ADMIN}` },
        on: { connected: () => connected(), closed: (e) => closedWith((e as { code: number }).code) },
        onNonLazyError: () => {},
      });
      ws.subscribe({ query: `subscription($c: ID) { customerStateChanged(customerId: $c) { customer { id } } }`, variables: { c: customerId } }, { next() {}, error() {}, complete() {} });
      await isConnected;

      // Workers send batches back to back until the server stops answering.
      const acknowledged = new Set<number>();
      const sent = new Set<number>();
      const inFlight = new Set<number>();
      let nextBatch = 0;
      let signalledAt = 0;
      let answeredAfterSignal = 0;
      const worker = async () => {
        for (;;) {
          const batch = nextBatch++;
          const events = Array.from({ length: BATCH }, (_, i) => ({ name: "call", customerId, externalId: `b${batch}-e${i}` }));
          sent.add(batch);
          inFlight.add(batch);
          try {
            const result = await gql(url, ADMIN, INGEST, { events });
            expect(result.data?.ingestEvents).toEqual({ __typename: "IngestSummary", inserted: BATCH, duplicates: 0 });
            acknowledged.add(batch);
            if (signalledAt) answeredAfterSignal++;
          } catch (err) {
            if (err instanceof Error && err.name === "AssertionError") throw err;
            return; // refused or cut off: not acknowledged
          } finally {
            inFlight.delete(batch);
          }
        }
      };
      const workers = Array.from({ length: WORKERS }, () => worker());

      // Signal once the stream runs and requests are in flight.
      while (acknowledged.size < 2 * WORKERS || inFlight.size < 2) await new Promise((r) => setTimeout(r, 5));
      signalledAt = Date.now();
      server.child.kill("SIGTERM"); // the npm process, not node
      const exit = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r("still running"), GRACE_MS + 5000))]);
      const stoppedAfterMs = Date.now() - signalledAt;
      await Promise.all(workers);

      expect(exit).toEqual({ code: 0, signal: null });
      expect(stoppedAfterMs).toBeLessThan(GRACE_MS);
      expect(alive(nodePid)).toBe(false);
      expect(await portAccepts(port)).toBe(false);
      expect(server.output()).toContain('"msg":"stopped"');
      expect(await closed).toBe(1001);
      await ws.dispose();
      // requests in flight when the signal came were answered, not cut off
      expect(answeredAfterSignal).toBeGreaterThan(0);

      const db = await createPrisma(database.url);
      try {
        const rows = await db.event.findMany({ select: { externalId: true } });
        const perBatch = new Map<number, number>();
        for (const r of rows) {
          const batch = Number(/^b(\d+)-/.exec(r.externalId!)![1]);
          perBatch.set(batch, (perBatch.get(batch) ?? 0) + 1);
        }
        for (const batch of acknowledged) expect(perBatch.get(batch), `acknowledged batch ${batch}`).toBe(BATCH);
        for (const [batch, count] of perBatch) expect(count, `batch ${batch} stored in part`).toBe(BATCH);
        const balance = await db.customerMeter.findUniqueOrThrow({ where: { customerId_meterId: { customerId, meterId } } });
        expect(balance.consumedUnits).toBe(BigInt(rows.length) * 1_000_000n);
        console.log(
          `shutdown: ${sent.size} batches sent, ${acknowledged.size} acknowledged (${answeredAfterSignal} answered after SIGTERM), ${perBatch.size} stored; npm exited ${stoppedAfterMs} ms after SIGTERM`,
        );
      } finally {
        await db.$disconnect();
      }
    } finally {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      if (nodePid && alive(nodePid)) process.kill(nodePid, "SIGKILL");
      await database.drop();
    }
  }, 60_000);

  it("with ingest mutations running over WebSockets: each is answered before its socket closes, or refused with nothing stored", async () => {
    const database = await freshDatabase(mkdtempSync(path.join(dir, "ws-")));
    const server = startServer({ DATABASE_URL: database.url, ADMIN_TOKEN: ADMIN, SCHEDULER_INTERVAL_MS: "600000", SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    try {
      const url = await server.ready;
      const setup = await gql(url, ADMIN, `mutation { createMeter(input: { name: "calls", filter: { conjunction: AND, clauses: [{ property: "name", operator: EQ, value: "call" }] }, aggregation: { func: COUNT } }) { ... on Meter { id } } createCustomer(input: { externalId: "ws" }) { ... on Customer { id } } }`, {});
      const customerId = (setup.data as { createCustomer: { id: string } }).createCustomer.id;
      const ws = createClient({ url: url.replace("http", "ws"), webSocketImpl: WebSocket, lazy: false, retryAttempts: 0, connectionParams: { authorization: `Bearer ${ADMIN}` }, onNonLazyError: () => {} });
      const outcome = new Map<number, "answered" | "failed">();
      let next = 0;
      let signalled = false;
      const ingest = (batch: number) =>
        new Promise<"answered" | "failed">((resolve) => {
          let answered = false;
          const events = Array.from({ length: 100 }, (_, i) => ({ name: "call", customerId, externalId: `b${batch}-e${i}` }));
          ws.subscribe(
            { query: INGEST, variables: { events } },
            { next: (r) => void (answered = (r.data as { ingestEvents?: { __typename: string } } | null)?.ingestEvents?.__typename === "IngestSummary"), error: () => resolve("failed"), complete: () => resolve(answered ? "answered" : "failed") },
          );
        });
      const worker = async () => {
        for (let batch = next++; !signalled || outcome.size < next; batch = next++) {
          const result = await ingest(batch);
          outcome.set(batch, result);
          if (result === "failed" || signalled) return;
        }
      };
      const workers = Array.from({ length: WORKERS }, worker);
      while (outcome.size < 3 * WORKERS) await new Promise((r) => setTimeout(r, 5));
      signalled = true;
      server.child.kill("SIGTERM");
      await Promise.all(workers);
      expect(await server.exited).toEqual({ code: 0, signal: null });
      await ws.dispose();
      const db = await createPrisma(database.url);
      try {
        const stored = new Map<number, number>();
        for (const r of await db.event.findMany({ where: { customerId }, select: { externalId: true } })) {
          const batch = Number(/^b(\d+)-/.exec(r.externalId!)![1]);
          stored.set(batch, (stored.get(batch) ?? 0) + 1);
        }
        const unansweredButStored = [...outcome].filter(([b, o]) => o === "failed" && stored.has(b)).map(([b]) => b);
        const answeredNotStored = [...outcome].filter(([b, o]) => o === "answered" && stored.get(b) !== 100).map(([b]) => b);
        expect({ unansweredButStored, answeredNotStored }).toEqual({ unansweredButStored: [], answeredNotStored: [] });
        for (const [batch, count] of stored) expect(count, `batch ${batch} stored in part`).toBe(100);
      } finally {
        await db.$disconnect();
      }
    } finally {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      await database.drop();
    }
  }, 60_000);

  it("a request still running when the grace period ends: its connection is closed and the process exits 1", async () => {
    const database = await freshDatabase(dir);
    const server = startServer({ DATABASE_URL: database.url, ADMIN_TOKEN: ADMIN, SHUTDOWN_GRACE_MS: "1000", SCHEDULER_INTERVAL_MS: "60000" });
    try {
      const url = new URL(await server.ready);
      // A request whose body never comes. "100 Continue" proves the server has it in hand.
      const socket = connect(Number(url.port), "127.0.0.1");
      let received = "";
      const continued = new Promise<void>((resolve) =>
        socket.on("data", (chunk) => {
          received += chunk;
          if (received.includes("100 Continue")) resolve();
        }),
      );
      const socketClosed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
      socket.on("error", () => {});
      socket.write(`POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`);
      await continued;

      server.child.kill("SIGTERM");
      expect(await server.exited).toEqual({ code: 1, signal: null });
      await socketClosed;
      expect(server.output()).toContain("requests still running when the grace period ran out");
    } finally {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      await database.drop();
    }
  }, 60_000);
});
