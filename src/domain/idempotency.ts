// Idempotency keys: the merchant's name for one money-moving request, so a retry changes nothing.
import { InvalidInputError } from "./errors.ts";

/** A key, when given, is 1 to 255 characters and not blank. */
export function checkIdempotencyKey(key: string | null | undefined, field: string): void {
  if (key != null && (!key.trim() || key.length > 255)) throw new InvalidInputError("must be 1 to 255 characters", field);
}
