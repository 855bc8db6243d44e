// The transport: graphql-yoga over node:http, graphql-ws on a `ws` server sharing the same port and path,
// and /healthz. All GraphQL execution, HTTP or WebSocket, goes through Yoga's envelop so auth, error
// masking and logging behave the same on both.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { ExecutionArgs } from "graphql";
import { execute, getOperationAST, GraphQLError } from "graphql";
import { createYoga, maskError as defaultMaskError, type Plugin, type YogaInitialContext } from "graphql-yoga";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import type { Db } from "./db/client.ts";
import { bearerSecret, cachedAuthenticator, hashToken, type Principal } from "./domain/auth.ts";
import { balanceRowLoader, viewLoader } from "./domain/balance-view.ts";
import { DomainError, UnauthenticatedError } from "./domain/errors.ts";
import { yogaLogging, type Logger } from "./log.ts";
import { healthCheck } from "./health.ts";
import type { PubSub, RedisLink } from "./pubsub.ts";
import { catchUpAfterRedisOutage, pubSubNotify } from "./realtime.ts";
import { createScheduler } from "./scheduler.ts";
import { createWebhookWorker, DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from "./webhooks/delivery.ts";
import { randomBytes } from "node:crypto";
import { trackOperations, trackRequests } from "./shutdown.ts";
import { CLOSE_CODES, createSocketAuthority, type Connection } from "./socket-authority.ts";
import { transportLimits } from "./http/limits.ts";
import { quietClientProtocolErrors } from "./http/ws-limits.ts";
import { bearerHashOf } from "./http/rate-limit.ts";
import { resolveLimits, type Limits } from "./limits.ts";
import type { RenewalMode } from "./domain/subscriptions.ts";
import type { Context } from "./schema/builder.ts";
import { DEFAULT_METER_LIMITS, type MeterLimits } from "./domain/meters.ts";
import { renderGraphiQL, serveGraphiQLAsset } from "./graphiql.ts";
import { useInputErrorFields } from "./input-errors.ts";
import { portalRoutes, requestOrigin } from "./http/portal.ts";
import { useNoNulCharacters } from "./nul-bytes.ts";
import { schema } from "./schema/index.ts";
import { createLoaders } from "./schema/loaders.ts";

export interface AppDeps {
  db: Db;
  pubsub: PubSub;
  log: Logger;
  /** The service's notion of now; tests pass a controllable clock. */
  clock?: () => Date;
  renewalMode?: RenewalMode;
  /** Per-organization meter limits (config MAX_ACTIVE_METERS, MAX_FILTER_CLAUSES); defaults otherwise. */
  meterLimits?: MeterLimits;
  /** With Redis: its health, and subscribers catching up after an outage (createAppPubSub's `redis`). */
  redis?: RedisLink | null;
  /** Overrides of the transport limits' defaults (src/limits.ts); main.ts passes those from the environment. */
  limits?: Partial<Limits>;
  /**
   * Webhook settings over their defaults; main.ts passes those from the environment and the node's key.
   * Without a key, a random one for this process (secrets then cannot be read after a restart: tests only).
   */
  webhooks?: Partial<WebhookSettings>;
  /** PUBLIC_URL: where browsers reach the service (portal links, WebSocket origins); else each request's origin. */
  publicUrl?: string;
}

/** What graphql-ws keeps per connection (`ctx.extra`). */
type SocketExtra = {
  request: IncomingMessage;
  socket: import("ws").WebSocket;
  principal?: Principal;
};

/**
 * Queries and mutations run on graphql-js's own `execute` instead of Yoga's default (@graphql-tools/executor),
 * which copies every variable value once more before coercing it (`snapshotInputValue`: a second copy of a
 * 1,000-event batch, held for the whole call) and brings @defer/@stream, which this schema does not declare.
 * Measured on `npm run bench -- --engine postgresql --only ingest`, two runs each, alternated: 60–67 → 54–58 µs
 * of the service's CPU per ingested event. Subscriptions keep Yoga's executor.
 */
/**
 * A subscription over HTTP (an event stream: Yoga answers one for any Accept header that admits it, wildcards
 * or none included) outlives its request's authentication: the socket authority ends the response when the
 * credential ends. Decided by the operation, not the Accept header. WebSocket operations (`extra`) belong to
 * their socket, admitted on connect.
 */
function useHttpStreamsEndWithCredential(authority: { admit(socket: Connection, principal: Principal): boolean }, streams: { stream(res: ServerResponse): void }): Plugin {
  return {
    onSubscribe: ({ args }) => {
      const ctx = args.contextValue as { principal?: Principal | null; res?: ServerResponse; extra?: unknown };
      if (!ctx.res || ctx.extra) return;
      streams.stream(ctx.res); // a shutdown closes it rather than waiting for it
      if (ctx.principal) authority.admit(sseConnection(ctx.res), ctx.principal);
    },
  };
}

function useGraphqlJsExecute(): Plugin {
  return { onExecute: ({ setExecuteFn }) => setExecuteFn(execute as never) };
}

function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } });
}

