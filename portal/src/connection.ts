// What the portal and the widget share: one graphql-ws connection per (endpoint, token), queries and
// subscriptions over it, how a closed credential shows, and exact formatting of Decimal strings.
import { createClient, type Client } from "graphql-ws/client";

/** The service closes a socket with these when its token is invalid, expired or revoked, or its customer deleted. */
const CREDENTIAL_ENDED = new Set([4401, 4403]);

export interface Connection {
  /** One result of a query (the first error's message rejects it). */
  request<T>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** Every message of a subscription, until the returned function is called. */
  watch<T>(query: string, variables: Record<string, unknown>, onData: (data: T) => void, onError: (err: unknown) => void): () => void;
  /** Called with true when the socket is open, false when it dropped (it reconnects by itself). */
  onLive(listener: (live: boolean) => void): () => void;
  release(): void;
}

/** ws(s):// for an http(s):// GraphQL endpoint, relative to the page. */
export function webSocketUrl(endpoint: string): string {
  const url = new URL(endpoint, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/** True when an error means the token no longer opens anything (expired, revoked, unknown). */
export function credentialEnded(err: unknown): boolean {
  if (typeof err === "object" && err !== null && "code" in err && CREDENTIAL_ENDED.has((err as { code: number }).code)) return true;
  const errors = Array.isArray(err) ? err : [err];
  return errors.some((e) => (e as { extensions?: { code?: string } } | null)?.extensions?.code === "UNAUTHENTICATED");
}

interface Shared {
  client: Client;
  users: number;
  listeners: Set<(live: boolean) => void>;
}

const shared = new Map<string, Shared>();

/** The connection for this endpoint and token, shared by every element using the same pair on the page. */
export function connect(endpoint: string, token: string): Connection {
  const url = webSocketUrl(endpoint);
  const key = `${url}\n${token}`;
  let entry = shared.get(key);
  if (!entry) {
    const listeners = new Set<(live: boolean) => void>();
    const client = createClient({
      url,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 20, // network drops; an ended credential (4401) is never retried
      on: {
        connected: () => listeners.forEach((l) => l(true)),
        closed: () => listeners.forEach((l) => l(false)),
      },
    });
    entry = { client, users: 0, listeners };
    shared.set(key, entry);
  }
  const mine = entry;
  mine.users++;
  let released = false;
  return {
    request<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        let data: T | undefined;
        mine.client.subscribe<T>(
          { query, variables },
          {
            next: (result) => {
              if (result.errors?.length) reject(result.errors);
              else data = result.data as T;
            },
            error: reject,
            complete: () => (data === undefined ? reject(new Error("no data")) : resolve(data)),
          },
        );
      });
    },
    watch<T>(query: string, variables: Record<string, unknown>, onData: (data: T) => void, onError: (err: unknown) => void): () => void {
      return mine.client.subscribe<T>(
        { query, variables },
        {
          next: (result) => (result.errors?.length ? onError(result.errors) : onData(result.data as T)),
          error: onError,
          complete: () => {},
        },
      );
    },
    onLive(listener) {
      mine.listeners.add(listener);
      return () => mine.listeners.delete(listener);
    },
    release() {
      if (released) return;
      released = true;
      if (--mine.users > 0) return;
      shared.delete(key);
      void mine.client.dispose();
    },
  };
}

/** A Decimal string (exact, never through a float) with the reader's digit grouping: "12345.5" → "12,345.5". */
export function formatUnits(value: string): string {
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 }).format(value as Intl.StringNumericLiteral);
}

/** An amount in minor currency units as money: ("1999", "USD") → "$19.99", moving the point in the string. */
export function formatMoney(minor: string, currency: string): string {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  const negative = minor.startsWith("-");
  const [whole, fraction = ""] = (negative ? minor.slice(1) : minor).split(".");
  const padded = whole.padStart(digits + 1, "0");
  const major = `${negative ? "-" : ""}${padded.slice(0, padded.length - digits)}.${padded.slice(padded.length - digits)}${fraction}`;
  return format.format(major as Intl.StringNumericLiteral);
}

export function formatDate(iso: string, withTime = false): string {
  return new Intl.DateTimeFormat(undefined, withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" }).format(new Date(iso));
}
