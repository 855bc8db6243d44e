// Credit grants: credits given to a customer on one meter, each a ledger entry. Idempotent by key.
import { orderedId } from "./ids.ts";
import type { Db } from "../db/client.ts";
import type { CreditGrant } from "../generated/prisma-postgresql/client.ts";
import { adjustBalances } from "./balances.ts";
import { resolveCustomerRef, type CustomerRef } from "./customers.ts";
import { ConflictError, InvalidInputError } from "./errors.ts";
import { requireMeter } from "./meters.ts";
import type { Notify } from "./notify.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { inTransaction } from "./transactions.ts";

export interface GrantInput extends CustomerRef {
  meterId: string;
  /** micro-units, > 0 */
  units: bigint;
  idempotencyKey?: string | null;
  description?: string | null;
}

/** Same key, same grant: a retried call returns the grant it made the first time and changes nothing. */
async function existingForKey(db: Db, organizationId: string, input: GrantInput, customerId: string): Promise<CreditGrant | null> {
  if (!input.idempotencyKey) return null;
  const grant = await db.creditGrant.findUnique({ where: { organizationId_idempotencyKey: { organizationId, idempotencyKey: input.idempotencyKey } } });
  if (grant && (grant.customerId !== customerId || grant.meterId !== input.meterId || grant.units !== input.units)) {
    throw new ConflictError("This idempotencyKey was used for a different grant", "input.idempotencyKey");
  }
  return grant;
}

export async function grantCredits(db: Db, notify: Notify, organizationId: string, input: GrantInput, now = new Date()): Promise<CreditGrant> {
  if (input.units <= 0n) throw new InvalidInputError("must be greater than 0", "input.units");
  if (input.idempotencyKey != null && (!input.idempotencyKey.trim() || input.idempotencyKey.length > 255)) {
    throw new InvalidInputError("must be 1 to 255 characters", "input.idempotencyKey");
  }
  const customer = await resolveCustomerRef(db, organizationId, input, "input");
  await requireMeter(db, organizationId, input.meterId, "input.meterId");
  const existing = await existingForKey(db, organizationId, input, customer.id);
  if (existing) return existing;
  try {
    return await inTransaction(db, notify, organizationId, async (sql, tx) => {
      const grant = await tx.creditGrant.create({
        data: {
          id: orderedId(),
          organizationId,
          customerId: customer.id,
          meterId: input.meterId,
          units: input.units,
          remainingUnits: input.units,
          effectiveAt: now,
          source: "ADMIN",
          idempotencyKey: input.idempotencyKey ?? null,
          description: input.description ?? null,
        },
      });
      const changes = await adjustBalances(sql, organizationId, [
        { customerId: customer.id, meterId: input.meterId, credit: { kind: "GRANT", units: input.units, grantId: grant.id, description: input.description } },
      ], now);
      return { value: grant, changes };
    });
  } catch (err) {
    // A concurrent call with the same key committed first: answer with its grant.
    if (isUniqueViolation(err, "idempotencyKey")) return (await existingForKey(db, organizationId, input, customer.id))!;
    throw err;
  }
}
