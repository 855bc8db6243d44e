// Typed errors in the schema: every domain error is an object type implementing the `Error` interface, so a
// mutation's result union can list the failures a client should handle (`... on Error { code message }`).
import { ConflictError, DomainError, ForbiddenError, InsufficientCreditsError, InvalidInputError, LimitExceededError, NotFoundError } from "../domain/errors.ts";
import { builder } from "./builder.ts";

export const ErrorInterface = builder.interfaceRef<DomainError>("Error").implement({
  description: "A failure the client can act on. `code` is stable; `message` is for humans.",
  fields: (t) => ({
    code: t.exposeString("code", { description: "BAD_USER_INPUT | CONFLICT | NOT_FOUND | FORBIDDEN | INSUFFICIENT_CREDITS | LIMIT_EXCEEDED | …" }),
    message: t.exposeString("message"),
    field: t.exposeString("field", { nullable: true, description: "Path of the input at fault, e.g. input.email" }),
  }),
});

function errorObject(cls: new (message: string, field?: string | null) => DomainError, description: string) {
  builder.objectType(cls, {
    name: cls.name,
    description,
    interfaces: [ErrorInterface],
    isTypeOf: (value) => value instanceof cls,
    fields: () => ({}),
  });
}

errorObject(InvalidInputError, "The input is malformed or breaks a rule; `field` names it.");
errorObject(ConflictError, "The input collides with an existing record (e.g. a unique email).");
errorObject(NotFoundError, "The addressed record does not exist in this organization.");
errorObject(ForbiddenError, "The token is valid but may not do this.");

builder.objectType(InsufficientCreditsError, {
  name: "InsufficientCreditsError",
  description: "Credits-only usage beyond what is available; nothing was written. Names the balance that refused.",
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof InsufficientCreditsError,
  fields: (t) => ({
    customerId: t.exposeID("customerId"),
    meterId: t.exposeID("meterId"),
    balance: t.expose("balance", { type: "Decimal", description: "The balance before the refused usage" }),
    available: t.expose("available", { type: "Decimal", description: "balance minus live holds: what could have been used" }),
  }),
});

builder.objectType(LimitExceededError, {
  name: "LimitExceededError",
  description: "The change would take the organization past a configured limit (active meters, filter clauses); nothing was written.",
  interfaces: [ErrorInterface],
  isTypeOf: (value) => value instanceof LimitExceededError,
  fields: (t) => ({
    limit: t.exposeInt("limit", { description: "The limit that would be exceeded" }),
  }),
});
