// Limits on graphql-ws sockets: sockets per node and per token, connectionParams size, operations in progress
// per socket and per token, and the request budget (every subscribe message draws on the token's budget,
// shared with HTTP). An operation over a limit gets an error message for its id; the socket stays usable.
import { GraphQLError } from "graphql";
import type { Context as WsContext } from "graphql-ws";
import type { VerifyClientCallbackAsync, WebSocketServer } from "ws";
import type { Limits } from "../limits.ts";
import { keyOf, rateLimitedError, tokenHashOf, type KnownTokens, type RateLimiter } from "./rate-limit.ts";

/** WebSocket close code "Try Again Later" (RFC 6455 registry): a socket over a per-token limit. */
export const CLOSE_TRY_AGAIN_LATER = 1013;
/** graphql-ws's Bad Request: connectionParams too large. */
export const CLOSE_BAD_REQUEST = 4400;

export function limitExceeded(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "LIMIT_EXCEEDED" } });
}

type AnyContext = WsContext<Record<string, unknown> | undefined, unknown>;

/**
 * A client's protocol error (a message over maxPayload, an unmasked frame, invalid UTF-8: `ws` codes them
 * WS_ERR_*) is the client's, not the service's: `ws` has already closed the socket with the matching code
 * (1009, 1002, 1007), but it also emits the error on the socket, where graphql-ws prints a stack with
 * console.error for each one, so any client could flood the log. Such errors go to `log` at debug instead;
 * any other error still reaches graphql-ws's listener. Call before graphql-ws sees the socket.
 */
export function quietClientProtocolErrors(socket: { emit(event: string | symbol, ...args: unknown[]): boolean }, log: { debug(obj: object, msg: string): void }): void {
  const emit = socket.emit;
  socket.emit = function (this: unknown, event: string | symbol, ...args: unknown[]): boolean {
    const err = args[0] as { code?: unknown; message?: unknown } | undefined;
    if (event === "error" && typeof err?.code === "string" && err.code.startsWith("WS_ERR_")) {
      log.debug({ code: err.code, reason: err.message }, "WebSocket closed for a client's protocol error");
      return true;
    }
    return emit.call(this, event, ...args);
  };
}

/** The part of a `ws` WebSocket used here: reading from it can be paused. */
export interface PausableSocket {
  readonly readyState: number;
  pause(): void;
  resume(): void;
}

/**
 * A socket that keeps sending operations only to have them refused is read more slowly: after every
 * REFUSALS_BEFORE_PAUSE refusals it is not read for PAUSE_MS. Each operation is still answered, and the
 * socket stays open, but one client's burst of thousands of subscribe messages cannot hold the event loop
 * (and every other client) for seconds.
 */
const REFUSALS_BEFORE_PAUSE = 100;
const PAUSE_MS = 50;
const OPEN = 1;

