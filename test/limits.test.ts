// Bounded work per request and per client: operation limits (graphql-armor) on HTTP and WebSocket, body size,
// CSRF, CORS, malformed JSON, node:http timeouts, rate limits, WebSocket limits, and another client's latency
// while one client sends all of that at once (a production-mode server process with default limits).
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createPrisma } from "../src/db/client.ts";
import { createOrganization } from "../src/domain/organizations.ts";
import { DEFAULT_LIMITS } from "../src/limits.ts";
import { CreateCustomer, CreateMeter, GetCustomerMeter, GrantCredits, IngestEvents } from "./documents.ts";
import { customer, meter } from "./support/fixtures.ts";
import { freshDatabase, startTestApp, type TestApp } from "./support/app.ts";
import { startServer } from "./support/process.ts";

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
  const waiters: (() => void)[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.on("message", (data) => {
    messages.push(JSON.parse(String(data)));
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

  it("refuses a 10 MB body with 413 from its declared length, and a 10 MB chunked body too", async () => {
    const big = Buffer.alloc(10 * 1024 * 1024, " ");
    const declared = await rawPost(t.port, { "content-type": "application/json", "content-length": String(big.length) }, big);
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).errors[0].extensions.code).toBe("REQUEST_ENTITY_TOO_LARGE");
    const chunked = await rawPost(t.port, { "content-type": "application/json", "transfer-encoding": "chunked" }, big);
    expect(chunked.status).toBe(413);
    // The server still serves.
    expect((await post(t.url, t.adminToken, "{ __typename }")).body.data).toEqual({ __typename: "Query" });
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
    expect((await t.ok(IngestEvents, { events })).ingestEvents).toEqual({ __typename: "IngestSummary", inserted: 10_000, duplicates: 0 });
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

/** A POST over node:http with full control of the headers; resolves with the response, whatever happens to the upload. */
function rawPost(port: number, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = httpRequest({ host: "127.0.0.1", port, path: "/graphql", method: "POST", headers }, (res) => {
      responded = true;
      let text = "";
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      res.on("error", () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on("error", (err) => {
      if (!responded) reject(err);
    });
    // Send in 64 KiB pieces, stopping when the server has answered or gone.
    let offset = 0;
    const pump = () => {
      while (offset < body.length && !req.destroyed) {
        const piece = body.subarray(offset, offset + 65_536);
        offset += piece.length;
        if (!req.write(piece)) return void req.once("drain", pump);
      }
      if (!req.destroyed) req.end();
    };
    pump();
  });
}
