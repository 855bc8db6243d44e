// Long-lived authority: a WebSocket is authenticated once, on connect, but its credential can end while it is
// open; so can an SSE subscription's stream, authenticated once by its request (server.ts hands it in as a
// `Connection` that ends the stream when closed). This module keeps every open socket's principal and closes
// the socket when the credential ends:
//   - at the token's expiresAt (a timer per socket, checked against the service clock when it fires);
//   - when a token is revoked or a customer deleted, announced on the `auth:revoked` topic (with Redis, to
//     every node), applied at once on the node that made the change;
//   - as a backstop for announcements a node missed (Redis down, a CLI without REDIS_URL), a sweep every
//     ADMIN_TOKEN_CACHE_MS re-reads the open sockets' tokens in one statement per 500 sockets.
// Every new operation on a socket is also checked in memory (the revoked ids this node heard of, the expiry),
// so a socket whose credential ended runs nothing more even before it is closed.
import { LRUCache } from "lru-cache";
import type { Db } from "./db/client.ts";
import { ADMIN_TOKEN_CACHE_MS, type Principal } from "./domain/auth.ts";
import type { Notify, Revocation } from "./domain/notify.ts";
import type { Logger } from "./log.ts";
import type { PubSub } from "./pubsub.ts";

/** WebSocket close codes for credentials that ended (documented in the README, Auth). */
export const CLOSE_CODES = {
  /** Missing, invalid, expired or revoked token (also on connect). */
  unauthorized: 4401,
  /** The customer of a session was deleted. */
  customerDeleted: 4403,
} as const;

/** What the authority needs of an open connection: a `ws` WebSocket has it, server.ts adapts SSE streams. */
export interface Connection {
  readonly readyState: number;
  readonly OPEN: number;
  readonly CONNECTING: number;
  close(code: number, reason: string): void;
  once(event: "close", listener: () => void): unknown;
}

type Ending = { code: number; reason: string };

const EXPIRED: Ending = { code: CLOSE_CODES.unauthorized, reason: "Unauthorized: the access token has expired" };
const REVOKED: Ending = { code: CLOSE_CODES.unauthorized, reason: "Unauthorized: the access token was revoked" };
const DELETED: Ending = { code: CLOSE_CODES.customerDeleted, reason: "Forbidden: the customer of this session was deleted" };

/** setTimeout's longest delay; a later expiry re-arms when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const SWEEP_BATCH = 500;

interface Tracked {
  principal: Principal;
  timer?: NodeJS.Timeout;
}

export interface SocketAuthorityDeps {
  db: Db;
  pubsub: PubSub;
  log: Logger;
  clock: () => Date;
  /** Drops a revoked admin token from the node's authentication cache. */
  forgetToken: (tokenId: string) => void;
  /** How often open sockets' tokens are re-read from the database (default ADMIN_TOKEN_CACHE_MS). */
  sweepMs?: number;
}

