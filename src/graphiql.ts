// GraphiQL from the service's own assets, so it works on a machine without internet. Yoga's default page loads
// GraphiQL from a CDN; @graphql-yoga/render-graphiql ships the same build (script, styles, Monaco's editor
// workers, icon) inside the package. Its own renderer inlines all of it into every page (about 9 MB of HTML);
// here the page is small and names its assets by content hash under /graphiql/, which this process serves
// with a year-long immutable cache, gzipped when the browser accepts it.
// The bundle is loaded on the first GraphiQL request, not at start: a node nobody opens GraphiQL on never
// holds it in memory.
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { GraphiQLOptions } from "graphql-yoga";
import { JAVASCRIPT, notFound, sendAsset, type StaticAsset } from "./http/static.ts";

/** Where the page's script, styles, workers and icon are served. */
export const GRAPHIQL_ASSETS_PATH = "/graphiql/";

interface Bundle {
  assets: Map<string, StaticAsset>;
  urls: { script: string; styles: string; icon: string; workers: Record<"editorWorkerService" | "json" | "graphql", string> };
}

let bundle: Promise<Bundle> | undefined;

function loadBundle(): Promise<Bundle> {
  bundle ??= import("@graphql-yoga/render-graphiql/graphiql").then((build) => {
    const assets = new Map<string, StaticAsset>();
    const add = (name: string, extension: string, type: string, body: Buffer): string => {
      const file = `${name}.${createHash("sha256").update(body).digest("hex").slice(0, 16)}.${extension}`;
      assets.set(file, { body, type });
      return GRAPHIQL_ASSETS_PATH + file;
    };
    const script = (source: string) => Buffer.from(source, "utf8");
    // The icon comes as a data: URL; served as a file it stays out of every page.
    const icon = /^data:([^;,]+);base64,(.*)$/s.exec(build.favicon);
    if (!icon) throw new Error("@graphql-yoga/render-graphiql: expected the favicon as a base64 data: URL");
    return {
      assets,
      urls: {
        script: add("graphiql", "js", JAVASCRIPT, script(build.js)),
        styles: add("graphiql", "css", "text/css; charset=utf-8", script(build.css)),
        icon: add("favicon", "ico", icon[1], Buffer.from(icon[2], "base64")),
        workers: {
          editorWorkerService: add("editor.worker", "js", JAVASCRIPT, script(build.editorWorkerService)),
          json: add("json.worker", "js", JAVASCRIPT, script(build.jsonWorker)),
          graphql: add("graphql.worker", "js", JAVASCRIPT, script(build.graphqlWorker)),
        },
      },
    };
  });
  return bundle;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that cannot end the <script> element it is written into. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** Yoga's `renderGraphiQL`: the page, referring only to assets on this service. */
export async function renderGraphiQL(options: GraphiQLOptions = {}): Promise<string> {
  const { urls } = await loadBundle();
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>${escapeHtml(options.title ?? "GraphiQL")}</title>
    <link rel="icon" href="${urls.icon}" />
    <link rel="stylesheet" href="${urls.styles}" />
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
    <script>
      const workers = ${scriptJson(urls.workers)};
      self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: (moduleId, label) => workers[label] };
    </script>
    <script src="${urls.script}"></script>
    <script>
      YogaGraphiQL.renderYogaGraphiQL(document.querySelector("#root"), ${scriptJson(options)});
    </script>
  </body>
</html>
`;
}

/**
 * Answers GET/HEAD under /graphiql/ with the asset named (404 for any other name); false for other paths.
 */
export async function serveGraphiQLAsset(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const path = (req.url ?? "").split("?")[0];
  if (!path.startsWith(GRAPHIQL_ASSETS_PATH)) return false;
  const asset = req.method === "GET" || req.method === "HEAD" ? (await loadBundle()).assets.get(path.slice(GRAPHIQL_ASSETS_PATH.length)) : undefined;
  if (!asset) {
    notFound(res);
    return true;
  }
  await sendAsset(req, res, asset, { "cache-control": "public, max-age=31536000, immutable" });
  return true;
}
