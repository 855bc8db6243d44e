// The transport: graphql-yoga over node:http, graphql-ws on a `ws` server sharing the same port and path,
// and /healthz. All GraphQL execution, HTTP or WebSocket, goes through Yoga's envelop so auth, error
// masking and logging behave the same on both.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { ExecutionArgs } from "graphql";
import { GraphQLError } from "graphql";
import { createYoga, maskError as defaultMaskError, type YogaInitialContext } from "graphql-yoga";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import type { Db } from "./db/client.ts";
import { bearerSecret, cachedAuthenticator, type Principal } from "./domain/auth.ts";
import { viewLoader } from "./domain/balance-view.ts";
import { DomainError, UnauthenticatedError } from "./domain/errors.ts";
import type { Logger } from "./log.ts";
import type { PubSub } from "./pubsub.ts";
import { pubSubNotify } from "./realtime.ts";
import { createScheduler } from "./scheduler.ts";
import { transportLimits } from "./http/limits.ts";
import { resolveLimits, type Limits } from "./limits.ts";
import type { RenewalMode } from "./domain/subscriptions.ts";
import type { Context } from "./schema/builder.ts";
import { schema } from "./schema/index.ts";

export interface AppDeps {
  db: Db;
  pubsub: PubSub;
  log: Logger;
  /** The service's notion of now; tests pass a controllable clock. */
  clock?: () => Date;
  renewalMode?: RenewalMode;
  /** Overrides of the transport limits' defaults (src/limits.ts); main.ts passes those from the environment. */
  limits?: Partial<Limits>;
}

/** What graphql-ws keeps per connection (`ctx.extra`). */
type SocketExtra = {
  request: IncomingMessage;
  socket: import("ws").WebSocket;
  principal?: Principal;
};

function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401 } } });
}

async function principalFromHeader(authenticate: (secret: string) => Promise<Principal>, header: string | null | undefined): Promise<Principal | null> {
  if (!header) return null;
  const secret = bearerSecret(header);
  if (!secret) throw unauthenticated("Authorization must be 'Bearer <token>'");
  try {
    return await authenticate(secret);
  } catch (err) {
    if (err instanceof UnauthenticatedError) throw unauthenticated(err.message);
    throw err;
  }
}

export function createApp(deps: AppDeps) {
  const { db, pubsub, log } = deps;
  const notify = pubSubNotify(pubsub);
  const clock = deps.clock ?? (() => new Date());
  const scheduler = createScheduler({ db, notify, log, clock, renewalMode: deps.renewalMode ?? "auto" });
  const authenticate = cachedAuthenticator(db);
  const transport = transportLimits(resolveLimits(deps.limits));

  const yoga = createYoga<{ extra?: SocketExtra }, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    graphiql: { subscriptionsProtocol: "WS", title: "Credits ledger" },
    ...transport.yogaOptions,
    logging: {
      debug: (...args) => log.debug(args.map(String).join(" ")),
      info: (...args) => log.info(args.map(String).join(" ")),
      warn: (...args) => log.warn(args.map(String).join(" ")),
      error: (...args) => log.error(args.map(String).join(" ")),
    },
    context: async (init: YogaInitialContext & { extra?: SocketExtra }): Promise<Context> => {
      // WebSocket operations were authenticated once, on connect; HTTP requests on every request.
      const principal = init.extra ? (init.extra.principal ?? null) : await principalFromHeader(authenticate, init.request.headers.get("authorization"));
      return { db, pubsub, notify, log, principal, now: clock, balanceView: viewLoader(db, clock) };
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
        }
        return defaultMaskError(error, message, isDev);
      },
    },
  });

  const httpServer = createServer(transport.serverOptions, async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === "/healthz") {
      try {
        await db.$queryRawUnsafe("SELECT 1");
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "ok" }));
      } catch (err) {
        log.error({ err }, "health check failed");
        res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ status: "unavailable" }));
      }
      return;
    }
    if (await transport.guard(req, res)) return;
    return yoga(req, res);
  });
  transport.applyToServer(httpServer);

  const wsServer: WebSocketServer = new WebSocketServer({ server: httpServer, path: yoga.graphqlEndpoint, ...transport.wsServerOptions(() => wsServer) });
  const wsCleanup = useServer<Record<string, unknown> | undefined, SocketExtra>(
    {
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      // Authenticate once per connection; a socket without a valid token is closed with 4401.
      onConnect: async (ctx) => {
        const refused = transport.sockets.admit(ctx, ctx.extra.request.socket.remoteAddress);
        if (refused) {
          ctx.extra.socket.close(refused.code, refused.reason);
          return false;
        }
        const header = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        try {
          const principal = typeof header === "string" ? await principalFromHeader(authenticate, header) : null;
          if (!principal) throw unauthenticated("connectionParams.authorization must be 'Bearer <token>'");
          ctx.extra.principal = principal;
          return true;
        } catch (err) {
          if (!(err instanceof GraphQLError)) throw err;
          ctx.extra.socket.close(4401, `Unauthorized: ${err.message}`.slice(0, 120));
          return false;
        }
      },
      onClose: (ctx) => transport.sockets.release(ctx),
      onSubscribe: async (ctx, id, params) => {
        const refused = await transport.sockets.checkOperation(ctx, id);
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

  return {
    yoga,
    httpServer,
    scheduler,
    listen(port = 0, host = "127.0.0.1"): Promise<number> {
      return new Promise((resolve, reject) => {
        httpServer.once("error", reject);
        httpServer.listen(port, host, () => {
          httpServer.off("error", reject);
          resolve((httpServer.address() as { port: number }).port);
        });
      });
    },
    /** Orderly shutdown: stop accepting, close subscriptions and sockets, then HTTP. */
    async close(): Promise<void> {
      await scheduler.stop();
      await wsCleanup.dispose();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeIdleConnections();
        setTimeout(() => httpServer.closeAllConnections(), 2000).unref();
      });
      await yoga.dispose();
    },
  };
}

export type App = ReturnType<typeof createApp>;
