// GraphiQL works on a machine without internet: the page at GET /graphql and everything it makes a browser
// load (script, styles, Monaco's workers, icon) come from this service, not from a CDN (src/graphiql.ts).
import { request } from "node:http";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "./support/app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

async function graphiqlPage(): Promise<{ status: number; type: string | null; html: string }> {
  const res = await fetch(t.url, { headers: { accept: "text/html" } });
  return { status: res.status, type: res.headers.get("content-type"), html: await res.text() };
}

/** What the page makes a browser load: src/href attributes and the paths in its inline script (the workers). */
function referencedUrls(html: string): string[] {
  const attributes = [...html.matchAll(/\s(?:src|href)=(?:"([^"]*)"|'([^']*)'|([^\s>]+))/g)].map((m) => m[1] ?? m[2] ?? m[3]);
  const scriptPaths = [...html.matchAll(/"(\/[^"]*)"/g)].map((m) => m[1]);
  return [...new Set([...attributes, ...scriptPaths])];
}

/** Places in a script where an absolute URL would be loaded (links a user may click, `href`, are not loads). */
const LOADS_ANOTHER_HOST = /(?:\bsrc\s*[=:]\s*|\b(?:import|importScripts|fetch|url|Worker|SharedWorker|EventSource|WebSocket)\s*\(\s*)["'`]?(?:https?|wss?):\/\//i;
const CDN_HOSTS = /\b(?:unpkg\.com|jsdelivr\.net|cdnjs\.cloudflare\.com|esm\.sh|skypack\.dev|fonts\.googleapis\.com|fonts\.gstatic\.com)\b/i;

function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: t.port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("GraphiQL without internet", () => {
  it("serves a page with the service's title and WebSocket subscriptions that names no other host", async () => {
    const page = await graphiqlPage();
    expect(page.status).toBe(200);
    expect(page.type).toContain("text/html");
    expect(page.html).toContain("<title>Credits ledger</title>");
    expect(page.html).toContain('"subscriptionsProtocol":"WS"');
    expect(page.html).not.toMatch(/\b(?:https?|wss?):/i);
    const urls = referencedUrls(page.html);
    expect(urls.length).toBeGreaterThanOrEqual(6); // icon, styles, script, three editor workers
    for (const url of urls) expect(url).toMatch(/^\/(?!\/)/); // a path on this service, not //host/…
    // The bundle is served once as files, not inlined into every page (9 MB with the package's own renderer).
    expect(page.html.length).toBeLessThan(10_000);
  });

  it("serves everything the page loads, none of which loads from another host", async () => {
    const { html } = await graphiqlPage();
    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, ico: /^image\// };
    const urls = referencedUrls(html);
    expect(urls.length).toBeGreaterThanOrEqual(6);
    for (const url of urls) {
      expect(url).toMatch(/^\/(?!\/)/);
      const res = await fetch(new URL(url, t.url));
      expect(res.status, url).toBe(200);
      expect(res.headers.get("content-type"), url).toMatch(types[url.split(".").pop()!]);
      expect(res.headers.get("cache-control"), url).toContain("immutable"); // content-hashed names
      if (url.endsWith(".ico")) continue;
      const text = await res.text();
      expect(text, url).not.toMatch(LOADS_ANOTHER_HOST);
      expect(text, url).not.toMatch(CDN_HOSTS);
      if (url.endsWith(".css")) {
        expect(text).not.toContain("@import");
        for (const [, target] of text.matchAll(/url\(\s*["']?([^"')]*)/g)) expect(target, url).toMatch(/^(?:data:|#|\/(?!\/))/);
      }
    }
  });

  it("gzips an asset for a browser that accepts it, and answers an unknown asset with 404", async () => {
    const script = /<script src="([^"]+)"/.exec((await graphiqlPage()).html)![1];
    const plain = await rawGet(script, {});
    const zipped = await rawGet(script, { "accept-encoding": "gzip, br" });
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(zipped.headers["content-encoding"]).toBe("gzip");
    expect(zipped.body.length).toBeLessThan(plain.body.length / 2);
    expect(gunzipSync(zipped.body).equals(plain.body)).toBe(true);

    expect((await rawGet("/graphiql/graphiql.0123456789abcdef.js", {})).status).toBe(404);
  });
});
