// <credits-balance meter-id="…" token="…" endpoint="…">: one customer's available credits on one meter, kept live
// over graphql-ws. Paste <script src="https://credits.example.com/widget.js"></script> into any page (no framework
// needed); `endpoint` defaults to /graphql beside that script. Styled through CSS custom properties (README).
import { LitElement, css, html } from "lit";
import { connect, credentialEnded, formatUnits, type Connection } from "./connection.ts";

const BALANCE_FIELDS = "availableUnits balance creditedUnits consumedUnits heldUnits version meter { id name }";
const BALANCE_QUERY = `query WidgetBalance($meterId: ID!) { customerMeter(meterId: $meterId) { ${BALANCE_FIELDS} } }`;
const BALANCE_UPDATES = `subscription WidgetBalanceUpdates($meterId: ID!) { customerMeterUpdated(meterId: $meterId) { ${BALANCE_FIELDS} } }`;

interface Balance {
  availableUnits: string;
  version: number;
  meter: { id: string; name: string };
}

// The script's own address, known only while it first runs: the default endpoint is /graphql beside it.
const script = document.currentScript;
const DEFAULT_ENDPOINT = script instanceof HTMLScriptElement && script.src ? new URL("graphql", script.src).toString() : undefined;

type State = { kind: "loading" } | { kind: "ready"; balance: Balance | null } | { kind: "ended" } | { kind: "failed" };

export class CreditsBalance extends LitElement {
  static properties = {
    meterId: { attribute: "meter-id" },
    token: {},
    endpoint: {},
    label: {},
    state: { state: true },
  };

  declare meterId: string | undefined;
  declare token: string | undefined;
  declare endpoint: string | undefined;
  /** Shown instead of the meter's name. */
  declare label: string | undefined;
  declare state: State;

  private connection: Connection | undefined;
  private stop: (() => void) | undefined;

  constructor() {
    super();
    this.state = { kind: "loading" };
  }

  static styles = css`
    :host {
      display: inline-block;
      font-family: var(--credits-balance-font, inherit);
      color: var(--credits-balance-color, inherit);
      background: var(--credits-balance-background, transparent);
      border: var(--credits-balance-border, 1px solid #d0d7de);
      border-radius: var(--credits-balance-radius, 8px);
      padding: var(--credits-balance-padding, 0.5em 0.75em);
      line-height: 1.3;
    }
    .value {
      display: block;
      font-size: var(--credits-balance-value-size, 1.5em);
      font-weight: 600;
      color: var(--credits-balance-accent, #0b5cad);
      font-variant-numeric: tabular-nums;
    }
    .label,
    .unit {
      font-size: 0.85em;
    }
    .visually-hidden {
      position: absolute;
      width: 1px;
      height: 1px;
      margin: -1px;
      padding: 0;
      overflow: hidden;
      clip: rect(0 0 0 0);
      white-space: nowrap;
      border: 0;
    }
  `;

  override updated(changed: Map<string, unknown>): void {
    if (changed.has("meterId") || changed.has("token") || changed.has("endpoint")) this.subscribe();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.hasUpdated) this.subscribe();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.unsubscribe();
  }

  private unsubscribe(): void {
    this.stop?.();
    this.connection?.release();
    this.stop = this.connection = undefined;
  }

  private subscribe(): void {
    this.unsubscribe();
    const endpoint = this.endpoint || DEFAULT_ENDPOINT;
    if (!this.meterId || !this.token || !endpoint) {
      this.state = { kind: "failed" };
      return;
    }
    this.state = { kind: "loading" };
    const connection = (this.connection = connect(endpoint, this.token));
    const variables = { meterId: this.meterId };
    // The newest version wins, whether it came from the first read or a push that overtook it.
    const show = (balance: Balance | null) => {
      const current = this.state.kind === "ready" ? this.state.balance : null;
      if (!balance || !current || balance.version >= current.version) this.state = { kind: "ready", balance: balance ?? current };
    };
    const fail = (err: unknown) => {
      if (this.connection === connection) this.state = credentialEnded(err) ? { kind: "ended" } : { kind: "failed" };
    };
    // Subscribe first, then read: nothing committed in between is missed.
    this.stop = connection.watch<{ customerMeterUpdated: Balance }>(BALANCE_UPDATES, variables, (data) => show(data.customerMeterUpdated), fail);
    connection.request<{ customerMeter: Balance | null }>(BALANCE_QUERY, variables).then((data) => {
      if (this.connection === connection) show(data.customerMeter);
    }, fail);
  }

  override render() {
    const state = this.state;
    if (state.kind === "loading") return html`<span role="status" aria-live="polite">Loading balance…</span>`;
    if (state.kind === "ended") return html`<span role="status" aria-live="polite" part="message">This balance link has expired. Reload the page to see your credits.</span>`;
    if (state.kind === "failed") return html`<span role="status" aria-live="polite" part="message">Balance unavailable.</span>`;
    const name = this.label || state.balance?.meter.name || "Credits";
    const units = formatUnits(state.balance?.availableUnits ?? "0");
    return html`<div role="status" aria-live="polite" aria-atomic="true">
      <span class="label" part="label" aria-hidden="true">${name}</span>
      <span class="value" part="value" aria-hidden="true">${units}</span>
      <span class="unit" part="unit" aria-hidden="true">credits available</span>
      <span class="visually-hidden">${name}: ${units} credits available.</span>
    </div>`;
  }
}

if (!customElements.get("credits-balance")) customElements.define("credits-balance", CreditsBalance);
