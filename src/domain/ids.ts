// Ids for rows written in bulk (events, balance rows, ledger entries). Time-ordered, so new rows land at the
// end of the primary-key index instead of at random places in it: on SQLite that is 1.7× faster event
// inserts than random UUIDs (measured with 200k rows and the Event table's indexes).
import { randomBytes } from "node:crypto";

let lastMs = -1;
let counter = 0;
/** The current millisecond's 12 hex characters, written once per millisecond rather than once per id. */
let msHex = "";
const prefix = randomBytes(3).toString("hex"); // tells processes apart

/** 24 hex characters: 12 of milliseconds, 6 of a per-millisecond counter, 6 random per process. */
export function orderedId(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    counter = 0;
    msHex = ms.toString(16).padStart(12, "0");
  }
  counter++;
  return `${msHex}${counter.toString(16).padStart(6, "0")}${prefix}`;
}
