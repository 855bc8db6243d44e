// The customer portal: <credits-portal> reads the session token from the URL fragment (#token=…, never sent to
// a server), then shows the customer's balances, credits expiring soon, subscriptions, orders and recent ledger
// over one graphql-ws connection to this service, and redraws on every customerStateChanged push.
import { LitElement, css, html, type TemplateResult } from "lit";
import { connect, credentialEnded, formatDate, formatMoney, formatUnits, type Connection } from "./connection.ts";

const TOKEN_KEY = "credits-portal-token";
/** Credits expiring within this many seconds are listed. */
const EXPIRING_WITHIN_SECONDS = 30 * 24 * 60 * 60;

const METER_FIELDS = "id meter { id name } creditedUnits consumedUnits availableUnits heldUnits balance overageUnits version";
const PORTAL_QUERY = `query Portal($within: Int!) {
  customerState { customer { email name } meters { ${METER_FIELDS} } }
  expiringCredits(within: $within, first: 50) { edges { node { id meter { name } remainingUnits expiresAt } } }
  customerSubscriptions(first: 20) { edges { node { id status currentPeriodEnd cancelAtPeriodEnd endedAt product { name } } } }
  orders(first: 20) { edges { node { id createdAt status amount currency product { name } } } }
  ledger(last: 20) { edges { node { id kind units balanceAfter occurredAt meter { name } } } }
}`;
const STATE_UPDATES = `subscription PortalUpdates { customerStateChanged { meters { ${METER_FIELDS} } } }`;

interface MeterBalance {
  id: string;
  meter: { id: string; name: string };
  creditedUnits: string;
  consumedUnits: string;
  availableUnits: string;
  heldUnits: string;
  balance: string;
  overageUnits: string;
  version: number;
}
type Edges<T> = { edges: { node: T }[] };
interface PortalData {
  customerState: { customer: { email: string | null; name: string | null }; meters: MeterBalance[] };
  expiringCredits: Edges<{ id: string; meter: { name: string }; remainingUnits: string; expiresAt: string }>;
  customerSubscriptions: Edges<{ id: string; status: string; currentPeriodEnd: string; cancelAtPeriodEnd: boolean; endedAt: string | null; product: { name: string } }>;
  orders: Edges<{ id: string; createdAt: string; status: string; amount: string | null; currency: string | null; product: { name: string } }>;
  ledger: Edges<{ id: string; kind: string; units: string; balanceAfter: string; occurredAt: string; meter: { name: string } }>;
}

type State = { kind: "loading" } | { kind: "ready"; data: PortalData } | { kind: "no-token" } | { kind: "ended" } | { kind: "failed" };

