// A hostile HTTP client in its own process (so its CPU does not count in the test process's latency figures):
// sends TOTAL cheap queries over CONNECTIONS keep-alive connections with one token as fast as it is answered,
// and prints one JSON line: the count of each status and how long it took.
// Usage: tsx test/support/http-flood.ts <http url> <token> <total> <connections>
import { Agent, request } from "node:http";
import { readyThenGo } from "./go.ts";

const [url, token, totalText, connectionsText] = process.argv.slice(2);
const total = Number(totalText);
const connections = Number(connectionsText);
const agent = new Agent({ keepAlive: true, maxSockets: connections, timeout: 2_000 });
const body = JSON.stringify({ query: "{ __typename }" });
const statuses: Record<string, number> = {};

function post(): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(url, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
    req.end(body);
  });
}

await readyThenGo();
const started = performance.now();
let sent = 0;
await Promise.all(
  Array.from({ length: connections }, async () => {
    while (sent++ < total) {
      const status = String(await post());
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  }),
);
agent.destroy();
console.log(JSON.stringify({ statuses, ms: performance.now() - started }));
