// The customer portal (GET /portal) and the <credits-balance> widget (GET /widget.js) in a real headless Chromium
// (test/support/browser.ts): balances as the API reports them, live updates without a reload, an ended token's
// message, the widget on a page of another origin, the WebSocket origin rule, GraphiQL with the network limited
// to this machine, and the portal at 375 px (its screenshot is portal/screenshot.png, shown in the README).
import { existsSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { CreateProduct, GrantCredits, PortalBalance, PortalSession, RevokeAccessToken } from "./documents.ts";
import { isLoopback, launchBrowser, noBrowser, pageServer, watchProblems } from "./support/browser.ts";
import { loadConfig } from "../src/config.ts";
import { portalUrl } from "../src/domain/sessions.ts";
import { startTestApp, subscription, type TestApp } from "./support/app.ts";
import { benefit, customer, ingest, meter, order } from "./support/fixtures.ts";

/** The bound: a committed change shows in the page within a second, without a reload. */
const LIVE_WITHIN_MS = 1000;
const SCREENSHOT = path.join(import.meta.dirname, "..", "portal", "screenshot.png");

let t: TestApp;
let browser: Browser;
let embed: Awaited<ReturnType<typeof pageServer>>;
/** The page the other origin serves: set by the widget test before it navigates. */
let embedHtml = "";
let service: string;
let customerId: string;
let meterId: string;
/** Request lines the service received (HTTP and WebSocket upgrades): a session token must never be among them. */
const requestLines: string[] = [];

const numbers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 6 });
/** What the portal shows for a Decimal: Intl formats a numeric string exactly (the ES2022 lib types take numbers only). */
const shown = (value: string) => numbers.format(value as unknown as number);

async function session(ttlSeconds?: number) {
  const { createCustomerSession } = await t.ok(PortalSession, { customerId, ttlSeconds });
  if (createCustomerSession.__typename !== "CustomerSession") throw new Error(JSON.stringify(createCustomerSession));
  return createCustomerSession;
}

async function balance() {
  const { customerMeter } = await t.ok(PortalBalance, { customerId, meterId });
  return customerMeter!;
}

async function newPage(viewport = { width: 1024, height: 800 }): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ locale: "en-US", viewport });
  const page = await context.newPage();
  return { page, problems: await watchProblems(page) };
}