/** The token from #token=… (kept for this tab and removed from the address bar), or the one kept earlier. */
function takeToken(): string | null {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    sessionStorage.setItem(TOKEN_KEY, fromFragment);
    history.replaceState(null, "", location.pathname + location.search);
    return fromFragment;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const LEDGER_KINDS: Record<string, string> = {
  GRANT: "Credits added",
  USAGE: "Usage",
  EXPIRY: "Expired",
  VOID: "Voided",
  RESET: "Cycle reset",
  REVOKE: "Revoked",
  REFUND: "Refunded",
};

export class CreditsPortal extends LitElement {
  static properties = { state: { state: true }, live: { state: true } };
  declare state: State;
  declare live: boolean;
  private connection: Connection | undefined;
  private cleanup: (() => void)[] = [];
  /** One read at a time: a newer result is never overwritten by an older one. */
  private reading = false;
  private readAgain = false;

  constructor() {
    super();
    this.state = { kind: "loading" };
    this.live = false;
  }

  static styles = css`
    :host {
      display: block;
      box-sizing: border-box;
      max-width: 60rem;
      margin: 0 auto;
      padding: 1rem;
      font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
      color: #1f2328;
      line-height: 1.4;
    }
    * { box-sizing: border-box; }
    header { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: 0.5rem; }
    h1 { font-size: 1.5rem; margin: 0; }
    h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
    .live { font-size: 0.85rem; color: #57606a; }
    .live[data-live="true"]::before { content: "● "; color: #1a7f37; }
    .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 0.75rem; }
    .card { border: 1px solid #d0d7de; border-radius: 8px; padding: 0.75rem 1rem; min-width: 0; }
    .card h3 { margin: 0 0 0.25rem; font-size: 1rem; overflow-wrap: anywhere; }
    .available { font-size: 2rem; font-weight: 600; color: #0b5cad; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
    dl { display: grid; grid-template-columns: auto 1fr; gap: 0.125rem 1rem; margin: 0.5rem 0 0; }
    dt { color: #57606a; }
    dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
    ul { list-style: none; margin: 0; padding: 0; }
    li { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0.25rem 1rem; padding: 0.5rem 0; border-bottom: 1px solid #eaeef2; }
    li > span { overflow-wrap: anywhere; }
    .muted { color: #57606a; font-size: 0.9rem; }
    .negative { color: #cf222e; }
    .message { border: 1px solid #d0d7de; border-radius: 8px; padding: 1rem; background: #f6f8fa; }
  `;

  override connectedCallback(): void {
    super.connectedCallback();
    const token = takeToken();
    if (!token) {
      this.state = { kind: "no-token" };
      return;
    }
    const connection = (this.connection = connect(new URL("graphql", location.href).toString(), token));
    this.cleanup.push(connection.onLive((live) => (this.live = live)));
    this.cleanup.push(
      connection.watch<{ customerStateChanged: { meters: MeterBalance[] } }>(
        STATE_UPDATES,
        {},
        (data) => {
          // The pushed balances at once; the lists they change (ledger, expiring credits) with a fresh read.
          if (this.state.kind === "ready") this.state = { kind: "ready", data: { ...this.state.data, customerState: { ...this.state.data.customerState, meters: data.customerStateChanged.meters } } };
          void this.read();
        },
        (err) => this.fail(err),
      ),
    );
    void this.read();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    for (const stop of this.cleanup.splice(0)) stop();
    this.connection?.release();
    this.connection = undefined;
  }

  /** Reads everything; pushes arriving while a read is in flight are answered by one more read after it. */
  private async read(): Promise<void> {
    const connection = this.connection;
    if (!connection) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    try {
      const data = await connection.request<PortalData>(PORTAL_QUERY, { within: EXPIRING_WITHIN_SECONDS });
      if (this.connection === connection && this.state.kind !== "ended") this.state = { kind: "ready", data: this.newerMeters(data) };
    } catch (err) {
      this.fail(err);
    } finally {
      this.reading = false;
    }
    if (this.readAgain) {
      this.readAgain = false;
      await this.read();
    }
  }

  /** A read that started before a push must not take the pushed balances back: per meter, the higher version. */
  private newerMeters(data: PortalData): PortalData {
    if (this.state.kind !== "ready") return data;
    const shown = new Map(this.state.data.customerState.meters.map((m) => [m.id, m]));
    const meters = data.customerState.meters.map((m) => {
      const pushed = shown.get(m.id);
      return pushed && pushed.version > m.version ? pushed : m;
    });
    return { ...data, customerState: { ...data.customerState, meters } };
  }

  private fail(err: unknown): void {
    if (credentialEnded(err)) this.state = { kind: "ended" };
    else if (this.state.kind !== "ready") this.state = { kind: "failed" };
    if (this.state.kind === "ended") this.live = false;
  }

  override render(): TemplateResult {
    const state = this.state;
    switch (state.kind) {
      case "loading":
        return html`<p role="status">Loading your credits…</p>`;
      case "no-token":
        return this.message("No access link", "Open this page from the link you were given: it carries your access key.");
      case "ended":
        return this.message("This link has expired", "Your access link has expired or was revoked. Ask for a new link to see your credits.");
      case "failed":
        return this.message("Your credits could not be loaded", "The service did not answer. Try again in a moment.");
      case "ready":
        return this.page(state.data);
    }
  }

  private message(title: string, text: string): TemplateResult {
    return html`<div class="message" role="alert" data-state=${this.state.kind}><h1>${title}</h1><p>${text}</p></div>`;
  }

  private page(data: PortalData): TemplateResult {
    const { customer, meters } = data.customerState;
    return html`
      <header>
        <h1>Your credits</h1>
        <span class="live" data-live=${String(this.live)} role="status">${this.live ? "Live" : "Reconnecting…"}</span>
      </header>
      <p class="muted">${[customer.name, customer.email].filter(Boolean).join(" · ")}</p>
      <section aria-labelledby="balances">
        <h2 id="balances">Balances</h2>
        ${meters.length === 0 ? html`<p class="muted">No credits yet.</p>` : html`<div class="cards">${meters.map((m) => this.balanceCard(m))}</div>`}
      </section>
      <section aria-labelledby="expiring">
        <h2 id="expiring">Expiring soon</h2>
        ${this.list(
          data.expiringCredits.edges,
          "No credits expire in the next 30 days.",
          ({ node: g }) => html`<li data-grant-id=${g.id}><span>${formatUnits(g.remainingUnits)} ${g.meter.name}</span><span class="muted">expire on ${formatDate(g.expiresAt)}</span></li>`,
        )}
      </section>
      <section aria-labelledby="subscriptions">
        <h2 id="subscriptions">Subscriptions</h2>
        ${this.list(data.customerSubscriptions.edges, "No subscriptions.", ({ node: s }) => html`<li data-subscription-id=${s.id}><span>${s.product.name}</span><span class="muted">${this.renewal(s)}</span></li>`)}
      </section>
      <section aria-labelledby="orders">
        <h2 id="orders">Orders</h2>
        ${this.list(
          data.orders.edges,
          "No orders.",
          ({ node: o }) =>
            html`<li data-order-id=${o.id}>
              <span>${o.product.name}${o.status === "REFUNDED" ? " (refunded)" : ""}</span>
              <span class="muted">${o.amount !== null && o.currency ? `${formatMoney(o.amount, o.currency)} · ` : ""}${formatDate(o.createdAt)}</span>
            </li>`,
        )}
      </section>
      <section aria-labelledby="activity">
        <h2 id="activity">Recent activity</h2>
        ${this.list(
          [...data.ledger.edges].reverse(),
          "Nothing yet.",
          ({ node: e }) =>
            html`<li data-entry-id=${e.id}>
              <span>${LEDGER_KINDS[e.kind] ?? e.kind} · ${e.meter.name}</span>
              <span class=${e.units.startsWith("-") ? "negative" : ""}>${e.units.startsWith("-") ? "" : "+"}${formatUnits(e.units)}</span>
              <span class="muted">${formatDate(e.occurredAt, true)} · balance ${formatUnits(e.balanceAfter)}</span>
            </li>`,
        )}
      </section>
    `;
  }

  private balanceCard(m: MeterBalance): TemplateResult {
    const row = (label: string, field: keyof MeterBalance, value: string) => html`<dt>${label}</dt><dd data-field=${field}>${formatUnits(value)}</dd>`;
    return html`<article class="card" data-meter-id=${m.meter.id} aria-label=${`${m.meter.name} balance`}>
      <h3>${m.meter.name}</h3>
      <div class="available" data-field="availableUnits">${formatUnits(m.availableUnits)}</div>
      <div class="muted">available</div>
      <dl>
        ${row("Credited", "creditedUnits", m.creditedUnits)} ${row("Used", "consumedUnits", m.consumedUnits)} ${row("Held", "heldUnits", m.heldUnits)}
        ${m.overageUnits !== "0" ? row("Overage", "overageUnits", m.overageUnits) : ""}
      </dl>
    </article>`;
  }

  private renewal(s: PortalData["customerSubscriptions"]["edges"][number]["node"]): string {
    if (s.status !== "ACTIVE") return `Ended ${formatDate(s.endedAt ?? s.currentPeriodEnd)}`;
    return s.cancelAtPeriodEnd ? `Ends on ${formatDate(s.currentPeriodEnd)}` : `Renews on ${formatDate(s.currentPeriodEnd)}`;
  }

  private list<T>(items: T[], empty: string, item: (value: T) => TemplateResult): TemplateResult {
    return items.length === 0 ? html`<p class="muted">${empty}</p>` : html`<ul>${items.map(item)}</ul>`;
  }
}

if (!customElements.get("credits-portal")) customElements.define("credits-portal", CreditsPortal);
