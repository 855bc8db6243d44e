// Logs (pino). LOG_LEVEL sets the threshold; tests run silent unless asked. JSON lines for machines (a file, a
// pipe, a log collector, CI, tests), readable lines on a terminal: pino-pretty when stdout is a TTY and the
// package is installed (LOG_FORMAT=json or pretty forces one).
// What Yoga reports goes through `yogaLogging`: the client's mistakes at info, the service's faults at error.
import { createRequire } from "node:module";
import { GraphQLError } from "graphql";
import { pino } from "pino";
import { DomainError } from "./domain/errors.ts";

export type Logger = pino.Logger;
export type LogFormat = "json" | "pretty";

/** LOG_FORMAT if set (json, pretty); otherwise pretty on a terminal when pino-pretty loads, JSON elsewhere. */
export function chooseLogFormat(setting: string | undefined, isTerminal: boolean, prettyInstalled: boolean): LogFormat {
  if (setting === "json" || setting === "pretty") return setting;
  if (setting) throw new Error(`LOG_FORMAT must be json or pretty (unset: pretty on a terminal), got "${setting}"`);
  return isTerminal && prettyInstalled ? "pretty" : "json";
}

type PrettyFactory = (options: Record<string, unknown>) => NodeJS.WritableStream;

/** pino-pretty, or null where it is not installed (it is a dependency, but a trimmed image may lack it). */
function loadPretty(): PrettyFactory | null {
  try {
    return createRequire(import.meta.url)("pino-pretty") as PrettyFactory;
  } catch {
    return null;
  }
}

/** A logger at `level` in the format LOG_FORMAT (`format`) asks for, or the one chooseLogFormat picks. */
export function createLogger(level = process.env.LOG_LEVEL ?? "info", format = process.env.LOG_FORMAT): Logger {
  const options = { level, base: { service: "credits-ledger" }, timestamp: pino.stdTimeFunctions.isoTime };
  const pretty = format === "json" ? null : loadPretty();
  if (chooseLogFormat(format, process.stdout.isTTY === true, pretty !== null) === "pretty" && pretty) {
    // Formatting in this thread, written synchronously: a terminal is for a person watching, not for load.
    return pino(options, pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "service", sync: true }));
  }
  return pino(options);
}

/** The error a GraphQL error wraps, all the way down (itself when it wraps none). */
function rootCause(error: unknown): unknown {
  let current = error;
  while (current instanceof GraphQLError && current.originalError) current = current.originalError;
  return current;
}

/**
 * A fault of the request, not of the service: a document that does not parse or validate, variables of the
 * wrong type, a missing or refused token, a domain error (NOT_FOUND, BAD_USER_INPUT, …). Anything else, a
 * failed database call for instance, is the service's.
 */
export function isClientError(error: unknown): boolean {
  const cause = rootCause(error);
  return cause instanceof DomainError || cause instanceof GraphQLError;
}

/**
 * Yoga's `logging` option. Yoga reports at error level every error that error masking replaced, which includes
 * each domain error a query raises: those are logged at info (code, field, path, message). A service fault is
 * logged at error once: `reported` holds those the masking already logged with their stack.
 */
export function yogaLogging(log: Logger, reported: WeakSet<object>) {
  const text = (args: unknown[]) => args.map(String).join(" ");
  return {
    // Yoga reports a few debug lines on every request: not formatted unless they are logged.
    debug: (...args: unknown[]) => {
      if (log.isLevelEnabled("debug")) log.debug(text(args));
    },
    info: (...args: unknown[]) => log.info(text(args)),
    warn: (...args: unknown[]) => log.warn(text(args)),
    error: (...args: unknown[]) => {
      if (args.length > 0 && args.every(isClientError)) {
        for (const error of args as Error[]) {
          const cause = rootCause(error);
          const located = error instanceof GraphQLError ? error : undefined;
          const code = cause instanceof DomainError ? cause.code : located?.extensions.code;
          const field = cause instanceof DomainError ? cause.field : undefined;
          log.info({ code, field, path: located?.path }, `client error: ${error.message}`);
        }
        return;
      }
      const unreported = args.filter((a) => !(typeof a === "object" && a !== null && reported.has(a)));
      if (unreported.length) log.error(text(unreported));
    },
  };
}
