// Metadata on customers and events: a flat object of string, number or boolean values.
import { InvalidInputError } from "./errors.ts";
import { inexactNumber } from "./meter-filter.ts";

export type Metadata = Record<string, string | number | boolean>;

const MAX_METADATA_KEYS = 50;

/** The refusal of one metadata entry, or null. */
function entryRefusal(key: string, v: unknown, field: string): InvalidInputError | null {
  if (!key || key.length > 100) return new InvalidInputError("keys must be 1 to 100 characters", `${field}.${key}`);
  const ok = typeof v === "string" ? v.length <= 1000 : typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
  if (!ok) return new InvalidInputError("must be a string (up to 1000 characters), a finite number or a boolean", `${field}.${key}`);
  // A number is stored as the double it was parsed into: refuse one that may not be what the client wrote.
  const inexact = typeof v === "number" ? inexactNumber(v) : null;
  return inexact ? new InvalidInputError(inexact, `${field}.${key}`) : null;
}

/**
 * Metadata is a flat object of string, number or boolean values (as in events). Too many keys is the refusal
 * named first, whatever the entries hold. One pass over the keys, with no array of entries: this runs for
 * every event ingested.
 */
export function checkMetadata(value: unknown, field: string): Metadata {
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new InvalidInputError("must be an object", field);
  const object = value as Record<string, unknown>;
  let keys = 0;
  let refused: InvalidInputError | null = null;
  for (const key in object) {
    if (!Object.prototype.hasOwnProperty.call(object, key)) continue;
    keys++;
    if (refused === null && keys <= MAX_METADATA_KEYS) refused = entryRefusal(key, object[key], field);
  }
  if (keys > MAX_METADATA_KEYS) throw new InvalidInputError(`must have at most ${MAX_METADATA_KEYS} keys`, field);
  if (refused) throw refused;
  return value as Metadata;
}
