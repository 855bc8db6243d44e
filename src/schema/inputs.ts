// Mutations take one `input` object. Those that took loose arguments before keep them one more release,
// deprecated and nullable (graphql-js deprecates only nullable arguments), so a call gives either the input or
// the loose arguments; what the input form requires is then checked here, as a typed error naming the field.
import { DomainError, InvalidInputError } from "../domain/errors.ts";

/** The arguments a mutation was called with, in one shape, and where their errors point. */
export interface GivenInput<T> {
  input: T;
  /** "input" for the input form, null for the deprecated loose arguments. */
  prefix: string | null;
}

/**
 * The `input` object, or else the deprecated loose arguments gathered as one; never both. `required` are the
 * loose arguments the input form requires (a loose call must give them too).
 */
export function givenInput<T extends object>(input: T | null | undefined, loose: { [K in keyof T]?: T[K] | null }, required: (keyof T & string)[]): GivenInput<T> {
  const looseGiven = Object.entries(loose).filter(([, value]) => value != null);
  if (input) {
    if (looseGiven.length) throw new InvalidInputError(`give input or the deprecated arguments (${looseGiven.map(([k]) => k).join(", ")}), not both`, looseGiven[0][0]);
    return { input, prefix: "input" };
  }
  if (!looseGiven.length && required.length) throw new InvalidInputError("is required", "input");
  for (const name of required) if (loose[name] == null) throw new InvalidInputError("is required", name);
  return { input: Object.fromEntries(looseGiven) as T, prefix: null };
}

/** Run a domain call whose errors name bare fields (`events.3.timestamp`); under the input form they gain its name. */
export async function underInput<R>(given: GivenInput<unknown>, work: () => Promise<R>): Promise<R> {
  try {
    return await work();
  } catch (err) {
    if (given.prefix && err instanceof DomainError) throw err.nestedUnder(given.prefix);
    throw err;
  }
}

/**
 * A record an update addresses: by `input.id`, or by the deprecated bare `id` argument (exactly one). An error
 * of `work` naming "id" then names where the id was given.
 */
export async function withRecordId<R>(argId: string | number | null | undefined, inputId: string | number | null | undefined, work: (id: string) => Promise<R>): Promise<R> {
  if (argId != null && inputId != null) throw new InvalidInputError("give id or input.id, not both", "id");
  const id = argId ?? inputId;
  if (id == null) throw new InvalidInputError("is required", "input.id");
  try {
    return await work(String(id));
  } catch (err) {
    if (argId == null && err instanceof DomainError && err.field === "id") err.field = "input.id";
    throw err;
  }
}
