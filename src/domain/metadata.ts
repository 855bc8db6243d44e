// Metadata on customers and events: a flat object of string, number or boolean values.
import { InvalidInputError } from "./errors.ts";
import { inexactNumber } from "./meter-filter.ts";

export type Metadata = Record<string, string | number | boolean>;

const MAX_METADATA_KEYS = 50;

/** Metadata is a flat object of string, number or boolean values (as in events). */
export function checkMetadata(value: unknown, field: string): Metadata {
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new InvalidInputError("must be an object", field);
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_METADATA_KEYS) throw new InvalidInputError(`must have at most ${MAX_METADATA_KEYS} keys`, field);
  for (const [key, v] of entries) {
    if (!key || key.length > 100) throw new InvalidInputError("keys must be 1 to 100 characters", `${field}.${key}`);
    const ok = typeof v === "string" ? v.length <= 1000 : typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
    if (!ok) throw new InvalidInputError("must be a string (up to 1000 characters), a finite number or a boolean", `${field}.${key}`);
    // A number is stored as the double it was parsed into: refuse one that may not be what the client wrote.
    const inexact = typeof v === "number" ? inexactNumber(v) : null;
    if (inexact) throw new InvalidInputError(inexact, `${field}.${key}`);
  }
  return value as Metadata;
}
