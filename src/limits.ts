// Bounded work per request and per client: the limits the transport enforces (src/http/*), their defaults,
// and how they are read from the environment (src/config.ts calls limitsFromEnv). Documented in the README
// ("Limits") and .env.example.

export interface Limits {
  /** Deepest selection nesting of an operation (introspection excluded). */
  maxDepth: number;
  /** Aliased fields per operation. */
  maxAliases: number;
  /** Lexical tokens of a document; the parser stops at the limit (this also bounds its recursion). */
  maxTokens: number;
  /** Directives per operation. */
  maxDirectives: number;
  /** graphql-armor's cost estimate of an operation (objects 2, scalars 1, ×1.5 per level, × `first`). */
  maxCost: number;
  /** Largest HTTP request body; a larger one is refused with 413 before it is read. */
  maxBodyBytes: number;
  /** Requests (HTTP or WebSocket operations) per second per token, or per client address without a token. */
  rateLimitPerSecond: number;
  /** Extra requests per 10 s a client may make above the rate (a burst). */
  rateLimitBurst: number;
  /**
   * A request over the budget is answered 429 only once the budget refills, or after this long at most: a
   * client that retries at once cannot keep the node busy refusing it (0: answer at once).
   */
  rateLimitDelayMs: number;
  /** HTTP requests of one client in progress at once on a node; more wait in line. */
  concurrencyPerClient: number;
  /** HTTP requests of one client waiting in line; more are refused (429). */
  queuePerClient: number;
  /** Node http: time allowed to receive a request's headers. */
  headersTimeoutMs: number;
  /** Node http: time allowed to receive a whole request (headers and body). */
  requestTimeoutMs: number;
  /** Node http: an idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open TCP connections per node (WebSockets included); more are dropped on accept. */
  maxConnections: number;
  /** Open WebSockets per node; more are refused with 503 at the upgrade. */
  wsMaxSockets: number;
  /** Open WebSockets per token; more are closed with 1013 after connection_init. */
  wsMaxSocketsPerToken: number;
  /**
   * WebSockets of one client address that have sent nothing yet (no connection_init); more are refused with
   * 429 at the upgrade. A client authenticates within milliseconds; sockets that never do cannot fill the node.
   */
  wsMaxPendingPerAddress: number;
  /** Operations in progress (subscriptions included) per WebSocket. */
  wsMaxSubscriptionsPerSocket: number;
  /** Operations in progress over all WebSockets of one token. */
  wsMaxSubscriptionsPerToken: number;
  /** Largest connectionParams (as JSON) a socket may send in connection_init. */
  wsMaxConnectionParamsBytes: number;
  /**
   * Largest WebSocket message; a larger one closes the socket (1009). A partly sent message is held until it
   * is whole, so this bounds what one socket can make the node hold. Large writes belong on HTTP.
   */
  wsMaxMessageBytes: number;
  /** Origins allowed to call cross-origin (CORS). Empty: none; ["*"]: any, never with credentials. */
  corsOrigins: string[];
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxDepth: 12,
  maxAliases: 30,
  maxTokens: 1_000,
  maxDirectives: 20,
  maxCost: 20_000,
  maxBodyBytes: 8 * 1024 * 1024,
  rateLimitPerSecond: 300,
  rateLimitBurst: 600,
  rateLimitDelayMs: 1_000,
  concurrencyPerClient: 8,
  queuePerClient: 256,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 10_000,
  wsMaxSockets: 5_000,
  wsMaxSocketsPerToken: 200,
  wsMaxPendingPerAddress: 100,
  wsMaxSubscriptionsPerSocket: 100,
  wsMaxSubscriptionsPerToken: 2_000,
  wsMaxConnectionParamsBytes: 8 * 1024,
  wsMaxMessageBytes: 64 * 1024,
  corsOrigins: [],
});

/** Environment variable of each numeric limit. */
export const LIMIT_ENV: Readonly<Record<Exclude<keyof Limits, "corsOrigins">, string>> = Object.freeze({
  maxDepth: "GRAPHQL_MAX_DEPTH",
  maxAliases: "GRAPHQL_MAX_ALIASES",
  maxTokens: "GRAPHQL_MAX_TOKENS",
  maxDirectives: "GRAPHQL_MAX_DIRECTIVES",
  maxCost: "GRAPHQL_MAX_COST",
  maxBodyBytes: "HTTP_MAX_BODY_BYTES",
  rateLimitPerSecond: "RATE_LIMIT_PER_SECOND",
  rateLimitBurst: "RATE_LIMIT_BURST",
  rateLimitDelayMs: "RATE_LIMIT_DELAY_MS",
  concurrencyPerClient: "RATE_LIMIT_CONCURRENCY",
  queuePerClient: "RATE_LIMIT_QUEUE",
  headersTimeoutMs: "HTTP_HEADERS_TIMEOUT_MS",
  requestTimeoutMs: "HTTP_REQUEST_TIMEOUT_MS",
  keepAliveTimeoutMs: "HTTP_KEEP_ALIVE_TIMEOUT_MS",
  maxConnections: "HTTP_MAX_CONNECTIONS",
  wsMaxSockets: "WS_MAX_SOCKETS",
  wsMaxSocketsPerToken: "WS_MAX_SOCKETS_PER_TOKEN",
  wsMaxPendingPerAddress: "WS_MAX_PENDING_PER_ADDRESS",
  wsMaxSubscriptionsPerSocket: "WS_MAX_SUBSCRIPTIONS_PER_SOCKET",
  wsMaxSubscriptionsPerToken: "WS_MAX_SUBSCRIPTIONS_PER_TOKEN",
  wsMaxConnectionParamsBytes: "WS_MAX_CONNECTION_PARAMS_BYTES",
  wsMaxMessageBytes: "WS_MAX_MESSAGE_BYTES",
});

/** Highest allowed token limit (see resolveLimits). */
export const MAX_TOKENS_CEILING = 1_500;

/** The defaults with `overrides` applied (createApp's `limits` option). */
export function resolveLimits(overrides: Partial<Limits> = {}): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS, corsOrigins: [...DEFAULT_LIMITS.corsOrigins] };
  for (const [key, value] of Object.entries(overrides) as [keyof Limits, never][]) {
    if (value !== undefined) limits[key] = value;
  }
  // graphql-js parses nested lists, objects and selections recursively: about 2,000 levels exhaust V8's
  // default stack, and every level costs at least one token.
  if (limits.maxTokens > MAX_TOKENS_CEILING) throw new Error(`GRAPHQL_MAX_TOKENS (the token limit) must be at most ${MAX_TOKENS_CEILING} (deeper documents can exhaust the parser's stack)`);
  if (limits.requestTimeoutMs < limits.headersTimeoutMs) throw new Error("HTTP_REQUEST_TIMEOUT_MS (the request timeout) must not be shorter than HTTP_HEADERS_TIMEOUT_MS (the headers timeout)");
  return limits;
}
