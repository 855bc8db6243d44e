// Recognise database constraint failures in Prisma errors, so domain code can turn them into typed errors.
import { Prisma } from "../generated/prisma-postgresql/client.ts";

function knownError(err: unknown): { code: string; meta?: Record<string, unknown> } | null {
  // Both generated clients throw the same runtime class; compare by shape so either client matches.
  if (err instanceof Prisma.PrismaClientKnownRequestError) return err;
  if (err && typeof err === "object" && "code" in err && typeof (err as { code: unknown }).code === "string" && (err as { name?: string }).name === "PrismaClientKnownRequestError") {
    return err as { code: string; meta?: Record<string, unknown> };
  }
  return null;
}

/** The columns of the unique constraint a write broke, or null when the error is something else. */
export function uniqueViolationFields(err: unknown): string[] | null {
  const known = knownError(err);
  if (!known || known.code !== "P2002") return null;
  const meta = known.meta ?? {};
  if (Array.isArray(meta.target)) return meta.target as string[];
  const cause = (meta.driverAdapterError as { cause?: { constraint?: { fields?: string[]; index?: string } } } | undefined)?.cause;
  if (cause?.constraint?.fields) return cause.constraint.fields.map((f) => f.replace(/^"|"$/g, ""));
  if (cause?.constraint?.index) return [cause.constraint.index];
  return [];
}

export function isUniqueViolation(err: unknown, field?: string): boolean {
  const fields = uniqueViolationFields(err);
  if (!fields) return false;
  return field === undefined || fields.some((f) => f === field || f.includes(field));
}

/**
 * A transaction the database aborted for reasons of concurrency, which may succeed if run again: a
 * PostgreSQL deadlock or serialization failure (P2034 through Prisma, 40P01 / 40001 from node-postgres),
 * or SQLite still busy after its timeout because another process holds the write lock (P1008 through Prisma,
 * SQLITE_BUSY from the driver).
 */
export function isRetryableTransactionError(err: unknown): boolean {
  const known = knownError(err);
  if (known && (known.code === "P2034" || known.code === "P1008")) return true;
  // node-postgres errors (src/db/pg.ts) carry the SQLSTATE as their code; the SQLite driver's (src/db/libsql.ts)
  // their result code.
  const code = err && typeof err === "object" ? (err as { code?: unknown }).code : undefined;
  if (code === "40P01" || code === "40001" || code === "SQLITE_BUSY") return true;
  // Raw statements through Prisma can surface the driver's own error: look for the SQLSTATE.
  const text = err instanceof Error ? `${err.message} ${JSON.stringify((err as { meta?: unknown }).meta ?? "")}` : "";
  return /\b(40P01|40001)\b|deadlock detected|could not serialize access/.test(text);
}