/** Waits for the selector's text (open shadow roots are pierced) to become `text`, for at most `ms`. */
async function textBecomes(page: Page, selector: string, text: string, ms: number): Promise<void> {
  await page.locator(selector).filter({ hasText: new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`) }).waitFor({ timeout: ms });
}

beforeAll(async () => {
  embed = await pageServer(() => embedHtml);
  // The embedding page's origin is allowed (CORS_ORIGINS); every other origin is not.
  t = await startTestApp({ limits: { corsOrigins: [embed.origin] } });
  service = `http://127.0.0.1:${t.port}`;
  t.app.httpServer.on("request", (req) => requestLines.push(String(req.url)));
  t.app.httpServer.on("upgrade", (req) => requestLines.push(String(req.url)));

  meterId = await meter(t, "SUM", { property: "tokens", name: "API calls" });
  customerId = await customer(t, "portal_customer");
  await t.ok(GrantCredits, { input: { customerId, meterId, units: "100", description: "Welcome credits" } });
  const inTenDays = new Date(Date.now() + 10 * 24 * 3600 * 1000).toISOString();
  await t.ok(GrantCredits, { input: { customerId, meterId, units: "50", expiresAt: inTenDays, description: "Promotion" } });
  const { createProduct } = await t.ok(CreateProduct, {
    input: { name: "Pro plan", recurringInterval: "MONTH", benefitIds: [await benefit(t, meterId, "1000")], prices: [{ type: "FIXED", amount: "1900", currency: "USD" }] },
  });
  if (createProduct.__typename !== "Product") throw new Error(JSON.stringify(createProduct));
  await order(t, customerId, createProduct.id);
  await ingest(t, [{ name: "use", customerId, metadata: { tokens: 12 } }]);
});

afterAll(async () => {
  await t?.close();
  await embed?.close();
});

describe("portal links, origins and the bundle (no browser needed)", () => {
  it("portalUrl is this request's origin + /portal#token=…, over HTTP and over a WebSocket", async () => {
    const { token, portalUrl } = await session();
    expect(portalUrl).toBe(`${service}/portal#token=${token}`);
    const overSocket = subscription(t.wsClient(t.adminToken), PortalSession, { customerId });
    const { data } = await overSocket.next();
    const created = data!.createCustomerSession;
    if (created.__typename !== "CustomerSession") throw new Error(JSON.stringify(created));
    expect(created.portalUrl).toBe(`${service}/portal#token=${created.token}`);
  });

  it("/portal: a strict Content-Security-Policy (this service only, its WebSockets included) and no referrer", async () => {
    const res = await fetch(`${service}/portal`);
    expect(res.status).toBe(200);
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${t.port} wss://127.0.0.1:${t.port};`);
    expect(csp).not.toContain("unsafe");
    // The page's one script is this service's, content-hashed and cached for good.
    const script = /<script src="\.(\/portal\/portal\.[0-9a-f]{16}\.js)"/.exec(await res.text())![1];
    const js = await fetch(`${service}${script}`);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(js.headers.get("cache-control")).toContain("immutable");
    expect((await fetch(`${service}/portal/portal.0000000000000000.js`)).status).toBe(404);
  });

  it("PUBLIC_URL: an http(s) URL, a path prefix kept and a trailing slash dropped, is the links' base", () => {
    expect(loadConfig({}).publicUrl).toBeUndefined();
    expect(loadConfig({ PUBLIC_URL: "https://credits.example.com/" }).publicUrl).toBe("https://credits.example.com");
    const base = loadConfig({ PUBLIC_URL: "https://example.com/credits/" }).publicUrl!;
    expect(portalUrl(base, "crl_cs_abc")).toBe("https://example.com/credits/portal#token=crl_cs_abc");
    for (const bad of ["credits.example.com", "ftp://example.com", "https://example.com/?a=1", "https://example.com/#x"]) {
      expect(() => loadConfig({ PUBLIC_URL: bad }), bad).toThrow(/PUBLIC_URL must be an http\(s\) URL/);
    }
  });

  it("WebSockets: a listed origin, the service's own and programs without an Origin connect; another origin is refused at the upgrade", async () => {
    const upgrade = (origin?: string) =>
      new Promise<number>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${t.port}/graphql`, "graphql-transport-ws", origin ? { origin } : {});
        socket.on("open", () => {
          socket.close();
          resolve(101);
        });
        socket.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode!);
          socket.terminate();
        });
        socket.on("error", () => {});
      });
    expect(await upgrade(embed.origin)).toBe(101);
    expect(await upgrade(service)).toBe(101);
    expect(await upgrade()).toBe(101);
    expect(await upgrade("https://evil.example")).toBe(403);
    expect(await upgrade(`http://127.0.0.1:${t.port + 1}`)).toBe(403);

    // HTTP from the listed origin: a preflight for a token-bearing JSON POST is answered, without credentials.
    const preflight = (origin: string) =>
      fetch(t.url, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" } });
    const allowed = await preflight(embed.origin);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(embed.origin);
    expect(allowed.headers.get("access-control-allow-headers")).toContain("authorization");
    expect(allowed.headers.get("access-control-allow-credentials")).toBeNull();
    expect((await preflight("https://evil.example")).headers.get("access-control-allow-origin")).toBeNull();
  });

  it("widget bundle: under 30 kB gzipped as served", async () => {
    const { status, encoding, bytes } = await new Promise<{ status: number; encoding: unknown; bytes: number }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: t.port, path: "/widget.js", headers: { "accept-encoding": "gzip" } }, (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () => resolve({ status: res.statusCode!, encoding: res.headers["content-encoding"], bytes }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(200);
    expect(encoding).toBe("gzip");
    console.log(`widget.js: ${bytes} bytes gzipped`);
    expect(bytes).toBeGreaterThan(1000);
    expect(bytes).toBeLessThan(30 * 1024);
  });
});

describe.skipIf(noBrowser !== null)("customer portal and widget in Chromium", () => {
  beforeAll(async () => {
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
  });

  it("portal: a fresh session's link shows the balances the API reports, live without a reload, and no CSP violation", async () => {
    const { token, portalUrl } = await session();
    const { page, problems } = await newPage();
    expect((await page.goto(portalUrl))!.status()).toBe(200);

    const card = `[data-meter-id="${meterId}"]`;
    const before = await balance();
    await textBecomes(page, `${card} [data-field="availableUnits"]`, shown(before.availableUnits), 10_000);
    for (const field of ["creditedUnits", "consumedUnits", "heldUnits"] as const) {
      expect((await page.locator(`${card} [data-field="${field}"]`).textContent())?.trim(), field).toBe(shown(before[field]));
    }
    expect(before.creditedUnits).toBe("1150");
    // Expiring credits with their date, the subscription's renewal date, the order, the ledger.
    await expect(page.locator("credits-portal").textContent()).resolves.toBeDefined();
    const text = await page.locator("credits-portal").evaluate((el) => el.shadowRoot!.textContent ?? "");
    // Usage burns the soonest-expiring grant first: 12 of the promotion's 50 are gone.
    expect(text).toMatch(/38 API calls\s*expire on \w{3} \d{1,2}, \d{4}/);
    expect(text).toMatch(/Pro plan\s*Renews on \w{3} \d{1,2}, \d{4}/);
    expect(text).toContain("$19.00");
    expect(text).toMatch(/Usage · API calls\s*-12/);
    // The fragment is gone from the address bar (kept for this tab only).
    expect(page.url()).toBe(`${service}/portal`);

    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    await ingest(t, [{ name: "use", customerId, metadata: { tokens: 7 } }]);
    const after = await balance();
    expect(after.availableUnits).toBe(String(Number(before.availableUnits) - 7));
    await textBecomes(page, `${card} [data-field="availableUnits"]`, shown(after.availableUnits), LIVE_WITHIN_MS);
    await textBecomes(page, `${card} [data-field="consumedUnits"]`, shown(after.consumedUnits), LIVE_WITHIN_MS);
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);

    expect(problems).toEqual([]);
    expect(requestLines.some((line) => line.includes(token))).toBe(false);
    await page.context().close();
  });

  it("portal: an expired token, a revoked one and an open page whose session is revoked show the message", async () => {
    const messageOf = (page: Page) => page.locator('[data-state="ended"]');
    const { page: first } = await newPage();
    const context = first.context();
    const open = async (url: string) => {
      const page = await context.newPage(); // a new tab: the page starts from the link's fragment
      await page.goto(url);
      return page;
    };
    const shortLived = await session(60);
    t.advance(61_000); // the service clock: the session is past its expiresAt
    const expired = await open(shortLived.portalUrl);
    await messageOf(expired).waitFor({ timeout: 10_000 });
    expect(await messageOf(expired).textContent()).toContain("expired or was revoked");

    const revoked = await session();
    await t.ok(RevokeAccessToken, { id: revoked.id });
    await messageOf(await open(revoked.portalUrl)).waitFor({ timeout: 10_000 });

    const live = await session();
    const page = await open(live.portalUrl);
    await page.locator(`[data-meter-id="${meterId}"]`).waitFor({ timeout: 10_000 });
    await t.ok(RevokeAccessToken, { id: live.id });
    await messageOf(page).waitFor({ timeout: 10_000 });

    const noToken = await open(`${service}/portal`);
    await noToken.locator('[data-state="no-token"]').waitFor({ timeout: 10_000 });
    await context.close();
  });

  it("widget: embedded in a page of another origin, styled by custom properties, readable by screen readers, live", async () => {
    const { id, token } = await session();
    embedHtml = `<!doctype html><html lang="en"><head><title>Shop</title>
      <script src="${service}/widget.js"></script>
      <style>credits-balance { --credits-balance-accent: rgb(200, 0, 0); }</style></head>
      <body>
        <credits-balance id="explicit" meter-id="${meterId}" token="${token}" endpoint="${service}/graphql"></credits-balance>
        <credits-balance id="beside-script" meter-id="${meterId}" token="${token}" label="Tokens"></credits-balance>
      </body></html>`;
    const { page, problems } = await newPage();
    const widgetResponse = page.waitForResponse(`${service}/widget.js`);
    await page.goto(embed.origin);
    expect((await widgetResponse).headers()["access-control-allow-origin"]).toBe("*");
    expect(new URL(page.url()).origin).not.toBe(service);

    const before = await balance();
    const value = (id: string) => `#${id} .value`;
    await textBecomes(page, value("explicit"), shown(before.availableUnits), 10_000);
    await textBecomes(page, value("beside-script"), shown(before.availableUnits), 10_000);
    const status = page.locator('#explicit [role="status"]');
    expect(await status.getAttribute("aria-live")).toBe("polite");
    expect((await status.locator(".visually-hidden").textContent())?.trim()).toBe(`API calls: ${shown(before.availableUnits)} credits available.`);
    expect(await page.locator(value("explicit")).evaluate((el) => getComputedStyle(el).color)).toBe("rgb(200, 0, 0)");

    await ingest(t, [{ name: "use", customerId, metadata: { tokens: 5 } }]);
    const after = await balance();
    await textBecomes(page, value("explicit"), shown(after.availableUnits), LIVE_WITHIN_MS);
    await textBecomes(page, value("beside-script"), shown(after.availableUnits), LIVE_WITHIN_MS);
    expect((await page.locator('#beside-script [role="status"] .visually-hidden').textContent())?.trim()).toBe(`Tokens: ${shown(after.availableUnits)} credits available.`);
    expect(problems).toEqual([]);
    // The session revoked: its socket is closed (4401) and the widget says so instead of a stale figure.
    await t.ok(RevokeAccessToken, { id });
    await page.locator('#explicit [part="message"]').filter({ hasText: "expired" }).waitFor({ timeout: 10_000 });
    await page.context().close();
  });

  it("GraphiQL at /graphql loads and runs a query with the network limited to this machine", async () => {
    const { page, problems } = await newPage();
    const elsewhere: string[] = [];
    let routed = 0;
    await page.context().route("**/*", (route) => {
      routed++;
      if (isLoopback(route.request().url())) return route.continue();
      elsewhere.push(route.request().url());
      return route.abort();
    });
    await page.goto(`${service}/graphql?query=${encodeURIComponent("{ __typename }")}`);
    await page.locator(".graphiql-execute-button").click({ timeout: 30_000 });
    await page.locator(".graphiql-response").filter({ hasText: /"__typename":\s*"Query"/ }).waitFor({ timeout: 30_000 });
    expect(routed).toBeGreaterThanOrEqual(4); // the page, its script and styles, a worker: the route saw the traffic
    expect(elsewhere).toEqual([]);
    expect(problems.filter((p) => !p.startsWith("console"))).toEqual([]);
    await page.context().close();
  });

  it("portal at 375 px: no horizontal scroll; screenshot", async () => {
    const { portalUrl } = await session();
    const { page, problems } = await newPage({ width: 375, height: 812 });
    await page.goto(portalUrl);
    await page.locator(`[data-meter-id="${meterId}"]`).waitFor({ timeout: 10_000 });
    const { scrollWidth, clientWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth }));
    expect(clientWidth).toBe(375);
    expect(scrollWidth).toBeLessThanOrEqual(clientWidth);
    const png = await page.screenshot({ fullPage: true });
    expect(png.readUInt32BE(16)).toBe(375); // the PNG's width, from its header
    // The committed screenshot is rewritten on request (or when missing), not on every run.
    if (process.env.UPDATE_SCREENSHOT === "1" || !existsSync(SCREENSHOT)) writeFileSync(SCREENSHOT, png);
    expect(problems).toEqual([]);
    await page.context().close();
  });
});
