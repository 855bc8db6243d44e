// A webhook receiver on a loopback port: records every request and answers with the statuses it is told
// (200 once the list runs out). Every signature is checked by the test with standardwebhooks' Webhook.verify.
import { createServer, type IncomingHttpHeaders } from "node:http";
import { Webhook } from "standardwebhooks";
import { CreateWebhookEndpoint } from "../documents.ts";
import type { TestApp } from "./app.ts";

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

export async function startReceiver() {
  const received: Received[] = [];
  const statuses: number[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(statuses.shift() ?? 200).end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    received,
    /** Answer the next requests with these statuses, in order. */
    answer: (...next: number[]) => statuses.push(...next),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Tick the webhook workers until `done` holds (each tick is a real pass: dispatch, then send what is due). */
export async function tickUntil(workers: { tick(): Promise<void> }[], done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await Promise.all(workers.map((w) => w.tick()));
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A receiver subscribed (through the API) to `eventTypes`: `verified()` answers what it got so far, each
 * signature checked with standardwebhooks.
 */
export async function subscribedReceiver(t: TestApp, eventTypes: string[]) {
  const receiver = await startReceiver();
  const { createWebhookEndpoint } = await t.ok(CreateWebhookEndpoint, { input: { url: receiver.url, eventTypes } });
  if (createWebhookEndpoint.__typename !== "CreatedWebhookEndpoint") throw new Error(JSON.stringify(createWebhookEndpoint));
  const wh = new Webhook(createWebhookEndpoint.secret);
  const verified = () => receiver.received.map((r) => ({ id: String(r.headers["webhook-id"]), ...(wh.verify(r.body, r.headers as Record<string, string>) as { type: string; data: Record<string, string> }) }));
  return { ...receiver, verified };
}