export function createSocketLimits(limits: Limits, rateLimiter: RateLimiter, known: KnownTokens) {
  // Refusals are built once and reused: a client may send thousands of subscribe messages in a burst, and a
  // GraphQLError costs a stack trace each.
  const overSocket = [limitExceeded(`Too many operations on this WebSocket (limit ${limits.wsMaxSubscriptionsPerSocket}); complete some first.`)];
  const overToken = [limitExceeded(`Too many operations over this token's WebSockets (limit ${limits.wsMaxSubscriptionsPerToken}); complete some first.`)];
  const rateLimited = new Map<number, GraphQLError[]>();
  const rateLimitedFor = (seconds: number) => {
    let errors = rateLimited.get(seconds);
    if (!errors) rateLimited.set(seconds, (errors = [rateLimitedError(seconds)]));
    return errors;
  };
  // Each admitted socket: the key it counts under (where its token stood when it connected), and what its
  // operations' budget key is made of.
  const admitted = new WeakMap<AnyContext, { key: string; tokenHash: string | null; remoteAddress: string | undefined }>();
  const socketsOf = new Map<string, Set<AnyContext>>();
  // Open sockets per client address that have not sent connection_init yet, and how each one stops counting.
  const silent = new Map<string, number>();
  const initialised = new WeakMap<object, () => void>();
  // The hash of each socket's bearer secret, worked out once at connection_init (admit) for enter too.
  const hashes = new WeakMap<AnyContext, string | null>();
  // Operations each socket accepted. graphql-ws removes an operation from ctx.subscriptions when it ends (and
  // empties it when the socket closes), so an id no longer there is pruned. Counting ctx.subscriptions itself
  // would cost O(n) per message: a burst of n subscribe messages registers all of them before any is checked.
  const acceptedOf = new WeakMap<AnyContext, Set<string>>();
  const refusalsOf = new WeakMap<AnyContext, number>();

  function refuse(ctx: AnyContext, socket: PausableSocket, errors: GraphQLError[]): GraphQLError[] {
    const refusals = (refusalsOf.get(ctx) ?? 0) + 1;
    refusalsOf.set(ctx, refusals % REFUSALS_BEFORE_PAUSE);
    if (refusals >= REFUSALS_BEFORE_PAUSE && socket.readyState === OPEN) {
      socket.pause();
      setTimeout(() => {
        if (socket.readyState === OPEN) socket.resume();
      }, PAUSE_MS).unref();
    }
    return errors;
  }

  function live(ctx: AnyContext): Set<string> {
    let ids = acceptedOf.get(ctx);
    if (!ids) acceptedOf.set(ctx, (ids = new Set()));
    for (const id of ids) if (!(id in ctx.subscriptions)) ids.delete(id);
    return ids;
  }

  /** Operations in progress over the token's sockets; stale sets of other sockets are pruned only when it matters. */
  function operationsOf(key: string): number {
    const sockets = socketsOf.get(key) ?? new Set<AnyContext>();
    let count = 0;
    for (const ctx of sockets) count += acceptedOf.get(ctx)?.size ?? 0;
    if (count < limits.wsMaxSubscriptionsPerToken) return count;
    count = 0;
    for (const ctx of sockets) count += live(ctx).size;
    return count;
  }

  return {
    /**
     * For `new WebSocketServer({ verifyClient })`: a node with its maximum of sockets refuses the upgrade (503),
     * and so does an address with its maximum of sockets that have sent nothing yet (429).
     */
    verifyClient(server: () => WebSocketServer): VerifyClientCallbackAsync {
      return (info, done) => {
        if (server().clients.size >= limits.wsMaxSockets) done(false, 503, "Too many WebSockets on this node");
        else if ((silent.get(info.req.socket.remoteAddress ?? "") ?? 0) >= limits.wsMaxPendingPerAddress) {
          done(false, 429, "Too many WebSockets from this address waiting to send connection_init");
        } else done(true);
      };
    },

    /**
     * A socket just opened: it counts against its address until it sends connection_init (`admit`), or until it
     * closes. Any other message first (a ping, which graphql-ws answers before init) leaves it counted.
     */
    opened(socket: object & { once(event: "close", listener: () => void): unknown }, remoteAddress: string | undefined): void {
      const address = remoteAddress ?? "";
      silent.set(address, (silent.get(address) ?? 0) + 1);
      let counted = true;
      const spoke = () => {
        if (!counted) return;
        counted = false;
        const left = (silent.get(address) ?? 1) - 1;
        if (left > 0) silent.set(address, left);
        else silent.delete(address);
      };
      initialised.set(socket, spoke);
      socket.once("close", spoke);
    },

    /**
     * On connection_init, before authentication: null if the socket may go on, else why it must close
     * (connectionParams too large, or an address out of budget looking up a token this node has not seen
     * authenticate: each such lookup draws on the address's budget, as an HTTP request with it does).
     */
    async admit(ctx: AnyContext, socket: object, remoteAddress: string | undefined): Promise<{ code: number; reason: string } | null> {
      initialised.get(socket)?.();
      const params = ctx.connectionParams ?? {};
      if (Buffer.byteLength(JSON.stringify(params)) > limits.wsMaxConnectionParamsBytes) {
        return { code: CLOSE_BAD_REQUEST, reason: `connectionParams larger than ${limits.wsMaxConnectionParamsBytes} bytes` };
      }
      const header = params.authorization ?? params.Authorization;
      const tokenHash = tokenHashOf(typeof header === "string" ? header : null);
      hashes.set(ctx, tokenHash);
      if (!tokenHash || !known.has(tokenHash)) {
        const decision = await rateLimiter.take(keyOf(null, remoteAddress, known));
        if (!decision.allowed) return { code: CLOSE_TRY_AGAIN_LATER, reason: `Too many requests from this address; retry in ${decision.retryAfterSeconds} s` };
      }
      return null;
    },

    /**
     * Once the socket's token has authenticated: null if the token may have one more socket (it then counts
     * against the token, never its address), else why the socket must close.
     */
    enter(ctx: AnyContext, remoteAddress: string | undefined): { code: number; reason: string } | null {
      const tokenHash = hashes.get(ctx) ?? null;
      const key = tokenHash ? `token:${tokenHash}` : keyOf(null, remoteAddress, known);
      const sockets = socketsOf.get(key) ?? new Set();
      if (sockets.size >= limits.wsMaxSocketsPerToken) {
        return { code: CLOSE_TRY_AGAIN_LATER, reason: `Too many WebSockets for this token (limit ${limits.wsMaxSocketsPerToken})` };
      }
      sockets.add(ctx);
      socketsOf.set(key, sockets);
      admitted.set(ctx, { key, tokenHash, remoteAddress });
      return null;
    },

    /** A socket closed: it no longer counts against its token. */
    release(ctx: AnyContext): void {
      const key = admitted.get(ctx)?.key;
      if (!key) return;
      const sockets = socketsOf.get(key);
      sockets?.delete(ctx);
      if (sockets?.size === 0) socketsOf.delete(key);
    },

    /** On every subscribe message: null to go on (the operation now counts), or the errors to answer it with. */
    async checkOperation(ctx: AnyContext, id: string, socket: PausableSocket): Promise<GraphQLError[] | null> {
      const socketOf = admitted.get(ctx);
      if (!socketOf) return null;
      const { key } = socketOf;
      // A full socket is answered at once, without drawing on the budget.
      if (live(ctx).size >= limits.wsMaxSubscriptionsPerSocket) return refuse(ctx, socket, overSocket);
      const decision = await rateLimiter.take(keyOf(socketOf.tokenHash, socketOf.remoteAddress, known));
      if (!decision.allowed) return refuse(ctx, socket, rateLimitedFor(decision.retryAfterSeconds));
      const mine = live(ctx);
      if (mine.size >= limits.wsMaxSubscriptionsPerSocket) return refuse(ctx, socket, overSocket);
      if (operationsOf(key) >= limits.wsMaxSubscriptionsPerToken) return refuse(ctx, socket, overToken);
      mine.add(id);
      return null;
    },
  };
}
