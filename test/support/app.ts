// A real server for tests: a fresh migrated database, the real Yoga + graphql-ws app on a free loopback port,
// and an organization with an admin token. Operations are typed documents from test/gql (codegen).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { print, type ExecutionResult } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import { createPrisma, type Db } from "../../src/db/client.ts";
import { migrateDeploy } from "../../src/db/migrate.ts";
import type { MeterLimits } from "../../src/domain/meters.ts";
import { createOrganization } from "../../src/domain/organizations.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { createAppPubSub, type PubSub } from "../../src/pubsub.ts";
import { createApp, type App } from "../../src/server.ts";
import type { Limits } from "../../src/limits.ts";
import type { WebhookSettings } from "../../src/webhooks/delivery.ts";

/** One webhook key for every test app, so another node (or a restarted one) reads the secrets the first stored. */
export const TEST_WEBHOOK_KEY = Buffer.alloc(32, 7);

export interface GraphQLErrorJson {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; field?: string };
}
export type Result<T> = { data?: T | null; errors?: GraphQLErrorJson[] };

export interface TestApp {
  db: Db;
  app: App;
  pubsub: PubSub;
  port: number;
  url: string;
  /** The database this app uses (a second node can open it too). */
  databaseUrl: string;
  organizationId: string;
  adminToken: string;
  /** POST a typed operation over HTTP; token defaults to the admin token, null sends none. */
  exec<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, token?: string | null): Promise<Result<R>>;
  /** Like exec, but fails the test on any GraphQL error and returns data. */
  ok<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, token?: string | null): Promise<R>;
  /** Like exec, but expects exactly one GraphQL error and returns it. */
  error<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, token?: string | null): Promise<GraphQLErrorJson>;
  /** Freeze the service clock at `at` (real time until first called). */
  setNow(at: Date): void;
  /** Move the frozen clock forward. */
  advance(ms: number): Date;
  /** SQL statements the server's client sent while `work` ran. */
  queriesDuring(work: () => Promise<unknown>): Promise<string[]>;
  /** A second, unrelated tenant with its own admin token. */
  newOrganization(name?: string): Promise<{ id: string; token: string }>;
  wsClient(token: string | null, onClose?: (event: { code: number; reason: string }) => void): Client;
  /** Resolves once the server has opened `count` pub/sub subscriptions in total (no sleeping on guesses). */
  subscribed(count: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A fresh database for one test file: a SQLite file in a temp folder, or, with TEST_DATABASE_URL pointing at
 * PostgreSQL, a new database beside the one named there (dropped by the returned cleanup).
 */
export async function freshDatabase(dir: string): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) return { url: `file:${path.join(dir, "test.db")}`, drop: async () => {} };
  const { default: pg } = await import("pg");
  const name = `credits_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

/** Options for the app under test: `meterLimits` replaces the per-organization defaults, `limits` overrides the
 * transport limits' defaults (src/limits.ts). */
export interface TestAppOptions {
  meterLimits?: MeterLimits;
  limits?: Partial<Limits>;
  /** The server's logger (default: silent, or TEST_LOG_LEVEL). */
  log?: Logger;
  /** Webhook settings over the defaults (the key is TEST_WEBHOOK_KEY). */
  webhooks?: Partial<WebhookSettings>;
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const dir = mkdtempSync(path.join(tmpdir(), "credits-test-"));
  const database = await freshDatabase(dir);
  const dbUrl = database.url;
  await migrateDeploy(dbUrl);
  const queries: string[] = [];
  const db = await createPrisma(dbUrl, { onQuery: (sql) => queries.push(sql) });
  const { pubsub, redis, close: closePubSub } = createAppPubSub(process.env.REDIS_URL);
  // Count subscriptions the server opens for clients, so tests publish only after a subscriber is listening
  // (not the server's own listener for revocations).
  let opened = 0;
  const subscribe = pubsub.subscribe.bind(pubsub);
  pubsub.subscribe = ((...args: Parameters<typeof subscribe>) => {
    if (args[0] === "customer:changed" || args[0] === "balance:alert") opened++;
    return subscribe(...args);
  }) as typeof pubsub.subscribe;
  let frozen: Date | null = null;
  const clock = () => (frozen ? new Date(frozen.getTime()) : new Date());
  const app = createApp({ db, pubsub, redis, clock, log: options.log ?? createLogger(process.env.TEST_LOG_LEVEL ?? "silent"), meterLimits: options.meterLimits, limits: options.limits, webhooks: { key: TEST_WEBHOOK_KEY, ...options.webhooks } });
  const port = await app.listen(0, "127.0.0.1");
  const url = `http://127.0.0.1:${port}/graphql`;
  const org = await createOrganization(db, "Test organization");
  const clients: Client[] = [];

  async function exec<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, token: string | null = org.token): Promise<Result<R>> {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query: print(doc), variables }),
    });
    return (await res.json()) as Result<R>;
  }

  return {
    db,
    app,
    pubsub,
    port,
    url,
    databaseUrl: dbUrl,
    organizationId: org.organization.id,
    adminToken: org.token,
    exec,
    async ok(doc, variables, token) {
      const result = await exec(doc, variables, token);
      if (result.errors?.length) throw new Error(`unexpected GraphQL errors: ${JSON.stringify(result.errors)}`);
      return result.data!;
    },
    async error(doc, variables, token) {
      const result = await exec(doc, variables, token);
      if (result.errors?.length !== 1) throw new Error(`expected one GraphQL error, got ${JSON.stringify(result)}`);
      return result.errors[0];
    },
    setNow(at) {
      frozen = new Date(at.getTime());
      app.clockMoved();
    },
    advance(ms) {
      frozen = new Date((frozen ?? new Date()).getTime() + ms);
      app.clockMoved();
      return new Date(frozen.getTime());
    },
    async queriesDuring(work) {
      const start = queries.length;
      await work();
      return queries.slice(start);
    },
    async newOrganization(name = "Other organization") {
      const other = await createOrganization(db, name);
      return { id: other.organization.id, token: other.token };
    },
    wsClient(token, onClose) {
      const client = createClient({
        url: url.replace("http", "ws"),
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
        connectionParams: token ? { authorization: `Bearer ${token}` } : {},
        on: onClose ? { closed: (e) => onClose(e as { code: number; reason: string }) } : undefined,
        onNonLazyError: () => {},
      });
      clients.push(client);
      return client;
    },
    async subscribed(count) {
      // A readiness wait, not a timing check: 600 subscriptions on a loaded CI machine take more than seconds.
      const deadline = Date.now() + 30_000;
      while (opened < count) {
        if (Date.now() > deadline) throw new Error(`only ${opened} of ${count} subscriptions opened`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setImmediate(r)); // let the iterator attach its listener
    },
    async close() {
      await Promise.all(clients.map((c) => c.dispose()));
      if (app.httpServer.listening) await app.close(); // a test may have closed the app itself
      await closePubSub();
      await db.$disconnect();
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A second server on the same database, as another node behind a load balancer would be: its own database
 * client, in-process pub/sub and clock. Operations go to it over HTTP with the organization's admin token.
 */
export async function anotherNode(t: TestApp, clock: () => Date) {
  const db = await createPrisma(t.databaseUrl);
  const { pubsub } = createAppPubSub();
  const app = createApp({ db, pubsub, clock, log: createLogger(process.env.TEST_LOG_LEVEL ?? "silent") });
  const port = await app.listen(0, "127.0.0.1");
  const url = `http://127.0.0.1:${port}/graphql`;
  return {
    async ok<R, V>(doc: TypedDocumentNode<R, V>, variables?: V): Promise<R> {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${t.adminToken}` },
        body: JSON.stringify({ query: print(doc), variables }),
      });
      const result = (await res.json()) as Result<R>;
      if (result.errors?.length) throw new Error(`unexpected GraphQL errors: ${JSON.stringify(result.errors)}`);
      return result.data!;
    },
    async close() {
      await app.close();
      await db.$disconnect();
    },
  };
}

/** Messages of one graphql-ws subscription, awaited one at a time. */
export function subscription<R, V>(client: Client, doc: TypedDocumentNode<R, V>, variables?: V) {
  const queue: ExecutionResult<R>[] = [];
  const waiters: ((r: ExecutionResult<R>) => void)[] = [];
  let failure: unknown;
  const unsubscribe = client.subscribe<R>(
    { query: print(doc), variables: variables as Record<string, unknown> | undefined },
    {
      next: (value) => {
        const waiter = waiters.shift();
        if (waiter) waiter(value as ExecutionResult<R>);
        else queue.push(value as ExecutionResult<R>);
      },
      error: (err) => {
        failure = err;
        for (const w of waiters.splice(0)) w({ errors: Array.isArray(err) ? err : [err as never] } as ExecutionResult<R>);
      },
      complete: () => {},
    },
  );
  return {
    /** The next message, or a rejection after `ms` without one. */
    next(ms = 5000): Promise<ExecutionResult<R>> {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      if (failure) return Promise.resolve({ errors: Array.isArray(failure) ? failure : [failure as never] } as ExecutionResult<R>);
      return new Promise((resolve, reject) => {
        const waiter = (r: ExecutionResult<R>) => {
          clearTimeout(timer);
          resolve(r);
        };
        // a waiter that timed out leaves the line, so the next message is not handed to nobody
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no subscription message within ${ms} ms`));
        }, ms);
        waiters.push(waiter);
      });
    },
    /** Messages received and not yet taken. */
    pending: () => queue.length,
    close: unsubscribe,
  };
}
