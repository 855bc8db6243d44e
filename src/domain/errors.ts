// Domain errors: thrown by domain functions, which know nothing of GraphQL. The schema layer exposes them
// as typed members of mutation result unions (plugin-errors) and, for queries, as GraphQL errors whose
// extensions carry the same `code` (and `field` where one input is to blame).

export abstract class DomainError extends Error {
  abstract readonly code: string;
  /** Dotted path of the input at fault, e.g. "input.email" or "events.3.timestamp". */
  field: string | null;
  constructor(message: string, field: string | null = null) {
    super(message);
    this.name = new.target.name;
    this.field = field;
  }

  /** This error with its field moved under an input object's name (`events.3` → `input.events.3`). */
  nestedUnder(prefix: string): this {
    this.field = this.field ? `${prefix}.${this.field}` : prefix;
    return this;
  }
}

/** The input is malformed or breaks a rule. */
export class InvalidInputError extends DomainError {
  readonly code = "BAD_USER_INPUT";
}

/** The input collides with something that exists (a unique email, an external id). */
export class ConflictError extends DomainError {
  readonly code = "CONFLICT";
}

/** The addressed record does not exist in the caller's organization (other tenants' ids included). */
export class NotFoundError extends DomainError {
  readonly code = "NOT_FOUND";
}

/** No credential, or one that is unknown, revoked or expired. */
export class UnauthenticatedError extends DomainError {
  readonly code = "UNAUTHENTICATED";
}

/** A valid credential that may not do this. */
export class ForbiddenError extends DomainError {
  readonly code = "FORBIDDEN";
}

/**
 * Credits-only usage beyond what is available (balance minus holds). Nothing was written. `available` is
 * what could have been used, in micro-units.
 */
export class InsufficientCreditsError extends DomainError {
  readonly code = "INSUFFICIENT_CREDITS";
  constructor(
    message: string,
    field: string | null,
    readonly customerId: string,
    readonly meterId: string,
    readonly balance: bigint,
    readonly available: bigint,
  ) {
    super(message, field);
  }
}

/**
 * The change would take the organization past a configured limit (active meters, filter clauses). `limit` is
 * the limit; nothing was written.
 */
export class LimitExceededError extends DomainError {
  readonly code = "LIMIT_EXCEEDED";
  constructor(
    message: string,
    field: string | null,
    readonly limit: number,
  ) {
    super(message, field);
  }
}

/** Largest value a 64-bit integer column (PostgreSQL int8, SQLite INTEGER) holds: micro-units never exceed it. */
export const MAX_STORED_UNITS = 2n ** 63n - 1n;

/**
 * A write would take a balance row out of the 64-bit micro-unit range. Nothing was written. Carries the
 * stored state it started from, so ingestion can name the event that crossed the limit.
 */
export class UnitsOverflowError extends InvalidInputError {
  constructor(
    message: string,
    field: string | null,
    readonly customerId: string,
    readonly meterId: string,
    /** stored aggSum, consumedUnits and creditedUnits of the row before the write */
    readonly stored: { aggSum: bigint; consumed: bigint; credited: bigint },
  ) {
    super(message, field);
  }

  /** Do `positive` new units of usage and `credit` new units of credit take the row past the limit? */
  exceededBy(positive: bigint, credit: bigint): boolean {
    const { aggSum, consumed, credited } = this.stored;
    return aggSum + positive > MAX_STORED_UNITS || consumed + positive > MAX_STORED_UNITS || credited + credit > MAX_STORED_UNITS;
  }
}
