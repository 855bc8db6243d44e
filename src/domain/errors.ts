// Domain errors: thrown by domain functions, which know nothing of GraphQL. The schema layer exposes them
// as typed members of mutation result unions (plugin-errors) and, for queries, as GraphQL errors whose
// extensions carry the same `code` (and `field` where one input is to blame).

export abstract class DomainError extends Error {
  abstract readonly code: string;
  /** Dotted path of the input at fault, e.g. "input.email" or "events.3.timestamp". */
  readonly field: string | null;
  constructor(message: string, field: string | null = null) {
    super(message);
    this.name = new.target.name;
    this.field = field;
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
