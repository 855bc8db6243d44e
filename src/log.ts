// Structured JSON logs (pino). LOG_LEVEL sets the threshold; tests run silent unless asked.
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "credits-ledger" }, timestamp: pino.stdTimeFunctions.isoTime });
}
