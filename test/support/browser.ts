// A real headless Chromium for the portal and widget tests, driven by playwright-core (no browser download:
// Debian's `chromium` package, or CHROMIUM_PATH). Without an executable the tests skip, saying why.
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { chromium, type Browser, type Page } from "playwright-core";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/** Why the browser tests cannot run here, or null when they can. */
export const noBrowser: string | null = existsSync(CHROMIUM_PATH) ? null : `no Chromium executable at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`;
if (noBrowser) console.warn(`Browser tests skipped: ${noBrowser}`);

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH });
}

/** Hosts a page may reach when the test limits the network to this machine. */
export function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  if (protocol === "data:" || protocol === "blob:" || protocol === "about:") return true;
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Collects what the page reports as wrong: uncaught errors, console errors, Content-Security-Policy violations. */
export async function watchProblems(page: Page): Promise<string[]> {
  const problems: string[] = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  await page.exposeFunction("__reportViolation", (text: string) => problems.push(`csp: ${text}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as unknown as { __reportViolation(text: string): void }).__reportViolation(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return problems;
}

/** A loopback HTTP server answering every GET with `html(port)`: a page on another origin than the service. */
export async function pageServer(html: () => string): Promise<{ origin: string; server: Server; close(): Promise<void> }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    origin: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
