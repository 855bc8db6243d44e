// The customer portal (GET /portal) and the embeddable balance widget (GET /widget.js): pages and scripts
// bundled from portal/src (portal/build.ts), served from memory by this process.
// - /portal: a small HTML page with a strict Content-Security-Policy (scripts, styles and connections to this
//   service only) and no referrer, so the session token in the URL fragment (#token=…) never leaves the
//   browser: fragments are not sent in request lines, and no Referer header carries the page's URL.
// - /portal/portal.<hash>.js: the portal's script, content-hashed and cached for a year.
// - /widget.js: a fixed name merchants paste into their pages, cached briefly; any origin may load it (it is
//   public code: `access-control-allow-origin: *`, `cross-origin-resource-policy: cross-origin`), while what it
//   reads is governed by the WebSocket origin rule below and the session token it is given.
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log.ts";
import { JAVASCRIPT, notFound, sendAsset, type StaticAsset } from "./static.ts";

export const PORTAL_PATH = "/portal";
export const WIDGET_PATH = "/widget.js";

/** The origin a request was addressed to, as its Host header names it (http, or https over TLS). */
export function requestOrigin(req: IncomingMessage): string {
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
  return `${encrypted ? "https" : "http"}://${req.headers.host ?? "localhost"}`;
}

/**
 * Whether a WebSocket upgrade may proceed, judged on its Origin header. No Origin (a program, not a browser):
 * yes, the token decides. A browser page may connect from this service's own origin (its Host, or PUBLIC_URL's
 * origin), or from an origin listed in CORS_ORIGINS (`*`: any) — the same list that lets a page call /graphql
 * over HTTP, so one setting says which sites may embed the widget.
 */
export function webSocketOriginAllowed(req: IncomingMessage, corsOrigins: readonly string[], publicUrl: string | undefined): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  if (corsOrigins.includes("*") || corsOrigins.includes(origin)) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false;
  }
  return host === req.headers.host || (publicUrl !== undefined && new URL(publicUrl).origin === origin);
}

interface Bundles {
  portalScript: { path: string; asset: StaticAsset };
  widget: StaticAsset;
}

let loading: Promise<Bundles> | undefined;

/** portal/dist/ when it is up to date (npm install builds it), else the same bundles built in memory now. */
function loadBundles(log: Logger): Promise<Bundles> {
  loading ??= (async () => {
    const { buildBundles, distIsFresh, readDist } = await import("../../portal/build.ts");
    const fresh = distIsFresh();
    const started = Date.now();
    // In memory, never over portal/dist: several servers (test files, nodes) may start at once.
    const bundles = fresh ? await readDist() : await buildBundles(false);
    if (!fresh) log.info({ ms: Date.now() - started }, "portal/dist missing or older than portal/src: portal bundles built in memory");
    const hash = createHash("sha256").update(bundles["portal.js"]).digest("hex").slice(0, 16);
    return {
      portalScript: { path: `${PORTAL_PATH}/portal.${hash}.js`, asset: { body: bundles["portal.js"], type: JAVASCRIPT } },
      widget: { body: bundles["widget.js"], type: JAVASCRIPT },
    };
  })();
  loading.catch(() => (loading = undefined)); // a failed build is tried again on the next request
  return loading;
}

/** The page's Content-Security-Policy: everything from this service only, WebSockets to it included. */
export function portalContentSecurityPolicy(req: IncomingMessage, publicUrl: string | undefined): string {
  const hosts = new Set([req.headers.host ?? "localhost", ...(publicUrl ? [new URL(publicUrl).host] : [])]);
  const sockets = [...hosts].flatMap((host) => [`ws://${host}`, `wss://${host}`]).join(" ");
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ${sockets}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function portalPage(scriptPath: string): string {
  // Relative script URL: behind a proxy that serves the service under a path prefix the page still finds it.
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <link rel="icon" href="data:," />
    <title>Your credits</title>
    <script src=".${scriptPath}" defer></script>
  </head>
  <body>
    <credits-portal><noscript>This page needs JavaScript.</noscript></credits-portal>
  </body>
</html>
`;
}

/**
 * Answers GET/HEAD /portal, its script and /widget.js (404 for other paths under /portal/ and other methods);
 * false for every other path.
 */
export function portalRoutes(options: { publicUrl?: string; log: Logger }) {
  return async function servePortal(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const path = (req.url ?? "").split("?")[0];
    if (path !== PORTAL_PATH && path !== WIDGET_PATH && !path.startsWith(`${PORTAL_PATH}/`)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      notFound(res);
      return true;
    }
    const bundles = await loadBundles(options.log);
    if (path === WIDGET_PATH) {
      await sendAsset(req, res, bundles.widget, {
        "cache-control": "public, max-age=300",
        "access-control-allow-origin": "*",
        "cross-origin-resource-policy": "cross-origin",
      });
    } else if (path === bundles.portalScript.path) {
      await sendAsset(req, res, bundles.portalScript.asset, { "cache-control": "public, max-age=31536000, immutable" });
    } else if (path === PORTAL_PATH) {
      await sendAsset(req, res, { body: Buffer.from(portalPage(bundles.portalScript.path)), type: "text/html; charset=utf-8" }, {
        "cache-control": "no-store",
        "content-security-policy": portalContentSecurityPolicy(req, options.publicUrl),
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
      });
    } else notFound(res);
    return true;
  };
}
