// Sending a file the service holds in memory (GraphiQL's assets, the portal's and the widget's bundles): gzipped
// once, on first demand, for browsers that accept it; HEAD answered without the body.
import type { IncomingMessage, ServerResponse } from "node:http";
import { promisify } from "node:util";
import { gzip } from "node:zlib";

export interface StaticAsset {
  body: Buffer;
  type: string;
  gzipped?: Promise<Buffer>;
}

const gzipAsync = promisify(gzip);

export const JAVASCRIPT = "text/javascript; charset=utf-8";

/** The asset's bytes for this request: gzipped when the browser accepts gzip. */
async function encodedFor(req: IncomingMessage, asset: StaticAsset): Promise<{ body: Buffer; gzipped: boolean }> {
  const gzipped = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  return { body: gzipped ? await (asset.gzipped ??= gzipAsync(asset.body)) : asset.body, gzipped };
}

/** 200 with the asset (content type, length, nosniff, `vary: accept-encoding`) and the given headers. */
export async function sendAsset(req: IncomingMessage, res: ServerResponse, asset: StaticAsset, headers: Record<string, string>): Promise<void> {
  const { body, gzipped } = await encodedFor(req, asset);
  res.writeHead(200, {
    "content-type": asset.type,
    "content-length": body.length,
    "x-content-type-options": "nosniff",
    vary: "accept-encoding",
    ...headers,
    ...(gzipped ? { "content-encoding": "gzip" } : {}),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

export function notFound(res: ServerResponse): void {
  res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("Not found\n");
}
