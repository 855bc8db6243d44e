// GraphQL subscriptions over server-sent events: Yoga answers a subscription POSTed with
// `accept: text/event-stream` with an event stream ("distinct connections" mode of the GraphQL-over-SSE
// protocol), authenticated like any HTTP request. `sseSubscribe` is the README's example, typed by the
// documents GraphQL Code Generator makes from schema.graphql.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print, type ExecutionResult } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreateSession, CustomerMeterUpdated, RevokeAccessToken } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { customer, ingest, meter, named } from "./support/fixtures.ts";

/** A typed subscription over SSE with nothing but fetch: `ready` once the server answered, its results as they
 * come, and a way to stop. */
function sseSubscribe<R, V>(url: string, token: string, document: TypedDocumentNode<R, V>, variables: V, accept: string | null = "text/event-stream") {
  const abort = new AbortController();
  const stream = fetch(url, {
    method: "POST",
    signal: abort.signal,
    headers: { ...(accept === null ? {} : { accept }), "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: print(document), variables }),
  }).then((response) => response.body!.pipeThrough(new TextDecoderStream()).getReader());
  async function* results(): AsyncGenerator<ExecutionResult<R>> {
    const reader = await stream;
    let buffer = "";
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      buffer += read.value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const lines = buffer.slice(0, end).split("\n"); // one event: "event: next", "data: {…}"; ":" alone is a keep-alive
        buffer = buffer.slice(end + 2);
        const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
        const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (event === "next") yield JSON.parse(data) as ExecutionResult<R>;
        if (event === "complete") return;
      }
    }
  }
  const ready = stream.then(() => undefined);
  ready.catch(() => {}); // a failure surfaces through results too
  return { ready, results: results(), close: () => abort.abort() };
}

let t: TestApp;
let opened = 0; // subscriptions opened on t so far (TestApp.subscribed counts them all)
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

describe("subscriptions over SSE", () => {
  it("push a customer's new balance after events are ingested", async () => {
    const c = await customer(t);
    const m = await meter(t, "COUNT", { filter: named("sse") });
    const sub = sseSubscribe(t.url, t.adminToken, CustomerMeterUpdated, { customerId: c, meterId: m });
    try {
      await Promise.all([t.subscribed(++opened), sub.ready]);
      await ingest(t, [
        { name: "sse", customerId: c },
        { name: "sse", customerId: c },
      ]);
      const { value } = await sub.results.next();
      expect(value?.errors).toBeUndefined();
      expect(value?.data?.customerMeterUpdated).toMatchObject({ consumedUnits: "2", balance: "-2", meter: { id: m } });
    } finally {
      sub.close();
    }
  });

  // Yoga answers with an event stream for any Accept header that admits one (fetch's and curl's */*, none at
  // all, any casing): each such stream must end with its credential, not only those that asked by name.
  it.each(["text/event-stream", "*/*", "Text/Event-Stream", null])("end when the credential they were opened with is revoked (accept: %s)", async (accept) => {
    const c = await customer(t);
    const m = await meter(t, "COUNT", { filter: named("sse") });
    const { createCustomerSession: session } = await t.ok(CreateSession, { customerId: c });
    if (session.__typename !== "CustomerSession") throw new Error(JSON.stringify(session));
    const sub = sseSubscribe(t.url, session.token, CustomerMeterUpdated, { meterId: m }, accept);
    try {
      await Promise.all([t.subscribed(++opened), sub.ready]);
      // The stream ends (the connection closes) rather than going on pushing this customer's balances.
      const ended = sub.results.next().then((r) => (r.done ? "ended" : "got a message"), () => "connection closed");
      await t.ok(RevokeAccessToken, { id: session.id });
      const stillOpen = new Promise((resolve) => setTimeout(() => resolve("still open after 10 s"), 10_000).unref());
      expect(await Promise.race([ended, stillOpen])).toMatch(/^(ended|connection closed)$/);
      // And the revoked token cannot open another.
      const again = sseSubscribe(t.url, session.token, CustomerMeterUpdated, { meterId: m });
      expect((await again.results.next()).value?.errors?.[0]).toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
      again.close();
    } finally {
      sub.close();
    }
  });

  it.each(["text/event-stream", "*/*"])("are closed by a node that shuts down, which does not wait for them (accept: %s)", async (accept) => {
    const node = await startTestApp();
    const c = await customer(node);
    const m = await meter(node, "COUNT", { filter: named("sse") });
    const sub = sseSubscribe(node.url, node.adminToken, CustomerMeterUpdated, { customerId: c, meterId: m }, accept);
    await Promise.all([node.subscribed(1), sub.ready]);
    // The client sees its stream end and reconnects, to another node behind a load balancer.
    const ended = sub.results.next().then((r) => (r.done ? "ended" : "got a message"), () => "connection closed");
    // true: nothing was left in flight (an open stream used to be waited for until the grace period ran out)
    expect(await node.app.close(10_000)).toBe(true);
    expect(await ended).toMatch(/^(ended|connection closed)$/);
    await node.close();
  });
});
