// Graceful stop: on SIGTERM or SIGINT a node stops accepting connections, closes its SSE subscriptions'
// connections, lets the HTTP requests and WebSocket queries and mutations in flight (and so their
// transactions) finish within a grace period, closes its WebSockets with 1001, stops the scheduler,
// disconnects Redis and the database and exits 0. Only a grace period that runs out exits 1.
import type { Server, ServerResponse } from "node:http";
import type { Logger } from "./log.ts";

/**
 * Waiting for the work in flight to end: `wait(graceMs)` resolves true once `idle()` is called (the last
 * piece ended), false if `graceMs` pass first.
 */
function idleWaiters() {
  const waiters = new Set<() => void>();
  return {
    idle(): void {
      for (const waiter of waiters) waiter(); // each removes itself: a Set allows that while it is walked
    },
    wait(graceMs: number): Promise<boolean> {
      return new Promise<boolean>((resolve) => {
        const done = (idle: boolean) => {
          clearTimeout(timer);
          waiters.delete(onIdle);
          resolve(idle);
        };
        const onIdle = () => done(true);
        const timer = setTimeout(() => done(false), graceMs);
        waiters.add(onIdle);
      });
    },
  };
}

/** Counts a server's HTTP requests in flight so that shutdown can wait for them. */
export function trackRequests(server: Server) {
  let inFlight = 0;
  let draining = false;
  const waiters = idleWaiters();
  // prependListener: runs before the request handler, so the header below is set before any response starts
  // Server-sent event streams (GraphQL subscriptions over SSE) last until the client leaves: a drain does not
  // wait for them but closes their connections, as it closes WebSockets, and their clients reconnect elsewhere.
  const streams = new Set<ServerResponse>();
  const stream = (res: ServerResponse) => {
    if (streams.has(res)) return;
    streams.add(res);
    res.once("close", () => streams.delete(res));
  };
  server.prependListener("request", (req, res) => {
    inFlight++;
    if (String(req.headers.accept ?? "").includes("text/event-stream")) stream(res);
    // while draining, a keep-alive client is told to reconnect (to another node) after this response
    if (draining) res.setHeader("connection", "close");
    res.once("close", () => {
      inFlight--;
      if (!draining) return;
      server.closeIdleConnections();
      if (inFlight === 0) waiters.idle();
    });
  });
  return {
    get inFlight() {
      return inFlight;
    },
    /** A response that is a subscription's event stream (whatever Accept header asked for it): not waited for. */
    stream,
    /**
     * Resolves true once no request is in flight, false if `graceMs` pass first. Call after server.close():
     * event streams and idle keep-alive connections are closed now, busy ones as their response ends.
     */
    drain(graceMs: number): Promise<boolean> {
      draining = true;
      for (const stream of streams) stream.destroy();
      server.closeIdleConnections();
      return inFlight === 0 ? Promise.resolve(true) : waiters.wait(graceMs);
    },
  };
}

/**
 * Counts operations that are not HTTP requests (queries and mutations over graphql-ws) so that shutdown can
 * wait for them as for HTTP requests: once draining, no new one starts (`closing`), and the drain resolves
 * when those running have been answered, or false after `graceMs`. An operation is `begin`-ed under its
 * owner (the socket's context) and id, and `end`-ed when graphql-ws completes it: graphql-ws sends the
 * complete message right after its onComplete hook, so the count drops a turn of the event loop later, once
 * that message is written to the socket (the socket closes after it, not before).
 */
export function trackOperations() {
  let inFlight = 0;
  let closing = false;
  const waiters = idleWaiters();
  const running = new WeakMap<object, Set<string>>();
  return {
    get closing() {
      return closing;
    },
    begin(owner: object, id: string): void {
      let ids = running.get(owner);
      if (!ids) running.set(owner, (ids = new Set()));
      ids.add(id);
      inFlight++;
    },
    /** Whatever `owner` and `id` name: only an operation begun counts down. */
    end(owner: object, id: string): void {
      if (!running.get(owner)?.delete(id)) return;
      setImmediate(() => {
        inFlight--;
        if (inFlight === 0) waiters.idle();
      });
    },
    drain(graceMs: number): Promise<boolean> {
      closing = true;
      return inFlight === 0 ? Promise.resolve(true) : waiters.wait(graceMs);
    },
  };
}

export interface ShutdownOptions {
  log: Logger;
  /** How long in-flight work may take after the signal (SHUTDOWN_GRACE_MS). */
  graceMs: number;
  /** Stops the server; resolves false when requests were still running at the end of `graceMs`. */
  closeServer(graceMs: number): Promise<boolean>;
  /** Then: Redis, database, … in order. */
  disconnect: (() => Promise<void>)[];
  exit?: (code: number) => void;
}

/** Installs the SIGTERM/SIGINT handlers of `npm start`. A second signal while stopping changes nothing. */
export function onShutdownSignals(options: ShutdownOptions): void {
  let stopping = false;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const { log, graceMs } = options;
    const started = Date.now();
    log.info({ signal, graceMs }, "shutting down");
    // Past the grace period (plus a moment to disconnect) the process ends whatever is still pending.
    const force = setTimeout(() => {
      log.error({ graceMs }, "shutdown grace period ran out");
      exit(1);
    }, graceMs + 2000);
    force.unref();
    let code = 0;
    try {
      if (!(await options.closeServer(graceMs))) {
        log.error({ graceMs }, "requests still running when the grace period ran out; their connections were closed");
        code = 1;
      }
      for (const disconnect of options.disconnect) {
        await disconnect().catch((err: Error) => log.warn({ err: err.message }, "disconnect failed"));
      }
    } catch (err) {
      log.error({ err }, "shutdown failed");
      code = 1;
    } finally {
      clearTimeout(force);
      log.info({ ms: Date.now() - started, code }, "stopped");
      exit(code);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
