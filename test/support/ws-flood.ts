// A hostile WebSocket client in its own process (so its CPU does not count in the test process's latency
// figures): connects with a token, sends COUNT subscribe messages, counts the answers, then checks the socket
// is still usable (completes one accepted subscription and runs a query on it). Prints one JSON line.
// Usage: tsx test/support/ws-flood.ts <ws url> <token> <count> <subscription query> <variables JSON>
import WebSocket from "ws";
import { readyThenGo } from "./go.ts";

const [url, token, countText, query, variablesText] = process.argv.slice(2);
const count = Number(countText);
await readyThenGo();
const ws = new WebSocket(url, "graphql-transport-ws");
const answered = new Map<string, string>();
const codes: Record<string, number> = {};
let acked = false;
let after: unknown;
ws.on("message", (data) => {
  const m = JSON.parse(String(data)) as { id?: string; type: string; payload?: { extensions?: { code?: string } }[] };
  if (m.type === "connection_ack") acked = true;
  else if (m.id === "after") {
    if (m.type !== "complete") after = m;
  }
  else if (m.id) {
    answered.set(m.id, m.type);
    const key = m.type === "error" ? String(m.payload?.[0]?.extensions?.code) : m.type;
    codes[key] = (codes[key] ?? 0) + 1;
  }
});
let closed: { code: number } | null = null;
ws.on("close", (code) => (closed = { code }));
const until = async (probe: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline || closed) throw new Error(`gave up: ${JSON.stringify({ codes, closed })}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
await new Promise((resolve, reject) => {
  ws.once("open", resolve);
  ws.once("error", reject);
});
ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } }));
await until(() => acked, 10_000);
const messages = Array.from({ length: count }, (_, i) => JSON.stringify({ id: `s${i}`, type: "subscribe", payload: { query, variables: JSON.parse(variablesText) } }));
for (let i = 0; i < count; i++) {
  ws.send(messages[i]);
  if (i % 500 === 499) await new Promise((r) => setImmediate(r));
}
await until(() => (codes.LIMIT_EXCEEDED ?? 0) + (codes.RATE_LIMITED ?? 0) >= count - 100, 60_000);
// Still usable: complete one accepted subscription, wait for a new second of budget, run a query.
const accepted = messages.map((_, i) => `s${i}`).find((id) => !answered.has(id));
if (accepted) ws.send(JSON.stringify({ id: accepted, type: "complete" }));
await new Promise((r) => setTimeout(r, 1_100));
ws.send(JSON.stringify({ id: "after", type: "subscribe", payload: { query: "{ __typename }" } }));
await until(() => after !== undefined, 10_000);
process.stdout.write(`${JSON.stringify({ codes, accepted: count - Object.values(codes).reduce((a, b) => a + b, 0), after, closed })}\n`);
ws.close();
process.exit(0);