/**
 * The principal of an Authorization header (null: none). `req`, for an HTTP request: its bearer secret's
 * hashToken was already computed for its rate limit (src/http/rate-limit.ts bearerHashOf) and is used.
 */
async function principalFromHeader(authenticateHash: (tokenHash: string) => Promise<Principal>, header: string | null | undefined, req?: IncomingMessage): Promise<Principal | null> {
  if (!header) return null;
  const secret = bearerSecret(header);
  if (!secret) throw unauthenticated("Authorization must be 'Bearer <token>'");
  const known = req ? bearerHashOf(req) : null;
  try {
    return await authenticateHash(known?.secret === secret ? known.tokenHash : hashToken(secret));
  } catch (err) {
    if (err instanceof UnauthenticatedError) throw unauthenticated(err.message);
    throw err;
  }
}

/** An SSE response as the socket authority sees a connection: closing it ends the stream (the client sees the
 * connection close, and a reconnection with the ended credential is refused with 401). */
function sseConnection(res: ServerResponse): Connection {
  return {
    OPEN: 1,
    CONNECTING: 0,
    get readyState() {
      return res.destroyed || res.writableEnded ? 3 : 1;
    },
    close: () => res.destroy(),
    once: (_event, listener) => res.once("close", listener),
  };
}

export function createApp(deps: AppDeps) {
  const { db, pubsub, log } = deps;
  const clock = deps.clock ?? (() => new Date());
  const authenticator = cachedAuthenticator(db);
  // Token expiry is judged on the service clock, the same one that closes sockets at expiry.
  // A token that authenticates gets a request budget of its own on this node (src/http/rate-limit.ts
  // KnownTokens); until then its requests count against their address.
  const authenticateHash = async (tokenHash: string) => {
    const principal = await authenticator(tokenHash, clock());
    transport.knownTokens.add(tokenHash);
    return principal;
  };
  // Closes sockets whose credential ends while they are open (expiry, revocation, customer deletion).
  const authority = createSocketAuthority({ db, pubsub, log, clock, forgetToken: authenticator.forget });
  authority.start();
  const notify = authority.notifying(pubSubNotify(pubsub));
  const webhookSettings: WebhookSettings = { ...DEFAULT_WEBHOOK_SETTINGS, key: randomBytes(32), ...deps.webhooks };
  const scheduler = createScheduler({ db, notify, log, clock, renewalMode: deps.renewalMode ?? "auto", webhookRetentionMs: webhookSettings.retentionMs });
  const webhooks = createWebhookWorker({ db, pubsub, log, settings: webhookSettings });
  const meterLimits = deps.meterLimits ?? DEFAULT_METER_LIMITS;
  const transport = transportLimits(resolveLimits(deps.limits), deps.publicUrl);
  const servePortal = portalRoutes({ publicUrl: deps.publicUrl, log });
  // Shared by every request and subscriber of this app: one commit's pushes read their rows together.
  const balanceRows = balanceRowLoader(db, clock);
  /** Unexpected errors the masking below logged with their stack, which Yoga then reports again. */
  const reportedErrors = new WeakSet<object>();

  const yoga = createYoga<{ extra?: SocketExtra; req?: IncomingMessage; res?: ServerResponse }, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    graphiql: { subscriptionsProtocol: "WS", title: "Credits ledger" },
    renderGraphiQL, // from this service's own assets (src/graphiql.ts), not a CDN
    ...transport.yogaOptions,
    plugins: [useGraphqlJsExecute(), useNoNulCharacters(), useInputErrorFields(), useHttpStreamsEndWithCredential(authority, { stream: (res) => requests.stream(res) }), ...transport.yogaOptions.plugins],
    // Client errors at info, the service's own at error (once): src/log.ts.
    logging: yogaLogging(log, reportedErrors),
    context: async (init: YogaInitialContext & { extra?: SocketExtra; req?: IncomingMessage; res?: ServerResponse }): Promise<Context> => {
      // WebSocket operations were authenticated once, on connect; HTTP requests on every request (with the
      // token's hash the guard computed for the request's rate limit).
      const principal = init.extra
        ? (init.extra.principal ?? null)
        : await principalFromHeader(authenticateHash, init.request.headers.get("authorization"), init.req);
      // Only a session's portal link needs it: not parsed for every request.
      const publicUrl = () => deps.publicUrl ?? (init.extra ? requestOrigin(init.extra.request) : new URL(init.request.url).origin);
      return { db, pubsub, notify, log, principal, now: clock, balanceView: viewLoader(db, clock), balanceRows, meterLimits, loaders: createLoaders(db), webhooks: webhookSettings, publicUrl };
    },
    maskedErrors: {
      maskError(error, message, isDev) {
        const original = error instanceof GraphQLError ? error.originalError : error;
        if (original instanceof DomainError) {
          const located = error instanceof GraphQLError ? error : undefined;
          return new GraphQLError(original.message, {
            nodes: located?.nodes,
            path: located?.path,
            extensions: { code: original.code, ...(original.field ? { field: original.field } : {}) },
          });
        }
        if (!(original instanceof GraphQLError) && original !== undefined) {
          log.error({ err: original, path: error instanceof GraphQLError ? error.path : undefined }, "unexpected error");
          if (typeof error === "object" && error !== null) reportedErrors.add(error);
        }
        return defaultMaskError(error, message, isDev);
      },
    },
  });

  const health = healthCheck(db, deps.redis, log);
  if (deps.redis) catchUpAfterRedisOutage(db, deps.redis, log);

  const httpServer = createServer(transport.serverOptions, async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/healthz") return health(res);
    if (await transport.guard(req, res)) return;
    if (await serveGraphiQLAsset(req, res)) return;
    if (await servePortal(req, res)) return;
    return yoga(req, res);
  });
  transport.applyToServer(httpServer);
  const requests = trackRequests(httpServer);

  const wsServer: WebSocketServer = new WebSocketServer({ server: httpServer, path: yoga.graphqlEndpoint, ...transport.wsServerOptions(() => wsServer) });
  // The WebSocket server re-emits the HTTP server's errors (a port in use at listen): those reach listen's
  // caller, not graphql-ws's listener, which would print them as its own internal errors.
  const quietServerErrors = () => {
    wsServer.removeAllListeners("error");
    wsServer.on("error", () => {});
  };
  wsServer.on("connection", (socket, request) => {
    quietClientProtocolErrors(socket, log);
    transport.sockets.opened(socket, request.socket.remoteAddress);
  });
  // Queries and mutations over graphql-ws: shutdown lets those running answer (within its grace period) and
  // refuses new ones before it closes the sockets, so no write commits after its caller was told "going away".
  const wsOperations = trackOperations();
  const wsCleanup = useServer<Record<string, unknown> | undefined, SocketExtra>(
    {
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      // Authenticate once per connection; a socket without a valid token is closed with 4401. The socket
      // authority then closes it when the token expires or is revoked, or its customer is deleted.
      onConnect: async (ctx) => {
        const address = ctx.extra.request.socket.remoteAddress;
        const refused = await transport.sockets.admit(ctx, ctx.extra.socket, address);
        if (refused) {
          ctx.extra.socket.close(refused.code, refused.reason);
          return false;
        }
        const header = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        try {
          const principal = typeof header === "string" ? await principalFromHeader(authenticateHash, header) : null;
          if (!principal) throw unauthenticated("connectionParams.authorization must be 'Bearer <token>'");
          // counted against its token, now that it is one
          const over = transport.sockets.enter(ctx, address);
          if (over) {
            ctx.extra.socket.close(over.code, over.reason);
            return false;
          }
          ctx.extra.principal = principal;
          return authority.admit(ctx.extra.socket, principal);
        } catch (err) {
          if (!(err instanceof GraphQLError)) throw err;
          ctx.extra.socket.close(CLOSE_CODES.unauthorized, `Unauthorized: ${err.message}`.slice(0, 120));
          return false;
        }
      },
      onClose: (ctx) => transport.sockets.release(ctx),
      onComplete: (ctx, id) => wsOperations.end(ctx, id),
      onSubscribe: async (ctx, id, params) => {
        if (wsOperations.closing) return [new GraphQLError("This node is shutting down: send the operation again, on a new connection", { extensions: { code: "UNAVAILABLE" } })];
        if (ctx.extra.principal && !authority.allows(ctx.extra.socket, ctx.extra.principal)) {
          return [unauthenticated("The access token of this connection is no longer valid")];
        }
        const refused = await transport.sockets.checkOperation(ctx, id, ctx.extra.socket);
        if (refused) return refused;
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        });
        let document;
        try {
          document = parse(params.query);
        } catch (err) {
          return [err as GraphQLError];
        }
        const errors = validate(schema, document);
        if (errors.length) return errors;
        if (getOperationAST(document, params.operationName)?.operation !== "subscription") wsOperations.begin(ctx, id);
        return {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        } satisfies ExecutionArgs;
      },
    },
    wsServer,
  );
  quietServerErrors();

  return {
    yoga,
    httpServer,
    scheduler,
    /** The webhook worker (src/webhooks/delivery.ts): main.ts starts it; tests may tick it. */
    webhooks,
    authority,
    /** The service clock jumped (tests move it): re-check what depends on it now. */
    clockMoved(): void {
      authority.clockMoved();
    },
    listen(port = 0, host = "127.0.0.1"): Promise<number> {
      return new Promise((resolve, reject) => {
        httpServer.once("error", reject);
        httpServer.listen(port, host, () => {
          httpServer.off("error", reject);
          resolve((httpServer.address() as { port: number }).port);
        });
      });
    },
    /**
     * Orderly shutdown (src/shutdown.ts): stop accepting connections and the scheduler, let HTTP requests and
     * WebSocket queries and mutations in flight finish for up to `graceMs` (new WebSocket operations are
     * refused meanwhile), then close the sockets with 1001 and whatever connections remain. Resolves false
     * when work was still running at the end of the grace period.
     */
    async close(graceMs = 10_000): Promise<boolean> {
      const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      const schedulerStopped = scheduler.stop();
      const webhooksStopped = webhooks.stop();
      await authority.stop();
      // HTTP requests and WebSocket queries and mutations finish (or the grace period ends) before sockets close
      const [drained, operationsDrained] = await Promise.all([requests.drain(graceMs), wsOperations.drain(graceMs)]);
      await wsCleanup.dispose();
      // Nothing in flight any more (or the grace period is over): whatever connections remain go now, also
      // WebSockets whose client never answered the close frame.
      httpServer.closeAllConnections();
      for (const socket of wsServer.clients) socket.terminate();
      await Promise.all([closed, schedulerStopped, webhooksStopped]);
      await yoga.dispose();
      return drained && operationsDrained;
    },
  };
}

export type App = ReturnType<typeof createApp>;