export function createSocketAuthority(deps: SocketAuthorityDeps) {
  const { db, pubsub, log, clock, forgetToken } = deps;
  const sweepMs = deps.sweepMs ?? ADMIN_TOKEN_CACHE_MS;
  const sockets = new Map<Connection, Tracked>();
  // Credentials this node heard were ended, remembered well past the sweep that would catch them anyway. The
  // cache sets its whole capacity aside up front (at 100,000 entries, 4.2 MB of arrays in every node's heap):
  // 10,000 endings within ten minutes is plenty, and one pushed out early is still caught by the next sweep.
  const ended = new LRUCache<string, true>({ max: 10_000, ttl: 10 * 60_000 });
  let listener: AsyncIterator<unknown> | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping = false;

  function endingOf(principal: Principal): Ending | null {
    if (ended.has(`token:${principal.tokenId}`)) return REVOKED;
    if (principal.kind === "customer" && ended.has(`customer:${principal.customerId}`)) return DELETED;
    if (principal.expiresAt && principal.expiresAt <= clock()) return EXPIRED;
    return null;
  }

  function close(socket: Connection, ending: Ending) {
    untrack(socket);
    if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING) socket.close(ending.code, ending.reason);
  }

  function untrack(socket: Connection) {
    const tracked = sockets.get(socket);
    if (tracked?.timer) clearTimeout(tracked.timer);
    sockets.delete(socket);
  }

  /** Close the socket when its token expires, on the service clock. */
  function arm(socket: Connection, tracked: Tracked) {
    if (tracked.timer) clearTimeout(tracked.timer);
    tracked.timer = undefined;
    const expiresAt = tracked.principal.expiresAt;
    if (!expiresAt) return;
    const left = expiresAt.getTime() - clock().getTime();
    if (left <= 0) return close(socket, EXPIRED);
    tracked.timer = setTimeout(() => arm(socket, tracked), Math.min(left, MAX_TIMER_MS));
    tracked.timer.unref();
  }

  function apply(revocation: Revocation) {
    for (const id of revocation.tokenIds) {
      ended.set(`token:${id}`, true);
      forgetToken(id);
    }
    if (revocation.customerId) ended.set(`customer:${revocation.customerId}`, true);
    for (const [socket, { principal }] of sockets) {
      const ending = endingOf(principal);
      if (ending) close(socket, ending);
    }
  }

  /** Re-read the open sockets' tokens: closes those revoked or whose customer is gone. */
  async function sweep() {
    if (sweeping || sockets.size === 0) return;
    sweeping = true;
    try {
      const open = [...sockets];
      for (let i = 0; i < open.length; i += SWEEP_BATCH) {
        const batch = open.slice(i, i + SWEEP_BATCH);
        const ids = [...new Set(batch.map(([, t]) => t.principal.tokenId))];
        const rows = await db.accessToken.findMany({
          where: { id: { in: ids } },
          select: { id: true, revokedAt: true, customer: { select: { deletedAt: true } } },
        });
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const [socket, { principal }] of batch) {
          if (!sockets.has(socket)) continue;
          const row = byId.get(principal.tokenId);
          if (principal.kind === "customer" && row?.customer?.deletedAt) {
            // (deleteCustomer also revokes the sessions; the deletion is the reason given)
            ended.set(`customer:${principal.customerId}`, true);
            close(socket, DELETED);
          } else if (!row || row.revokedAt) {
            ended.set(`token:${principal.tokenId}`, true);
            forgetToken(principal.tokenId);
            close(socket, REVOKED);
          } else {
            const ending = endingOf(principal);
            if (ending) close(socket, ending);
          }
        }
      }
    } catch (err) {
      log.warn({ err }, "socket authority sweep failed");
    } finally {
      sweeping = false;
    }
  }

  return {
    /** Listen for revocations and start the sweep. */
    start() {
      const iterator = pubsub.subscribe("auth:revoked")[Symbol.asyncIterator]();
      listener = iterator;
      void (async () => {
        try {
          for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
            apply({ tokenIds: r.value.tokenIds ?? [], customerId: r.value.customerId ?? null });
          }
        } catch (err) {
          log.error({ err }, "revocation listener stopped");
        }
      })();
      sweepTimer = setInterval(() => void sweep(), sweepMs);
      sweepTimer.unref();
    },

    async stop() {
      if (sweepTimer) clearInterval(sweepTimer);
      for (const socket of sockets.keys()) untrack(socket); // deleting while iterating a Map is safe
      await listener?.return?.();
      listener = undefined;
    },

    /**
     * A socket authenticated on connect: tracked until it closes. False (and the socket closed) when its
     * credential already ended, e.g. revoked while it was being looked up.
     */
    admit(socket: Connection, principal: Principal): boolean {
      if (socket.readyState !== socket.OPEN) return false; // gone while its token was looked up
      const ending = endingOf(principal);
      if (ending) {
        socket.close(ending.code, ending.reason);
        return false;
      }
      const tracked: Tracked = { principal };
      sockets.set(socket, tracked);
      socket.once("close", () => untrack(socket));
      arm(socket, tracked);
      return true;
    },

    /** Before each operation on a socket: false (and the socket closed) when its credential has ended. */
    allows(socket: Connection, principal: Principal): boolean {
      const ending = endingOf(principal);
      if (!ending) return true;
      close(socket, ending);
      return false;
    },

    /** Apply a revocation on this node now (it is also announced to every node over pub/sub). */
    apply,

    /** `notify` that also applies revocations locally at once, before the pub/sub message comes back. */
    notifying(base: Notify): Notify {
      return {
        ...base,
        accessRevoked(organizationId, revocation) {
          apply(revocation);
          base.accessRevoked(organizationId, revocation);
        },
      };
    },

    /** The service clock jumped (tests move it): re-check every socket's expiry now. */
    clockMoved() {
      for (const [socket, tracked] of sockets) arm(socket, tracked);
    },

    /** Re-read the open sockets' tokens now (what the periodic sweep does). */
    sweep,

    /** Open sockets this node tracks. */
    get size() {
      return sockets.size;
    },
  };
}

export type SocketAuthority = ReturnType<typeof createSocketAuthority>;
